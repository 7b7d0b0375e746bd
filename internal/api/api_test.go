package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/steplog"
)

type env struct {
	srv  *server.Server
	base string
	c    *client.Client
}

func start(t *testing.T) *env {
	t.Helper()
	return startWith(t, false)
}

// startUnisolated is start whose steps run as the test's user, outside any
// sandbox: for tests whose steps wait for or write files of the test's
// temporary directory.
func startUnisolated(t *testing.T) *env {
	t.Helper()
	return startWith(t, true)
}

func startWith(t *testing.T, unisolated bool) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.Start(ctx, server.Options{
		DataDir:      t.TempDir(),
		NATSListen:   "none",
		HTTPAddr:     "127.0.0.1:0",
		LocalWorkers: 1,
		Logger:       log,

		UnsafeSharedUser: unisolated,
	})
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(srv.Close)
	base := "http://" + srv.HTTPAddr()
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, base: base, c: c}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// do sends a request and returns the response with its body read.
func (e *env) do(t *testing.T, method, path, ctype string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, data
}

// wantError checks an error response: its status, JSON body and code.
func wantError(t *testing.T, resp *http.Response, body []byte, status int, code wire.Code) wire.Error {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e wire.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Code != code || e.Message == "" {
		t.Errorf("error body = %+v, want code %q and a message", e, code)
	}
	return e
}

// follow follows a run until its end and returns the events.
func (e *env) follow(t *testing.T, ctx context.Context, id, job string) ([]wire.Event, wire.Run) {
	t.Helper()
	evs, end, err := e.followErr(ctx, id, job)
	if err != nil {
		t.Fatalf("follow %s: %v", id, err)
	}
	return evs, end
}

// followErr is follow for other goroutines than the test's.
func (e *env) followErr(ctx context.Context, id, job string) ([]wire.Event, wire.Run, error) {
	var evs []wire.Event
	var end wire.Run
	err := e.c.FollowLogs(ctx, id, job, func(ev wire.Event) error {
		evs = append(evs, ev)
		if ev.Type == wire.EventEnd {
			end = *ev.End
		}
		return nil
	})
	return evs, end, err
}

// output joins the data of log events per job key, checking that no chunk
// comes twice or out of order.
func output(t *testing.T, evs []wire.Event) map[string]string {
	t.Helper()
	type pos struct {
		attempt int
		seq     int64
	}
	last := map[string]pos{}
	out := map[string]string{}
	for _, ev := range evs {
		if ev.Type != wire.EventLog {
			continue
		}
		l := ev.Log
		p := last[l.JobID]
		if l.Attempt < p.attempt || l.Attempt == p.attempt && l.Seq <= p.seq {
			t.Errorf("job %s: chunk (%d, %d) after (%d, %d)", l.JobKey, l.Attempt, l.Seq, p.attempt, p.seq)
		}
		last[l.JobID] = pos{l.Attempt, l.Seq}
		out[l.JobKey] += l.Data
	}
	return out
}

const hello = `name: hello
jobs:
  hello:
    steps:
      - run: echo "hello from $HODEI_JOB_KEY"
`

