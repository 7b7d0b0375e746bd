package api

// Authentication, authorization and audit of the API (see docs/security.md).
//
// When Deps.Auth is set, every request but /healthz, /readyz and (unless
// Deps.ProtectMetrics) /metrics must carry credentials; each one is mapped
// to a Cedar action and resource, decided by Deps.Authz, and the decision
// is appended to Deps.Audit with the request id. A run of another tenant
// that the principal may not see answers 404, as if it did not exist; other
// denials answer 403. Listing runs is narrowed to the principal's tenant
// unless a policy lets it read the whole cluster, and a run submitted
// without a tenant goes to the principal's.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/store"
)

// actionAuthenticate is the audit action of a failed authentication.
const actionAuthenticate = "authenticate"

// AuditList is the answer of GET /api/v1/audit.
type AuditList struct {
	Records []audit.Record `json:"records"`
}

// securityRoutes registers the endpoints of tokens, the audit trail and
// whoami; only on a secured API.
func (a *api) securityRoutes(mux *http.ServeMux) {
	if a.d.Auth == nil {
		return
	}
	route(mux, "/api/v1/whoami", map[string]http.HandlerFunc{"GET": a.whoami})
	if a.d.Audit != nil {
		route(mux, "/api/v1/audit", map[string]http.HandlerFunc{"GET": a.auditQuery})
	}
	if a.d.Tokens != nil {
		route(mux, "/api/v1/tokens", map[string]http.HandlerFunc{"GET": a.listTokens, "POST": a.createToken})
		route(mux, "/api/v1/tokens/{name}", map[string]http.HandlerFunc{"DELETE": a.revokeToken})
	}
}

// secure wraps next with authentication, authorization and audit; without
// Deps.Auth the API stays open.
func (a *api) secure(next http.Handler) http.Handler {
	if a.d.Auth == nil {
		return next
	}
	if a.d.Authz == nil {
		p, err := authz.Default()
		if err != nil {
			panic(err) // the embedded defaults are tested
		}
		a.d.Authz = authz.NewCedar(p)
	}
	if rl, ok := a.d.Authz.(authz.RoleLister); ok {
		a.roles = rl.Roles()
	}
	a.d.Authz = authz.Scoped{Next: a.d.Authz}
	a.auditPolicy = audit.DefaultPolicy()
	if a.d.AuditPolicy != nil {
		a.auditPolicy = *a.d.AuditPolicy
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, hookPrefix) && a.d.Repos != nil {
			// Authenticated by the forge's signature (repos.go).
			next.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/healthz", "/readyz":
			next.ServeHTTP(w, r)
			return
		case "/metrics":
			if !a.d.ProtectMetrics {
				next.ServeHTTP(w, r)
				return
			}
		}
		if a.d.Audit != nil && a.auditPolicy.BodyAt(audit.LevelRequest) && r.Body != nil && r.Body != http.NoBody {
			if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
				ri.body = &bodyDigest{ReadCloser: r.Body, h: sha256.New()}
				r.Body = ri.body
			}
		}
		p, err := a.d.Auth.Authenticate(r)
		if err != nil {
			refuseBody(w, r)
			a.unauthenticated(w, r, err)
			return
		}
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		if r, ok := a.authorize(w, r, p); ok {
			next.ServeHTTP(w, r)
		}
	})
}

func (a *api) unauthenticated(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, auth.ErrNoCredentials) && !errors.Is(err, auth.ErrInvalid) {
		a.log.Warn("authentication unavailable", "request_id", RequestID(r.Context()), "err", err)
		a.record(r, auth.Principal{ID: "anonymous"}, actionAuthenticate, "", audit.Deny, err.Error())
		writeError(w, wire.CodeUnavailable, "credentials cannot be checked now: "+err.Error())
		return
	}
	if wait := a.fails.fail(remoteHost(r)); wait > 0 {
		// Not audited one by one: the first failures of the address are.
		a.log.Debug("failed authentications rate limited", "request_id", RequestID(r.Context()), "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, wire.CodeTooManyRequests,
			"too many failed authentications from "+remoteHost(r)+": retry after "+retryAfter(wait)+"s")
		return
	}
	challenge := `Bearer realm="hodei"`
	msg := "this API needs credentials: send \"Authorization: Bearer TOKEN\" (an API token, or an OIDC token from \"hodei login\")"
	if errors.Is(err, auth.ErrInvalid) {
		challenge += `, error="invalid_token", error_description="` + strings.NewReplacer(`"`, "'", `\`, "/").Replace(err.Error()) + `"`
		msg = "invalid credentials: " + strings.TrimPrefix(err.Error(), auth.ErrInvalid.Error()+": ")
	}
	if a.record(r, auth.Principal{ID: "anonymous"}, actionAuthenticate, "", audit.Deny, err.Error()) != nil {
		writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
		return
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, wire.CodeUnauthenticated, msg)
}

