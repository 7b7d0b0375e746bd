package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/postgres"
)

// Several servers on one PostgreSQL store (docs/architecture.md, "Several
// servers"): each campaigns for the leader lock (postgres.Store.Campaign);
// the leader runs an orchestrator elected with its epoch, the worker
// manager, and answers the commands the others forward on NATS
// (bus.Subjects.Control); every server serves the API, from the store, and
// its live streams from the notes the leader publishes (bus.Subjects.Notes).

// forwardWait is how long a follower keeps trying to reach a leader for a
// command before it answers that there is none (503 with Retry-After).
const forwardWait = 10 * time.Second

// natsAwayLimit is how long a leader's NATS connection may be away (a
// partition, not the move of a node's loss, which takes about a second)
// before it steps down: a leader cut off from NATS can neither place work
// nor hear its workers, while its PostgreSQL session still holds the lock.
// A server campaigns only while its NATS connection is up, so the lock
// goes to one that reaches NATS.
const natsAwayLimit = 10 * time.Second

// replication is the leadership side of a server on PostgreSQL.
type replication struct {
	s  *Server
	pg *postgres.Store
	id string

	mu     sync.Mutex
	orch   *orchestrator.Orchestrator // while leading
	subs   []*nats.Subscription       // control handlers, while leading
	epoch  int64
	leads  atomic.Bool
	seen   atomic.Int64 // unix nanos of the last answer of a leader
	terms  atomic.Int64 // times this server became leader
	fenced chan struct{}
	// poolsOnce: the worker manager starts with the first lead only.
	poolsOnce sync.Once

	// notes is the hub of the API's live streams, fed from NATS.
	notes *hub.Hub

	leader  prometheus.Gauge
	changes prometheus.Counter
	stop    context.CancelFunc
	done    chan struct{}
}

// newReplicaID names this server among the others: host, pid and a random
// suffix, so that a restarted server is a new replica.
func newReplicaID() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", sanitizeToken(host), os.Getpid(), hex.EncodeToString(b))
}

func (s *Server) startReplication(pg *postgres.Store) error {
	r := &replication{
		s: s, pg: pg, id: s.opts.ReplicaID, notes: hub.New(),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hodei_leader",
			Help: "1 while this server leads the servers sharing its store (runs the orchestrator, the scheduler and the autoscaler), else 0."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "hodei_leader_changes_total",
			Help: "Times this server became leader or stopped being leader."}),
		done: make(chan struct{}),
	}
	if r.id == "" {
		r.id = newReplicaID()
	}
	s.Registry.MustRegister(r.leader, r.changes)
	sub, err := s.nc.Subscribe(s.subjects().Notes(), r.onNote)
	if err != nil {
		return fmt.Errorf("server: notes: %w", err)
	}
	s.rep = r
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = func() { cancel(); _ = sub.Unsubscribe() }
	go r.run(ctx)
	go r.forwardNotes(ctx)
	return nil
}

func (s *Server) subjects() bus.Subjects { return bus.DefaultSubjects }

