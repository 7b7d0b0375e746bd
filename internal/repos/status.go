package repos

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Reporter posts the commit statuses of runs from repositories: pending
// when a run is accepted (Report, called by Service), then the final state
// when the orchestrator announces that the run ended (Watch follows the
// hub: the run's own state changes drive it, nothing else decides). Each
// post, and why it failed, is kept as a store.StatusReport: a status the
// forge did not take never fails the run, it is visible on it.
type Reporter struct {
	Store   store.Store
	Secrets func(ctx context.Context, tenant, name string) (string, error)
	Poster  *forge.Poster
	// PublicURL is the server's address as the forge's users reach it;
	// each status links to PublicURL/api/v1/runs/ID.
	PublicURL string
	Log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu    sync.Mutex
	posts map[string]*runPosts // by run id, until both statuses are handled
}

// runPosts orders the posts of one run: the final status may be known
// before the pending one is sent (a run that ends at once), and a pending
// sent after it would show the run as still going.
type runPosts struct {
	mu                 sync.Mutex
	pending, finalDone bool
}

func (r *Reporter) postsOf(runID string) *runPosts {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.posts == nil {
		r.posts = map[string]*runPosts{}
	}
	p := r.posts[runID]
	if p == nil {
		p = &runPosts{}
		r.posts[runID] = p
	}
	return p
}

func (r *Reporter) init() {
	r.once.Do(func() {
		r.ctx, r.cancel = context.WithCancel(context.Background())
		if r.Log == nil {
			r.Log = slog.Default()
		}
		if r.Poster == nil {
			r.Poster = &forge.Poster{}
		}
	})
}

// Close stops the posts under way (their retries) and waits for them.
func (r *Reporter) Close() {
	r.init()
	r.cancel()
	r.wg.Wait()
}

// Context is the name of a pipeline file's check on the forge.
func Context(file string) string { return "hodei/" + file }

// StateOf is the final commit status of a run's final state.
func StateOf(s state.RunState) string {
	switch s {
	case state.RunSucceeded:
		return forge.StateSuccess
	case state.RunCanceled:
		return forge.StateCanceled
	}
	return forge.StateFailure
}

var descriptions = map[string]string{
	forge.StatePending:  "queued",
	forge.StateSuccess:  "succeeded",
	forge.StateFailure:  "failed",
	forge.StateCanceled: "canceled",
}

// Report posts one status of a run in the background and records how it
// went. A repository on a plain git server takes no status.
func (r *Reporter) Report(repo store.Repo, tr store.Trigger, file, st string) {
	r.init()
	if repo.Forge == string(forge.Git) || repo.Forge == "" {
		return
	}
	rp := r.postsOf(tr.RunID)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		rp.mu.Lock()
		defer rp.mu.Unlock()
		if st == forge.StatePending {
			rp.pending = true
		} else {
			rp.finalDone = true
		}
		if rp.pending && rp.finalDone {
			r.mu.Lock()
			delete(r.posts, tr.RunID)
			r.mu.Unlock()
		}
		if st == forge.StatePending && rp.finalDone {
			return // the run has ended and said so
		}
		err := r.post(repo, tr, file, st)
		rep := store.StatusReport{RunID: tr.RunID, State: st, At: time.Now()}
		if err != nil {
			rep.Error = err.Error()
			r.Log.Warn("commit status not posted", "run", tr.RunID, "repo", repo.Name, "state", st, "err", err)
		}
		if err := r.Store.AddStatusReport(context.Background(), rep); err != nil {
			r.Log.Warn("record a commit status", "run", tr.RunID, "err", err)
		}
	}()
}

func (r *Reporter) post(repo store.Repo, tr store.Trigger, file, st string) error {
	k := forge.Kind(repo.Forge)
	base := repo.APIURL
	var err error
	if base == "" {
		if base, err = forge.APIBase(k, repo.URL); err != nil {
			return err
		}
	}
	path, err := forge.RepoPath(repo.URL)
	if err != nil {
		return err
	}
	token := ""
	if r.Secrets != nil {
		if token, err = r.Secrets(r.ctx, repo.Tenant, repo.TokenSecret); err != nil {
			return err
		}
	}
	ref := tr.Branch
	if tr.Event == "tag" {
		ref = tr.Tag
	}
	return r.Poster.Post(r.ctx, forge.Status{
		Kind: k, APIBase: base, Repo: path, Token: token, SHA: tr.Commit, State: st,
		Context: Context(file), TargetURL: strings.TrimRight(r.PublicURL, "/") + "/api/v1/runs/" + tr.RunID,
		Description: "hodei: " + descriptions[st], Ref: ref,
	})
}

// Watch follows the runs the orchestrator announces on h until ctx ends,
// and reports the final status of each run from a repository as it ends.
// It first reports those that ended without one (while the server was
// down, or while it lagged behind the hub).
func (r *Reporter) Watch(ctx context.Context, h *hub.Hub) {
	r.init()
	for ctx.Err() == nil {
		sub := h.Subscribe("", 4096)
		r.catchUp(ctx)
		r.follow(ctx, sub)
		sub.Close()
	}
}

func (r *Reporter) follow(ctx context.Context, sub *hub.Sub) {
	for {
		select {
		case <-ctx.Done():
			return
		case n, ok := <-sub.C:
			if !ok {
				return // lagged: catch up from the store
			}
			if n.Kind == hub.KindRun && n.RunState.Final() {
				r.ended(ctx, n.RunID)
			}
		}
	}
}

// ended reports the final status of a run, if it came from a repository.
func (r *Reporter) ended(ctx context.Context, runID string) {
	trs, err := r.Store.GetTriggers(ctx, []string{runID})
	tr, ok := trs[runID]
	if err != nil || !ok {
		return
	}
	run, err := r.Store.GetRun(ctx, runID)
	if err != nil {
		r.Log.Warn("commit status: read run", "run", runID, "err", err)
		return
	}
	r.final(ctx, run, tr)
}

func (r *Reporter) final(ctx context.Context, run store.Run, tr store.Trigger) {
	repo, err := r.Store.GetRepo(ctx, run.Tenant, tr.Repo)
	if err != nil {
		r.Log.Warn("commit status: repository gone", "run", run.ID, "repo", tr.Repo, "err", err)
		return
	}
	r.Report(repo, tr, run.File, StateOf(run.State))
}

// catchUpWindow is how many of the latest runs catchUp looks at.
const catchUpWindow = 200

// catchUp reports the final status of the recent runs from repositories
// that ended and have none recorded.
func (r *Reporter) catchUp(ctx context.Context) {
	runs, err := r.Store.ListRuns(ctx, store.RunFilter{Limit: catchUpWindow})
	if err != nil {
		r.Log.Warn("commit status: list runs", "err", err)
		return
	}
	ids := make([]string, 0, len(runs))
	for _, run := range runs {
		if run.State.Final() {
			ids = append(ids, run.ID)
		}
	}
	trs, err := r.Store.GetTriggers(ctx, ids)
	if err != nil {
		r.Log.Warn("commit status: triggers", "err", err)
		return
	}
	for _, run := range runs {
		tr, ok := trs[run.ID]
		if !ok {
			continue
		}
		reps, err := r.Store.ListStatusReports(ctx, run.ID)
		if err != nil {
			continue
		}
		done := false
		for _, rep := range reps {
			if rep.State != forge.StatePending {
				done = true
			}
		}
		if !done {
			r.final(ctx, run, tr)
		}
	}
}
