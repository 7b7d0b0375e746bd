package repos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/store"
)

// Defaults of Cron.
const (
	// DefaultCronRefresh is how often the schedules of each repository
	// are read again from the head of its default branch.
	DefaultCronRefresh = 5 * time.Minute
	// DefaultCronGrace is how late a firing may be seen and still be on
	// time; later, it was missed (while no server ran).
	DefaultCronGrace = 2 * time.Minute
	// DefaultCronResumeAfter is how long a firing may stay claimed without
	// its run before Cron makes the run: its maker (this server before a
	// restart, or another one) stopped between the two.
	DefaultCronResumeAfter = 2 * time.Minute
	// DefaultCronTick is how often Run looks for firings that are due.
	DefaultCronTick = 15 * time.Second
	// maxCatchUp bounds the firings stepped over to find the latest one
	// missed (a year of a schedule of every minute).
	maxCatchUp = 600_000
)

// Cron makes the runs of the schedules (`on: schedule`) of the pipeline
// files of every repository. It reads the schedules from the files at
// the head of each repository's default branch, and for each firing
// that is due: it records the firing in the store (keyed by repository,
// file, schedule and time: a second try or a second server makes
// nothing), then submits a run of the file at the head of the schedule's
// branch, whose transaction records the run on the firing. A firing
// claimed whose run was not committed after ResumeAfter (its server
// stopped between the two) is made then, by whichever Cron sees it, so
// that each firing makes exactly one run (unless a server takes longer
// than ResumeAfter to have a run stored).
//
// The firings missed while no server ran make one run, of the latest of
// them, when Cron starts again (`missed: run_once`), or none (`missed:
// skip`). A schedule is counted from when it was first seen (a firing of
// kind store.FiringSeen).
//
// A Cron runs where the orchestrator's loop runs (the server starts it
// with the orchestrator): one goroutine calls Tick (Run does), and owns
// every field.
type Cron struct {
	Svc *Service
	// Now is the clock (time.Now when nil): tests move it.
	Now         func() time.Time
	Refresh     time.Duration // DefaultCronRefresh when zero
	Grace       time.Duration // DefaultCronGrace when zero
	ResumeAfter time.Duration // DefaultCronResumeAfter when zero
	Log         *slog.Logger

	entries     map[string][]cronEntry // by tenant/repo
	lastRefresh time.Time
	cursors     map[string]time.Time // last firing of each schedule
}

// cronEntry is one schedule of one file of a repository.
type cronEntry struct {
	repo  store.Repo
	file  string
	sched *pipeline.Schedule
}

func (e cronEntry) key() string {
	return e.repo.Tenant + "\x00" + e.repo.Name + "\x00" + e.file + "\x00" + e.sched.Key()
}

func (c *Cron) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

func (c *Cron) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return c.Svc.log()
}