func TestSubmitAndFollow(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 60*time.Second)

	const yaml = `name: matrix
jobs:
  build:
    steps:
      - run: echo built
  test:
    needs: build
    matrix:
      go: ["1.22", "1.23"]
      os: [linux]
    steps:
      - run: echo "testing $GO"
        env:
          GO: ${{ matrix.go }}
`
	resp, body := e.do(t, "POST", "/api/v1/runs?file=m.yaml&tenant=acme", "application/yaml", []byte(yaml))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", resp.StatusCode, body)
	}
	var run wire.Run
	if err := json.Unmarshal(body, &run); err != nil {
		t.Fatal(err)
	}
	if run.ID == "" || run.Pipeline != "matrix" || run.File != "m.yaml" || run.Tenant != "acme" {
		t.Errorf("submitted run = %+v", run)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/runs/"+run.ID {
		t.Errorf("Location = %q", loc)
	}

	evs, end := e.follow(t, ctx, run.ID, "")
	if end.State != "succeeded" {
		t.Fatalf("run ended %s (%s), want succeeded", end.State, end.Error)
	}
	if len(end.Jobs) != 3 {
		t.Fatalf("end has %d jobs, want 3", len(end.Jobs))
	}
	out := output(t, evs)
	if steplog.ZeroDurations(out["build"]) != oneStep("echo built", "built\n", 0) ||
		steplog.ZeroDurations(out["test (1.22, linux)"]) != oneStep(`echo "testing $GO"`, "testing 1.22\n", 0) ||
		steplog.ZeroDurations(out["test (1.23, linux)"]) != oneStep(`echo "testing $GO"`, "testing 1.23\n", 0) {
		t.Errorf("output = %q", out)
	}
	// The run's state events go forward only and end succeeded.
	var states []state.RunState
	for _, ev := range evs {
		if ev.Type == wire.EventRun {
			states = append(states, ev.Run.State)
		}
	}
	if len(states) == 0 || states[len(states)-1] != "succeeded" {
		t.Errorf("run events = %v", states)
	}
	// Each job's final state comes once, after its output.
	finals := map[string]int{}
	for i, ev := range evs {
		if ev.Type == wire.EventJob && ev.Job.State == "succeeded" {
			finals[ev.Job.JobKey]++
			for _, later := range evs[i+1:] {
				if later.Type == wire.EventLog && later.Log.JobID == ev.Job.JobID {
					t.Errorf("output of %s after its final state", ev.Job.JobKey)
				}
			}
		}
	}
	if len(finals) != 3 || finals["build"] != 1 {
		t.Errorf("final job events = %v", finals)
	}

	got, err := e.c.GetRun(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "succeeded" || got.FinishedAt == nil || got.DurationSeconds <= 0 || len(got.Jobs) != 3 {
		t.Errorf("GetRun = %+v", got)
	}
	test := got.Jobs[1]
	if test.Key != "test (1.22, linux)" || len(test.Needs) != 1 || test.Needs[0] != "build" ||
		test.Attempt != 1 || test.Worker == "" || test.ExitCode == nil || *test.ExitCode != 0 || test.StartedAt == nil {
		t.Errorf("job = %+v", test)
	}

	// A job by key (spaces and parentheses) and by id, with attempts.
	byKey, err := e.c.Job(ctx, run.ID, "test (1.23, linux)")
	if err != nil {
		t.Fatal(err)
	}
	if byKey.Key != "test (1.23, linux)" || len(byKey.Attempts) != 1 || byKey.Attempts[0].State != "succeeded" {
		t.Errorf("job by key = %+v", byKey)
	}
	byID, err := e.c.Job(ctx, run.ID, byKey.ID)
	if err != nil || byID.Key != byKey.Key {
		t.Errorf("job by id = %+v, %v", byID, err)
	}
	jobs, err := e.c.Jobs(ctx, run.ID)
	if err != nil || len(jobs) != 3 || len(jobs[0].Attempts) != 1 {
		t.Errorf("jobs = %+v, %v", jobs, err)
	}
	resp, body = e.do(t, "GET", "/api/v1/runs/"+run.ID+"/jobs/"+url.PathEscape("test (9, linux)"), "", nil)
	wantError(t, resp, body, http.StatusNotFound, "not_found")

	// The JSON form of a submission.
	req, _ := json.Marshal(wire.SubmitRequest{File: "j.yaml", Pipeline: hello, Tenant: "t2"})
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/json", req)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("JSON submit: %d %s", resp.StatusCode, body)
	}
	var run2 wire.Run
	_ = json.Unmarshal(body, &run2)
	if run2.File != "j.yaml" || run2.Tenant != "t2" {
		t.Errorf("JSON submit = %+v", run2)
	}
	if _, end := e.follow(t, ctx, run2.ID, ""); end.State != "succeeded" {
		t.Errorf("second run ended %s", end.State)
	}

	// List, newest first, paginated, filtered.
	l, err := e.c.ListRuns(ctx, client.ListOptions{Limit: 1})
	if err != nil || len(l.Runs) != 1 || l.Runs[0].ID != run2.ID || l.Next != run2.ID {
		t.Fatalf("list page 1 = %+v, %v", l, err)
	}
	l, err = e.c.ListRuns(ctx, client.ListOptions{Limit: 1, Before: l.Next})
	if err != nil || len(l.Runs) != 1 || l.Runs[0].ID != run.ID {
		t.Fatalf("list page 2 = %+v, %v", l, err)
	}
	l, err = e.c.ListRuns(ctx, client.ListOptions{Tenant: "acme", State: "succeeded"})
	if err != nil || len(l.Runs) != 1 || l.Runs[0].ID != run.ID || l.Next != "" {
		t.Fatalf("list by tenant = %+v, %v", l, err)
	}
	resp, body = e.do(t, "GET", "/api/v1/runs?state=bogus", "", nil)
	wantError(t, resp, body, http.StatusBadRequest, "bad_request")
	resp, body = e.do(t, "GET", "/api/v1/runs?limit=0", "", nil)
	wantError(t, resp, body, http.StatusBadRequest, "bad_request")
}

