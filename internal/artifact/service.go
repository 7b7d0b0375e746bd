package artifact

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Limits bound what the Service keeps.
type Limits struct {
	// MaxJobBytes bounds the stored bytes of one attempt's artifacts and
	// caches together (DefaultMaxJobBytes when zero).
	MaxJobBytes int64
	// MaxTenantBytes bounds the stored bytes of a tenant's artifacts and
	// caches (DefaultMaxTenantBytes when zero).
	MaxTenantBytes int64
	// ExpireIn is how long artifacts are kept when the pipeline does not
	// say (DefaultExpireIn when zero); CacheExpireIn, cache entries
	// (DefaultCacheExpireIn when zero).
	ExpireIn      time.Duration
	CacheExpireIn time.Duration
}

// Defaults of Limits.
const (
	DefaultMaxJobBytes    = 2 << 30
	DefaultMaxTenantBytes = 20 << 30
	DefaultExpireIn       = 7 * 24 * time.Hour
	DefaultCacheExpireIn  = 7 * 24 * time.Hour
)

func (l Limits) withDefaults() Limits {
	if l.MaxJobBytes <= 0 {
		l.MaxJobBytes = DefaultMaxJobBytes
	}
	if l.MaxTenantBytes <= 0 {
		l.MaxTenantBytes = DefaultMaxTenantBytes
	}
	if l.ExpireIn <= 0 {
		l.ExpireIn = DefaultExpireIn
	}
	if l.CacheExpireIn <= 0 {
		l.CacheExpireIn = DefaultCacheExpireIn
	}
	return l
}

// Service answers the agents' artifact requests (see the package doc) and
// sweeps what has expired. Each request is handled in its own goroutine;
// sessions are owned by the worker that opened them.
type Service struct {
	nc       *nats.Conn
	st       store.Store
	blobs    Blobs
	subjects bus.Subjects
	lim      Limits
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	sessions map[string]*session

	caches *prometheus.CounterVec
}

// session is an upload or a download in progress.
type session struct {
	worker string
	used   time.Time // last request, for the reaper
	// download: rd is read ahead into chunks by a goroutine
	rd     io.ReadCloser
	chunks <-chan chunk
	// upload: what put receives goes through in to a goroutine that
	// writes it to pw, so that a put is answered before the blob store
	// has taken its bytes (up to readAhead chunks in flight)
	pw      *io.PipeWriter
	inMu    sync.Mutex // held to send on in, and to close it
	in      chan []byte
	ended   bool // in is closed
	wrote   chan error
	done    chan putResult
	rec     store.Artifact
	written int64
	budget  int64 // bytes this upload may still write (the job's limit)
	limit   string
}

type putResult struct {
	size int64
	err  error
}

// ServiceOptions configure NewService.
type ServiceOptions struct {
	Subjects bus.Subjects
	Limits   Limits
	Logger   *slog.Logger
	Now      func() time.Time
}

// NewService makes the service; Run starts it.
func NewService(nc *nats.Conn, st store.Store, blobs Blobs, o ServiceOptions) *Service {
	if o.Subjects.Prefix == "" {
		o.Subjects = bus.DefaultSubjects
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{
		nc: nc, st: st, blobs: blobs, subjects: o.Subjects, lim: o.Limits.withDefaults(),
		log: o.Logger.With("component", "artifacts"), now: o.Now,
		sessions: make(map[string]*session),
		caches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_cache_lookups_total",
			Help: "Cache lookups of jobs by result: hit (the exact key), partial (a restore key), miss.",
		}, []string{"result"}),
	}
}

// Collectors are the service's metrics.
func (s *Service) Collectors() []prometheus.Collector { return []prometheus.Collector{s.caches} }

// CacheLookups returns the count of lookups with a result (hit, partial,
// miss).
func (s *Service) CacheLookups(result string) float64 {
	var m dto.Metric
	_ = s.caches.WithLabelValues(result).Write(&m)
	return m.GetCounter().GetValue()
}

// Blobs returns the service's blob store.
func (s *Service) Blobs() Blobs { return s.blobs }

