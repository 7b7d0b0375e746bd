package api

// Repository and webhook endpoints (see docs/triggers.md):
//
//	GET    /api/v1/repos                  the repositories of a tenant
//	POST   /api/v1/repos                  add one: JSON wire.Repo (name, url, forge, token_secret, webhook_secret, default_branch, api_url)
//	GET    /api/v1/repos/{name}           one repository
//	DELETE /api/v1/repos/{name}           remove it
//	POST   /api/v1/repos/{name}/runs      a manual run at a ref: JSON {"ref"} ("" for the default branch)
//	POST   /api/v1/hooks/{forge}/{repo}   a forge's webhook (?tenant= for another tenant than the default)
//
// The tenant is ?tenant=, else the caller's, else the default one. The
// webhook endpoint takes no bearer token: the forge's signature with the
// repository's webhook secret authenticates it, and every delivery is
// audited as principal "webhook:FORGE".

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/store"
)

// maxHookBody bounds a webhook's body (GitHub caps its payloads at 25 MB).
const maxHookBody = 25 << 20

// hookPrefix starts the path of webhooks, which skip bearer authentication.
const hookPrefix = "/api/v1/hooks/"

func (a *api) repoRoutes(mux *http.ServeMux) {
	if a.d.Repos == nil {
		return
	}
	route(mux, "/api/v1/repos", map[string]http.HandlerFunc{"GET": a.listRepos, "POST": a.createRepo})
	route(mux, "/api/v1/repos/{name}", map[string]http.HandlerFunc{"GET": a.getRepo, "DELETE": a.deleteRepo})
	route(mux, "/api/v1/repos/{name}/runs", map[string]http.HandlerFunc{"POST": a.runRepo})
	route(mux, hookPrefix+"{forge}/{repo}", map[string]http.HandlerFunc{"POST": a.hook})
}

// requestTenant is the tenant of a request on a tenant's resources:
// ?tenant=, else the caller's, else the default one.
func requestTenant(r *http.Request) string {
	p, _ := auth.FromContext(r.Context())
	return tenantOf(r, p)
}

// tenantOf is requestTenant for principal p.
func tenantOf(r *http.Request, p auth.Principal) string {
	t := r.URL.Query().Get("tenant")
	if t == "" {
		t = p.Tenant
	}
	if t == "" {
		t = orchestrator.DefaultTenant
	}
	return t
}

// repoResource is the Cedar resource of a repositories request.
func repoResource(path string, r *http.Request, p auth.Principal) authz.Resource {
	tenant := tenantOf(r, p)
	if rest := path[len("/api/v1/repos"):]; len(rest) > 1 {
		name, _, _ := strings.Cut(rest[1:], "/")
		return authz.Resource{Type: authz.TypeRepo, ID: name, Tenant: tenant}
	}
	return authz.Tenant(tenant)
}

func repoJSON(r store.Repo) wire.Repo {
	out := wire.Repo{Name: r.Name, Tenant: r.Tenant, URL: r.URL, Forge: r.Forge, APIURL: r.APIURL, TokenSecret: r.TokenSecret,
		WebhookSecret: r.WebhookSecret, DefaultBranch: r.DefaultBranch, CreatedAt: r.CreatedAt.UTC()}
	if r.Forge != string(forge.Git) {
		out.HookPath = hookPrefix + r.Forge + "/" + r.Name
		if r.Tenant != orchestrator.DefaultTenant {
			out.HookPath += "?tenant=" + r.Tenant
		}
	}
	return out
}