func TestInvalidPipeline(t *testing.T) {
	e := start(t)
	const bad = `name: bad
jobs:
  build:
    timeout: 10
    steps:
      - name: compile
`
	resp, body := e.do(t, "POST", "/api/v1/runs?file=bad.yaml", "application/yaml", []byte(bad))
	er := wantError(t, resp, body, http.StatusBadRequest, "invalid_pipeline")
	if len(er.Details) != 2 {
		t.Fatalf("details = %+v, want 2", er.Details)
	}
	d := er.Details[0]
	if d.File != "bad.yaml" || d.Line != 4 || d.Column == 0 || d.Field != "jobs.build.timeout" || d.Message == "" {
		t.Errorf("detail 0 = %+v", d)
	}
	if er.Details[1].Line != 6 || er.Details[1].Field != "jobs.build.steps[0].run" {
		t.Errorf("detail 1 = %+v", er.Details[1])
	}
	if !strings.Contains(er.Message, "bad.yaml:4:") || !strings.Contains(er.Message, "\nbad.yaml:6:") {
		t.Errorf("message does not join every error: %q", er.Message)
	}

	// The same through the client, with the default file name.
	_, err := e.c.Submit(context.Background(), "", []byte("jobs: [\n"), "")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Code != "invalid_pipeline" || len(ce.Details) == 0 ||
		ce.Details[0].File != "pipeline.yaml" || ce.Details[0].Line == 0 {
		t.Errorf("client submit of broken YAML: %#v", err)
	}

	// JSON form: invalid pipeline, broken JSON, missing pipeline.
	req, _ := json.Marshal(wire.SubmitRequest{File: "x.yaml", Pipeline: bad})
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/json; charset=utf-8", req)
	if er := wantError(t, resp, body, http.StatusBadRequest, "invalid_pipeline"); len(er.Details) == 0 || er.Details[0].File != "x.yaml" {
		t.Errorf("JSON invalid pipeline = %+v", er)
	}
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/json", []byte(`{"pipeline": `))
	wantError(t, resp, body, http.StatusBadRequest, "bad_request")
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/json", []byte(`{"file": "a.yaml"}`))
	wantError(t, resp, body, http.StatusBadRequest, "bad_request")
	resp, body = e.do(t, "POST", "/api/v1/runs", "image/png", []byte(hello))
	wantError(t, resp, body, http.StatusUnsupportedMediaType, "unsupported_media_type")

	// Too large, both forms.
	big := bytes.Repeat([]byte("# padding padding padding padding\n"), (api.MaxBody/34)+10)
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/yaml", big)
	wantError(t, resp, body, http.StatusRequestEntityTooLarge, "too_large")
	req, _ = json.Marshal(wire.SubmitRequest{Pipeline: string(big)})
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/json", req)
	wantError(t, resp, body, http.StatusRequestEntityTooLarge, "too_large")
}

