// Package repos turns a forge's webhook into runs: it finds the
// repository the webhook is for, checks its signature with the
// repository's webhook secret, fetches the commit into a bare mirror,
// reads the pipeline files of that commit (.hodei.yaml and .hodei/*.yaml),
// and submits one run per file whose `on:` matches the event, each job
// set to check the commit out. A delivery id is recorded first, so that a
// redelivery starts nothing. It then posts the commit statuses of those
// runs as they end (status.go). Cron (cron.go) makes the runs of the
// files' schedules, one per firing.
package repos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/secrets"
	"github.com/hodei-ci/hodei/internal/store"
)

// Errors of Service.
var (
	ErrNotFound     = errors.New("no such repository")
	ErrWrongForge   = errors.New("the repository is on another forge")
	ErrInvalidRepo  = errors.New("invalid repository")
	ErrFetch        = errors.New("cannot fetch the commit")
	ErrNoSecretRead = errors.New("cannot read the repository's secret")
)

// Submitter stores a run (the orchestrator).
type Submitter interface {
	Submit(ctx context.Context, req orchestrator.SubmitRequest) (store.Run, error)
}

// Service handles repositories and their webhooks.
type Service struct {
	Store   store.Store
	Secrets secrets.Provider // nil: no repository may name a secret
	Orch    Submitter
	Mirrors *Mirrors
	Limits  pipeline.Limits
	Status  *Reporter // nil: no commit statuses
	Log     *slog.Logger
	Now     func() time.Time
}