// record notes a decision for the audit trail (and logs it when there is
// none): it is queued with the answer's status once the answer is sent
// (flushAudit), at the level the policy gives it. Its error means the trail
// cannot be written and the request must not go on.
func (a *api) record(r *http.Request, p auth.Principal, action, resource, decision, reason string) error {
	if a.d.Audit == nil {
		a.log.Debug("authorization", "principal", p.ID, "action", action, "resource", resource, "decision", decision, "reason", reason)
		return nil
	}
	if err := a.d.Audit.Err(); err != nil {
		a.log.Error("audit trail unavailable: refusing the request", "request_id", RequestID(r.Context()), "err", err)
		return err
	}
	level := a.auditPolicy.LevelOf(action, r.Method, decision)
	ri, ok := r.Context().Value(ctxKey{}).(*reqInfo)
	if level == audit.LevelNone || !ok {
		return nil
	}
	e := audit.Entry{
		Time: time.Now(), Principal: p.ID, PrincipalName: p.Name, Tenant: p.Tenant, Action: action, Resource: resource,
		Decision: decision, Reason: reason, Remote: r.RemoteAddr, RequestID: ri.id,
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
	}
	ri.audit = append(ri.audit, pendingAudit{e: e.Trim(level), level: level})
	return nil
}

// pendingAudit is a decision waiting for the answer's status.
type pendingAudit struct {
	e     audit.Entry
	level audit.Level
}

// flushAudit queues the request's decisions with the status of its answer,
// when its header is sent (or, for an answer that never started, when the
// handler returns).
// A full queue drops them (counted in hodei_audit_dropped_total): the
// trail never holds a request up.
func (a *api) flushAudit(ri *reqInfo, status int) {
	for _, pa := range ri.audit {
		pa.e.Status = status
		if pa.level >= audit.LevelRequest && ri.body != nil {
			pa.e.BodyBytes, pa.e.BodySHA256 = ri.body.sum()
		}
		_ = a.d.Audit.Enqueue(pa.e) // a closed trail refused the request in record
	}
	ri.audit = ri.audit[:0]
}

// bodyDigest counts and hashes the request body as the handlers read it.
type bodyDigest struct {
	io.ReadCloser
	h hash.Hash
	n int64
}

func (b *bodyDigest) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	b.h.Write(p[:n])
	return n, err
}

// sum is the size and SHA-256 (hex) of what was read; none when nothing was.
func (b *bodyDigest) sum() (int64, string) {
	if b.n == 0 {
		return 0, ""
	}
	return b.n, hex.EncodeToString(b.h.Sum(nil))
}

// decide asks the authorizer and audits the answer; note is prefixed to
// the recorded reason. When no decision could be made, or it could not be
// recorded, it answers 503 and returns the error; a plain deny (false, nil)
// is left to the caller to answer (403, or 404 for another tenant's run).
func (a *api) decide(w http.ResponseWriter, r *http.Request, p auth.Principal, action string, res authz.Resource, note string) (bool, error) {
	d, err := a.d.Authz.Authorize(r.Context(), authz.Request{Principal: p, Action: action, Resource: res})
	reason := d.Explain()
	if err != nil {
		reason = "no decision: " + err.Error()
	}
	if note != "" {
		reason = note + "; " + reason
	}
	word := audit.Deny
	if err == nil && d.Allow {
		word = audit.Allow
	}
	if aerr := a.record(r, p, action, res.String(), word, reason); aerr != nil {
		writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
		return false, aerr
	}
	if err != nil {
		a.log.Error("authorization failed", "request_id", RequestID(r.Context()), "err", err)
		writeError(w, wire.CodeUnavailable, "authorization unavailable: "+err.Error())
		return false, err
	}
	return d.Allow, nil
}