func TestErrors(t *testing.T) {
	e := start(t)
	for _, c := range []struct {
		method, path string
		status       int
		code         wire.Code
	}{
		{"GET", "/api/v1/runs/0123456789abcdef", 404, "not_found"},
		{"GET", "/api/v1/runs/nope/jobs", 404, "not_found"},
		{"GET", "/api/v1/runs/nope/jobs/build", 404, "not_found"},
		{"GET", "/api/v1/runs/nope/logs", 404, "not_found"},
		{"GET", "/api/v1/runs/nope/logs?follow=1", 404, "not_found"},
		{"POST", "/api/v1/runs/nope/cancel", 404, "not_found"},
		{"GET", "/api/v1/nothing", 404, "not_found"},
		{"GET", "/api/v2/runs", 404, "not_found"},
		{"GET", "/nothing", 404, "not_found"},
		{"POST", "/api/v1/runs/nope/rerun", 404, "not_found"},
		{"GET", "/api/v1/permissions?run=nope", 404, "not_found"},
		{"DELETE", "/api/v1/runs/abc", 405, "method_not_allowed"},
		{"GET", "/api/v1/runs/abc/cancel", 405, "method_not_allowed"},
		{"PUT", "/api/v1/runs", 405, "method_not_allowed"},
	} {
		resp, body := e.do(t, c.method, c.path, "", nil)
		wantError(t, resp, body, c.status, c.code)
		if c.status == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
	_, err := e.c.GetRun(context.Background(), "missing")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 404 || ce.Code != "not_found" {
		t.Errorf("client GetRun of a missing run: %#v", err)
	}
}

func TestCancel(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 60*time.Second)
	run, err := e.c.Submit(ctx, "sleep.yaml", []byte(`name: sleepy
jobs:
  sleep:
    steps:
      - run: echo started; sleep 30
  after:
    needs: sleep
    steps:
      - run: echo never
`), "")
	if err != nil {
		t.Fatal(err)
	}
	var canceledAt time.Time
	var end wire.Run
	var sawStarted bool
	err = e.c.FollowLogs(ctx, run.ID, "", func(ev wire.Event) error {
		switch {
		case ev.Type == wire.EventLog && strings.HasSuffix(ev.Log.Data, "started\n") && canceledAt.IsZero():
			// The job is running (it printed): cancel it.
			sawStarted = true
			canceledAt = time.Now()
			resp, body := e.do(t, "POST", "/api/v1/runs/"+run.ID+"/cancel", "", nil)
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("cancel: %d %s", resp.StatusCode, body)
			}
			var r wire.Run
			if err := json.Unmarshal(body, &r); err != nil || r.ID != run.ID {
				return fmt.Errorf("cancel body %s: %v", body, err)
			}
		case ev.Type == wire.EventEnd:
			end = *ev.End
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawStarted {
		t.Fatal("the job never printed")
	}
	// Left alone, the step would sleep its 30 s.
	if took := time.Since(canceledAt); took >= 30*time.Second {
		t.Errorf("run took %s to end after cancel: the step ran its course", took)
	}
	if end.State != "canceled" {
		t.Fatalf("run ended %s, want canceled", end.State)
	}
	for _, j := range end.Jobs {
		if j.State != "canceled" {
			t.Errorf("job %s ended %s, want canceled", j.Key, j.State)
		}
	}
	resp, body := e.do(t, "POST", "/api/v1/runs/"+run.ID+"/cancel", "", nil)
	wantError(t, resp, body, http.StatusConflict, "run_final")
	_, err = e.c.Cancel(ctx, run.ID)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "run_final" || ce.Status != 409 {
		t.Errorf("client cancel of a final run: %#v", err)
	}
}

// linesYAML makes two jobs that print n lines each in bursts, the last one
// without a newline.
func linesYAML(n int) string {
	return fmt.Sprintf(`name: lines
jobs:
  count:
    matrix:
      part: [a, b]
    steps:
      - run: |
          i=1
          while [ $i -le %d ]; do
            echo "line $i of $PART"
            if [ $((i %% 150)) -eq 0 ]; then sleep 0.2; fi
            i=$((i+1))
          done
          printf 'tail of %%s' "$PART"
        env:
          PART: ${{ matrix.part }}
`, n)
}

func wantLines(n int, part string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "line %d of %s\n", i, part)
	}
	fmt.Fprintf(&b, "tail of %s", part)
	return b.String()
}