func (a *api) listRepos(w http.ResponseWriter, r *http.Request) {
	rs, err := a.d.Store.ListRepos(r.Context(), requestTenant(r))
	if err != nil {
		a.storeError(w, r, err, "repositories")
		return
	}
	out := wire.RepoList{Repos: make([]wire.Repo, len(rs))}
	for i, rp := range rs {
		out.Repos[i] = repoJSON(rp)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getRepo(w http.ResponseWriter, r *http.Request) {
	rp, err := a.d.Store.GetRepo(r.Context(), requestTenant(r), r.PathValue("name"))
	if err != nil {
		a.storeError(w, r, err, "repository "+r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, repoJSON(rp))
}

func (a *api) createRepo(w http.ResponseWriter, r *http.Request) {
	var in wire.Repo
	if err := readJSON(w, r, 64<<10, &in); err != nil {
		writeError(w, wire.CodeBadRequest, "body: "+err.Error())
		return
	}
	rp := store.Repo{Tenant: requestTenant(r), Name: in.Name, URL: in.URL, Forge: in.Forge, APIURL: in.APIURL,
		TokenSecret: in.TokenSecret, WebhookSecret: in.WebhookSecret, DefaultBranch: in.DefaultBranch, CreatedAt: time.Now()}
	if !auth.ValidTenant(rp.Tenant) {
		writeError(w, wire.CodeBadRequest, "invalid tenant "+rp.Tenant)
		return
	}
	if err := repos.Check(&rp); err != nil {
		writeError(w, wire.CodeBadRequest, err.Error())
		return
	}
	if err := a.d.Store.CreateRepo(r.Context(), rp); err != nil {
		if errors.Is(err, store.ErrConflict) {
			writeError(w, wire.CodeConflict, "repository "+rp.Name+" exists")
			return
		}
		a.storeError(w, r, err, "repository "+rp.Name)
		return
	}
	w.Header().Set("Location", "/api/v1/repos/"+rp.Name)
	writeJSON(w, http.StatusCreated, repoJSON(rp))
}

func (a *api) deleteRepo(w http.ResponseWriter, r *http.Request) {
	if err := a.d.Store.DeleteRepo(r.Context(), requestTenant(r), r.PathValue("name")); err != nil {
		a.storeError(w, r, err, "repository "+r.PathValue("name"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// runRepo starts the manual runs of a repository at a ref: 201 with the
// runs (none when no pipeline file takes manual runs).
func (a *api) runRepo(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Ref string `json:"ref"`
	}
	if r.ContentLength != 0 {
		if err := readJSON(w, r, 4<<10, &in); err != nil {
			writeError(w, wire.CodeBadRequest, "body: "+err.Error())
			return
		}
	}
	if strings.HasPrefix(in.Ref, "-") || strings.ContainsAny(in.Ref, " \t\n:~^?*[\\") {
		writeError(w, wire.CodeBadRequest, "invalid ref "+in.Ref)
		return
	}
	res, err := a.d.Repos.Manual(r.Context(), requestTenant(r), r.PathValue("name"), in.Ref)
	switch {
	case err == nil:
		out := wire.HookResult{Delivery: res.Delivery, Event: res.Event.Kind, Commit: res.Event.Commit, RunIDs: res.RunIDs,
			Files: res.Files, Matched: res.Matched, Errors: res.Errors}
		if out.RunIDs == nil {
			out.RunIDs = []string{}
		}
		writeJSON(w, http.StatusCreated, out)
	case errors.Is(err, repos.ErrNotFound):
		writeError(w, wire.CodeNotFound, err.Error())
	case errors.Is(err, repos.ErrFetch):
		writeError(w, wire.CodeFetchFailed, err.Error())
	case errors.Is(err, repos.ErrNoSecretRead):
		writeError(w, wire.CodeUnavailable, err.Error())
	default:
		if !unavailable(w, err) {
			a.log.Error("manual run", "request_id", RequestID(r.Context()), "err", err)
			writeError(w, wire.CodeInternal, "manual run: "+err.Error())
		}
	}
}

// hook serves a forge's webhook: 200 with the runs started (or, for a
// redelivery, those the first delivery started), 202 for an event that
// starts nothing, 401 for a bad signature, 400 for a malformed body, 404
// for an unknown repository. Every answer is audited.
func (a *api) hook(w http.ResponseWriter, r *http.Request) {
	kind, name, tenant := r.PathValue("forge"), r.PathValue("repo"), r.URL.Query().Get("tenant")
	if tenant == "" {
		tenant = orchestrator.DefaultTenant
	}
	p := auth.Principal{ID: "webhook:" + kind, Name: "webhook", Kind: "webhook", Tenant: tenant}
	resource := authz.Resource{Type: authz.TypeRepo, ID: name, Tenant: tenant}.String()
	audited := func(decision, reason string) bool {
		if a.record(r, p, "webhook", resource, decision, reason) != nil {
			writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
			return false
		}
		return true
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		if audited(audit.Deny, "body: "+err.Error()) {
			writeError(w, wire.CodeTooLarge, fmt.Sprintf("webhook body over %d bytes", maxHookBody))
		}
		return
	}
	res, err := a.d.Repos.Hook(r.Context(), tenant, name, kind, r.Header, body)
	out := wire.HookResult{Delivery: res.Delivery, Event: res.Event.Kind, Commit: res.Event.Commit, Duplicate: res.Duplicate,
		RunIDs: res.RunIDs, Files: res.Files, Matched: res.Matched, Errors: res.Errors}
	if out.RunIDs == nil {
		out.RunIDs = []string{}
	}
	if out.Delivery == "" {
		out.Delivery = res.Event.Delivery
	}
	switch {
	case err == nil:
		delivery := out.Delivery
		if id := res.Event.Delivery; id != "" && id != delivery {
			// Gitea's and Forgejo's: the key is the body's hash, the
			// forge's own id says which of its deliveries this was.
			delivery += " (" + kind + " delivery " + id + ")"
		}
		reason := fmt.Sprintf("delivery %s: %s %s at %s started %d run(s) %v", delivery, res.Event.Kind, res.Event.Ref, res.Event.Commit, len(res.RunIDs), res.RunIDs)
		if res.Duplicate {
			reason = fmt.Sprintf("delivery %s delivered again: started nothing (first started %v)", delivery, res.RunIDs)
		}
		if audited(audit.Allow, reason) {
			writeJSON(w, http.StatusOK, out)
		}
	case errors.Is(err, forge.ErrIgnored):
		out.Ignored = err.Error()
		if audited(audit.Allow, "ignored: "+err.Error()) {
			writeJSON(w, http.StatusAccepted, out)
		}
	default:
		if !audited(audit.Deny, err.Error()) {
			return
		}
		if code, ok := hookErrorCode(err); ok {
			writeError(w, code, err.Error())
			return
		}
		if unavailable(w, err) {
			return
		}
		a.log.Error("webhook", "request_id", RequestID(r.Context()), "repo", name, "err", err)
		writeError(w, wire.CodeInternal, "webhook: "+err.Error())
	}
}

// hookErrorCode is the code a webhook delivery refused with err is
// answered with, for the refusals the forge or the repository explain.
func hookErrorCode(err error) (wire.Code, bool) {
	switch {
	case errors.Is(err, forge.ErrSignature):
		return wire.CodeBadSignature, true
	case errors.Is(err, forge.ErrMalformed):
		return wire.CodeBadRequest, true
	case errors.Is(err, repos.ErrNotFound), errors.Is(err, repos.ErrWrongForge), errors.Is(err, forge.ErrNoWebhooks):
		return wire.CodeNotFound, true
	case errors.Is(err, repos.ErrFetch):
		return wire.CodeFetchFailed, true
	case errors.Is(err, repos.ErrNoSecretRead):
		return wire.CodeUnavailable, true
	}
	return "", false
}

// addTriggers sets the trigger of the runs from a repository, and for one
// run (statuses true) the commit statuses posted for it.
func (a *api) addTriggers(r *http.Request, runs []wire.Run, statuses bool) {
	ids := make([]string, len(runs))
	for i, run := range runs {
		ids[i] = run.ID
	}
	if statuses {
		for i := range runs {
			a.addRerun(r, &runs[i])
		}
	}
	trs, err := a.d.Store.GetTriggers(r.Context(), ids)
	if err != nil {
		a.log.Warn("read run triggers", "request_id", RequestID(r.Context()), "err", err)
		return
	}
	for i := range runs {
		tr, ok := trs[runs[i].ID]
		if !ok {
			continue
		}
		runs[i].Trigger = &wire.Trigger{Repo: tr.Repo, Commit: tr.Commit, Ref: tr.Ref, Event: tr.Event, Branch: tr.Branch, Tag: tr.Tag, PR: tr.PR, Delivery: tr.Delivery}
		if !statuses {
			continue
		}
		reps, err := a.d.Store.ListStatusReports(r.Context(), runs[i].ID)
		if err != nil {
			continue
		}
		for _, rep := range reps {
			runs[i].Statuses = append(runs[i].Statuses, wire.StatusReport{State: rep.State, Error: rep.Error, At: rep.At.UTC()})
		}
	}
}

// addRerun sets what a re-run records: the run it re-runs and, on its
// jobs, the attempts they were carried over from.
func (a *api) addRerun(r *http.Request, run *wire.Run) {
	rr, err := a.d.Store.GetRerun(r.Context(), run.ID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("read re-run", "request_id", RequestID(r.Context()), "run", run.ID, "err", err)
		}
		return
	}
	run.RerunOf, run.FailedOnly = rr.Of, rr.FailedOnly
	from := make(map[string]store.CarriedJob, len(rr.Carried))
	for _, c := range rr.Carried {
		from[c.JobID] = c
	}
	for i := range run.Jobs {
		if c, ok := from[run.Jobs[i].ID]; ok {
			run.Jobs[i].Carried = &wire.Carried{RunID: c.FromRun, JobID: c.FromJob, Attempt: c.FromAttempt}
		}
	}
}