func forbidden(w http.ResponseWriter, p auth.Principal, action string, res authz.Resource) {
	writeError(w, wire.CodeForbidden,
		fmt.Sprintf("%s (%s) may not %s %s", p.Name, p.ID, action, res))
}

// authorize maps the request to an action and a resource and decides it.
// It returns the request to serve (with the tenant set for submissions and
// listings) and whether to serve it.
func (a *api) authorize(w http.ResponseWriter, r *http.Request, p auth.Principal) (*http.Request, bool) {
	path := r.URL.Path
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	check := func(action string, res authz.Resource) bool {
		ok, err := a.decide(w, r, p, action, res, "")
		if err == nil && !ok {
			forbidden(w, p, action, res)
		}
		return ok
	}
	switch {
	case path == "/api/v1/whoami":
		if a.record(r, p, "whoami", "", audit.Allow, "a principal may see itself") != nil {
			writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
			return r, false
		}
		return r, true
	case path == "/api/v1/permissions":
		// The handler asks the authorizer itself, action by action, and
		// audits its answer.
		return r, true
	case path == "/api/v1/runs" && method == http.MethodPost:
		return a.authorizeSubmit(w, r, p)
	case path == "/api/v1/runs":
		return a.authorizeList(w, r, p)
	case strings.HasPrefix(path, "/api/v1/runs/"):
		rest := strings.Split(strings.TrimPrefix(path, "/api/v1/runs/"), "/")
		action := authz.ActRead
		switch {
		case len(rest) == 2 && rest[1] == "logs":
			action = authz.ActReadLogs
		case len(rest) >= 2 && rest[1] == "artifacts":
			action = authz.ActReadArtifacts
		case len(rest) == 2 && rest[1] == "cancel":
			action = authz.ActCancel
		case len(rest) == 4 && rest[1] == "jobs" && (rest[3] == "approve" || rest[3] == "reject"):
			action = authz.ActApproveJob
		case len(rest) == 2 && rest[1] == "rerun" && method == http.MethodPost:
			return r, a.authorizeRerun(w, r, p, rest[0])
		}
		return r, a.authorizeRun(w, r, p, action, rest[0])
	case path == "/metrics":
		return r, check(authz.ActReadMetrics, authz.Cluster())
	case path == "/api/v1/workers" || strings.HasPrefix(path, "/api/v1/workers/"):
		res := authz.Cluster()
		if id := strings.TrimPrefix(path, "/api/v1/workers/"); id != path && id != "" {
			res = authz.Resource{Type: authz.TypeWorker, ID: id}
		}
		if method == http.MethodGet {
			return r, check(authz.ActReadWorkers, res)
		}
		return r, check(authz.ActManageWorkers, res)
	case path == "/api/v1/secrets" || strings.HasPrefix(path, "/api/v1/secrets/"):
		// The tenant as the secrets endpoints choose it: ?tenant=, else the
		// caller's, else the default one.
		tenant := r.URL.Query().Get("tenant")
		if tenant == "" {
			tenant = p.Tenant
		}
		if tenant == "" {
			tenant = orchestrator.DefaultTenant
		}
		res := authz.Tenant(tenant)
		if rest := strings.TrimPrefix(path, "/api/v1/secrets/"); rest != path && rest != "" {
			name, _, _ := strings.Cut(rest, "/")
			res = authz.Resource{Type: authz.TypeSecret, ID: name, Tenant: tenant}
		}
		if method == http.MethodGet {
			return r, check(authz.ActListSecrets, res)
		}
		return r, check(authz.ActManageSecrets, res)
	case path == "/api/v1/repos" || strings.HasPrefix(path, "/api/v1/repos/"):
		if strings.HasSuffix(path, "/runs") {
			return r, check(authz.ActRunRepo, repoResource(path, r, p))
		}
		if method == http.MethodGet {
			return r, check(authz.ActListRepos, repoResource(path, r, p))
		}
		return r, check(authz.ActManageRepos, repoResource(path, r, p))
	case path == "/api/v1/audit":
		return r, check(authz.ActReadAudit, authz.Cluster())
	case path == "/api/v1/tokens" || strings.HasPrefix(path, "/api/v1/tokens/"):
		return r, check(authz.ActManageTokens, authz.Cluster())
	}
	// Anything else (a route this file does not know yet) is for
	// administrators: deny by default.
	return r, check(authz.ActAdmin, authz.Cluster())
}