func TestLogs(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 60*time.Second)
	const n = 600
	run, err := e.c.Submit(ctx, "lines.yaml", []byte(linesYAML(n)), "")
	if err != nil {
		t.Fatal(err)
	}
	keyA, keyB := "count (a)", "count (b)"
	want := map[string]string{keyA: oneStep("i=1 …", wantLines(n, "a"), 0), keyB: oneStep("i=1 …", wantLines(n, "b"), 0)}

	// Follow from the start (catch-up and live), all jobs and one job, at
	// the same time.
	var wg sync.WaitGroup
	var live, liveB map[string]string
	wg.Add(2)
	go func() {
		defer wg.Done()
		evs, _, err := e.followErr(ctx, run.ID, "")
		if err != nil {
			t.Errorf("follow: %v", err)
		}
		live = output(t, evs)
	}()
	go func() {
		defer wg.Done()
		evs, _, err := e.followErr(ctx, run.ID, keyB)
		if err != nil {
			t.Errorf("follow of one job: %v", err)
		}
		for _, ev := range evs {
			if ev.Type == wire.EventLog && ev.Log.JobKey != keyB || ev.Type == wire.EventJob && ev.Job.JobKey != keyB {
				t.Errorf("follow of one job got an event of %+v", ev)
				break
			}
		}
		liveB = output(t, evs)
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	for k, w := range want {
		if got := steplog.ZeroDurations(live[k]); got != w {
			t.Errorf("live output of %s: got %d bytes, want %d\n%s", k, len(got), len(w), diffHint(got, w))
		}
	}
	if steplog.ZeroDurations(liveB[keyB]) != want[keyB] || len(liveB) != 1 {
		t.Errorf("live output of one job: %d keys, %d bytes", len(liveB), len(liveB[keyB]))
	}

	// Follow after the end: everything from the store, then end.
	evs, end := e.follow(t, ctx, run.ID, "")
	if end.State != "succeeded" {
		t.Fatalf("run ended %s", end.State)
	}
	after := output(t, evs)
	for k, w := range want {
		if got := steplog.ZeroDurations(after[k]); got != w {
			t.Errorf("output of %s after the end: got %d bytes, want %d\n%s", k, len(got), len(w), diffHint(got, w))
		}
	}

	// Plain text: one job raw, all jobs prefixed.
	var raw bytes.Buffer
	if err := e.c.Logs(ctx, run.ID, keyA, client.LogsOptions{}, &raw); err != nil {
		t.Fatal(err)
	}
	if got := steplog.ZeroDurations(raw.String()); got != want[keyA] {
		t.Errorf("raw logs of %s: %s", keyA, diffHint(got, want[keyA]))
	}
	resp, body := e.do(t, "GET", "/api/v1/runs/"+run.ID+"/logs", "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("logs: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var wantAll strings.Builder
	for _, k := range []string{keyA, keyB} {
		for _, line := range strings.Split(strings.TrimSuffix(want[k], "\n"), "\n") {
			wantAll.WriteString("[" + k + "] " + line + "\n")
		}
	}
	if got := steplog.ZeroDurations(string(body)); got != wantAll.String() {
		t.Errorf("prefixed logs: %s", diffHint(got, wantAll.String()))
	}

	// SSE framing, read raw: events and data lines, via Accept.
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/v1/runs/"+run.ID+"/logs?job="+url.QueryEscape(keyA), nil)
	req.Header.Set("Accept", "text/event-stream")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if ct := r2.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("SSE Content-Type = %q", ct)
	}
	s := string(stream)
	if !strings.HasPrefix(s, "event: log\ndata: {") || !strings.Contains(s, "\n\nevent: job\ndata: {") ||
		!strings.HasSuffix(s, "\n\n") || !strings.Contains(s, "\n\nevent: end\ndata: {\"id\":\""+run.ID+"\"") {
		t.Errorf("SSE stream framing:\n%.300s\n...\n%s", s, s[max(0, len(s)-300):])
	}
}

func diffHint(got, want string) string {
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d: got %q, want %q", i, got[i:min(len(got), i+40)], want[i:min(len(want), i+40)])
		}
	}
	return fmt.Sprintf("one is a prefix of the other (got %d bytes, want %d)", len(got), len(want))
}

// gated is a job that prints `before` lines, waits for the file $GATE, then
// prints `after` lines in bursts.
func gated(gate string, before, after int) string {
	return fmt.Sprintf(`name: gated
env:
  GATE: %q
jobs:
  talk:
    steps:
      - run: |
          i=1
          while [ $i -le %d ]; do echo "line $i"; i=$((i+1)); done
          while [ ! -f "$GATE" ]; do sleep 0.02; done
          while [ $i -le %d ]; do
            echo "line $i"
            if [ $((i %% 50)) -eq 0 ]; then sleep 0.05; fi
            i=$((i+1))
          done
`, gate, before, before+after)
}

func numbered(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

func openGate(t *testing.T, path string) {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Error(err)
	}
}

// checkJobStates checks that a job's state events only move forward.
func checkJobStates(t *testing.T, evs []wire.Event) {
	t.Helper()
	order := map[state.JobState]int{"pending": 0, "queued": 1, "assigned": 2, "running": 3, "succeeded": 4, "failed": 4, "canceled": 4, "skipped": 4}
	last := map[string]int{}
	for _, ev := range evs {
		if ev.Type != wire.EventJob {
			continue
		}
		r, seen := last[ev.Job.JobID]
		if seen && order[ev.Job.State] <= r {
			t.Errorf("job %s: state %s after a later one", ev.Job.JobKey, ev.Job.State)
		}
		last[ev.Job.JobID] = order[ev.Job.State]
	}
}

// checkFollowed checks what a follower of a gated run (see gated) received:
// the job "talk"'s lines 1 to lines once each and in order, job states that
// only move forward, and the run's end, succeeded, last.
func checkFollowed(t *testing.T, evs []wire.Event, lines int) {
	t.Helper()
	if got, want := steplog.ZeroDurations(output(t, evs)["talk"]), oneStep("i=1 …", numbered(1, lines), 0); got != want {
		t.Errorf("output: %s", diffHint(got, want))
	}
	checkJobStates(t, evs)
	if last := evs[len(evs)-1]; last.Type != wire.EventEnd || last.End.State != "succeeded" {
		t.Errorf("last event = %+v", last)
	}
}

