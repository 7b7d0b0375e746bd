package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/store"
)

// batch is what one turn of the loop applies.
type batch struct {
	intake  []any
	reports []jetstream.Msg
	beats   []bus.Heartbeat
	tick    bool
}

func (b *batch) size() int { return len(b.intake) + len(b.reports) + len(b.beats) }

// change is the effect of one batch: what to write in its transaction and
// what to do once it is committed.
type change struct {
	tx  store.Tx
	now time.Time

	dirtyRuns map[*runState]bool
	dirtyJobs map[*jobState]bool
	attempts  map[attemptKey]store.Attempt
	workers   map[*workerState]bool
	logs      []store.LogChunk

	dispatch []bus.Dispatch
	workerOf map[string]string // dispatch message id -> worker (see send)
	purge    []string          // workers whose dispatch subject to purge
	events   []bus.Event
	notes    []hub.Note
	replies  []func(err error)
	observe  []func() // metrics, after commit
	err      error    // a failed write: the batch rolls back
}

type attemptKey struct {
	job string
	n   int
}

// send queues a dispatch message to a worker, published after the commit.
// Messages are routed by their id, not their job: one batch may cancel an
// attempt on one worker and assign the next on another.
func (c *change) send(worker string, d bus.Dispatch) {
	c.dispatch = append(c.dispatch, d)
	c.workerOf[d.MsgID()] = worker
}

// saveAttempt records the job's current attempt as it is now.
func (c *change) saveAttempt(j *jobState) {
	c.attempts[attemptKey{j.att.JobID, j.att.N}] = j.att
}

func newChange(tx store.Tx, now time.Time) *change {
	return &change{
		tx: tx, now: now,
		dirtyRuns: map[*runState]bool{},
		dirtyJobs: map[*jobState]bool{},
		attempts:  map[attemptKey]store.Attempt{},
		workers:   map[*workerState]bool{},
		workerOf:  map[string]string{},
	}
}

func (o *Orchestrator) loop(ctx context.Context) {
	defer close(o.done)
	t := time.NewTicker(o.cfg.Tick)
	defer t.Stop()
	for {
		var b batch
		select {
		case <-ctx.Done():
			o.drainOnStop()
			return
		case x := <-o.intake:
			b.intake = append(b.intake, x)
		case m := <-o.reports:
			b.reports = append(b.reports, m)
		case hb := <-o.beats:
			b.beats = append(b.beats, hb)
		case <-t.C:
			b.tick = true
		}
		o.fill(&b)
		o.apply(ctx, &b)
		n := 0
		for _, m := range b.reports {
			n += len(m.Data())
		}
		o.budget.give(n)
	}
}

// fill takes whatever else is waiting, up to MaxBatch inputs.
func (o *Orchestrator) fill(b *batch) {
	for b.size() < o.cfg.MaxBatch {
		select {
		case x := <-o.intake:
			b.intake = append(b.intake, x)
		case m := <-o.reports:
			b.reports = append(b.reports, m)
		case hb := <-o.beats:
			b.beats = append(b.beats, hb)
		default:
			return
		}
	}
}

func (o *Orchestrator) drainOnStop() {
	for {
		select {
		case x := <-o.intake:
			switch r := x.(type) {
			case *submitReq:
				r.reply <- submitResult{err: ErrStopped}
			case *cancelReq:
				r.reply <- ErrStopped
			case *pingReq:
				r.reply <- ErrStopped
			case *predictReq:
				r.reply <- nil
			}
		default:
			return
		}
	}
}

// apply runs one batch in one transaction, then announces its effects.
func (o *Orchestrator) apply(ctx context.Context, b *batch) {
	now := time.Now().UTC()
	var c *change
	err := o.cfg.Store.Update(ctx, func(tx store.Tx) error {
		c = newChange(tx, now)
		for _, hb := range b.beats {
			o.onHeartbeat(c, hb)
		}
		for _, m := range b.reports {
			o.onReport(c, m)
		}
		for _, x := range b.intake {
			switch r := x.(type) {
			case *submitReq:
				o.onSubmit(c, r)
			case *cancelReq:
				o.onCancel(c, r)
			case *pingReq:
				c.replies = append(c.replies, func(error) { r.reply <- nil })
			case *predictReq:
				m := make(map[string]time.Duration, len(r.jobs))
				for _, id := range r.jobs {
					if o.jobs[id] != nil {
						m[id] = o.eng.PredictJob(id)
					}
				}
				c.replies = append(c.replies, func(error) { r.reply <- m })
			}
		}
		if b.tick {
			o.checkLeases(c)
		}
		if o.dirty && c.err == nil {
			o.schedule(c)
		}
		if c.err != nil {
			return c.err
		}
		return o.write(c)
	})
	if err != nil {
		o.log.Error("store update failed; reloading state", "err", err)
		for _, r := range b.intake {
			switch r := r.(type) {
			case *submitReq:
				r.reply <- submitResult{err: fmt.Errorf("store: %w", err)}
			case *cancelReq:
				r.reply <- fmt.Errorf("store: %w", err)
			case *pingReq:
				r.reply <- fmt.Errorf("store: %w", err)
			case *predictReq:
				r.reply <- nil
			}
		}
		for _, m := range b.reports {
			_ = m.Nak()
		}
		if rerr := o.reload(ctx); rerr != nil {
			o.log.Error("reload failed", "err", rerr)
		}
		return
	}
	o.announce(c, b)
}

