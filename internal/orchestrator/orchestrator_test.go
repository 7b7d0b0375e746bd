package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/sqlite"
)

// These tests drive a real orchestrator over a real embedded NATS and SQLite
// store, with a scripted worker whose every message the test writes by hand:
// duplicates, late messages of old attempts, messages under another worker's
// name, silence.

type harness struct {
	t     *testing.T
	o     *Orchestrator
	st    store.Store
	nc    *nats.Conn
	js    jetstream.JetStream
	subs  bus.Subjects
	notes *hub.Sub
	msgN  int
	// Worker messages the test has published to the current orchestrator:
	// settle waits until it has applied them all.
	sentReports, sentBeats atomic.Uint64
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return newHarnessOn(t, cfg, nil)
}

// newHarnessOn is newHarness with the orchestrator on a connection of its
// own that orchConn opens to the embedded server's TCP listener (nil: the
// test's in-process connection, shared with the scripted workers).
func newHarnessOn(t *testing.T, cfg Config, orchConn func(url string) *nats.Conn) *harness {
	t.Helper()
	dir := t.TempDir()
	port := -1 // in-process only
	if orchConn != nil {
		port = 0
	}
	emb, nc := bustest.Start(t, bus.EmbeddedOptions{StoreDir: filepath.Join(dir, "nats"), Port: port}, "test")
	st, err := sqlite.Open(filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store, cfg.NC = st, nc
	if orchConn != nil {
		cfg.NC = orchConn(emb.ClientURL())
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Hub = hub.New()
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Stop)
	js, _ := jetstream.New(nc)
	h := &harness{t: t, o: o, st: st, nc: nc, js: js, subs: bus.DefaultSubjects, notes: cfg.Hub.Subscribe("", 1<<12)}
	return h
}

// worker is a scripted worker: it heartbeats only when told to, and reads
// its dispatch subject as a plain consumer.
type worker struct {
	h    *harness
	id   string
	boot string
	cpu  int64 // millicores; 4000 when zero
	once bool  // an ephemeral agent
	cons jetstream.Consumer
}

func (h *harness) worker(id string) *worker {
	h.t.Helper()
	return h.workerWith(id, 4000)
}

func (h *harness) workerWith(id string, cpu int64) *worker {
	h.t.Helper()
	return h.newWorker(id, cpu, false)
}

func (h *harness) newWorker(id string, cpu int64, once bool) *worker {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := h.js.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, jetstream.ConsumerConfig{
		Durable: "agent-" + id, FilterSubject: h.subs.Dispatch(id), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	w := &worker{h: h, id: id, boot: "boot-1", cpu: cpu, once: once, cons: cons}
	w.heartbeat()
	h.waitFor(func() bool {
		for _, v := range h.o.View().Workers {
			// Busy if queued jobs were waiting for it.
			if v.ID == id && (v.State == state.WorkerIdle || v.State == state.WorkerBusy) {
				return true
			}
		}
		return false
	}, "worker "+id+" joined")
	return w
}

func (w *worker) heartbeat(running ...bus.JobRef) {
	w.beat(false, running...)
}

// beatEvery heartbeats every interval, when send (nil: always) says so,
// until the function it returns is called.
func (w *worker) beatEvery(interval time.Duration, send func() bool, running ...bus.JobRef) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			if send == nil || send() {
				w.heartbeat(running...)
			}
			select {
			case <-done:
				return
			case <-tk.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (w *worker) beat(draining bool, running ...bus.JobRef) {
	cpu := w.cpu
	if cpu == 0 {
		cpu = 4000
	}
	hb := bus.Heartbeat{WorkerID: w.id, BootID: w.boot, CPUMilli: cpu, Memory: 8 << 30, Labels: []string{"linux"}, Running: running, Draining: draining, Once: w.once, At: time.Now()}
	data, _ := json.Marshal(hb)
	if err := w.h.nc.Publish(w.h.subs.Heartbeat(w.id), data); err != nil {
		w.h.t.Fatal(err)
	}
	w.h.sentBeats.Add(1)
}

// next returns the next dispatch message for the worker.
func (w *worker) next() bus.Dispatch {
	w.h.t.Helper()
	msgs, err := w.cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		w.h.t.Fatal(err)
	}
	for m := range msgs.Messages() {
		var d bus.Dispatch
		if err := json.Unmarshal(m.Data(), &d); err != nil {
			w.h.t.Fatal(err)
		}
		if h := m.Headers(); h != nil {
			d.TraceParent = h.Get(bus.TraceParentHeader) // as the agent reads it
		}
		_ = m.Ack()
		return d
	}
	w.h.t.Fatalf("worker %s: no dispatch message", w.id)
	return bus.Dispatch{}
}

// status publishes a status as worker `from` (normally w.id). Every message
// gets a fresh message id, so JetStream's de-duplication does not hide
// duplicates from the orchestrator: its handlers must.
func (w *worker) status(from, jobID string, attempt int, st string, code int) {
	w.h.t.Helper()
	w.statusWith(from, jobID, attempt, st, code, nil)
}

// statusWith is status with the job's outputs.
func (w *worker) statusWith(from, jobID string, attempt int, st string, code int, outputs map[string]string) {
	w.h.t.Helper()
	w.publishFrom(from, bus.Status{JobID: jobID, Attempt: attempt, State: st, ExitCode: code, Outputs: outputs})
}

// publishFrom sends s, stamped with w's id and the time, on the status
// subject of worker `from` (normally w.id), under a fresh message id (see
// status).
func (w *worker) publishFrom(from string, s bus.Status) {
	w.h.t.Helper()
	w.h.msgN++
	s.WorkerID, s.At = w.id, time.Now()
	data, _ := json.Marshal(s)
	m := nats.NewMsg(w.h.subs.Status(from))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, "test-"+strconv.Itoa(w.h.msgN))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.h.js.PublishMsg(ctx, m); err != nil {
		w.h.t.Fatal(err)
	}
	w.h.sentReports.Add(1)
}

func (h *harness) submit(yaml string) store.Run {
	h.t.Helper()
	return h.submitFor("", yaml)
}

// running submits yaml, whose first job is "a", hands a's assignment to w,
// which reports its first attempt running, and waits until a is running.
func (h *harness) running(w *worker, yaml string) (store.Run, bus.Dispatch) {
	h.t.Helper()
	run := h.submit(yaml)
	d := w.next()
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobRunning }, "a running")
	return run, d
}