// namePattern is compiled at its first use: its counted repetition makes a
// large program, which every start of the binary would pay for.
var namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`) })

// ValidName reports whether s can name a repository (it is a path
// segment of URLs and of the mirror's directory).
func ValidName(s string) bool { return namePattern().MatchString(s) && !strings.Contains(s, "..") }

// Check validates a repository before it is stored and fills in its
// defaults.
func Check(r *store.Repo) error {
	if !ValidName(r.Name) {
		return fmt.Errorf("%w: name %q: use letters, digits, '.', '_' and '-'", ErrInvalidRepo, r.Name)
	}
	k, err := forge.ParseKind(r.Forge)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRepo, err)
	}
	if r.URL == "" || strings.HasPrefix(r.URL, "-") {
		return fmt.Errorf("%w: url is required", ErrInvalidRepo)
	}
	if k != forge.Git {
		if r.APIURL == "" {
			if _, err := forge.APIBase(k, r.URL); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidRepo, err)
			}
		}
		if _, err := forge.RepoPath(r.URL); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidRepo, err)
		}
	}
	for _, s := range []string{r.TokenSecret, r.WebhookSecret} {
		if s != "" && !secrets.ValidName(s) {
			return fmt.Errorf("%w: secret name %q", ErrInvalidRepo, s)
		}
	}
	if r.DefaultBranch == "" {
		r.DefaultBranch = "main"
	}
	return nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Secret reads a secret of a tenant by name ("" when name is "").
func (s *Service) Secret(ctx context.Context, tenant, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	if s.Secrets == nil {
		return "", fmt.Errorf("%w %s: this server has no secrets backend", ErrNoSecretRead, name)
	}
	v, err := s.Secrets.Get(ctx, secrets.Qualify(tenant, name))
	if err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrNoSecretRead, name, err)
	}
	return v.Value, nil
}

// repo reads a repository; ErrNotFound when the tenant has none of that
// name.
func (s *Service) repo(ctx context.Context, tenant, name string) (store.Repo, error) {
	repo, err := s.Store.GetRepo(ctx, tenant, name)
	if errors.Is(err, store.ErrNotFound) {
		return repo, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return repo, err
}

// HookResult is what a webhook did.
type HookResult struct {
	Event forge.Event
	// Delivery is the key the delivery was claimed under
	// (forge.DeliveryKey): a second delivery with the same key is a
	// duplicate.
	Delivery string
	// Duplicate: the delivery was seen before and started nothing; RunIDs
	// are then the runs it started the first time.
	Duplicate bool
	RunIDs    []string
	// Files are the pipeline files of the commit, Matched those whose
	// `on:` took the event; Errors the files that did not parse (each
	// message names the file, line and column).
	Files   []string
	Matched []string
	Errors  []string
}

// Hook handles one webhook of a tenant's repository. Its errors wrap
// ErrNotFound, ErrWrongForge, forge.ErrSignature, forge.ErrIgnored (no
// run: not an event that starts runs), forge.ErrMalformed, ErrFetch or
// ErrNoSecretRead.
func (s *Service) Hook(ctx context.Context, tenant, name, kind string, h http.Header, body []byte) (HookResult, error) {
	var res HookResult
	repo, err := s.repo(ctx, tenant, name)
	if err != nil {
		return res, err
	}
	if repo.Forge != kind {
		return res, fmt.Errorf("%w: %s is on %s, not %s", ErrWrongForge, name, repo.Forge, kind)
	}
	k := forge.Kind(kind)
	secret, err := s.Secret(ctx, tenant, repo.WebhookSecret)
	if errors.Is(err, secrets.ErrNotFound) {
		// Nothing to check the signature against: refused as unsigned.
		return res, fmt.Errorf("%w: %w", forge.ErrSignature, err)
	}
	if err != nil {
		return res, err
	}
	if err := forge.Verify(k, h, body, secret); err != nil {
		return res, err
	}
	ev, err := forge.Parse(k, h, body)
	res.Event = ev
	if err != nil {
		return res, err
	}
	res.Delivery = forge.DeliveryKey(k, h, body)
	return s.run(ctx, repo, ev, res)
}

// Manual starts a manual run of a tenant's repository at ref (a branch, a
// tag, or a full ref; "" for the default branch): one run per pipeline
// file whose `on:` takes manual runs. Its errors wrap ErrNotFound,
// ErrFetch or ErrNoSecretRead.
func (s *Service) Manual(ctx context.Context, tenant, name, ref string) (HookResult, error) {
	var res HookResult
	repo, err := s.repo(ctx, tenant, name)
	if err != nil {
		return res, err
	}
	if ref == "" {
		ref = repo.DefaultBranch
	}
	token, err := s.Secret(ctx, repo.Tenant, repo.TokenSecret)
	if err != nil {
		return res, err
	}
	mi, err := s.Mirrors.Open(ctx, repo.Tenant, repo.Name, Remote{URL: repo.URL, User: forge.AuthUser(forge.Kind(repo.Forge)), Token: token})
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	full, commit, err := mi.Resolve(ctx, ref)
	mi.Close()
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	ev := forge.Event{Kind: pipeline.EventManual, Ref: full, Commit: commit}
	if b, ok := strings.CutPrefix(full, "refs/heads/"); ok {
		ev.Branch = b
	} else if tg, ok := strings.CutPrefix(full, "refs/tags/"); ok {
		ev.Tag = tg
	}
	res.Event = ev
	res.Delivery = "manual:" + strconv.FormatInt(s.now().UnixNano(), 10)
	return s.run(ctx, repo, ev, res)
}

// run fetches the event's commit, claims the delivery and submits the
// matching pipelines.
func (s *Service) run(ctx context.Context, repo store.Repo, ev forge.Event, res HookResult) (HookResult, error) {
	token, err := s.Secret(ctx, repo.Tenant, repo.TokenSecret)
	if err != nil {
		return res, err
	}
	k := forge.Kind(repo.Forge)
	mi, err := s.Mirrors.Open(ctx, repo.Tenant, repo.Name, Remote{URL: repo.URL, User: forge.AuthUser(k), Token: token})
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	defer mi.Close()
	refs := []string{ev.Ref}
	if ev.Kind == pipeline.EventPullRequest && ev.Branch != "" {
		refs = append(refs, "refs/heads/"+ev.Branch)
	}
	if err := mi.Fetch(ctx, ev.Commit, refs...); err != nil {
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	// An annotated tag's push names the tag's object: the run, its
	// checkout and its statuses are of the commit it points to.
	peeled, err := mi.Peel(ctx, ev.Commit)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	ev.Commit = peeled
	res.Event.Commit = peeled
	files, err := mi.Pipelines(ctx, ev.Commit)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	changed := ev.Changed
	switch {
	case changed != nil:
	case ev.Kind == pipeline.EventPush && ev.Before != "" && mi.Has(ctx, ev.Before):
		changed, _ = mi.Changed(ctx, ev.Before, ev.Commit)
	case ev.Kind == pipeline.EventPullRequest:
		changed, _ = mi.Changed(ctx, "refs/heads/"+ev.Branch+"..."+ev.Commit)
	}
	pev := pipeline.Event{Kind: ev.Kind, Branch: ev.Branch, Tag: ev.Tag, Changed: changed}

	type sub struct {
		file  File
		p     *pipeline.Pipeline
		specs []pipeline.JobSpec
	}
	var subs []sub
	for _, f := range files {
		res.Files = append(res.Files, f.Path)
		// Included files are read from the same commit, and kept with
		// the run.
		load := func(name string) ([]byte, error) {
			return mi.ReadFile(ctx, ev.Commit, name, s.Limits.WithDefaults().MaxFileBytes)
		}
		p, err := pipeline.ParseWith(f.Path, f.Data, s.Limits, load)
		if err == nil && !p.On.Matches(pev) {
			continue
		}
		var specs []pipeline.JobSpec
		if err == nil {
			p, specs, err = expand(repo, ev, p)
		}
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		res.Matched = append(res.Matched, f.Path)
		subs = append(subs, sub{f, p, specs})
	}

	prev, fresh, err := s.Store.ClaimDelivery(ctx, store.Delivery{Tenant: repo.Tenant, Repo: repo.Name, ID: res.Delivery, At: s.now()})
	if err != nil {
		return res, err
	}
	if !fresh {
		res.Duplicate, res.RunIDs = true, prev.RunIDs
		return res, nil
	}
	for _, sb := range subs {
		tr := store.Trigger{Repo: repo.Name, Commit: ev.Commit, Ref: ev.Ref, Event: ev.Kind, Branch: ev.Branch, Tag: ev.Tag, PR: ev.PR, Delivery: res.Delivery}
		run, err := s.submit(ctx, repo, tr, sb.p, sb.specs, sb.file.Data, nil)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", sb.file.Path, err))
			continue
		}
		res.RunIDs = append(res.RunIDs, run.ID)
	}
	if err := s.Store.SetDeliveryRuns(ctx, repo.Tenant, repo.Name, res.Delivery, res.RunIDs); err != nil {
		s.log().Warn("record the runs of a delivery", "repo", repo.Name, "delivery", res.Delivery, "err", err)
	}
	return res, nil
}

// expand makes the jobs of a run of p for the event: its inputs'
// defaults, and the trigger in its hodei context.
func expand(repo store.Repo, ev forge.Event, p *pipeline.Pipeline) (*pipeline.Pipeline, []pipeline.JobSpec, error) {
	inputs, err := pipeline.ResolveInputs(p, nil)
	if err != nil {
		return nil, nil, err
	}
	rc := pipeline.RunContext{Event: ev.Kind, Ref: ev.Ref, Branch: ev.Branch, Tag: ev.Tag, PR: ev.PR, Commit: ev.Commit, Repo: repo.Name, Inputs: inputs}
	specs, err := pipeline.ExpandRun(p, rc)
	if err != nil {
		return nil, nil, err
	}
	if p, err = p.ForRun(rc); err != nil {
		return nil, nil, err
	}
	return p, specs, nil
}

// submit makes a run of a repository's pipeline file with its trigger
// (and, for a schedule's, its claimed firing) and reports it pending.
func (s *Service) submit(ctx context.Context, repo store.Repo, tr store.Trigger, p *pipeline.Pipeline, specs []pipeline.JobSpec, source []byte, f *store.Firing) (store.Run, error) {
	Prepare(repo, tr, specs)
	run, err := s.Orch.Submit(ctx, orchestrator.SubmitRequest{Pipeline: p, Jobs: specs, Source: source, Tenant: repo.Tenant, Trigger: &tr, Firing: f})
	if err != nil {
		return run, err
	}
	tr.RunID = run.ID
	if s.Status != nil {
		s.Status.Report(repo, tr, run.File, forge.StatePending)
	}
	return run, nil
}

// Prepare sets every job of a run from a repository to check out its
// commit (unless the job says checkout: false) and gives it the HODEI_*
// variables of the trigger.
func Prepare(repo store.Repo, tr store.Trigger, specs []pipeline.JobSpec) {
	for i := range specs {
		sp := &specs[i]
		c := sp.Checkout
		if c == nil {
			c = &pipeline.Checkout{Depth: pipeline.DefaultCheckoutDepth}
		}
		if !c.Disabled {
			c.URL, c.Commit, c.Ref = repo.URL, tr.Commit, tr.Ref
			c.TokenSecret, c.AuthUser = repo.TokenSecret, forge.AuthUser(forge.Kind(repo.Forge))
		}
		sp.Checkout = c
		env := make(map[string]string, len(sp.Env)+8)
		for k, v := range sp.Env {
			env[k] = v
		}
		env["HODEI_REPO"] = repo.Name
		env["HODEI_REPO_URL"] = repo.URL
		env["HODEI_COMMIT"] = tr.Commit
		env["HODEI_REF"] = tr.Ref
		env["HODEI_BRANCH"] = tr.Branch
		env["HODEI_TAG"] = tr.Tag
		env["HODEI_EVENT"] = tr.Event
		env["HODEI_PR"] = ""
		if tr.PR > 0 {
			env["HODEI_PR"] = strconv.Itoa(tr.PR)
		}
		sp.Env = env
	}
}
