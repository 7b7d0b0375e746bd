package agent

import (
	"context"
	"encoding/json"
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
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/proctest"
)

// agentEnv is a real agent on an embedded NATS, with the test in the
// orchestrator's seat: it publishes dispatch messages and reads statuses.
type agentEnv struct {
	t      *testing.T
	a      *Agent
	js     jetstream.JetStream
	status jetstream.Consumer
	stop   context.CancelFunc
	done   chan error
}

func newAgentEnv(t *testing.T, drain time.Duration) *agentEnv {
	t.Helper()
	_, nc := bustest.Start(t, bus.EmbeddedOptions{Port: -1}, "test")
	// Unisolated: the steps of these tests write and wait on files of the
	// test's temporary directory, which a sandboxed step cannot see (a mark
	// a sandboxed step failed to write would prove nothing).
	return startAgentEnv(t, nc, nc, Config{DrainTimeout: drain, Unisolated: true})
}

// startAgentEnv creates the streams over nc and starts agent w1 with cfg on
// its connection anc (nc itself, or one of its own that the test can cut).
func startAgentEnv(t *testing.T, nc, anc *nats.Conn, cfg Config) *agentEnv {
	t.Helper()
	js := bustest.Streams(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, err := js.CreateOrUpdateConsumer(ctx, bus.StreamReports, jetstream.ConsumerConfig{
		Durable: "test", FilterSubject: bus.DefaultSubjects.Status("w1"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ID, cfg.WorkDir, cfg.HeartbeatInterval = "w1", t.TempDir(), 100*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(anc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	e := &agentEnv{t: t, a: a, js: js, status: status, stop: stop, done: make(chan error, 1)}
	go func() { e.done <- a.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-e.done })
	return e
}

func (e *agentEnv) assign(job string, attempt int, boot, script string) {
	e.t.Helper()
	spec, _ := json.Marshal(pipeline.JobSpec{Key: job, Steps: []pipeline.StepSpec{{Run: script}}})
	e.publish(bus.Dispatch{Kind: bus.KindAssign, RunID: "r", JobID: job, Attempt: attempt, BootID: boot, Spec: spec})
}

func (e *agentEnv) publish(d bus.Dispatch) {
	e.t.Helper()
	data, _ := json.Marshal(d)
	m := nats.NewMsg(bus.DefaultSubjects.Dispatch("w1"))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, d.MsgID())
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
}

// next returns the next status the agent reported.
func (e *agentEnv) next() bus.Status {
	e.t.Helper()
	msgs, err := e.status.Fetch(1, jetstream.FetchMaxWait(15*time.Second))
	if err != nil {
		e.t.Fatal(err)
	}
	for m := range msgs.Messages() {
		var st bus.Status
		if err := json.Unmarshal(m.Data(), &st); err != nil {
			e.t.Fatal(err)
		}
		_ = m.Ack()
		return st
	}
	e.t.Fatal("no status")
	return bus.Status{}
}

// An assignment made for a previous incarnation of the agent (another boot
// id) is refused: it never runs. One for this incarnation runs.
func TestAgentRefusesAssignmentOfAnotherBoot(t *testing.T) {
	e := newAgentEnv(t, 0)
	mark := filepath.Join(t.TempDir(), "ran")
	e.assign("old", 1, "previous-boot", "touch "+mark)
	e.assign("new", 1, e.a.bootID, "true")
	for _, want := range []string{bus.StatusRunning, bus.StatusSucceeded} {
		if st := e.next(); st.JobID != "new" || st.State != want {
			t.Fatalf("status %+v, want job new %s (the other boot's assignment must not run)", st, want)
		}
	}
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused assignment ran: %v", err)
	}
}

// Stopping drains: a running job finishes within the drain timeout, and an
// assignment arriving meanwhile is handed back (StatusLost), not run.
func TestAgentDrainLetsRunningJobsFinish(t *testing.T) {
	e := newAgentEnv(t, time.Minute)
	gate := filepath.Join(t.TempDir(), "gate")
	e.assign("slow", 1, e.a.bootID, "while [ ! -e "+gate+" ]; do sleep 0.05; done")
	if st := e.next(); st.State != bus.StatusRunning {
		t.Fatalf("status %+v", st)
	}
	e.stop()
	e.assign("late", 1, e.a.bootID, "true")
	if st := e.next(); st.JobID != "late" || st.State != bus.StatusLost {
		t.Fatalf("status %+v, want the late assignment handed back", st)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := e.next(); st.JobID != "slow" || st.State != bus.StatusSucceeded {
		t.Fatalf("status %+v, want slow succeeded within the drain", st)
	}
	if err := <-e.done; err != nil {
		t.Fatal(err)
	}
	e.done <- nil
}

// Past the drain timeout, what still runs is stopped and handed back.
func TestAgentDrainTimeoutHandsBack(t *testing.T) {
	e := newAgentEnv(t, 100*time.Millisecond)
	e.assign("forever", 1, e.a.bootID, "sleep 60")
	if st := e.next(); st.State != bus.StatusRunning {
		t.Fatalf("status %+v", st)
	}
	e.stop()
	if st := e.next(); st.JobID != "forever" || st.State != bus.StatusLost {
		t.Fatalf("status %+v, want the job handed back", st)
	}
}

// TestAgentCutOffFromNATSStopsItsAttempts: an agent whose NATS connection
// stays away for FenceAfter (a partition: here a forwarder of the test cut)
// stops the attempt it runs, since the server gives it to another worker
// once the agent has been silent for its TTL, and reports it as fenced
// (an infrastructure loss) once it is back. The step never reaches its
// end.
func TestAgentCutOffFromNATSStopsItsAttempts(t *testing.T) {
	emb, nc := bustest.Start(t, bus.EmbeddedOptions{Port: 0}, "test")
	fwd := partitiontest.To(t, strings.TrimPrefix(emb.ClientURL(), "nats://"))
	anc, err := nats.Connect("nats://"+fwd.Addr(), append(bus.AgentOptions("w1"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(anc.Close)
	// Unisolated: the step writes its pid and its end to files of the
	// test's temporary directory.
	e := startAgentEnv(t, nc, anc, Config{FenceAfter: 500 * time.Millisecond, Unisolated: true})
	a := e.a

	dir := t.TempDir()
	pidPipe, endFile := filepath.Join(dir, "pid"), filepath.Join(dir, "end")
	// The step says its pid through a named pipe: reading it waits for the
	// step to start writing, and its end of file for the step to close it.
	if err := syscall.Mkfifo(pidPipe, 0o600); err != nil {
		t.Fatal(err)
	}
	e.assign("long", 1, a.bootID, "echo $$ > "+pidPipe+"; sleep 60; touch "+endFile)
	if st := e.next(); st.JobID != "long" || st.State != bus.StatusRunning {
		t.Fatalf("status %+v, want long running", st)
	}
	b, err := os.ReadFile(pidPipe)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("the step's pid %q: %v", b, err)
	}

	fwd.SetCut(true)
	proctest.RequireDead(t, pid, 30*time.Second)
	fwd.SetCut(false)

	st := e.next()
	if st.JobID != "long" || st.State != bus.StatusFenced || !strings.Contains(st.Error, "cut off from NATS") {
		t.Fatalf("status %+v, want long fenced", st)
	}
	if _, err := os.Stat(endFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the step reached its end: %v", err)
	}
}