// submitFor submits yaml for tenant ("": the default).
func (h *harness) submitFor(tenant, yaml string) store.Run {
	h.t.Helper()
	r, err := h.trySubmit(yaml, tenant, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// trySubmit parses and expands yaml and submits it for tenant ("": the
// default) with an idempotency key ("": none).
func (h *harness) trySubmit(yaml, tenant, key string) (store.Run, error) {
	h.t.Helper()
	p, err := pipeline.Parse("t.yaml", []byte(yaml))
	if err != nil {
		h.t.Fatal(err)
	}
	specs, err := pipeline.Expand(p)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.o.Submit(ctx, SubmitRequest{Pipeline: p, Jobs: specs, Source: []byte(yaml), Tenant: tenant, Key: key})
}

// waitFor waits until cond holds, re-checking after every hub note and tick.
func (h *harness) waitFor(cond func() bool, what string) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-h.notes.C:
		case <-tick.C:
		case <-deadline:
			h.t.Fatalf("timed out waiting for: %s", what)
		}
	}
}

func (h *harness) job(runID, key string) store.Job {
	h.t.Helper()
	jobs, err := h.st.ListJobs(context.Background(), runID)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Key == key {
			return j
		}
	}
	h.t.Fatalf("no job %s", key)
	return store.Job{}
}

// queued counts the jobs of the run, among those of the keys given, that
// are queued.
func (h *harness) queued(runID string, keys ...string) int {
	h.t.Helper()
	n := 0
	for _, k := range keys {
		if h.job(runID, k).State == state.JobQueued {
			n++
		}
	}
	return n
}

func (h *harness) jobState(runID, key string) func() state.JobState {
	return func() state.JobState { return h.job(runID, key).State }
}

// settle waits until the orchestrator has applied, in committed batches,
// every status and heartbeat the test has published to it: what they were
// to change is then in the store, and what they were to dispatch is
// published. A check that a message changed nothing comes after settle,
// never after a number of loop turns.
func (h *harness) settle() {
	h.t.Helper()
	h.waitFor(func() bool {
		p := h.o.Processed()
		return p.Reports >= h.sentReports.Load() && p.Heartbeats >= h.sentBeats.Load()
	}, "the orchestrator to apply every message sent")
}

// restarted makes o, a new orchestrator on the same store and bus, the one
// the harness drives; it has applied none of the messages sent before.
func (h *harness) restarted(o *Orchestrator) {
	h.o = o
	h.sentReports.Store(0)
	h.sentBeats.Store(0)
}