// run campaigns, leads while the lease holds and the store takes the
// orchestrator's writes, steps down, and campaigns again, until ctx ends.
func (r *replication) run(ctx context.Context) {
	defer close(r.done)
	log := r.s.log.With("replica", r.id)
	for ctx.Err() == nil {
		if !r.waitNATS(ctx) {
			return // ctx ended
		}
		lease, err := r.pg.Campaign(ctx, r.id, r.s.publicURL(), time.Second)
		if err != nil {
			return // ctx ended
		}
		log.Info("leader elected: this server leads", "epoch", lease.Epoch)
		if err := r.lead(ctx, lease.Epoch); err != nil {
			log.Error("leading failed; stepping down", "epoch", lease.Epoch, "err", err)
			r.stepDown()
			lease.Release()
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		wctx, unwatch := context.WithCancel(ctx)
		away := r.watchNATS(wctx, natsAwayLimit)
		select {
		case <-ctx.Done():
		case <-lease.Lost():
			log.Warn("leader lock lost (its database connection failed): stepping down", "epoch", lease.Epoch, "err", lease.Err())
		case <-r.fenced:
			log.Warn("a newer leader holds the store: stepping down", "epoch", lease.Epoch)
		case <-away:
			log.Warn("this leader's NATS connection has been away too long: stepping down for a server that reaches NATS", "epoch", lease.Epoch, "limit", natsAwayLimit)
		}
		unwatch()
		r.stepDown()
		lease.Release()
	}
}

// natsPoll is how often the replication looks at its NATS connection.
const natsPoll = 250 * time.Millisecond

// waitNATS returns once the server's NATS connection is up (true), or when
// ctx ends (false).
func (r *replication) waitNATS(ctx context.Context) bool {
	logged := false
	// A poll: the connection's handlers belong to its creator, and its
	// state is read, not announced, here.
	t := time.NewTicker(natsPoll)
	defer t.Stop()
	for r.s.nc.Status() != nats.CONNECTED {
		if !logged {
			r.s.log.Warn("NATS connection away: this server does not campaign for leader until it is back", "replica", r.id, "status", r.s.nc.Status().String())
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return ctx.Err() == nil
}

// watchNATS returns a channel closed once the server's NATS connection has
// been away for limit without a break, until ctx ends.
func (r *replication) watchNATS(ctx context.Context, limit time.Duration) <-chan struct{} {
	away := make(chan struct{})
	go func() {
		// A poll, as in waitNATS.
		t := time.NewTicker(natsPoll)
		defer t.Stop()
		var since time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				switch {
				case r.s.nc.Status() == nats.CONNECTED:
					since = time.Time{}
				case since.IsZero():
					since = now
				case now.Sub(since) >= limit:
					close(away)
					return
				}
			}
		}
	}()
	return away
}

// lead starts an orchestrator with the epoch (it rebuilds its state from
// the store and takes the reports consumer over), the control handlers and
// the worker manager.
func (r *replication) lead(ctx context.Context, epoch int64) error {
	s := r.s
	fenced := make(chan struct{})
	var once sync.Once
	cfg := s.orchConfig()
	cfg.Epoch = epoch
	cfg.TakeOver = true
	cfg.OnFenced = func() { once.Do(func() { close(fenced) }) }
	o, err := orchestrator.New(cfg)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := o.Start(sctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.orch, r.epoch, r.fenced = o, epoch, fenced
	r.mu.Unlock()
	for kind, h := range map[string]nats.MsgHandler{
		"submit": r.onSubmit, "cancel": r.onCancel, "decide": r.onDecide, "view": r.onView, "ping": r.onPing,
		"outlook": r.onOutlook,
	} {
		sub, err := s.nc.Subscribe(s.subjects().Control(kind), h)
		if err != nil {
			return fmt.Errorf("control %s: %w", kind, err)
		}
		r.mu.Lock()
		r.subs = append(r.subs, sub)
		r.mu.Unlock()
	}
	r.leads.Store(true)
	r.terms.Add(1)
	r.leader.Set(1)
	r.changes.Inc()
	// The worker manager registers its metrics once per process: a
	// server that leads again after stepping down runs none (its pools
	// wait for the next leader, or a restart).
	var perr error
	r.poolsOnce.Do(func() {
		s.poolsMu.Lock()
		defer s.poolsMu.Unlock()
		perr = s.startPools()
	})
	return perr
}

// stepDown stops what the leader runs.
func (r *replication) stepDown() {
	r.mu.Lock()
	o, subs := r.orch, r.subs
	r.orch, r.subs = nil, nil
	r.mu.Unlock()
	if r.leads.Swap(false) {
		r.leader.Set(0)
		r.changes.Inc()
	}
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	r.s.poolsMu.Lock()
	r.s.closePools()
	r.s.Workers = nil
	r.s.pools.Store(nil)
	r.s.poolsMu.Unlock()
	if o != nil {
		o.Stop()
	}
}

func (r *replication) close() {
	r.stop()
	<-r.done
}

// current is the orchestrator while this server leads, else nil.
func (r *replication) current() *orchestrator.Orchestrator {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orch
}

// forwardNotes publishes what this server's orchestrator announces on its
// hub (only a leader's does) for the live streams of every server. A log
// note goes without its output, which the streams read from the store: the
// notes stay small whatever the output, and the buffer between the hub and
// NATS holds at most 256 chunks of it.
func (r *replication) forwardNotes(ctx context.Context) {
	subject := r.s.subjects().Notes()
	for ctx.Err() == nil {
		sub := r.s.Hub.Subscribe("", 256)
		func() {
			defer sub.Close()
			for {
				select {
				case <-ctx.Done():
					return
				case n, ok := <-sub.C:
					if !ok {
						return // lagged: the followers' streams resync from the store
					}
					n.Chunk = nil
					data, err := json.Marshal(n)
					if err == nil {
						_ = r.s.nc.Publish(subject, data)
					}
				}
			}
		}()
	}
}

func (r *replication) onNote(m *nats.Msg) {
	var n hub.Note
	if err := json.Unmarshal(m.Data, &n); err != nil {
		return
	}
	r.notes.Publish(n)
}

// The commands forwarded to the leader, and their answers.
type (
	controlSubmit struct {
		File   string            `json:"file"`
		Data   []byte            `json:"data"`
		Tenant string            `json:"tenant"`
		Inputs map[string]string `json:"inputs,omitempty"`
		// Includes are the files the pipeline includes (RunRequest).
		Includes map[string][]byte `json:"includes,omitempty"`
		Key      string            `json:"key"`
	}
	controlCancel struct {
		RunID string `json:"run_id"`
	}
	controlDecide struct {
		RunID    string                `json:"run_id"`
		JobID    string                `json:"job_id"`
		Decision orchestrator.Decision `json:"decision"`
	}
	controlOutlook struct {
		JobIDs []string `json:"job_ids"`
	}
	controlReply struct {
		Outlooks map[string]orchestrator.Outlook `json:"outlooks,omitempty"`
		Run      *store.Run                      `json:"run,omitempty"`
		Job      *store.Job                      `json:"job,omitempty"`
		View     *orchestrator.View              `json:"view,omitempty"`
		Code     string                          `json:"code,omitempty"`
		Error    string                          `json:"error,omitempty"`
	}
)

// Codes of controlReply: the errors a follower gives its callers as its own.
var controlErrors = map[string]error{
	"busy":        orchestrator.ErrBusy,
	"not_leader":  orchestrator.ErrNotLeader,
	"stopped":     orchestrator.ErrNotLeader,
	"run_final":   orchestrator.ErrRunFinal,
	"too_many":    orchestrator.ErrTooManyRuns,
	"not_waiting": orchestrator.ErrNotWaiting,
	"not_found":   store.ErrNotFound,
	"unavailable": store.ErrUnavailable,
}

func errorReply(err error) controlReply {
	for code, e := range controlErrors {
		if errors.Is(err, e) {
			return controlReply{Code: code, Error: err.Error()}
		}
	}
	if errors.Is(err, orchestrator.ErrStopped) {
		return controlReply{Code: "stopped", Error: err.Error()}
	}
	return controlReply{Error: err.Error()}
}

func (r *replication) respond(m *nats.Msg, rep controlReply) {
	data, _ := json.Marshal(rep)
	_ = m.Respond(data)
}

// serve answers a command a follower forwarded: the request decoded from
// m, then do on a goroutine of its own (it waits for the loop), with 30 s.
func serve[T any](r *replication, m *nats.Msg, do func(ctx context.Context, req T) (controlReply, error)) {
	var req T
	if err := json.Unmarshal(m.Data, &req); err != nil {
		r.respond(m, controlReply{Error: "bad request: " + err.Error()})
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rep, err := do(ctx, req)
		if err != nil {
			rep = errorReply(err)
		}
		r.respond(m, rep)
	}()
}

func (r *replication) onSubmit(m *nats.Msg) {
	serve(r, m, func(ctx context.Context, req controlSubmit) (controlReply, error) {
		run, err := r.s.submitHere(ctx, RunRequest{File: req.File, Data: req.Data, Tenant: req.Tenant, Inputs: req.Inputs, Includes: req.Includes, Key: req.Key})
		return controlReply{Run: &run}, err
	})
}

func (r *replication) onCancel(m *nats.Msg) {
	serve(r, m, func(ctx context.Context, req controlCancel) (controlReply, error) {
		return controlReply{}, r.Cancel(ctx, req.RunID)
	})
}

func (r *replication) onDecide(m *nats.Msg) {
	serve(r, m, func(ctx context.Context, req controlDecide) (controlReply, error) {
		o := r.current()
		if o == nil {
			return controlReply{}, orchestrator.ErrNotLeader
		}
		j, err := o.Decide(ctx, req.RunID, req.JobID, req.Decision)
		return controlReply{Job: &j}, err
	})
}

// Decide approves or rejects a job that waits for an approval: on the
// leader, or forwarded to it.
func (r *replication) Decide(ctx context.Context, runID, jobID string, d orchestrator.Decision) (store.Job, error) {
	if o := r.current(); o != nil {
		return o.Decide(ctx, runID, jobID, d)
	}
	rep, err := r.forward(ctx, "decide", controlDecide{RunID: runID, JobID: jobID, Decision: d})
	if err != nil {
		return store.Job{}, err
	}
	if rep.Job == nil {
		return store.Job{}, errors.New("leader's answer to a decision has no job")
	}
	return *rep.Job, nil
}

func (r *replication) onOutlook(m *nats.Msg) {
	serve(r, m, func(ctx context.Context, req controlOutlook) (controlReply, error) {
		o := r.current()
		if o == nil {
			return controlReply{}, orchestrator.ErrNotLeader
		}
		ol, err := o.Outlook(ctx, req.JobIDs)
		return controlReply{Outlooks: ol}, err
	})
}

func (r *replication) onView(m *nats.Msg) {
	r.respond(m, controlReply{View: r.View()})
}

func (r *replication) onPing(m *nats.Msg) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Ping(ctx); err != nil {
			r.respond(m, errorReply(err))
			return
		}
		r.respond(m, controlReply{})
	}()
}