// sweepEvery is the interval of the retention sweep and the session reaper.
const sweepEvery = time.Minute

// sessionIdle is how long a session may go without a request.
const sessionIdle = 5 * time.Minute

// Run answers requests until ctx ends; ready, when not nil, is closed once
// it does.
func (s *Service) Run(ctx context.Context, ready chan<- struct{}) error {
	sub, err := s.nc.QueueSubscribe(s.subjects.Prefix+".art.*.*", "hodei-artifacts", func(m *nats.Msg) {
		go s.handle(ctx, m)
	})
	if err != nil {
		return fmt.Errorf("artifacts: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.Flush(); err != nil {
		return fmt.Errorf("artifacts: subscribe: %w", err)
	}
	if ready != nil {
		close(ready)
	}
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.closeSessions()
			return nil
		case <-t.C:
			s.reap()
			if n, err := s.Sweep(ctx); err != nil {
				s.log.Warn("retention sweep", "err", err)
			} else if n > 0 {
				s.log.Info("retention sweep", "removed", n)
			}
		}
	}
}

// Sweep removes the objects and records whose time has passed and returns
// how many.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n := 0
	for {
		recs, err := s.st.ListArtifacts(ctx, store.ArtifactFilter{ExpiredAt: s.now(), Limit: 100})
		if err != nil {
			return n, err
		}
		for _, r := range recs {
			if err := s.remove(ctx, r); err != nil {
				return n, err
			}
			n++
		}
		if len(recs) < 100 {
			return n, nil
		}
	}
}

// remove deletes a record, then its object: an object without record is
// never served, a record without object would fail downloads.
func (s *Service) remove(ctx context.Context, r store.Artifact) error {
	if err := s.st.DeleteArtifact(ctx, r.ID); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	return s.blobs.Delete(dctx, r.Object)
}

func (s *Service) handle(ctx context.Context, m *nats.Msg) {
	worker, op, ok := workerOf(s.subjects, m.Subject)
	if !ok {
		return
	}
	var reply any
	var err error
	var out *nats.Msg
	switch op {
	case opList:
		var req ListRequest
		if err = decode(m, &req); err == nil {
			reply, err = s.list(ctx, worker, req)
		}
	case opCache:
		var req CacheRequest
		if err = decode(m, &req); err == nil {
			reply, err = s.cache(ctx, worker, req)
		}
	case opOpen:
		var req OpenRequest
		if err = decode(m, &req); err == nil {
			reply, err = s.open(ctx, worker, req)
		}
	case opRead:
		out, err = s.read(worker, m.Header.Get(HdrSession))
	case opUpload:
		var req UploadRequest
		if err = decode(m, &req); err == nil {
			reply, err = s.upload(ctx, worker, req)
		}
	case opPut:
		err = s.put(worker, m.Header.Get(HdrSession), m.Data)
		out = &nats.Msg{}
	case opCommit:
		var req CommitRequest
		if err = decode(m, &req); err == nil {
			reply, err = s.commit(ctx, worker, req)
		}
	default:
		err = refuse(CodeInvalid, "unknown operation %q", op)
	}
	if out == nil {
		out = &nats.Msg{}
	}
	if out.Header == nil {
		out.Header = nats.Header{}
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			s.log.Warn("artifact request failed", "worker", worker, "op", op, "err", err)
			e = &Error{Code: CodeFailed, Msg: "artifacts: " + err.Error()}
		}
		out.Data = nil
		out.Header.Set(HdrError, e.Msg)
		out.Header.Set(HdrCode, e.Code)
	} else if reply != nil {
		out.Data, _ = json.Marshal(reply)
	}
	out.Subject = m.Reply
	if m.Reply != "" {
		_ = s.nc.PublishMsg(out)
	}
}

func decode(m *nats.Msg, v any) error {
	if err := json.Unmarshal(m.Data, v); err != nil {
		return refuse(CodeInvalid, "artifacts: malformed request: %v", err)
	}
	return nil
}