// TestFollowOverlap follows with a subscription taken before the run was
// submitted (as `hodei run` does), once the run has output in the store:
// what the store and the hub both hold must come once.
func TestFollowOverlap(t *testing.T) {
	e := startUnisolated(t)
	ctx := testCtx(t, 60*time.Second)
	gate := t.TempDir() + "/gate"
	sub := e.srv.Hub.Subscribe("", 1<<16)
	run, err := e.c.Submit(ctx, "gated.yaml", []byte(gated(gate, 100, 200)), "")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the first lines are stored (the job then waits).
	errStored := errors.New("stored")
	var seen string
	err = e.c.FollowLogs(ctx, run.ID, "", func(ev wire.Event) error {
		if ev.Type == wire.EventLog {
			seen += ev.Log.Data
			if strings.HasSuffix(seen, "line 100\n") {
				return errStored
			}
		}
		return nil
	})
	if !errors.Is(err, errStored) {
		t.Fatalf("waiting for the first lines: %v", err)
	}
	var evs []wire.Event
	caughtUp := false
	err = api.Follow(ctx, e.srv.Store, e.srv.Hub, api.FollowOptions{RunID: run.ID, Sub: sub}, func(ev wire.Event) error {
		evs = append(evs, ev)
		if ev.Type == wire.EventRun && !caughtUp {
			// The catch-up from the store is over: let the job go on.
			caughtUp = true
			openGate(t, gate)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFollowed(t, evs, 300)
}

// TestFollowLag makes the hub drop a follower and checks that it catches up
// from the store without a gap or a duplicate.
func TestFollowLag(t *testing.T) {
	e := startUnisolated(t)
	ctx := testCtx(t, 60*time.Second)
	gate := t.TempDir() + "/gate"
	// A subscription for all runs taken before the submission, with room
	// for one note so that it is dropped at once.
	sub := e.srv.Hub.Subscribe("", 1)
	run, err := e.c.Submit(ctx, "lag.yaml", []byte(gated(gate, 0, 400)), "")
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the end through the API; the stuck follower is released
	// after it.
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		if _, _, err := e.followErr(ctx, run.ID, ""); err != nil {
			t.Errorf("follow: %v", err)
		}
	}()

	lags := 0
	var evs []wire.Event
	caughtUp, blocked := false, false
	err = api.Follow(ctx, e.srv.Store, e.srv.Hub, api.FollowOptions{
		RunID: run.ID, Sub: sub, Buffer: 1, OnLag: func() { lags++ },
	}, func(ev wire.Event) error {
		evs = append(evs, ev)
		switch {
		case ev.Type == wire.EventRun && !caughtUp:
			caughtUp = true
			openGate(t, gate)
		case ev.Type == wire.EventLog && !blocked:
			// The output comes live, after the gate opened: stop reading
			// until the run is over, so that the hub drops us.
			blocked = true
			select {
			case <-ended:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lags == 0 {
		t.Error("the follower was never dropped: the test did not test catching up")
	}
	checkFollowed(t, evs, 400)
}

func TestHealthReadyMetrics(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 60*time.Second)
	resp, body := e.do(t, "GET", "/healthz", "", nil)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/readyz", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("readyz: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id generated")
	}
	req, _ := http.NewRequest("GET", e.base+"/healthz", nil)
	req.Header.Set("X-Request-Id", "req-42")
	if r, err := http.DefaultClient.Do(req); err != nil || r.Header.Get("X-Request-Id") != "req-42" {
		t.Errorf("X-Request-Id not echoed: %v", err)
	} else {
		r.Body.Close()
	}

	run, err := e.c.Submit(ctx, "", []byte(hello), "")
	if err != nil {
		t.Fatal(err)
	}
	e.follow(t, ctx, run.ID, "")
	resp, body = e.do(t, "GET", "/metrics", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{"hodei_queue_depth", `hodei_runs{state="succeeded"} 1`, `hodei_runs{state="failed"} 0`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}

	ws, err := e.c.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].Pool != "local" || ws[0].CPUMilli == 0 {
		t.Errorf("workers = %+v, %v", ws, err)
	}

	// Once the orchestrator stops: not ready, and submissions get 503.
	e.srv.Orch.Stop()
	resp, body = e.do(t, "GET", "/readyz", "", nil)
	wantError(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	resp, body = e.do(t, "POST", "/api/v1/runs", "application/yaml", []byte(hello))
	wantError(t, resp, body, http.StatusServiceUnavailable, "unavailable")
	resp, body = e.do(t, "GET", "/healthz", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("healthz after stop: %d %s", resp.StatusCode, body)
	}
}

func TestConcurrentSubmissions(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 3*time.Minute)
	const submitters, each = 8, 25
	var (
		mu       sync.Mutex
		accepted []string
		busy     int
	)
	var wg sync.WaitGroup
	for s := 0; s < submitters; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				req, _ := http.NewRequestWithContext(ctx, "POST", e.base+"/api/v1/runs", strings.NewReader(hello))
				req.Header.Set("Content-Type", "application/yaml")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("submit: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusCreated:
					var r wire.Run
					if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
						t.Errorf("201 body %s: %v", body, err)
						return
					}
					mu.Lock()
					accepted = append(accepted, r.ID)
					mu.Unlock()
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
					mu.Lock()
					busy++
					mu.Unlock()
				default:
					t.Errorf("submit: %d (Retry-After %q) %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d accepted, %d busy", len(accepted), busy)
	if len(accepted) == 0 {
		t.Fatal("no submission accepted")
	}
	seen := map[string]bool{}
	for _, id := range accepted {
		if seen[id] {
			t.Fatalf("run id %s given twice", id)
		}
		seen[id] = true
		_, end := e.follow(t, ctx, id, "")
		if end.State != "succeeded" {
			t.Errorf("run %s ended %s (%s)", id, end.State, end.Error)
		}
	}
}

func TestRetry(t *testing.T) {
	e := startUnisolated(t)
	ctx := testCtx(t, 60*time.Second)
	mark := t.TempDir() + "/mark"
	run, err := e.c.Submit(ctx, "retry.yaml", []byte(fmt.Sprintf(`name: retry
env:
  MARK: %q
jobs:
  flaky:
    retry: 2
    steps:
      - run: |
          if [ -f "$MARK" ]; then echo "second try"; exit 0; fi
          touch "$MARK"
          echo "first try"
          exit 3
`, mark)), "")
	if err != nil {
		t.Fatal(err)
	}
	evs, end := e.follow(t, ctx, run.ID, "")
	if end.State != "succeeded" {
		t.Fatalf("run ended %s", end.State)
	}
	first := oneStep(`if [ -f "$MARK" ]; then echo "second try"; exit 0; fi …`, "first try\n", 3)
	second := oneStep(`if [ -f "$MARK" ]; then echo "second try"; exit 0; fi …`, "second try\n", 0)
	if got := steplog.ZeroDurations(output(t, evs)["flaky"]); got != first+second {
		t.Errorf("output = %q", got)
	}
	// Every job event, in order: the attempt number goes with each state.
	var got []string
	for _, ev := range evs {
		if ev.Type == wire.EventJob {
			got = append(got, fmt.Sprintf("%s/%d", ev.Job.State, ev.Job.Attempt))
		}
	}
	// The follow starts after the submission, so it may begin at any state
	// of the first attempt; from there on the sequence is complete.
	want := []string{"queued/0", "assigned/1", "running/1", "queued/1", "assigned/2", "running/2", "succeeded/2"}
	if len(got) == 0 || !slicesHasSuffix(want, got) {
		t.Errorf("job events = %v, want a suffix of %v", got, want)
	}
	j, err := e.c.Job(ctx, run.ID, "flaky")
	if err != nil {
		t.Fatal(err)
	}
	if j.Attempt != 2 || j.MaxAttempts != 3 || len(j.Attempts) != 2 || j.Attempts[0].State != "failed" ||
		j.Attempts[0].ExitCode == nil || *j.Attempts[0].ExitCode != 3 || j.Attempts[1].State != "succeeded" {
		t.Errorf("job = %+v", j)
	}
	// The stored log cuts the attempts apart.
	var raw bytes.Buffer
	if err := e.c.Logs(ctx, run.ID, "flaky", client.LogsOptions{}, &raw); err != nil ||
		steplog.ZeroDurations(raw.String()) != "--- attempt 1 ---\n"+first+"--- attempt 2 ---\n"+second {
		t.Errorf("logs = %q, %v", raw.String(), err)
	}
	// With timestamps, every line starts with its chunk's time: the
	// attempts' lines in order, the separators without.
	raw.Reset()
	if err := e.c.Logs(ctx, run.ID, "flaky", client.LogsOptions{Timestamps: true}, &raw); err != nil {
		t.Fatal(err)
	}
	stamp := regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (.*)$`)
	var unstamped strings.Builder
	var last time.Time
	for _, line := range strings.SplitAfter(raw.String(), "\n") {
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "--- attempt ") {
			unstamped.WriteString(line)
			continue
		}
		m := stamp.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			t.Fatalf("line without a timestamp: %q", line)
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil || at.Before(last) || time.Since(at) > time.Hour {
			t.Errorf("timestamp %s after %s: %v", m[1], last, err)
		}
		last = at
		unstamped.WriteString(m[2] + "\n")
	}
	if got := steplog.ZeroDurations(unstamped.String()); got != "--- attempt 1 ---\n"+first+"--- attempt 2 ---\n"+second {
		t.Errorf("logs with timestamps, stamps removed = %q", got)
	}
}

// oneStep is the log of the only step of a job, titled title, that printed
// out and exited with code, as steplog.ZeroDurations writes it.
func oneStep(title, out string, code int) string {
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return steplog.Header(0, 1, title) + out + steplog.Footer(0, 1, steplog.Exited(code), 0)
}

func slicesHasSuffix(all, suffix []string) bool {
	if len(suffix) > len(all) {
		return false
	}
	off := len(all) - len(suffix)
	for i := range suffix {
		if all[off+i] != suffix[i] {
			return false
		}
	}
	return true
}

// TestCloseEndsStreams checks that a follower of a run that goes on does not
// hold up the server's shutdown.
func TestCloseEndsStreams(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 60*time.Second)
	run, err := e.c.Submit(ctx, "sleep.yaml", []byte("name: s\njobs:\n  s:\n    steps:\n      - run: echo started; sleep 30\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		once := false
		done <- e.c.FollowLogs(ctx, run.ID, "", func(ev wire.Event) error {
			if ev.Type == wire.EventLog && !once {
				once = true
				close(started)
			}
			return nil
		})
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the job never printed")
	}
	t0 := time.Now()
	e.srv.Close()
	if took := time.Since(t0); took > 4*time.Second {
		t.Errorf("Close took %s with a log stream open", took)
	}
	if err := <-done; !errors.Is(err, client.ErrStreamEnded) {
		t.Errorf("follow after Close: %v, want ErrStreamEnded", err)
	}
}

// TestSubmitRefusesControlCharactersInFileName: the file name is shown
// with the run and in every error of the file, like the names inside it.
func TestSubmitRefusesControlCharactersInFileName(t *testing.T) {
	e := start(t)
	for _, name := range []string{"ci\x1b]0;owned\a.yaml", "ci\u202Elmay.yaml", "ci\u009b2J.yaml"} {
		resp, body := e.do(t, "POST", "/api/v1/runs?file="+url.QueryEscape(name), "application/yaml", []byte(hello))
		wantError(t, resp, body, http.StatusBadRequest, "bad_request")
	}
	resp, body := e.do(t, "POST", "/api/v1/runs?file="+url.QueryEscape("ci (ñ).yaml"), "application/yaml", []byte(hello))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("a plain file name: %d %s", resp.StatusCode, body)
	}
}

// TestActiveRunsLimitAnswers429: past the server's --max-active-runs, a
// tenant's submission is answered 429 too_many_requests with a
// Retry-After, and is taken again once one of its runs has ended.
func TestActiveRunsLimitAnswers429(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	srv, err := server.Start(ctx, server.Options{
		DataDir: t.TempDir(), NATSListen: "none", HTTPAddr: "127.0.0.1:0", LocalWorkers: 1,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxActiveRuns: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	e := &env{srv: srv, base: "http://" + srv.HTTPAddr()}
	if e.c, err = client.New(e.base, nil); err != nil {
		t.Fatal(err)
	}
	const sleepy = "name: sleepy\njobs:\n  sleep:\n    steps:\n      - run: sleep 60\n"
	first, err := e.c.Submit(ctx, "sleepy.yaml", []byte(sleepy), "")
	if err != nil {
		t.Fatalf("first submission: %v", err)
	}
	resp, body := e.do(t, "POST", "/api/v1/runs", "application/yaml", []byte(sleepy))
	we := wantError(t, resp, body, http.StatusTooManyRequests, wire.CodeTooManyRequests)
	if !strings.Contains(we.Message, "has 1 runs that have not ended") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("429: message %q, Retry-After %q", we.Message, resp.Header.Get("Retry-After"))
	}
	if resp, body := e.do(t, "POST", "/api/v1/runs/"+first.ID+"/cancel", "", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	// The cancel answers before the run has ended (its job is stopped
	// first): poll the run until it is final.
	for {
		resp, body := e.do(t, "GET", "/api/v1/runs/"+first.ID, "", nil)
		var r wire.Run
		if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("get run: %d %s", resp.StatusCode, body)
		}
		if r.State == "canceled" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the canceled run did not end: %s", r.State)
		case <-time.After(50 * time.Millisecond): // a poll's interval, not a synchronisation
		}
	}
	if _, err := e.c.Submit(ctx, "quick.yaml", []byte(hello), ""); err != nil {
		t.Fatalf("after the run ended: %v", err)
	}
}