// write stores everything the batch changed.
func (o *Orchestrator) write(c *change) error {
	for r := range c.dirtyRuns {
		if err := c.tx.UpdateRun(r.rec); err != nil {
			return err
		}
	}
	for j := range c.dirtyJobs {
		if err := c.tx.UpdateJob(j.rec); err != nil {
			return err
		}
	}
	for _, a := range c.attempts {
		if err := c.tx.UpsertAttempt(a); err != nil {
			return err
		}
	}
	for w := range c.workers {
		if err := c.tx.UpsertWorker(w.rec); err != nil {
			return err
		}
	}
	if len(c.logs) > 0 {
		if err := c.tx.AppendLogs(c.logs); err != nil {
			return err
		}
	}
	return nil
}

// announce publishes and acknowledges what the committed batch did.
func (o *Orchestrator) announce(c *change, b *batch) {
	// Purges first, and not in the background: a purge that ran after a
	// later publish would delete what a worker that came back was sent (a
	// cancel of its stale attempt, a new assignment). They are rare: a
	// worker lost or gone.
	for _, w := range c.purge {
		o.purgeDispatch(w)
	}
	for _, d := range c.dispatch {
		worker := c.workerOf[d.MsgID()]
		if j := o.jobs[d.JobID]; o.cfg.Seal != nil && d.Kind == bus.KindAssign && j != nil && len(j.spec.Secrets) > 0 {
			go o.sealAndPublish(worker, j.run.rec.Tenant, j.spec.Secrets, d)
			continue
		}
		o.publishDispatch(worker, d)
	}
	for _, e := range c.events {
		data, _ := json.Marshal(e)
		if _, err := o.js.PublishAsync(o.cfg.Subjects.Events(e.RunID), data); err != nil {
			o.log.Debug("event publish", "err", err)
		}
	}
	for _, m := range b.reports {
		_ = m.Ack()
	}
	for _, r := range c.replies {
		r(nil)
	}
	if len(c.notes) > 0 {
		o.cfg.Hub.Publish(c.notes...)
	}
	for _, f := range c.observe {
		f()
	}
	o.publishView(c.now, len(c.workers) > 0 || c.now.Sub(o.lastPub) > 500*time.Millisecond)
	o.processed(b)
}

// sealAndPublish publishes an assignment once cfg.Seal has given it the
// job's secrets: resolving them may wait on a secrets backend, so it runs
// outside the loop. A cancel published meanwhile may overtake the
// assignment; agents handle that (a cancel seen first keeps the job from
// starting).
func (o *Orchestrator) sealAndPublish(worker, tenant string, names []string, d bus.Dispatch) {
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.AssignTimeout)
	defer cancel()
	o.publishDispatch(worker, o.cfg.Seal(ctx, worker, tenant, names, d))
}

func (o *Orchestrator) publishDispatch(worker string, d bus.Dispatch) {
	if d.Kind == bus.KindAssign {
		d.MaxLogBytes = o.cfg.MaxLogBytes
	}
	data, _ := json.Marshal(d)
	m := nats.NewMsg(o.cfg.Subjects.Dispatch(worker))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, d.MsgID())
	if _, err := o.js.PublishMsgAsync(m); err != nil {
		o.log.Warn("dispatch publish", "job", d.JobID, "err", err)
	}
}

func (o *Orchestrator) purgeDispatch(worker string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := o.js.Stream(ctx, bus.StreamDispatch)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject(o.cfg.Subjects.Dispatch(worker)))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		o.log.Debug("purge dispatch", "worker", worker, "err", err)
	}
}

func (o *Orchestrator) onReport(c *change, m jetstream.Msg) {
	subj := m.Subject()
	worker := o.cfg.Subjects.WorkerOf(subj)
	if o.cfg.Subjects.IsLogs(subj) {
		chunk, err := bus.ParseLogChunk(m.Headers(), m.Data())
		if err != nil {
			o.log.Warn("bad log chunk", "subject", subj, "err", err)
			o.drop(c, DropBadMessage)
			return
		}
		o.onLogs(c, worker, chunk)
		return
	}
	var st bus.Status
	if err := json.Unmarshal(m.Data(), &st); err != nil {
		o.log.Warn("bad status", "subject", subj, "err", err)
		o.drop(c, DropBadMessage)
		return
	}
	if st.WorkerID != worker {
		o.log.Warn("status from another worker's subject", "subject", subj, "worker", st.WorkerID)
		o.drop(c, DropWrongSubject)
		return
	}
	o.onStatus(c, st)
}
