package orchestrator

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
)

// gate is a dialer of NATS connections that the test can shut: shut, it
// closes the connections it made and refuses new ones, as the loss of the
// connection's NATS node does until the client reaches another one.
type gate struct {
	mu    sync.Mutex
	shut  bool
	conns []net.Conn
}

func (g *gate) Dial(network, addr string) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return nil, errors.New("gate shut")
	}
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	g.conns = append(g.conns, c)
	return c, nil
}

func (g *gate) set(shut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = shut
	if shut {
		for _, c := range g.conns {
			c.Close()
		}
		g.conns = nil
	}
}

// TestOwnNATSOutageLosesNoWorker: the orchestrator's own NATS connection is
// cut for three worker TTLs while worker w1 heartbeats (on another
// connection, as agents on other NATS nodes do) and runs a job, and worker
// w2 falls silent at the cut. While the orchestrator cannot hear, neither
// worker is lost: the silence is its own. Its connection back, w1's
// heartbeats reach it only a third of a TTL later (as a cluster carries a
// subscription to the other nodes some time after a reconnection): w1 and
// its attempt stay as they were, since silence counts from the return,
// while w2, still silent a TTL after the return, is lost.
func TestOwnNATSOutageLosesNoWorker(t *testing.T) {
	const ttl = time.Second
	g := &gate{}
	var onc *nats.Conn
	h := newHarnessOn(t, Config{WorkerTTL: ttl, Tick: 20 * time.Millisecond}, func(url string) *nats.Conn {
		nc, err := nats.Connect(url, nats.SetCustomDialer(g), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		onc = nc
		return nc
	})
	w1 := h.worker("w1")
	run, d := h.running(w1, oneJob)
	h.worker("w2") // heartbeats once, then never again

	var deaf atomic.Bool // w1's heartbeats do not reach the orchestrator
	defer w1.beatEvery(50*time.Millisecond, func() bool { return !deaf.Load() }, bus.JobRef{JobID: d.JobID, Attempt: 1})()

	g.set(true)
	h.waitFor(func() bool { return onc.Status() != nats.CONNECTED }, "the orchestrator's connection away")
	// The outage's length is what the test is about: three TTLs, and many
	// ticks of lease checks, without a heartbeat reaching the orchestrator.
	<-time.After(3 * ttl)
	workerState := func(id string) state.WorkerState {
		for _, v := range h.o.View().Workers {
			if v.ID == id {
				return v.State
			}
		}
		return ""
	}
	if s1, s2 := workerState("w1"), workerState("w2"); s1 == state.WorkerLost || s2 == state.WorkerLost {
		t.Fatalf("while the orchestrator's connection was away: w1 %s, w2 %s; neither may be lost", s1, s2)
	}

	deaf.Store(true)
	g.set(false)
	h.waitFor(func() bool { return onc.Status() == nats.CONNECTED }, "the orchestrator's connection back")
	// The delay of w1's first heard heartbeat after the return is the
	// scenario's, not a synchronisation: a third of a TTL.
	<-time.After(ttl / 3)
	deaf.Store(false)
	beats := h.o.Processed().Heartbeats
	h.waitFor(func() bool { return workerState("w2") == state.WorkerLost }, "w2, silent since the cut, lost after the reconnection")
	h.waitFor(func() bool { return h.o.Processed().Heartbeats >= beats+3 }, "w1's heartbeats heard again")
	if s := workerState("w1"); s != state.WorkerBusy {
		t.Errorf("w1, which heartbeat throughout: %s; want busy", s)
	}
	if j := h.job(run.ID, "a"); j.State != state.JobRunning || j.Attempt != 1 || j.WorkerID != "w1" {
		t.Errorf("job a after the outage: %s, attempt %d on %q; want running, attempt 1 on w1", j.State, j.Attempt, j.WorkerID)
	}
	atts, err := h.st.ListAttempts(t.Context(), d.JobID)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		if a.State == state.AttemptLost {
			t.Errorf("attempt %d lost (%s) because of the orchestrator's own outage", a.N, a.Reason)
		}
	}
}
