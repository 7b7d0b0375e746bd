package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
)

func queuedRun(jobs ...wire.Job) wire.Run { return wire.Run{ID: "r", Jobs: jobs} }

// TestQueueProgressLine: the line says why each queued job waits, is
// redrawn only when that changes, erased before other output and drawn
// again after it, and erased for good once a job starts.
func TestQueueProgressLine(t *testing.T) {
	var b bytes.Buffer
	p := &queueProgress{w: &b, width: 200}
	big := wire.Job{Key: "build", State: state.JobQueued, Reason: "no_worker_large_enough", ReasonDetail: "asks 64 cpu, the largest worker has 2"}
	needs := wire.Job{Key: "deploy", State: state.JobQueued}
	step := func(what, want string, f func()) {
		t.Helper()
		b.Reset()
		f()
		if b.String() != want {
			t.Errorf("%s: wrote %q, want %q", what, b.String(), want)
		}
	}
	line := "waiting: build: asks 64 cpu, the largest worker has 2 (no_worker_large_enough)"
	step("first", clearLine+line, func() { p.show(queuedRun(big, needs)) })
	step("unchanged", "", func() { p.show(queuedRun(big, needs)) })
	big2 := big
	big2.Reason, big2.ReasonDetail = "no_workers", "no worker has joined"
	line2 := "waiting: build: no worker has joined (no_workers)"
	step("changed", clearLine+line2, func() { p.show(queuedRun(big2, needs)) })
	step("an event", clearLine, func() {
		p.event(wire.Event{Type: wire.EventJob, Job: &wire.JobEvent{JobKey: "build", State: state.JobQueued}})
	})
	step("again after it", clearLine+line2, func() { p.show(queuedRun(big2, needs)) })
	step("nothing waits with a reason", clearLine, func() { p.show(queuedRun(needs)) })
	step("back", clearLine+line2, func() { p.show(queuedRun(big2, needs)) })
	running := big2
	running.State, running.Reason, running.ReasonDetail = state.JobRunning, "", ""
	step("a job started", clearLine, func() {
		if p.show(queuedRun(running, needs)) {
			t.Error("show goes on after a job started")
		}
	})
	step("stopped", "", func() { p.show(queuedRun(big, needs)) })

	narrow := &queueProgress{w: &b, width: 20}
	step("narrow terminal", clearLine+"waiting: build: no…", func() { narrow.show(queuedRun(big2)) })
	q := &queueProgress{w: &b, width: 200}
	q.show(queuedRun(big))
	step("output starts", clearLine, func() { q.event(wire.Event{Type: wire.EventLog, Log: &wire.LogEvent{Data: "x"}}) })
	step("then nothing", "", func() { q.show(queuedRun(big)) })
}

// TestSubmitFollowShowsWhyJobsWait: "submit --follow --progress" on a
// server no worker has joined shows the job's reason on stderr while it
// waits; the run is then canceled and the command ends.
func TestSubmitFollowShowsWhyJobsWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A NATS port for agents, and none joined: the job waits (a server
	// whose local workers are its whole fleet would fail it at once).
	_, base := startServer(t, server.Options{NATSListen: ""})
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte("name: p\njobs:\n  build:\n    steps:\n      - run: 'true'\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
	stdout := make(chan string, 1)
	go func() { b, _ := io.ReadAll(outR); stdout <- string(b) }()
	// Each write to stderr is passed on as it comes, so that the test sees
	// the line as soon as it is drawn; the channel is closed at the end.
	chunks := make(chan string)
	go func() {
		defer close(chunks)
		buf := make([]byte, 4096)
		for {
			n, err := errR.Read(buf)
			if n > 0 {
				chunks <- string(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	done := make(chan int, 1)
	go func() { done <- mainArgs([]string{"submit", file, "--follow", "--progress", "--server", base}) }()

	want := "waiting: build: no worker has joined (no_workers)"
	var stderr string
	for !strings.Contains(stderr, want) {
		select {
		case c := <-chunks:
			stderr += c
		case code := <-done:
			t.Fatalf("submit ended (exit %d) before showing %q; stderr %q", code, want, stderr)
		case <-ctx.Done():
			t.Fatalf("no %q on stderr: %q", want, stderr)
		}
	}
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.ListRuns(ctx, client.ListOptions{})
	if err != nil || len(l.Runs) != 1 {
		t.Fatalf("runs: %+v %v", l, err)
	}
	if _, err := c.Cancel(ctx, l.Runs[0].ID); err != nil {
		t.Fatal(err)
	}
	var code int
	for waiting := true; waiting; {
		select {
		case c := <-chunks:
			stderr += c
		case code = <-done:
			waiting = false
		case <-ctx.Done():
			t.Fatal("submit --follow did not end after the cancel")
		}
	}
	os.Stdout, os.Stderr = oldOut, oldErr
	outW.Close()
	errW.Close()
	for c := range chunks {
		stderr += c
	}
	if out := <-stdout; code != exitFailed || !strings.Contains(out, l.Runs[0].ID) {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	// The line is erased before the run's summary is printed.
	if i := strings.LastIndex(stderr, want); !strings.HasPrefix(stderr[i+len(want):], clearLine) {
		t.Errorf("the line is not erased: stderr %q", stderr)
	}
}