// dropped returns how many reports the orchestrator has counted as
// changing nothing for the reason, from its Prometheus counter.
func (h *harness) dropped(reason string) int {
	h.t.Helper()
	var m dto.Metric
	if err := h.o.cfg.Metrics.Dropped.WithLabelValues(reason).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

// wantDropped checks the drop counters (cumulative) after settle.
func (h *harness) wantDropped(want map[string]int) {
	h.t.Helper()
	h.settle()
	for _, r := range []string{DropBadMessage, DropWrongSubject, DropStaleStatus, DropRepeated, DropStaleLog} {
		if got := h.dropped(r); got != want[r] {
			h.t.Errorf("reports dropped as %s: %d, want %d", r, got, want[r])
		}
	}
}

const oneJob = `name: one
jobs:
  a:
    retry: 1
    steps: [{run: "true"}]
  b:
    needs: a
    steps: [{run: "true"}]
`

func TestDuplicateAndLateMessagesChangeNothing(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(oneJob)
	d := w.next()
	if d.Kind != bus.KindAssign || d.Attempt != 1 {
		t.Fatalf("dispatch %+v", d)
	}
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0) // duplicate
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobRunning }, "a running")
	h.wantDropped(map[string]int{DropRepeated: 1})

	// Attempt 1 fails; a has a retry, so attempt 2 is assigned.
	w.status(w.id, d.JobID, 1, bus.StatusFailed, 1)
	d2 := w.next()
	if d2.JobID != d.JobID || d2.Attempt != 2 {
		t.Fatalf("second dispatch %+v", d2)
	}
	// The failure delivered again, and a late "succeeded" of attempt 1, are
	// both ignored: attempt 2 is the job's.
	w.status(w.id, d.JobID, 1, bus.StatusFailed, 1)
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	h.wantDropped(map[string]int{DropRepeated: 1, DropStaleStatus: 2})
	if j := h.job(run.ID, "a"); j.State != state.JobAssigned || j.Attempt != 2 {
		t.Fatalf("after late messages: job a %s attempt %d", j.State, j.Attempt)
	}
	// A status for the job sent on another worker's subject is rejected.
	w.status("w2", d.JobID, 2, bus.StatusSucceeded, 0)
	h.wantDropped(map[string]int{DropRepeated: 1, DropStaleStatus: 2, DropWrongSubject: 1})
	if s := h.jobState(run.ID, "a")(); s != state.JobAssigned {
		t.Fatalf("status under another worker's subject was applied: %s", s)
	}
	// Nor is one that another worker sends, on its own subject, of a job
	// that is not its own.
	other := &worker{h: h, id: "w2"}
	other.status("w2", d.JobID, 2, bus.StatusSucceeded, 0)
	h.wantDropped(map[string]int{DropRepeated: 1, DropStaleStatus: 3, DropWrongSubject: 1})
	if s := h.jobState(run.ID, "a")(); s != state.JobAssigned {
		t.Fatalf("status from a worker the job is not on was applied: %s", s)
	}

	w.status(w.id, d.JobID, 2, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, 2, bus.StatusSucceeded, 0)
	w.status(w.id, d.JobID, 2, bus.StatusSucceeded, 0) // duplicate final
	d3 := w.next()
	w.status(w.id, d3.JobID, 1, bus.StatusSucceeded, 0) // straight from assigned
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), run.ID)
		return r.State == state.RunSucceeded
	}, "run succeeded")
	atts, err := h.st.ListAttempts(context.Background(), d.JobID)
	if err != nil || len(atts) != 2 || atts[0].State != state.AttemptFailed || atts[1].State != state.AttemptSucceeded {
		t.Fatalf("attempts %+v %v", atts, err)
	}
	h.wantDropped(map[string]int{DropRepeated: 1, DropStaleStatus: 4, DropWrongSubject: 1})
	// A duplicate after the run ended changes nothing either.
	w.status(w.id, d3.JobID, 1, bus.StatusFailed, 1)
	h.wantDropped(map[string]int{DropRepeated: 1, DropStaleStatus: 5, DropWrongSubject: 1})
	if r, _ := h.st.GetRun(context.Background(), run.ID); r.State != state.RunSucceeded {
		t.Fatalf("run changed after its end: %s", r.State)
	}
}

