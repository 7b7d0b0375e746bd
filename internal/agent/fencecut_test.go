package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
	"github.com/hodei-ci/hodei/internal/partitiontest"
)

// TestAgentCutOffFromNATSStopsItsAttempts: an agent whose NATS connection
// stays away for FenceAfter (a partition: here a forwarder of the test cut)
// stops the attempt it runs, since the server gives it to another worker
// once the agent has been silent for its TTL, and reports it as fenced
// (an infrastructure loss) once it is back. The step never reaches its
// end.
func TestAgentCutOffFromNATSStopsItsAttempts(t *testing.T) {
	emb, nc := bustest.Start(t, bus.EmbeddedOptions{Port: 0}, "test")
	js := bustest.Streams(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, err := js.CreateOrUpdateConsumer(ctx, bus.StreamReports, jetstream.ConsumerConfig{
		Durable: "test", FilterSubject: bus.DefaultSubjects.Status("w1"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	fwd := partitiontest.To(t, strings.TrimPrefix(emb.ClientURL(), "nats://"))
	anc, err := nats.Connect("nats://"+fwd.Addr(), append(bus.AgentOptions("w1"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(anc.Close)
	// Unisolated: the step writes its pid and its end to files of the
	// test's temporary directory.
	a, err := New(anc, Config{ID: "w1", WorkDir: t.TempDir(), HeartbeatInterval: 100 * time.Millisecond, FenceAfter: 500 * time.Millisecond,
		Unisolated: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	e := &agentEnv{t: t, a: a, js: js, status: status, stop: stop, done: make(chan error, 1)}
	go func() { e.done <- a.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-e.done })

	dir := t.TempDir()
	pidFile, endFile := filepath.Join(dir, "pid"), filepath.Join(dir, "end")
	e.assign("long", 1, a.bootID, "echo $$ > "+pidFile+"; sleep 60; touch "+endFile)
	if st := e.next(); st.JobID != "long" || st.State != bus.StatusRunning {
		t.Fatalf("status %+v, want long running", st)
	}
	var pid int
	// The step writes its pid as it starts: another process's file, polled.
	deadline := time.Now().Add(30 * time.Second)
	for pid == 0 {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		} else if time.Now().After(deadline) {
			t.Fatal("the step did not start in 30s")
		} else {
			time.Sleep(20 * time.Millisecond) // polling another process's file
		}
	}

	fwd.SetCut(true)
	// The step's process is another process: polled until it is gone.
	deadline = time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the step (pid %d) still runs 30s after the agent was cut off from NATS", pid)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's life
	}
	fwd.SetCut(false)

	st := e.next()
	if st.JobID != "long" || st.State != bus.StatusFenced || !strings.Contains(st.Error, "cut off from NATS") {
		t.Fatalf("status %+v, want long fenced", st)
	}
	if _, err := os.Stat(endFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the step reached its end: %v", err)
	}
}
