package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadSSE(t *testing.T) {
	in := ": ping\n\nevent: log\ndata: {\"a\":1}\n\nid: 7\r\ndata: line one\r\ndata: line two\r\n\r\n: ping\n\nevent: job\ndata:x\n\nevent: unfinished\ndata: y"
	var got []string
	err := ReadSSE(strings.NewReader(in), func(typ string, data []byte) error {
		got = append(got, typ+"="+string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`log={"a":1}`, "message=line one\nline two", "job=x"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestFollowLogs(t *testing.T) {
	stream := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/runs/r1/logs":
			if r.URL.Query().Get("follow") != "1" || r.URL.Query().Get("job") != "test (a, b)" {
				http.Error(w, "bad query "+r.URL.RawQuery, 400)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, stream)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			fmt.Fprint(w, `{"code":"not_found","message":"run x not found"}`)
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	stream = "event: log\ndata: {\"job_key\":\"test (a, b)\",\"seq\":1,\"data\":\"hi\\n\"}\n\n: ping\n\n" +
		"event: future\ndata: {}\n\nevent: end\ndata: {\"id\":\"r1\",\"state\":\"succeeded\"}\n\nevent: log\ndata: {}\n\n"
	var evs []Event
	err = c.FollowLogs(ctx, "r1", "test (a, b)", func(ev Event) error { evs = append(evs, ev); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Log.Data != "hi\n" || evs[0].Log.Seq != 1 || evs[1].End.State != "succeeded" {
		t.Errorf("events = %+v", evs)
	}

	stream = "event: log\ndata: {\"data\":\"hi\"}\n\n"
	err = c.FollowLogs(ctx, "r1", "test (a, b)", func(Event) error { return nil })
	if !errors.Is(err, ErrStreamEnded) {
		t.Errorf("stream without end: err = %v", err)
	}
	stop := errors.New("stop")
	err = c.FollowLogs(ctx, "r1", "test (a, b)", func(Event) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("callback error: err = %v", err)
	}

	_, err = c.GetRun(ctx, "x")
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" || ae.Message != "run x not found" {
		t.Errorf("GetRun error = %#v", err)
	}
	if _, err := New("127.0.0.1:8080", nil); err == nil {
		t.Error("New accepted an address without a scheme")
	}
}