func TestSilentWorkerIsLostAndItsJobRequeued(t *testing.T) {
	h := newHarness(t, Config{WorkerTTL: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	w1 := h.worker("w1")
	run, d := h.running(w1, oneJob)
	// w1 falls silent; w2 keeps heartbeating and gets the second attempt.
	w2 := &worker{h: h, id: "w2", boot: "b"}
	cons, err := h.js.CreateOrUpdateConsumer(context.Background(), bus.StreamDispatch, jetstream.ConsumerConfig{
		Durable: "agent-w2", FilterSubject: h.subs.Dispatch("w2"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	w2.cons = cons
	defer w2.beatEvery(50*time.Millisecond, nil)()
	d2 := w2.next()
	if d2.JobID != d.JobID || d2.Attempt != 2 {
		t.Fatalf("requeued dispatch %+v", d2)
	}
	h.waitFor(func() bool {
		for _, v := range h.o.View().Workers {
			if v.ID == "w1" {
				return v.State == state.WorkerLost
			}
		}
		return false
	}, "w1 lost")
	atts, _ := h.st.ListAttempts(context.Background(), d.JobID)
	if len(atts) != 2 || atts[0].State != state.AttemptLost || atts[0].Reason != LostSilent {
		t.Fatalf("attempts %+v", atts)
	}
	// w1 comes back still running attempt 1: it is told to cancel it, and
	// its late success is ignored.
	w1.heartbeat(bus.JobRef{JobID: d.JobID, Attempt: 1})
	c := w1.next()
	if c.Kind != bus.KindCancel || c.JobID != d.JobID || c.Attempt != 1 {
		t.Fatalf("stale attempt not canceled: %+v", c)
	}
	w1.status(w1.id, d.JobID, 1, bus.StatusSucceeded, 0)
	h.settle()
	if n := h.dropped(DropStaleStatus); n != 1 {
		t.Fatalf("late success of the lost attempt: %d reports dropped as stale, want 1", n)
	}
	if j := h.job(run.ID, "a"); j.Attempt != 2 || j.WorkerID != "w2" || j.State != state.JobAssigned {
		t.Fatalf("job after the lost worker came back: %+v", j)
	}
	// The late success does not change the job, but the history says how
	// attempt 1 really ended, and why it was given up.
	h.waitFor(func() bool {
		atts, _ = h.st.ListAttempts(context.Background(), d.JobID)
		return atts[0].State != state.AttemptLost
	}, "attempt 1 corrected")
	if atts[0].State != state.AttemptSucceeded || atts[0].ExitCode != 0 || atts[0].Reason != LostSilent {
		t.Fatalf("attempt 1 after its late report: %+v", atts[0])
	}
}

func TestRestartedAgentLosesItsAttempts(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(`name: r
jobs:
  a:
    infra_retries: 1
    steps: [{run: "true"}]
`)
	d := w.next()
	if d.BootID != "boot-1" {
		t.Fatalf("assignment for boot %q, want boot-1", d.BootID)
	}
	w.status(w.id, d.JobID, 1, bus.StatusRunning, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobRunning }, "a running")
	w.boot = "boot-2"
	w.heartbeat()
	// The loss is the infrastructure's: a new attempt, for the new
	// incarnation, without a retry budget.
	d2 := w.next()
	if d2.Kind != bus.KindAssign || d2.Attempt != 2 || d2.BootID != "boot-2" {
		t.Fatalf("after the restart: %+v", d2)
	}
	atts, _ := h.st.ListAttempts(context.Background(), d.JobID)
	if len(atts) != 2 || atts[0].State != state.AttemptLost || atts[0].Reason != LostRestarted || atts[0].ExitCode != -1 {
		t.Fatalf("attempts %+v", atts)
	}
	w.status(w.id, d.JobID, 2, bus.StatusRunning, 0)
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobRunning }, "a running again")
	// Its infra_retries (1) used up, the next loss is charged like a
	// failure: no retry left, the job fails.
	w.boot = "boot-3"
	w.heartbeat()
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobFailed }, "a failed")
	r, _ := h.st.GetRun(context.Background(), run.ID)
	if r.State != state.RunFailed {
		t.Fatalf("run %s", r.State)
	}
}

