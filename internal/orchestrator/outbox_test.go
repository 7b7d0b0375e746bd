package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
)

// TestOutboxNeitherStallsNorLosesWhenAcksStop: the dispatch outbox, with a
// window of 8 acknowledgements of 200 ms, publishes 50 messages to a
// "stream" (a plain subscriber of the test) that stores them but does not
// answer: the publishes do not wait for room (a stall would cost 200 ms
// each), and once it answers again every message is acknowledged, none
// given up.
func TestOutboxNeitherStallsNorLosesWhenAcksStop(t *testing.T) {
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "nats"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	var answering atomic.Bool
	var mu sync.Mutex
	acked := map[string]bool{} // message ids answered
	seq := 0
	sub, err := nc.Subscribe("out.>", func(m *nats.Msg) {
		if !answering.Load() {
			return
		}
		mu.Lock()
		seq++
		acked[m.Header.Get(nats.MsgIdHdr)] = true
		n := seq
		mu.Unlock()
		_ = m.Respond(fmt.Appendf(nil, `{"stream":"OUT","seq":%d}`, n))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	ob := newOutbox(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute)
	ob.maxPending, ob.ackWait = 8, 200*time.Millisecond
	js, err := jetstream.New(nc, ob.options()...)
	if err != nil {
		t.Fatal(err)
	}
	ob.js = js
	ob.start()
	t.Cleanup(ob.close)

	const n = 50
	began := time.Now()
	for i := range n {
		m := nats.NewMsg(fmt.Sprintf("out.w%d", i%3))
		m.Data = []byte("x")
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("m-%d", i))
		ob.publish(m)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("%d publishes with no acknowledgement took %s: they waited for room", n, d)
	}
	if p := js.PublishAsyncPending(); p > 8 {
		t.Errorf("%d acknowledgements pending; the window is 8", p)
	}
	// A poll: the outbox's tries are its own goroutine's; the test sees
	// them only in its counters.
	waitUntil(t, 10*time.Second, "failed publishes (acknowledgements not come) counted", func() bool { return ob.failures.Load() >= n })
	answering.Store(true)
	waitUntil(t, 30*time.Second, "every message acknowledged", func() bool { return ob.pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if id := fmt.Sprintf("m-%d", i); !acked[id] {
			t.Errorf("message %s never acknowledged: given up", id)
		}
	}
}

// TestDispatchPublishedAgainWhenTheStreamIsAway: the dispatch stream is
// gone (no stream leader, as while a NATS node is replaced) when a job is
// assigned; once it is back, the same assignment reaches the worker, long
// before the assignment timeout would have given it up and placed the job
// again.
func TestDispatchPublishedAgainWhenTheStreamIsAway(t *testing.T) {
	h := newHarness(t, Config{AssignTimeout: time.Minute})
	w := h.worker("w1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.js.DeleteStream(ctx, bus.StreamDispatch); err != nil {
		t.Fatal(err)
	}
	run := h.submit(oneJob)
	// A poll: the publish fails on the JetStream client's goroutine.
	waitUntil(t, 10*time.Second, "the assignment's publish failed", func() bool { return h.o.out.failures.Load() > 0 })
	if err := bus.EnsureStreams(ctx, h.js, h.subs, 1); err != nil {
		t.Fatal(err)
	}
	cons, err := h.js.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, jetstream.ConsumerConfig{
		Durable: "agent-w1", FilterSubject: h.subs.Dispatch("w1"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.cons = cons
	d := w.next()
	if d.Kind != bus.KindAssign || d.Attempt != 1 {
		t.Fatalf("dispatch after the stream came back: %+v; want the assignment of attempt 1", d)
	}
	if j := h.job(run.ID, "a"); j.State != state.JobAssigned || j.Attempt != 1 {
		t.Fatalf("job a: %s, attempt %d; want assigned, attempt 1", j.State, j.Attempt)
	}
}

// waitUntil polls cond until it holds, or fails the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		<-tk.C
	}
}