// forward sends a command to the leader and waits for its answer. While no
// leader answers (none subscribed: an election under way) it tries again
// for up to forwardWait, then returns orchestrator.ErrNotLeader. A
// submission carries its idempotency key, so that a resend makes no second
// run.
func (r *replication) forward(ctx context.Context, kind string, req any) (controlReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return controlReply{}, err
	}
	deadline := time.Now().Add(forwardWait)
	for {
		tctx, cancel := context.WithTimeout(ctx, forwardWait)
		msg, err := r.s.nc.RequestWithContext(tctx, r.s.subjects().Control(kind), data)
		cancel()
		if err == nil {
			r.seen.Store(time.Now().UnixNano())
			var rep controlReply
			if err := json.Unmarshal(msg.Data, &rep); err != nil {
				return controlReply{}, fmt.Errorf("leader's answer: %w", err)
			}
			if rep.Error == "" {
				return rep, nil
			}
			if e, ok := controlErrors[rep.Code]; ok {
				if !errors.Is(e, orchestrator.ErrNotLeader) {
					return rep, fmt.Errorf("%w (from the leader: %s)", e, rep.Error)
				}
			} else {
				return rep, fmt.Errorf("leader: %s", rep.Error)
			}
			// A leader being deposed: try the next one.
		} else if ctx.Err() != nil {
			return controlReply{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return controlReply{}, orchestrator.ErrNotLeader
		}
		select {
		case <-ctx.Done():
			return controlReply{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// The api.Orchestrator of a server among several: the leader's own
// orchestrator, or the leader's answers on NATS.

func (r *replication) Cancel(ctx context.Context, runID string) error {
	if o := r.current(); o != nil {
		return o.Cancel(ctx, runID)
	}
	_, err := r.forward(ctx, "cancel", controlCancel{RunID: runID})
	return err
}

func (r *replication) View() *orchestrator.View {
	if o := r.current(); o != nil {
		return o.View()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	data, _ := json.Marshal(struct{}{})
	msg, err := r.s.nc.RequestWithContext(ctx, r.s.subjects().Control("view"), data)
	var rep controlReply
	if err != nil || json.Unmarshal(msg.Data, &rep) != nil || rep.View == nil {
		return &orchestrator.View{}
	}
	r.seen.Store(time.Now().UnixNano())
	return rep.View
}

// Outlook is the leader's: its scheduler knows the predictions and why a
// job waits.
func (r *replication) Outlook(ctx context.Context, jobIDs []string) (map[string]orchestrator.Outlook, error) {
	if o := r.current(); o != nil {
		return o.Outlook(ctx, jobIDs)
	}
	rep, err := r.forward(ctx, "outlook", controlOutlook{JobIDs: jobIDs})
	return rep.Outlooks, err
}

func (r *replication) Ping(ctx context.Context) error {
	if o := r.current(); o != nil {
		return o.Ping(ctx)
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := r.s.nc.RequestWithContext(tctx, r.s.subjects().Control("ping"), []byte("{}"))
	if err != nil {
		return orchestrator.ErrNotLeader
	}
	var rep controlReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Error != "" {
		return orchestrator.ErrNotLeader
	}
	r.seen.Store(time.Now().UnixNano())
	return nil
}

// Hub is the hub of the API's live streams: the leader's notes, from NATS.
func (r *replication) Hub() *hub.Hub { return r.notes }

// Submit serves the repositories' webhooks: only the leader makes their
// runs (a follower answers that there is no leader here, 503).
func (r *replication) Submit(ctx context.Context, req orchestrator.SubmitRequest) (store.Run, error) {
	if o := r.current(); o != nil {
		return o.Submit(ctx, req)
	}
	return store.Run{}, orchestrator.ErrNotLeader
}

// leaderInfo answers GET /api/v1/leader.
func (r *replication) leaderInfo(ctx context.Context) (wire.Leader, error) {
	l, err := r.pg.Leader(ctx)
	if err != nil {
		return wire.Leader{}, err
	}
	self := r.leads.Load()
	known := self || time.Since(time.Unix(0, r.seen.Load())) < 5*time.Second
	if !known && l.ID != "" && r.Ping(ctx) == nil {
		known = true
	}
	return wire.Leader{ID: l.ID, API: l.API, Epoch: l.Epoch, Since: l.Since, Known: known, Self: self, Server: r.id}, nil
}

// waitLeader returns once this server leads or a leader answers it, or
// after wait: a server started alone on its database is ready to take runs
// when Start returns, like one on SQLite.
func (r *replication) waitLeader(ctx context.Context, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.leads.Load() {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := r.Ping(pctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