func TestCapacityIsReservedAndReleased(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1") // 4 cpus
	run := h.submit(`name: cap
jobs:
  big1:
    runs-on: {cpu: 3}
    steps: [{run: "true"}]
  big2:
    runs-on: {cpu: 3}
    steps: [{run: "true"}]
  gpu:
    runs-on: {gpu: 1}
    steps: [{run: "true"}]
`)
	d := w.next()
	// The dispatch is published once the batch that placed it is
	// committed; a heartbeat of the worker, applied, makes it schedule
	// again on a settled state.
	w.heartbeat(bus.JobRef{JobID: d.JobID, Attempt: d.Attempt})
	h.settle()
	// Only one 3-cpu job fits a 4-cpu worker; the gpu job fits nowhere.
	if queued := h.queued(run.ID, "big1", "big2", "gpu"); queued != 2 {
		t.Fatalf("%d jobs queued, want 2", queued)
	}
	w.status(w.id, d.JobID, 1, bus.StatusSucceeded, 0)
	d2 := w.next()
	if d2.JobID == d.JobID {
		t.Fatalf("same job dispatched twice")
	}
	// The view refreshes within a tick.
	h.waitFor(func() bool { return h.o.View().Workers[0].UsedCPUMilli == 3000 }, "3000m in use on w1")
}

func TestDrainedWorkerThatStopsIsGoneNotLost(t *testing.T) {
	h := newHarness(t, Config{WorkerTTL: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	w := h.worker("w1")
	w.beat(true)
	stateOf := func() state.WorkerState {
		for _, v := range h.o.View().Workers {
			if v.ID == "w1" {
				return v.State
			}
		}
		return ""
	}
	h.waitFor(func() bool { return stateOf() == state.WorkerDraining }, "w1 draining")
	// It falls silent: the manager removed it.
	h.waitFor(func() bool { return stateOf() == state.WorkerGone }, "w1 gone")
	// A drained worker gets no job.
	run := h.submit(`name: r
jobs:
  a:
    steps: [{run: "true"}]
`)
	// Submit returns once the batch that queued the job, and placed what
	// it could, is committed.
	if s := h.jobState(run.ID, "a")(); s != state.JobQueued {
		t.Fatalf("job %s on a fleet with only a gone worker, want queued", s)
	}
}

// TestEphemeralWorkerTakesOneJob: an ephemeral agent with room for four
// jobs gets one, in the pass that places it and after, even while its
// heartbeats do not yet say it drains and after that job ends; the others
// wait for another worker.
func TestEphemeralWorkerTakesOneJob(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.newWorker("once", 4000, true)
	run := h.submit(`name: eph
jobs:
  a: {runs-on: {cpu: 1}, steps: [{run: "true"}]}
  b: {runs-on: {cpu: 1}, steps: [{run: "true"}]}
  c: {runs-on: {cpu: 1}, steps: [{run: "true"}]}
`)
	d := w.next()
	w.heartbeat(bus.JobRef{JobID: d.JobID, Attempt: d.Attempt})
	h.settle()
	w.status(w.id, d.JobID, d.Attempt, bus.StatusRunning, 0)
	w.status(w.id, d.JobID, d.Attempt, bus.StatusSucceeded, 0)
	w.heartbeat()
	h.settle()
	if queued := h.queued(run.ID, "a", "b", "c"); queued != 2 {
		t.Fatalf("%d jobs queued, want 2: the ephemeral worker took more than one", queued)
	}
	// A second ephemeral worker takes one of them.
	w2 := h.newWorker("once-2", 4000, true)
	if d2 := w2.next(); d2.JobID == d.JobID {
		t.Fatalf("job %s dispatched twice", d.JobID)
	}
	w2.heartbeat()
	h.settle()
	if queued := h.queued(run.ID, "a", "b", "c"); queued != 1 {
		t.Fatalf("%d jobs queued after a second ephemeral worker joined, want 1", queued)
	}
}

// TestSettleReturnsOnceReportsAreApplied checks Settle: reports published
// before it are in the store when it returns (it waits for the loop's
// batches, not for a clock), and it returns at once when nothing is left.
func TestSettleReturnsOnceReportsAreApplied(t *testing.T) {
	h := newHarness(t, Config{})
	w1 := h.worker("w1")
	run := h.submit(oneJob)
	d := w1.next()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w1.status(w1.id, d.JobID, 1, bus.StatusRunning, 0)
	w1.status(w1.id, d.JobID, 1, bus.StatusSucceeded, 0)
	if err := h.o.Settle(ctx); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if got := h.jobState(run.ID, "a")(); got != state.JobSucceeded {
		t.Fatalf("after Settle, job a is %s, want %s", got, state.JobSucceeded)
	}
	if err := h.o.Settle(ctx); err != nil {
		t.Fatalf("Settle with nothing left: %v", err)
	}
	h.o.Stop()
	if err := h.o.Settle(ctx); !errors.Is(err, ErrStopped) {
		t.Fatalf("Settle after Stop = %v, want ErrStopped", err)
	}
}