// authorizeRun decides an action on one run, loaded for its tenant.
func (a *api) authorizeRun(w http.ResponseWriter, r *http.Request, p auth.Principal, action, id string) bool {
	run, err := a.readRun(r.Context(), r, id)
	res := authz.Resource{Type: authz.TypeRun, ID: id, Tenant: p.Tenant}
	note := ""
	switch {
	case err == nil:
		res.Tenant = run.Tenant
		res.Attrs = map[string]string{"pipeline": run.Pipeline, "state": string(run.State)}
	case errors.Is(err, store.ErrNotFound):
		// Decided as if the run were of the principal's tenant: whoever may
		// not read runs at all learns nothing, the others get the 404.
		note = "no such run"
	default:
		a.storeError(w, r, err, "run "+id)
		return false
	}
	ok, err := a.decide(w, r, p, action, res, note)
	if err != nil || ok {
		return ok
	}
	if res.Tenant != p.Tenant {
		writeError(w, wire.CodeNotFound, "run "+id+" not found")
		return false
	}
	forbidden(w, p, action, res)
	return false
}

// pipelineResource is the resource of a submission of file in tenant.
func pipelineResource(file, tenant string) authz.Resource {
	return authz.Resource{Type: authz.TypePipeline, ID: file, Tenant: tenant, Attrs: map[string]string{"file": file}}
}

// authorizeRerun decides a re-run: reading the run (a run of another
// tenant answers 404, as for reading it), then submitting its pipeline
// file in its tenant, as a submission of the same file would be decided.
func (a *api) authorizeRerun(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) bool {
	if !a.authorizeRun(w, r, p, authz.ActRead, id) {
		return false
	}
	run, err := a.d.Store.GetRun(r.Context(), id)
	if err != nil {
		return true // the handler answers the 404 (or the store's error)
	}
	res := pipelineResource(run.File, run.Tenant)
	ok, err := a.decide(w, r, p, authz.ActSubmit, res, "re-run of "+id)
	if err == nil && !ok {
		forbidden(w, p, authz.ActSubmit, res)
	}
	return ok
}

// authorizeList decides a listing of runs: of the tenant asked for, else of
// every tenant if the principal may read the cluster, else of its own.
func (a *api) authorizeList(w http.ResponseWriter, r *http.Request, p auth.Principal) (*http.Request, bool) {
	q := r.URL.Query()
	if t := q.Get("tenant"); t != "" {
		res := authz.Tenant(t)
		ok, err := a.decide(w, r, p, authz.ActRead, res, "")
		if err == nil && !ok {
			forbidden(w, p, authz.ActRead, res)
		}
		return r, ok
	}
	all, err := a.d.Authz.Authorize(r.Context(), authz.Request{Principal: p, Action: authz.ActRead, Resource: authz.Cluster()})
	if err == nil && all.Allow {
		ok, _ := a.decide(w, r, p, authz.ActRead, authz.Cluster(), "all tenants")
		return r, ok
	}
	res := authz.Tenant(p.Tenant)
	ok, err := a.decide(w, r, p, authz.ActRead, res, "all tenants: "+all.Word()+"; listing tenant "+strconv.Quote(p.Tenant))
	if err != nil {
		return r, false
	}
	if !ok {
		forbidden(w, p, authz.ActRead, res)
		return r, false
	}
	q.Set("tenant", p.Tenant)
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	return r2, true
}

