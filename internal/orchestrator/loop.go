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
	"github.com/hodei-ci/hodei/internal/tracing"
)

// request is an input of the loop that a caller waits on: a submission, a
// cancel, a ping, a prediction. Its exported method builds it and calls send.
type request interface {
	// handle applies the request in the batch's transaction, in the loop.
	// It answers at once when it refuses the request, else it leaves its
	// answer to the commit (c.reply).
	handle(o *Orchestrator, c *change)
	// reply returns where the request's answer goes.
	reply() *answer
}

// answer is the reply to a request, given once, by the loop: the first one
// given stands (a request a handler refused keeps its refusal when the
// batch then fails). done is closed once it is given.
type answer struct {
	done chan struct{}
	err  error
}

func newAnswer() answer { return answer{done: make(chan struct{})} }

func (a *answer) reply() *answer { return a }

func (a *answer) give(err error) {
	select {
	case <-a.done:
	default:
		a.err = err
		close(a.done)
	}
}

// send hands r to the loop and waits for its answer. ErrBusy when the
// intake is full; ErrStopped when the loop is not running or stops first.
func (o *Orchestrator) send(ctx context.Context, r request) error {
	if !o.running.Load() {
		return ErrStopped
	}
	select {
	case o.intake <- r:
	default:
		return ErrBusy
	}
	a := r.reply()
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	case <-o.done:
		return ErrStopped
	}
}

// batch is what one turn of the loop applies.
type batch struct {
	intake  []request
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
	notes    []hub.Note
	replies  []pendingReply       // given after the commit
	observe  []func()             // metrics, after commit
	keys     map[string]*runState // idempotency keys of runs submitted in the batch (tenant NUL key)
	err      error                // a failed write: the batch rolls back
}

// pendingReply is an answer to give once the batch is committed.
type pendingReply struct {
	to  request
	err error
}

// reply answers r with err once the batch is committed; if the batch
// fails, r is answered with the store's error instead.
func (c *change) reply(r request, err error) {
	c.replies = append(c.replies, pendingReply{r, err})
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
		fenced := o.apply(ctx, &b)
		n := 0
		for _, m := range b.reports {
			n += len(m.Data())
		}
		o.budget.give(n)
		if fenced {
			o.drainOnStop()
			if o.cfg.OnFenced != nil {
				go o.cfg.OnFenced()
			}
			return
		}
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
		case r := <-o.intake:
			r.reply().give(ErrStopped)
		default:
			return
		}
	}
}

// apply runs one batch in one transaction, then announces its effects. It
// reports whether the store refused the batch because a newer leader holds
// it (store.ErrFenced): the loop must then stop.
func (o *Orchestrator) apply(ctx context.Context, b *batch) bool {
	now := time.Now().UTC()
	var c *change
	began := time.Now()
	err := o.cfg.Store.Update(ctx, func(tx store.Tx) error {
		c = newChange(tx, now)
		for _, hb := range b.beats {
			o.onHeartbeat(c, hb)
		}
		for _, m := range b.reports {
			o.onReport(c, m)
		}
		for _, r := range b.intake {
			r.handle(o, c)
		}
		if b.tick {
			o.checkLeases(c)
			o.checkApprovals(c)
			// Jobs queued within the join grace are judged once it
			// ends, even if nothing else happens.
			o.failUnrunnable(c)
		}
		if o.dirty && c.err == nil {
			o.schedule(c)
		}
		if c.err != nil {
			return c.err
		}
		return o.write(c)
	})
	if errors.Is(err, store.ErrFenced) {
		o.log.Warn("a newer leader holds the store: this orchestrator stops", "epoch", o.cfg.Epoch, "err", err)
		for _, r := range b.intake {
			r.reply().give(fmt.Errorf("%w: %w", ErrNotLeader, err))
		}
		// Not negatively acknowledged: the new leader has taken the
		// consumer over, and its messages are its own.
		return true
	}
	if err != nil && ctx.Err() != nil {
		// Stopping (Stop canceled the loop's context): the batch was not
		// applied, and its reports go to the next orchestrator.
		for _, r := range b.intake {
			r.reply().give(ErrStopped)
		}
		for _, m := range b.reports {
			_ = m.Nak()
		}
		return false
	}
	if err != nil {
		o.log.Error("store update failed; reloading state", "err", err)
		for _, r := range b.intake {
			r.reply().give(fmt.Errorf("store: %w", err))
		}
		for _, m := range b.reports {
			_ = m.Nak()
		}
		if rerr := o.reload(ctx); rerr != nil {
			o.log.Error("reload failed", "err", rerr)
		}
		return false
	}
	committed := time.Now()
	o.announce(c, b)
	if o.cfg.Metrics != nil {
		o.cfg.Metrics.Batch.WithLabelValues("commit").Observe(committed.Sub(began).Seconds())
		o.cfg.Metrics.Batch.WithLabelValues("announce").Observe(time.Since(committed).Seconds())
	}
	return false
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
		if j := o.jobs[d.JobID]; o.cfg.Seal != nil && d.Kind == bus.KindAssign && j != nil && len(j.spec.SecretNames()) > 0 {
			tenant, names := j.run.rec.Tenant, j.spec.SecretNames()
			o.sealing.Go(func() { o.sealAndPublish(worker, tenant, names, d) })
			continue
		}
		o.publishDispatch(worker, d)
	}
	var seq uint64
	for _, m := range b.reports {
		_ = m.Ack()
		if md, err := m.Metadata(); err == nil {
			seq = max(seq, md.Sequence.Stream)
		}
	}
	if len(b.reports) > 0 {
		if seq > o.appliedSeq.Load() {
			o.appliedSeq.Store(seq) // only the loop stores it
		}
		select {
		case o.applied <- struct{}{}:
		default: // Settle has a token to take already
		}
	}
	for _, r := range c.replies {
		r.to.reply().give(r.err)
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
// outside the loop, on a goroutine Stop waits for. A cancel published
// meanwhile may overtake the assignment; agents handle that (a cancel seen
// first keeps the job from starting). A seal cut short by Stop publishes
// nothing: the attempt stays assigned, and the next start sends it again.
func (o *Orchestrator) sealAndPublish(worker, tenant string, names []string, d bus.Dispatch) {
	ctx, cancel := context.WithTimeout(o.sealCtx, o.cfg.AssignTimeout)
	defer cancel()
	d = o.cfg.Seal(ctx, worker, tenant, names, d)
	if d.SecretsError != "" && o.sealCtx.Err() != nil {
		return
	}
	o.publishDispatch(worker, d)
}

func (o *Orchestrator) publishDispatch(worker string, d bus.Dispatch) {
	if d.Kind == bus.KindAssign {
		d.MaxLogBytes = o.cfg.MaxLogBytes
	}
	data, _ := json.Marshal(d)
	m := nats.NewMsg(o.cfg.Subjects.Dispatch(worker))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, d.MsgID())
	if d.Kind == bus.KindAssign && tracing.Enabled() {
		tracing.Inject(d.RunID, tracing.AttemptSpan(d.JobID, d.Attempt), m.Header.Set)
	}
	o.out.publish(m)
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