// attempt is what the store says of the attempt a request names.
type attempt struct {
	job  store.Job
	run  store.Run
	spec pipeline.JobSpec
	// scopes are the run's cache scopes (CacheScopes), for the requests
	// on caches.
	scopes []string
}

// attempt checks that worker runs ref now and loads its job, run and spec.
func (s *Service) attempt(ctx context.Context, worker string, ref AttemptRef) (attempt, error) {
	job, err := s.st.GetJob(ctx, ref.JobID)
	if errors.Is(err, store.ErrNotFound) {
		return attempt{}, refuse(CodeForbidden, "artifacts: worker %s does not run attempt %d of job %s", worker, ref.Attempt, ref.JobID)
	}
	if err != nil {
		return attempt{}, err
	}
	if job.WorkerID != worker || job.Attempt != ref.Attempt || (job.State != state.JobAssigned && job.State != state.JobRunning) {
		return attempt{}, refuse(CodeForbidden, "artifacts: worker %s does not run attempt %d of job %s", worker, ref.Attempt, ref.JobID)
	}
	run, err := s.st.GetRun(ctx, job.RunID)
	if err != nil {
		return attempt{}, err
	}
	var spec pipeline.JobSpec
	if err := json.Unmarshal(job.Spec, &spec); err != nil {
		return attempt{}, fmt.Errorf("job %s: spec: %w", job.ID, err)
	}
	a := attempt{job: job, run: run, spec: spec}
	if len(spec.Cache) > 0 {
		if a.scopes, err = s.cacheScopes(ctx, run); err != nil {
			return attempt{}, err
		}
	}
	return a, nil
}