// Run calls Tick at once and then at every tick until ctx ends.
func (c *Cron) Run(ctx context.Context, tick <-chan time.Time) {
	for {
		c.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// Tick makes what is due now: first the runs of the firings claimed and
// left without a run for longer than ResumeAfter, then a new reading of
// the schedules if the last one is older than Refresh, then the firings
// that are due. Errors are logged; what failed is tried again at the next
// tick.
func (c *Cron) Tick(ctx context.Context) {
	if c.cursors == nil {
		c.cursors = make(map[string]time.Time)
		c.entries = make(map[string][]cronEntry)
	}
	now := c.now()
	if err := c.resume(ctx, now); err != nil {
		c.log().Warn("cron: firings left without their run", "err", err)
	}
	refresh := c.Refresh
	if refresh <= 0 {
		refresh = DefaultCronRefresh
	}
	if c.lastRefresh.IsZero() || now.Sub(c.lastRefresh) >= refresh {
		c.refresh(ctx)
		c.lastRefresh = now
	}
	for _, es := range c.entries {
		for _, e := range es {
			if ctx.Err() != nil {
				return
			}
			if err := c.due(ctx, e, now); err != nil {
				c.log().Warn("cron: firing", "tenant", e.repo.Tenant, "repo", e.repo.Name, "file", e.file, "cron", e.sched.Cron, "err", err)
			}
		}
	}
}

// resume makes the runs of the firings claimed longer than ResumeAfter
// ago whose run's transaction never committed: the server that claimed
// them stopped before (Tick makes its own firings before it returns).
func (c *Cron) resume(ctx context.Context, now time.Time) error {
	pending, err := c.Svc.Store.PendingFirings(ctx)
	if err != nil {
		return err
	}
	after := c.ResumeAfter
	if after <= 0 {
		after = DefaultCronResumeAfter
	}
	for _, f := range pending {
		if now.Sub(f.RecordedAt) < after {
			continue
		}
		repo, err := c.Svc.repo(ctx, f.Tenant, f.Repo)
		if err != nil {
			c.fail(ctx, f, err)
			continue
		}
		c.log().Info("cron: making the run of a firing left without it", "repo", f.Repo, "file", f.File, "at", f.At)
		c.fire(ctx, repo, f)
	}
	return nil
}

// refresh reads the schedules of every repository from the head of its
// default branch. A repository that cannot be read keeps the schedules
// read before.
func (c *Cron) refresh(ctx context.Context) {
	repos, err := c.Svc.Store.ListAllRepos(ctx)
	if err != nil {
		c.log().Warn("cron: list repositories", "err", err)
		return
	}
	next := make(map[string][]cronEntry, len(repos))
	for _, r := range repos {
		k := r.Tenant + "/" + r.Name
		es, err := c.read(ctx, r)
		if err != nil {
			c.log().Warn("cron: read the schedules of a repository", "tenant", r.Tenant, "repo", r.Name, "err", err)
			next[k] = c.entries[k]
			continue
		}
		next[k] = es
	}
	c.entries = next
}

// read returns the schedules of a repository's files at the head of its
// default branch.
func (c *Cron) read(ctx context.Context, r store.Repo) ([]cronEntry, error) {
	_, commit, files, err := c.files(ctx, r, r.DefaultBranch)
	if err != nil {
		return nil, err
	}
	var out []cronEntry
	for _, f := range files {
		p, err := pipeline.ParseWithLimits(f.Path, f.Data, c.Svc.Limits)
		if err != nil {
			c.log().Warn("cron: a pipeline file does not parse", "repo", r.Name, "commit", commit, "err", err)
			continue
		}
		if p.On == nil {
			continue
		}
		for _, s := range p.On.Schedules {
			out = append(out, cronEntry{repo: r, file: f.Path, sched: s})
		}
	}
	return out, nil
}

// files fetches a branch into the repository's mirror and reads the
// pipeline files of its head.
func (c *Cron) files(ctx context.Context, r store.Repo, branch string) (ref, commit string, files []File, err error) {
	token, err := c.Svc.Secret(ctx, r.Tenant, r.TokenSecret)
	if err != nil {
		return "", "", nil, err
	}
	mi, err := c.Svc.Mirrors.Open(ctx, r.Tenant, r.Name, Remote{URL: r.URL, User: forge.AuthUser(forge.Kind(r.Forge)), Token: token})
	if err != nil {
		return "", "", nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer mi.Close()
	if ref, commit, err = mi.Resolve(ctx, "refs/heads/"+branch); err != nil {
		return "", "", nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	if files, err = mi.Pipelines(ctx, commit); err != nil {
		return "", "", nil, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	return ref, commit, files, nil
}

// due claims and makes the firing of a schedule that is due at now, if
// one is: the latest firing since the last one recorded.
func (c *Cron) due(ctx context.Context, e cronEntry, now time.Time) error {
	k := e.key()
	cur, ok := c.cursors[k]
	if !ok {
		last, err := c.Svc.Store.LastFiring(ctx, e.repo.Tenant, e.repo.Name, e.file, e.sched.Key())
		switch {
		case errors.Is(err, store.ErrNotFound):
			// A new schedule counts from now.
			f := c.firing(e, now, store.FiringSeen, now)
			if _, err := c.Svc.Store.ClaimFiring(ctx, f); err != nil {
				return err
			}
			c.cursors[k] = now
			return nil
		case err != nil:
			return err
		}
		cur = last.At
		c.cursors[k] = cur
	}
	latest := e.sched.Next(cur)
	if latest.IsZero() || latest.After(now) {
		return nil
	}
	for i := 0; i < maxCatchUp; i++ {
		n := e.sched.Next(latest)
		if n.IsZero() || n.After(now) {
			break
		}
		latest = n
	}
	grace := c.Grace
	if grace <= 0 {
		grace = DefaultCronGrace
	}
	kind := store.FiringRun
	missed := now.Sub(latest) > grace
	if missed && e.sched.Missed == pipeline.MissedSkip {
		kind = store.FiringSkipped
	}
	f := c.firing(e, latest, kind, now)
	claimed, err := c.Svc.Store.ClaimFiring(ctx, f)
	if err != nil {
		return err
	}
	c.cursors[k] = latest
	if !claimed {
		return nil // made by an earlier try
	}
	if kind == store.FiringSkipped {
		c.log().Info("cron: missed firing skipped", "repo", e.repo.Name, "file", e.file, "cron", e.sched.Cron, "at", latest)
		return nil
	}
	if missed {
		c.log().Info("cron: missed firing run once", "repo", e.repo.Name, "file", e.file, "cron", e.sched.Cron, "at", latest)
	}
	c.fire(ctx, e.repo, f)
	return nil
}

func (c *Cron) firing(e cronEntry, at time.Time, kind string, now time.Time) store.Firing {
	return store.Firing{Tenant: e.repo.Tenant, Repo: e.repo.Name, File: e.file, Schedule: e.sched.Key(), At: at, Kind: kind, RecordedAt: now}
}

// scheduleBranch is the branch of a schedule's key ("" for the default
// branch): the key is cron|branch|timezone, and neither a cron nor a
// timezone holds a '|'.
func scheduleBranch(key string) string {
	_, rest, _ := strings.Cut(key, "|")
	if i := strings.LastIndex(rest, "|"); i >= 0 {
		return rest[:i]
	}
	return rest
}

// fire makes the run of a claimed firing: the file at the head of the
// schedule's branch, with event schedule.
func (c *Cron) fire(ctx context.Context, repo store.Repo, f store.Firing) {
	branch := scheduleBranch(f.Schedule)
	if branch == "" {
		branch = repo.DefaultBranch
	}
	ref, commit, files, err := c.files(ctx, repo, branch)
	if err != nil {
		c.fail(ctx, f, err)
		return
	}
	var data []byte
	for _, fl := range files {
		if fl.Path == f.File {
			data = fl.Data
		}
	}
	if data == nil {
		c.fail(ctx, f, fmt.Errorf("no pipeline file %s on branch %s at %s", f.File, branch, commit))
		return
	}
	p, err := pipeline.ParseWithLimits(f.File, data, c.Svc.Limits)
	if err != nil {
		c.fail(ctx, f, err)
		return
	}
	ev := forge.Event{Kind: pipeline.EventSchedule, Ref: ref, Branch: branch, Commit: commit}
	p, specs, err := expand(repo, ev, p)
	if err != nil {
		c.fail(ctx, f, err)
		return
	}
	tr := store.Trigger{Repo: repo.Name, Commit: commit, Ref: ref, Event: pipeline.EventSchedule, Branch: branch,
		Delivery: "schedule:" + f.File + ":" + f.Schedule + "@" + f.At.Format(time.RFC3339)}
	run, err := c.Svc.submit(ctx, repo, tr, p, specs, data, &f)
	if err != nil {
		c.fail(ctx, f, err)
		return
	}
	c.log().Info("cron: run made", "repo", repo.Name, "file", f.File, "cron", f.Schedule, "at", f.At, "run", run.ID)
}

// fail records why a firing made no run, unless the server is stopping
// (then the firing stays claimed, and is made when it starts again).
func (c *Cron) fail(ctx context.Context, f store.Firing, err error) {
	if ctx.Err() != nil || errors.Is(err, orchestrator.ErrStopped) {
		return
	}
	c.log().Warn("cron: the firing made no run", "repo", f.Repo, "file", f.File, "cron", f.Schedule, "at", f.At, "err", err)
	if err := c.Svc.Store.SetFiringError(ctx, f, err.Error()); err != nil {
		c.log().Warn("cron: record the error of a firing", "err", err)
	}
}