// authorizeSubmit decides a submission in the tenant it names (in the
// query or the JSON body), or else in the principal's tenant, which it then
// sets.
func (a *api) authorizeSubmit(w http.ResponseWriter, r *http.Request, p auth.Principal) (*http.Request, bool) {
	q := r.URL.Query()
	tenant, file := q.Get("tenant"), q.Get("file")
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" && r.Body != nil {
		// Read the body to see its tenant, and give it back to the handler
		// (which limits its size and reports its errors).
		buf, err := io.ReadAll(io.LimitReader(r.Body, a.submitBodyLimit(true)+1))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		if err == nil {
			var body struct {
				Tenant string `json:"tenant"`
				File   string `json:"file"`
			}
			if json.Unmarshal(buf, &body) == nil {
				if body.Tenant != "" {
					tenant = body.Tenant
				}
				if body.File != "" {
					file = body.File
				}
			}
		}
	}
	if file == "" {
		file = "pipeline.yaml"
	}
	given := tenant != ""
	if !given {
		tenant = p.Tenant
		if tenant == "" {
			tenant = orchestrator.DefaultTenant
		}
	}
	res := pipelineResource(file, tenant)
	ok, err := a.decide(w, r, p, authz.ActSubmit, res, "")
	if err != nil {
		return r, false
	}
	if !ok {
		forbidden(w, p, authz.ActSubmit, res)
		return r, false
	}
	if !given {
		q.Set("tenant", tenant)
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = q.Encode()
		r2.Body = r.Body
		return r2, true
	}
	return r, true
}

func (a *api) whoami(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	writeJSON(w, http.StatusOK, p)
}

// parseWhen reads a time: RFC 3339, or a duration before now ("1h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := auth.ParseTTL(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 24h or 7d", s)
	}
	return now.Add(-d), nil
}

func (a *api) auditQuery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{Principal: q.Get("principal"), Action: q.Get("action"), Resource: q.Get("resource"), Decision: q.Get("decision")}
	now := time.Now()
	var err error
	if f.Since, err = parseWhen(q.Get("since"), now); err != nil {
		writeError(w, wire.CodeBadRequest, "since: "+err.Error())
		return
	}
	if f.Until, err = parseWhen(q.Get("until"), now); err != nil {
		writeError(w, wire.CodeBadRequest, "until: "+err.Error())
		return
	}
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 || f.Limit > 10000 {
			writeError(w, wire.CodeBadRequest, "limit must be a number from 1 to 10000")
			return
		}
	}
	if f.Decision != "" && f.Decision != audit.Allow && f.Decision != audit.Deny {
		writeError(w, wire.CodeBadRequest, "decision must be allow or deny")
		return
	}
	a.d.Audit.Flush() // the decisions answered before this query are in the file
	recs, err := a.d.Audit.Query(f)
	if err != nil {
		writeError(w, wire.CodeUnavailable, err.Error())
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, AuditList{Records: recs})
}

func (a *api) listTokens(w http.ResponseWriter, r *http.Request) {
	list := a.d.Tokens.List()
	if list == nil {
		list = []auth.Token{}
	}
	writeJSON(w, http.StatusOK, auth.TokenList{Tokens: list})
}

func (a *api) createToken(w http.ResponseWriter, r *http.Request) {
	var req auth.TokenRequest
	if err := readJSON(w, r, 64<<10, &req); err != nil {
		writeError(w, wire.CodeBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	if req.Tenant != "" && !auth.ValidTenant(req.Tenant) {
		writeError(w, wire.CodeBadRequest,
			fmt.Sprintf("invalid tenant %q: a tenant's name matches %s", req.Tenant, auth.TenantPattern))
		return
	}
	if a.roles != nil {
		for _, role := range req.Roles {
			if !slices.Contains(a.roles, role) {
				writeError(w, wire.CodeBadRequest,
					fmt.Sprintf("unknown role %q: the policies give permissions to %s", role, strings.Join(a.roles, ", ")))
				return
			}
		}
	}
	p, _ := auth.FromContext(r.Context())
	nt, err := a.d.Tokens.Create(req, p.ID)
	if err != nil {
		tokenError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/tokens/"+url.PathEscape(nt.Token.Name))
	writeJSON(w, http.StatusCreated, nt)
}

func (a *api) revokeToken(w http.ResponseWriter, r *http.Request) {
	tok, err := a.d.Tokens.Revoke(r.PathValue("name"))
	if err != nil {
		tokenError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

// tokenError answers an error of the token store with the code of its
// kind.
func tokenError(w http.ResponseWriter, err error) {
	code := wire.CodeInternal
	switch {
	case errors.Is(err, auth.ErrTokenExists):
		code = wire.CodeConflict
	case errors.Is(err, auth.ErrBadToken):
		code = wire.CodeBadRequest
	case errors.Is(err, auth.ErrTokenNotFound):
		code = wire.CodeNotFound
	}
	writeError(w, code, err.Error())
}