// readable lists the artifacts the attempt receives: those of its needs
// (but the ones it opted out of), the latest attempt of each job and name;
// for a need carried over by a re-run, those of the job that ran it.
func (s *Service) readable(ctx context.Context, a attempt) ([]store.Artifact, error) {
	recs, err := s.st.ListArtifacts(ctx, store.ArtifactFilter{Kind: store.KindArtifact, RunID: a.run.ID})
	if err != nil {
		return nil, err
	}
	// A need a re-run carried over kept its artifacts in the run that ran
	// it: those of that job (and no other of that run) are read there.
	carried := map[string]string{} // job key to the job that ran it
	if rr, err := s.st.GetRerun(ctx, a.run.ID); err == nil {
		for _, c := range rr.Carried {
			if !slices.Contains(a.spec.Needs, c.JobKey) {
				continue
			}
			carried[c.JobKey] = c.FromJob
			more, err := s.st.ListArtifacts(ctx, store.ArtifactFilter{Kind: store.KindArtifact, RunID: c.FromRun})
			if err != nil {
				return nil, err
			}
			for _, r := range more {
				if r.JobID == c.FromJob {
					recs = append(recs, r)
				}
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	latest := make(map[string]store.Artifact)
	for _, r := range recs {
		if r.Tenant != a.run.Tenant || !slices.Contains(a.spec.Needs, r.JobKey) || slices.Contains(a.spec.NoArtifactsFrom, r.JobKey) {
			continue
		}
		if from, ok := carried[r.JobKey]; ok && r.JobID != from {
			continue
		}
		k := r.JobKey + "\x00" + r.Name
		if cur, ok := latest[k]; !ok || r.Attempt > cur.Attempt {
			latest[k] = r
		}
	}
	out := make([]store.Artifact, 0, len(latest))
	for _, r := range latest {
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y store.Artifact) int {
		if x.JobKey != y.JobKey {
			return cmpString(x.JobKey, y.JobKey)
		}
		return cmpString(x.Name, y.Name)
	})
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func entryOf(r store.Artifact) (Entry, error) {
	e := Entry{ID: r.ID, JobKey: r.JobKey, Name: r.Name, Size: r.Size}
	if err := json.Unmarshal(r.Files, &e.Files); err != nil {
		return e, fmt.Errorf("artifact %s: files: %w", r.ID, err)
	}
	return e, nil
}

func (s *Service) list(ctx context.Context, worker string, req ListRequest) (ListReply, error) {
	a, err := s.attempt(ctx, worker, req.AttemptRef)
	if err != nil {
		return ListReply{}, err
	}
	recs, err := s.readable(ctx, a)
	if err != nil {
		return ListReply{}, err
	}
	out := ListReply{Entries: []Entry{}}
	for _, r := range recs {
		e, err := entryOf(r)
		if err != nil {
			return ListReply{}, err
		}
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

// CacheScopes are the scopes a run's caches are looked up in, in order;
// the first is the one its caches are saved to, the others are only read.
// A run without a repository (tr nil: hodei run, hodei submit) has its
// tenant's one scope, "". A run from a repository has the scope of its
// ref, REPO:refs/heads/BRANCH (or REPO:refs/tags/TAG), then that of the
// repository's default branch. A pull request has a scope of its own,
// REPO:pull/N, then its target branch's, then the default branch's: it
// never writes where the runs of a branch read, so a change proposed by
// anyone cannot leave a poisoned cache for the default branch.
func CacheScopes(tr *store.Trigger, defaultBranch string) []string {
	if tr == nil || tr.Repo == "" {
		return []string{""}
	}
	branch := func(b string) string { return tr.Repo + ":refs/heads/" + b }
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	switch {
	case tr.Event == "pull_request" || tr.PR > 0:
		add(tr.Repo + ":pull/" + strconv.Itoa(tr.PR))
		if tr.Branch != "" {
			add(branch(tr.Branch))
		}
	case strings.HasPrefix(tr.Ref, "refs/heads/") || strings.HasPrefix(tr.Ref, "refs/tags/"):
		add(tr.Repo + ":" + tr.Ref)
	case tr.Branch != "":
		add(branch(tr.Branch))
	case tr.Tag != "":
		add(tr.Repo + ":refs/tags/" + tr.Tag)
	default:
		// A ref of another kind: a scope of its own all the same.
		add(tr.Repo + ":" + tr.Ref)
	}
	if defaultBranch != "" {
		add(branch(defaultBranch))
	}
	return out
}

// cacheScopes finds the trigger of a run and its repository's default
// branch, for CacheScopes.
func (s *Service) cacheScopes(ctx context.Context, run store.Run) ([]string, error) {
	trs, err := s.st.GetTriggers(ctx, []string{run.ID})
	if err != nil {
		return nil, fmt.Errorf("caches: trigger of run %s: %w", run.ID, err)
	}
	tr, ok := trs[run.ID]
	if !ok {
		return CacheScopes(nil, ""), nil
	}
	def := ""
	repo, err := s.st.GetRepo(ctx, run.Tenant, tr.Repo)
	switch {
	case err == nil:
		def = repo.DefaultBranch
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("caches: repository %s: %w", tr.Repo, err)
	}
	// A repository removed since: no fallback but the run's own scope.
	return CacheScopes(&tr, def), nil
}

// cacheID is the record ID of a cache entry: one per tenant, scope and key.
func cacheID(tenant, scope, key string) string {
	return "cache/" + tenant + "/" + scope + "/" + key
}

func (s *Service) cache(ctx context.Context, worker string, req CacheRequest) (CacheReply, error) {
	a, err := s.attempt(ctx, worker, req.AttemptRef)
	if err != nil {
		return CacheReply{}, err
	}
	rec, exact, err := s.findCache(ctx, a, req.Key, req.RestoreKeys)
	if err != nil {
		return CacheReply{}, err
	}
	switch {
	case rec == nil:
		s.caches.WithLabelValues("miss").Inc()
		return CacheReply{}, nil
	case exact:
		s.caches.WithLabelValues("hit").Inc()
	default:
		s.caches.WithLabelValues("partial").Inc()
	}
	e, err := entryOf(*rec)
	if err != nil {
		return CacheReply{}, err
	}
	return CacheReply{Entry: &e, Exact: exact}, nil
}

// findCache looks for the exact key, then for the newest entry of each
// restore key (a prefix) in turn, scope by scope.
func (s *Service) findCache(ctx context.Context, a attempt, key string, restore []string) (*store.Artifact, bool, error) {
	run := a.run
	for _, scope := range a.scopes {
		for i, prefix := range append([]string{key}, restore...) {
			recs, err := s.st.ListArtifacts(ctx, store.ArtifactFilter{Kind: store.KindCache, Tenant: run.Tenant, Scope: scope, NamePrefix: prefix, Limit: 50})
			if err != nil {
				return nil, false, err
			}
			for _, r := range recs {
				if r.Tenant != run.Tenant || r.Scope != scope || (i == 0 && r.Name != key) {
					continue
				}
				return &r, i == 0, nil
			}
		}
	}
	return nil, false, nil
}

func newSessionID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (s *Service) open(ctx context.Context, worker string, req OpenRequest) (OpenReply, error) {
	a, err := s.attempt(ctx, worker, req.AttemptRef)
	if err != nil {
		return OpenReply{}, err
	}
	var rec *store.Artifact
	recs, err := s.readable(ctx, a)
	if err != nil {
		return OpenReply{}, err
	}
	for i := range recs {
		if recs[i].ID == req.ID {
			rec = &recs[i]
		}
	}
	if rec == nil {
		for _, scope := range a.scopes {
			caches, err := s.st.ListArtifacts(ctx, store.ArtifactFilter{Kind: store.KindCache, Tenant: a.run.Tenant, Scope: scope, Limit: 10000})
			if err != nil {
				return OpenReply{}, err
			}
			for i := range caches {
				if caches[i].ID == req.ID && caches[i].Tenant == a.run.Tenant {
					rec = &caches[i]
				}
			}
		}
	}
	if rec == nil {
		return OpenReply{}, refuse(CodeForbidden, "artifacts: job %s may not read %q (not an artifact of a job it needs, nor a cache of its tenant)", a.spec.Key, req.ID)
	}
	rd, err := s.blobs.Get(ctx, rec.Object)
	if err != nil {
		return OpenReply{}, err
	}
	ch := readChunks(rd, chunkSize(s.nc))
	id := newSessionID()
	s.mu.Lock()
	s.sessions[id] = &session{worker: worker, used: s.now(), rd: rd, chunks: ch}
	s.mu.Unlock()
	return OpenReply{Session: id}, nil
}

// take returns the session id of worker's, or a refusal.
func (s *Service) take(worker, id string) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok || ss.worker != worker {
		return nil, refuse(CodeForbidden, "artifacts: no session %q of worker %s", id, worker)
	}
	ss.used = s.now()
	return ss, nil
}

// drop forgets a session; false if it was gone already (another request
// ended it).
func (s *Service) drop(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[id]
	delete(s.sessions, id)
	return ok
}

// read returns the next chunk of a download; the last one (possibly
// empty) carries HdrEOF.
func (s *Service) read(worker, id string) (*nats.Msg, error) {
	ss, err := s.take(worker, id)
	if err != nil || ss.rd == nil {
		if err == nil {
			err = refuse(CodeInvalid, "artifacts: session %q is not a download", id)
		}
		return nil, err
	}
	c, ok := <-ss.chunks
	if !ok || c.err != nil || c.eof {
		s.endSession(id)
	}
	switch {
	case !ok:
		return nil, refuse(CodeInvalid, "artifacts: session %q has ended", id)
	case c.err != nil:
		return nil, c.err
	}
	m := &nats.Msg{Data: c.data, Header: nats.Header{}}
	if c.eof {
		m.Header.Set(HdrEOF, "1")
	}
	return m, nil
}

func (s *Service) upload(ctx context.Context, worker string, req UploadRequest) (UploadReply, error) {
	a, err := s.attempt(ctx, worker, req.AttemptRef)
	if err != nil {
		return UploadReply{}, err
	}
	now := s.now()
	rec := store.Artifact{
		Kind: req.Kind, Tenant: a.run.Tenant, RunID: a.run.ID, JobID: a.job.ID, JobKey: a.spec.Key,
		Attempt: a.job.Attempt, Name: req.Name, CreatedAt: now,
	}
	switch req.Kind {
	case store.KindArtifact:
		if a.spec.Artifacts == nil || a.spec.Artifacts.Name != req.Name {
			return UploadReply{}, refuse(CodeForbidden, "artifacts: job %s declares no artifact %q", a.spec.Key, req.Name)
		}
		rec.ID = "artifact/" + a.job.ID + "/" + strconv.Itoa(a.job.Attempt) + "/" + req.Name
		exp := a.spec.Artifacts.ExpireIn
		if exp <= 0 {
			exp = s.lim.ExpireIn
		}
		rec.ExpiresAt = now.Add(exp)
	case store.KindCache:
		if len(a.spec.Cache) == 0 {
			return UploadReply{}, refuse(CodeForbidden, "artifacts: job %s declares no cache", a.spec.Key)
		}
		if req.Name == "" || len(req.Name) > 512 {
			return UploadReply{}, refuse(CodeInvalid, "artifacts: a cache key must have 1 to 512 characters")
		}
		rec.Scope = a.scopes[0]
		rec.ID = cacheID(rec.Tenant, rec.Scope, req.Name)
		rec.ExpiresAt = now.Add(s.lim.CacheExpireIn)
		if old, _, err := s.findCache(ctx, attempt{run: a.run, scopes: a.scopes[:1]}, req.Name, nil); err != nil {
			return UploadReply{}, err
		} else if old != nil && old.Scope == rec.Scope {
			return UploadReply{}, refuse(CodeExists, "artifacts: cache %q exists", req.Name)
		}
	default:
		return UploadReply{}, refuse(CodeInvalid, "artifacts: unknown kind %q", req.Kind)
	}
	// The budget of this upload: what the attempt has not used of the
	// job's limit, and what the tenant has not used of its own.
	mine, err := s.st.ListArtifacts(ctx, store.ArtifactFilter{RunID: a.run.ID})
	if err != nil {
		return UploadReply{}, err
	}
	var used int64
	for _, r := range mine {
		if r.JobID == a.job.ID && r.Attempt == a.job.Attempt {
			used += r.Size
		}
	}
	tenant, err := s.st.ArtifactBytes(ctx, rec.Tenant)
	if err != nil {
		return UploadReply{}, err
	}
	budget, limit := s.lim.MaxJobBytes-used, fmt.Sprintf("the limit of %s per job", humanBytes(s.lim.MaxJobBytes))
	if left := s.lim.MaxTenantBytes - tenant; left < budget {
		budget, limit = left, fmt.Sprintf("tenant %s's limit of %s (%s stored)", rec.Tenant, humanBytes(s.lim.MaxTenantBytes), humanBytes(tenant))
	}
	if budget <= 0 {
		return UploadReply{}, refuse(CodeTooLarge, "artifacts: %s %q of job %s is refused: %s is reached", req.Kind, req.Name, a.spec.Key, limit)
	}
	rec.Object = req.Kind + "/" + newSessionID()
	pr, pw := io.Pipe()
	done := make(chan putResult, 1)
	go func() {
		n, err := s.blobs.Put(context.WithoutCancel(ctx), rec.Object, pr)
		_ = pr.CloseWithError(err)
		done <- putResult{n, err}
	}()
	in, wrote := make(chan []byte, readAhead), make(chan error, 1)
	go func() {
		var err error
		for b := range in {
			if err == nil {
				_, err = pw.Write(b)
			}
		}
		wrote <- err
	}()
	id := newSessionID()
	s.mu.Lock()
	s.sessions[id] = &session{worker: worker, used: now, pw: pw, in: in, wrote: wrote, done: done, rec: rec, budget: budget, limit: limit}
	s.mu.Unlock()
	return UploadReply{Session: id}, nil
}

func (s *Service) put(worker, id string, data []byte) error {
	ss, err := s.take(worker, id)
	if err != nil {
		return err
	}
	if ss.pw == nil {
		return refuse(CodeInvalid, "artifacts: session %q is not an upload", id)
	}
	ss.written += int64(len(data))
	if ss.written > ss.budget {
		s.abort(id, ss)
		return refuse(CodeTooLarge, "artifacts: %s %q of job %s is over %s", ss.rec.Kind, ss.rec.Name, ss.rec.JobKey, ss.limit)
	}
	ss.inMu.Lock()
	if ss.ended {
		ss.inMu.Unlock()
		return refuse(CodeInvalid, "artifacts: session %q has ended", id)
	}
	select {
	case ss.in <- data:
		ss.inMu.Unlock()
		return nil
	case <-time.After(requestTimeout):
		ss.inMu.Unlock()
		s.abort(id, ss)
		return refuse(CodeFailed, "artifacts: the blob store takes no more of %s %q", ss.rec.Kind, ss.rec.Name)
	}
}

// closeIn ends what an upload takes.
func (ss *session) closeIn() {
	ss.inMu.Lock()
	defer ss.inMu.Unlock()
	if !ss.ended {
		ss.ended = true
		close(ss.in)
	}
}

// abort ends an upload without a record, and deletes what was stored.
func (s *Service) abort(id string, ss *session) {
	if !s.drop(id) {
		return
	}
	_ = ss.pw.CloseWithError(errors.New("upload aborted"))
	ss.closeIn()
	go func() {
		<-ss.wrote
		<-ss.done
		ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
		defer cancel()
		_ = s.blobs.Delete(ctx, ss.rec.Object)
	}()
}

func (s *Service) commit(ctx context.Context, worker string, req CommitRequest) (CommitReply, error) {
	ss, err := s.take(worker, req.Session)
	if err != nil {
		return CommitReply{}, err
	}
	if ss.pw == nil {
		return CommitReply{}, refuse(CodeInvalid, "artifacts: session %q is not an upload", req.Session)
	}
	if !s.drop(req.Session) {
		return CommitReply{}, refuse(CodeInvalid, "artifacts: session %q has ended", req.Session)
	}
	ss.closeIn()
	if err := <-ss.wrote; err != nil {
		<-ss.done
		return CommitReply{}, err
	}
	_ = ss.pw.Close()
	res := <-ss.done
	if res.err != nil {
		return CommitReply{}, res.err
	}
	files, err := json.Marshal(req.Files)
	if err != nil {
		return CommitReply{}, err
	}
	rec := ss.rec
	rec.Size, rec.Files = res.size, files
	// Two jobs may have saved at once: the tenant's limit is checked again.
	if tenant, err := s.st.ArtifactBytes(ctx, rec.Tenant); err == nil && tenant+rec.Size > s.lim.MaxTenantBytes {
		_ = s.blobs.Delete(ctx, rec.Object)
		return CommitReply{}, refuse(CodeTooLarge, "artifacts: %s %q of job %s is over tenant %s's limit of %s", rec.Kind, rec.Name, rec.JobKey, rec.Tenant, humanBytes(s.lim.MaxTenantBytes))
	}
	if err := s.st.PutArtifact(ctx, rec); err != nil {
		_ = s.blobs.Delete(ctx, rec.Object)
		if errors.Is(err, store.ErrConflict) {
			return CommitReply{Exists: true}, nil
		}
		return CommitReply{}, err
	}
	return CommitReply{Size: rec.Size}, nil
}

// reap ends the sessions idle for too long (an agent that died mid-way).
func (s *Service) reap() {
	s.mu.Lock()
	var idle []string
	for id, ss := range s.sessions {
		if s.now().Sub(ss.used) > sessionIdle {
			idle = append(idle, id)
		}
	}
	s.mu.Unlock()
	for _, id := range idle {
		s.endSession(id)
	}
}

func (s *Service) endSession(id string) {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss == nil {
		return
	}
	if ss.pw != nil {
		s.abort(id, ss)
		return
	}
	if s.drop(id) {
		_ = ss.rd.Close()
		// The read-ahead goroutine ends on the closed reader.
		go func() {
			for range ss.chunks {
			}
		}()
	}
}

func (s *Service) closeSessions() {
	s.mu.Lock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.endSession(id)
	}
}

// humanBytes writes a size in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}
