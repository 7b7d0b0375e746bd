package orchestrator

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bounds of the dispatch outbox.
const (
	// dispatchMaxPending is how many dispatch publishes may wait for
	// their acknowledgement at once.
	dispatchMaxPending = 4096
	// dispatchAckWait is how long a dispatch publish waits for its
	// acknowledgement before it counts as failed (and is published
	// again). Without it, an acknowledgement lost with a NATS node stays
	// pending for ever, and enough of them stall every publish after.
	dispatchAckWait = 10 * time.Second
	// dispatchRetries bounds the failed publishes waiting to be made
	// again; past it the newest failure is given up at once.
	dispatchRetries = 8192
)

// dispatchBackoff spaces the tries of one message: 100 ms, doubled each
// time, up to 2 s.
func dispatchBackoff(tries int) time.Duration {
	return min(100*time.Millisecond<<min(tries, 5), 2*time.Second)
}

// outbox publishes the loop's dispatch messages (assignments and cancels)
// to JetStream without holding the loop up, and publishes again, with the
// same message id (the stream drops the duplicate if the first one was
// stored), each one whose publish failed: refused at once (the window of
// acknowledgements full), answered with an error (no stream leader while
// a NATS node is replaced), cut by a reconnection, or not acknowledged
// within dispatchAckWait. A message is given up once giveUp has passed
// since its first publish: by then the orchestrator has given up an
// assignment its worker did not take (LostNotTaken) and places the job
// again, and a worker that still runs a withdrawn attempt is sent its
// cancel again at its next heartbeat.
//
// The loop calls publish; the JetStream client calls failed and acked on
// its own goroutines; one goroutine (run) makes the retries, and is the
// only one that waits for room in the window. Stop ends it.
type outbox struct {
	js     jetstream.JetStream
	log    *slog.Logger
	giveUp time.Duration
	// The window and the wait of acknowledgements (dispatchMaxPending,
	// dispatchAckWait).
	maxPending int
	ackWait    time.Duration
	// failures counts the failed publishes (each try).
	failures atomic.Uint64

	mu     sync.Mutex
	flight map[*nats.Msg]*outMsg // published, neither acknowledged nor given up
	again  chan *outMsg          // failed, to publish again (dispatchRetries)
	stop   chan struct{}
	done   chan struct{}
}

type outMsg struct {
	m     *nats.Msg
	first time.Time // first publish
	tries int
	next  time.Time // not before
}

func newOutbox(log *slog.Logger, giveUp time.Duration) *outbox {
	return &outbox{
		log: log, giveUp: giveUp, maxPending: dispatchMaxPending, ackWait: dispatchAckWait,
		flight: map[*nats.Msg]*outMsg{},
		again:  make(chan *outMsg, dispatchRetries),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// options are the JetStream client's options that route its outcomes to
// the outbox.
func (b *outbox) options() []jetstream.JetStreamOpt {
	return []jetstream.JetStreamOpt{
		jetstream.WithPublishAsyncMaxPending(b.maxPending),
		jetstream.WithPublishAsyncTimeout(b.ackWait),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { b.failed(m, err) }),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { b.acked(m) }),
	}
}

// start begins the retries. Messages published before it (the
// announcements of Start's recovery) that fail wait in the queue.
func (b *outbox) start() { go b.run() }

// publish publishes m without waiting: when the window of acknowledgements
// is full it leaves m to the retries rather than wait for room.
func (b *outbox) publish(m *nats.Msg) {
	om := &outMsg{m: m, first: time.Now()}
	b.mu.Lock()
	b.flight[m] = om
	b.mu.Unlock()
	if b.js.PublishAsyncPending() >= b.maxPending {
		b.failed(m, jetstream.ErrTooManyStalledMsgs)
		return
	}
	// A stall wait of a millisecond: the window may fill between the
	// check and the publish.
	if _, err := b.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Millisecond)); err != nil {
		b.failed(m, err)
	}
}

func (b *outbox) acked(m *nats.Msg) {
	b.mu.Lock()
	delete(b.flight, m)
	b.mu.Unlock()
}

// failed queues m to be published again, or gives it up (past giveUp, a
// full queue, or the outbox stopped). It must not block: the JetStream
// client calls it on its own goroutines.
func (b *outbox) failed(m *nats.Msg, err error) {
	b.mu.Lock()
	om := b.flight[m]
	b.mu.Unlock()
	if om == nil {
		return // not ours, or given up already
	}
	b.failures.Add(1)
	om.tries++
	now := time.Now()
	why := ""
	select {
	case <-b.stop:
		why = "the orchestrator stops"
	default:
		if now.Sub(om.first) > b.giveUp {
			why = "failed for longer than the assignment timeout"
		}
	}
	if why == "" {
		om.next = now.Add(dispatchBackoff(om.tries))
		select {
		case b.again <- om:
			if om.tries == 1 || om.tries%10 == 0 {
				b.log.Warn("dispatch publish failed; publishing it again", "subject", m.Subject, "msg_id", m.Header.Get(nats.MsgIdHdr), "tries", om.tries, "err", err)
			}
			return
		default:
			why = "too many dispatches to publish again"
		}
	}
	b.mu.Lock()
	delete(b.flight, m)
	b.mu.Unlock()
	b.log.Warn("dispatch given up: an assignment its worker does not take is placed again, a cancel is sent again at the worker's next heartbeat",
		"subject", m.Subject, "msg_id", m.Header.Get(nats.MsgIdHdr), "tries", om.tries, "why", why, "err", err)
}

// run publishes the failed messages again, each after its backoff, waiting
// for room in the window (the default stall wait) as the loop does not.
func (b *outbox) run() {
	defer close(b.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		var om *outMsg
		select {
		case <-b.stop:
			return
		case om = <-b.again:
		}
		if d := time.Until(om.next); d > 0 {
			t.Reset(d)
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
		if _, err := b.js.PublishMsgAsync(om.m); err != nil {
			b.failed(om.m, err)
		}
	}
}

// close stops the retries; what is still to publish is given up (a new
// leader, or this one started again, sends the attempts it finds
// assigned once more).
func (b *outbox) close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

// pending is how many dispatch messages are published and not yet
// acknowledged or given up.
func (b *outbox) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.flight)
}
