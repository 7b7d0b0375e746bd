package agent

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultFenceAfter is how long an agent's NATS connection may stay away
// before the agent stops its attempts: shorter than the server's default
// worker TTL (15 s), after which the server gives them to another worker.
const DefaultFenceAfter = 10 * time.Second

// errFenced is the cause of an attempt stopped because the agent's NATS
// connection stayed away for longer than FenceAfter: it is reported as
// StatusFenced, an infrastructure loss, not the job's failure.
var errFenced = errors.New("stopped: this worker was cut off from NATS, and the server gives its attempts to another worker")

// fence stops the running attempts once the agent's NATS connection has
// been away for FenceAfter, until ctx ends.
//
// A server that has not heard a worker for its TTL declares it lost and
// starts its attempts again elsewhere. A worker cut off from NATS (its
// network partitioned, its node gone and no other reachable) cannot hear
// the cancel that follows, and would run them on beside their next
// attempts, side effects and all. Its connection being away is the one
// sign it has: its heartbeats reach nobody. So it stops them itself before
// the server's TTL has passed, and reports them once it is back (the
// reports wait with the others); the server gives them a new attempt
// without charging their retry budget, or has already.
func (a *Agent) fence(ctx context.Context) {
	if a.cfg.FenceAfter < 0 {
		return
	}
	changes := a.nc.StatusChanged()
	defer a.nc.RemoveStatusListener(changes)
	var cut <-chan time.Time
	if a.nc.Status() != nats.CONNECTED {
		cut = time.After(a.cfg.FenceAfter)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-changes:
			switch {
			case st == nats.CONNECTED:
				cut = nil
			case cut == nil:
				cut = time.After(a.cfg.FenceAfter)
			}
		case <-cut:
			cut = nil
			if a.nc.Status() != nats.CONNECTED { // not back with a change unread
				a.stopAll(errFenced)
			}
		}
	}
}

// stopAll stops every attempt the agent runs, with cause.
func (a *Agent) stopAll(cause error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.running) == 0 {
		return
	}
	a.log.Warn("NATS connection away too long: stopping the attempts this worker runs", "attempts", len(a.running), "after", a.cfg.FenceAfter)
	for _, e := range a.running {
		e.cancel(cause)
	}
}
