package orchestrator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// singleJob is a pipeline of one job, a, with no retry.
const singleJob = `name: single
jobs:
  a:
    steps: [{run: "true"}]
`

// lostAttempt fails the test unless attempt n of the job is recorded lost
// for the reason why.
func (h *harness) lostAttempt(jobID string, n int, why string) {
	h.t.Helper()
	atts, err := h.st.ListAttempts(context.Background(), jobID)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(atts) < n || atts[n-1].State != state.AttemptLost || atts[n-1].Reason != why || atts[n-1].ExitCode != -1 {
		h.t.Fatalf("attempts %+v; want attempt %d lost: %q", atts, n, why)
	}
}

// restart stops the harness's orchestrator and starts a new one with cfg on
// the same store and NATS, as a server restart does.
func (h *harness) restart(cfg Config) {
	h.t.Helper()
	h.o.Stop()
	if cfg.Store == nil {
		cfg.Store = h.st
	}
	cfg.NC = h.nc
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Hub = hub.New()
	o, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Start(ctx); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(o.Stop)
	h.restarted(o)
	h.notes = cfg.Hub.Subscribe("", 1<<12)
}

// ping waits for one turn of the loop, which ends with a scheduling pass:
// for checks that a pass placed nothing. It says nothing about delivery of
// the messages sent before: wait for those with settle.
func (h *harness) ping() {
	h.t.Helper()
	if err := h.o.Ping(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) workerState(id string) state.WorkerState {
	for _, v := range h.o.View().Workers {
		if v.ID == id {
			return v.State
		}
	}
	return ""
}

// Finding 4: a worker restored from the store takes no job until it has
// heartbeated since the restart, and one restored as lost stays out of the
// schedule; new jobs go to the workers that are alive.
func TestRestoredWorkersAreFencedUntilTheyHeartbeat(t *testing.T) {
	h := newHarness(t, Config{WorkerTTL: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	w1 := h.worker("w1")
	// Restart: w1 is known from the store, not heard from.
	h.restart(Config{WorkerTTL: time.Hour, Tick: 20 * time.Millisecond})
	run := h.submit(singleJob)
	h.settle()
	h.ping()
	if j := h.job(run.ID, "a"); j.State != state.JobQueued {
		t.Fatalf("job placed on a worker not heard from since the restart: %+v", j)
	}
	w1.heartbeat()
	d := w1.next()
	if d.Kind != bus.KindAssign || d.BootID != w1.boot {
		t.Fatalf("after w1's heartbeat: %+v", d)
	}

	// w1 goes silent and is lost; a restart restores it as lost.
	h.restart(Config{WorkerTTL: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	h.waitFor(func() bool { return h.workerState("w1") == state.WorkerLost }, "w1 lost")
	h.restart(Config{WorkerTTL: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	if s := h.workerState("w1"); s != state.WorkerLost {
		t.Fatalf("w1 restored as %q", s)
	}
	// Its job, lost with it, and new ones, run on w2.
	w2 := h.worker("w2")
	stop := make(chan struct{})
	beating := make(chan struct{})
	go func() { // w2 stays alive; w1 stays silent
		defer close(beating)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				w2.heartbeat()
			}
		}
	}()
	defer func() { close(stop); <-beating }()
	run2 := h.submit(`name: two
jobs:
  a:
    steps: [{run: "true"}]
  b:
    steps: [{run: "true"}]
`)
	got := map[string]bool{}
	for len(got) < 3 {
		d := w2.next()
		if d.Kind == bus.KindAssign {
			got[d.JobID] = true
		}
	}
	for _, jr := range []struct{ run, key string }{{run.ID, "a"}, {run2.ID, "a"}, {run2.ID, "b"}} {
		if j := h.job(jr.run, jr.key); j.WorkerID != "w2" {
			t.Errorf("job %s/%s on %q, want w2", jr.run, jr.key, j.WorkerID)
		}
	}
}

// Finding 3: after a restart of the server, the agent restarted too. What
// was sent to its previous incarnation is withdrawn, and if that attempt
// runs anyway its first report is refused with a cancel; its history says
// how it really ended, not "failed, exit -1".
func TestGivenUpAttemptIsWithdrawnRefusedAndRecordedTruthfully(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(singleJob)
	d := w.next()
	if d.Attempt != 1 {
		t.Fatalf("first dispatch %+v", d)
	}
	// The assignment was not taken yet when the server restarted: the
	// new server publishes it again, for boot-1.
	h.restart(Config{})
	// The agent restarted meanwhile.
	w.boot = "boot-2"
	w.heartbeat()
	d2 := w.next()
	if d2.Kind != bus.KindAssign || d2.Attempt != 2 || d2.BootID != "boot-2" {
		t.Fatalf("after the agent's restart the worker got %+v; want attempt 2 for boot-2 (attempt 1 withdrawn)", d2)
	}
	// Attempt 1 started anyway (an incarnation that took it before the
	// withdrawal): its first report meets a refusal.
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	c := w.next()
	if c.Kind != bus.KindCancel || c.JobID != d.JobID || c.Attempt != 1 {
		t.Fatalf("report of a given-up attempt got %+v, want a cancel of attempt 1", c)
	}
	w.status(w.id, d.JobID, 1, bus.StatusCanceled, 0)
	w.status(w.id, d.JobID, 2, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, 2, bus.StatusSucceeded, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobSucceeded }, "a succeeded")
	atts, _ := h.st.ListAttempts(context.Background(), d.JobID)
	if len(atts) != 2 {
		t.Fatalf("attempts %+v", atts)
	}
	if a := atts[0]; a.State != state.AttemptCanceled || a.Reason != LostRestarted {
		t.Errorf("attempt 1: %+v; want canceled (refused), given up as %q", a, LostRestarted)
	}
	if a := atts[1]; a.State != state.AttemptSucceeded || a.Reason != "succeeded" {
		t.Errorf("attempt 2: %+v", a)
	}
	if j := h.job(run.ID, "a"); j.InfraLost != 1 || j.MaxAttempts != 1 {
		t.Errorf("job %+v: want 1 infra loss, retry budget untouched", j)
	}
}

// Finding 5: the attempts of in-process workers die with the server. After
// a restart they are lost at once, and jobs without retry get a new attempt
// and succeed.
func TestServerRestartRequeuesInProcessAttemptsWithoutRetry(t *testing.T) {
	h := newHarness(t, Config{InProcess: []string{"w1"}})
	w := h.worker("w1")
	run, d := h.running(w, singleJob)
	h.restart(Config{InProcess: []string{"w1"}, WorkerTTL: time.Hour})
	// Lost at the restart itself, without waiting for a heartbeat or TTL.
	if j := h.job(run.ID, "a"); j.State != state.JobQueued || j.InfraLost != 1 {
		t.Fatalf("after the restart: %+v", j)
	}
	w.boot = "boot-2"
	w.heartbeat()
	d2 := w.next()
	if d2.Attempt != 2 {
		t.Fatalf("second dispatch %+v", d2)
	}
	w.status(w.id, d.JobID, 2, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, 2, bus.StatusSucceeded, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobSucceeded }, "a succeeded")
	h.lostAttempt(d.JobID, 1, LostServer)
}

// An attempt a worker hands back (a drain that ran out of time) is an
// infrastructure loss: a new attempt, the retry budget untouched, on
// another worker: one that hands work back is stopping, and takes no more
// even when a heartbeat it sent before its stop arrives after.
func TestHandedBackAttemptIsRequeued(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(singleJob)
	d := w.next()
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, 1, bus.StatusLost, -1)
	h.settle()    // the hand-back applied first: reports and heartbeats travel apart
	w.heartbeat() // sent before the stop, not draining, arriving after
	h.settle()
	if got := h.workerState("w1"); got != state.WorkerDraining {
		t.Fatalf("worker that handed work back is %s, want draining", got)
	}
	w2 := h.worker("w2")
	d2 := w2.next()
	if d2.Attempt != 2 {
		t.Fatalf("after the hand-back: %+v", d2)
	}
	h.lostAttempt(d.JobID, 1, LostHandedBack)
	if j := h.job(run.ID, "a"); j.InfraLost != 1 {
		t.Fatalf("job %+v", j)
	}
}

// An attempt its worker stopped because the worker was cut off from NATS
// (the agent's fence) is an infrastructure loss: a new attempt, the retry
// budget untouched; the worker, back, goes on taking work.
func TestFencedAttemptIsRequeued(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run, d := h.running(w, singleJob)
	w.status(w.id, d.JobID, 1, bus.StatusFenced, -1)
	w.heartbeat()
	d2 := w.next()
	if d2.Kind != bus.KindAssign || d2.JobID != d.JobID || d2.Attempt != 2 {
		t.Fatalf("after the fenced attempt: %+v, want attempt 2 of %s on the same worker", d2, d.JobID)
	}
	h.lostAttempt(d.JobID, 1, LostFenced)
	// The job has no retry: a second attempt at all says the budget was
	// not charged.
	if j := h.job(run.ID, "a"); j.InfraLost != 1 {
		t.Fatalf("job %+v: want one infrastructure loss", j)
	}
}

// A running attempt that its worker's heartbeats leave out (its final report
// was lost: the agent could not publish it while the server was away) is
// given up after AssignTimeout, not left running forever.
func TestRunningAttemptMissingFromHeartbeatsIsLost(t *testing.T) {
	h := newHarness(t, Config{AssignTimeout: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	w := h.worker("w1")
	_, d := h.running(w, singleJob)
	// While the heartbeats list it, it runs on, however long.
	w.heartbeat(bus.JobRef{JobID: d.JobID, Attempt: 1})
	h.settle()
	w.heartbeat()
	d2 := w.next()
	if d2.Attempt != 2 {
		t.Fatalf("after heartbeats without attempt 1: %+v", d2)
	}
	h.lostAttempt(d.JobID, 1, LostNotRunning)
}

// failingStore fails the next Update when told to.
type failingStore struct {
	store.Store
	failNext atomic.Bool
}

func (s *failingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if s.failNext.Swap(false) {
		return errors.New("disk full (test)")
	}
	return s.Store.Update(ctx, fn)
}

// A failed transaction makes the orchestrator reload its state from the
// store; that is not a restart: the attempts of the in-process workers,
// still running, are not lost, and workers heard from stay schedulable.
func TestReloadAfterAFailedTransactionLosesNothing(t *testing.T) {
	h := newHarness(t, Config{InProcess: []string{"w1"}})
	fs := &failingStore{Store: h.st}
	h.restart(Config{Store: fs, InProcess: []string{"w1"}})
	w := h.worker("w1")
	run := h.submit(`name: r
jobs:
  a:
    steps: [{run: "true"}]
  b:
    steps: [{run: "true"}]
`)
	d := w.next()
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	h.waitFor(func() bool {
		return h.job(run.ID, "a").State == state.JobRunning || h.job(run.ID, "b").State == state.JobRunning
	}, "a job running")
	other := w.next() // the second job, assigned
	fs.failNext.Store(true)
	if err := h.o.Ping(context.Background()); err == nil {
		t.Fatal("the failing transaction succeeded")
	}
	h.ping()
	for _, id := range []string{d.JobID, other.JobID} {
		atts, _ := h.st.ListAttempts(context.Background(), id)
		if len(atts) != 1 || atts[0].State == state.AttemptLost {
			t.Fatalf("after the reload, attempts of %s: %+v", id, atts)
		}
	}
	// w1 is still schedulable: a new job is placed on it without waiting
	// for its next heartbeat.
	h.submit(`name: n
jobs:
  c:
    steps: [{run: "true"}]
`)
	if d3 := w.next(); d3.Kind != bus.KindAssign || d3.JobID == d.JobID || d3.JobID == other.JobID {
		t.Fatalf("after the reload: %+v", d3)
	}
}

// An assigned job of an in-process worker, without infra_retries or retry,
// fails at the restart that loses it; its run ends, and the restart does not
// publish its assignment again.
func TestServerRestartFailsAJobWithoutInfraRetries(t *testing.T) {
	h := newHarness(t, Config{InProcess: []string{"w1"}})
	w := h.worker("w1")
	run := h.submit(`name: z
jobs:
  a:
    infra_retries: 0
    steps: [{run: "true"}]
`)
	d := w.next() // assigned, not yet running
	h.restart(Config{InProcess: []string{"w1"}, WorkerTTL: time.Hour})
	if j := h.job(run.ID, "a"); j.State != state.JobFailed {
		t.Fatalf("after the restart: %+v", j)
	}
	h.lostAttempt(d.JobID, 1, LostServer)
	r, _ := h.st.GetRun(context.Background(), run.ID)
	if r.State != state.RunFailed {
		t.Fatalf("run %s", r.State)
	}
}

// gatedStore holds ActiveRuns, which Start calls to rebuild its state, until
// the test releases it.
type gatedStore struct {
	store.Store
	entered, release chan struct{}
}

func (g *gatedStore) ActiveRuns(ctx context.Context) ([]store.Run, []store.Job, error) {
	close(g.entered)
	<-g.release
	return g.Store.ActiveRuns(ctx)
}

// TestHeartbeatDuringStartIsHeard: a heartbeat a worker sends while a new
// orchestrator (a new leader) is still rebuilding its state from the store
// is kept for its first turn: the worker, unschedulable until heard from
// (fencing), takes new work at once, not a heartbeat later. On a loaded
// cluster that later heartbeat took seconds to be heard, and a new
// leader's scheduling waited for it.
func TestHeartbeatDuringStartIsHeard(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	h.running(w, "name: p\njobs:\n  a:\n    steps: [{run: 'true'}]\n")

	h.o.Stop()
	g := &gatedStore{Store: h.st, entered: make(chan struct{}), release: make(chan struct{})}
	o, err := New(Config{Store: g, NC: h.nc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hub: hub.New()})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		started <- o.Start(ctx)
	}()
	<-g.entered
	w.heartbeat() // the only one: while the state is being rebuilt
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Stop)
	h.restarted(o)
	h.notes = o.cfg.Hub.Subscribe("", 1<<12)

	q := h.submit("name: q\njobs:\n  b:\n    steps: [{run: 'true'}]\n")
	if d := w.next(); d.Kind != bus.KindAssign || !strings.HasPrefix(d.JobID, q.ID) {
		t.Fatalf("dispatch %+v: want the assignment of run %s's job", d, q.ID)
	}
}
