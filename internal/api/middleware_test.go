package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

func TestMiddleware(t *testing.T) {
	var logs bytes.Buffer
	a := &api{log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom/{id}", func(w http.ResponseWriter, r *http.Request) {
		noteRun(r, r.PathValue("id"))
		panic("kaboom")
	})
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) != "given-id" {
			t.Errorf("RequestID = %q", RequestID(r.Context()))
		}
		w.WriteHeader(http.StatusTeapot)
	})
	h := a.middleware(mux)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom/run-7", nil))
	if rec.Code != 500 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("panic: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var e wire.Error
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != "internal" {
		t.Errorf("panic body %q: %v", rec.Body.String(), err)
	}
	id := rec.Header().Get("X-Request-Id")
	if len(id) != 16 {
		t.Errorf("generated request id %q", id)
	}
	var access map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		if m["msg"] == "http request" {
			access = m
		}
	}
	if access["status"] != float64(500) || access["run_id"] != "run-7" || access["request_id"] != id ||
		access["method"] != "GET" || access["path"] != "/boom/run-7" || access["duration"] == nil {
		t.Errorf("access log = %v", access)
	}
	if !strings.Contains(logs.String(), "kaboom") {
		t.Error("the panic is not logged")
	}

	rec = httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/ok", nil)
	req.Header.Set("X-Request-Id", "given-id")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusTeapot || rec.Header().Get("X-Request-Id") != "given-id" {
		t.Errorf("ok: %d, id %q", rec.Code, rec.Header().Get("X-Request-Id"))
	}
	// Reads that succeed are logged at debug (the audit trail has them),
	// other requests at info, the server's errors as warnings.
	mux.HandleFunc("GET /fine", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /fine", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /gone", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	for _, c := range []struct{ method, path, level string }{
		{"GET", "/fine", "DEBUG"}, {"HEAD", "/fine", "DEBUG"}, {"POST", "/fine", "INFO"},
		{"GET", "/gone", "INFO"}, {"GET", "/boom/run-8", "WARN"},
	} {
		logs.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
		level := ""
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			_ = json.Unmarshal([]byte(line), &m)
			if m["msg"] == "http request" {
				level, _ = m["level"].(string)
			}
		}
		if level != c.level {
			t.Errorf("%s %s: access log at %q, want %q", c.method, c.path, level, c.level)
		}
	}
	// At info, a read that succeeded writes no line.
	logs.Reset()
	quiet := &api{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	quiet.middleware(mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/fine", nil))
	if logs.Len() != 0 {
		t.Errorf("a read at level info logged %q", logs.String())
	}

	// An unusable id is replaced.
	rec = httptest.NewRecorder()
	req = httptest.NewRequest("GET", "/ok", nil)
	req.Header.Set("X-Request-Id", "bad id\x01")
	a.middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
	if got := rec.Header().Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("bad id echoed as %q", got)
	}
}
