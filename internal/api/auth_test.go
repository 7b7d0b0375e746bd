package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/auth/oidctest"
	"github.com/hodei-ci/hodei/internal/server"
)

// The users of the identity provider. Roles and tenants reach Hodei as
// Keycloak writes them: realm roles, client roles, groups named
// "tenant:<name>" (also as full paths), or a tenant claim.
var opUsers = []oidctest.User{
	{ID: "u-alice", Username: "alice", RealmRoles: []string{"admin"}},
	{ID: "u-bob", Username: "bob", RealmRoles: []string{"developer"}, Groups: []string{"tenant:acme"}},
	{ID: "u-carol", Username: "carol", RealmRoles: []string{"developer"}, Groups: []string{"/staff", "/tenant:globex"}},
	{ID: "u-vera", Username: "vera", ClientRoles: []string{"viewer"}, Tenant: "acme"},
	{ID: "u-olga", Username: "olga", RealmRoles: []string{"admin"}, Expired: true},
}

const helloYAML = "name: hello\njobs:\n  greet:\n    steps: [{run: echo hi}]\n"

type secureEnv struct {
	t     *testing.T
	srv   *server.Server
	base  string
	op    *oidctest.Provider
	admin string // the local admin token
	toks  map[string]string
}

func startSecure(t *testing.T) *secureEnv {
	t.Helper()
	return startSecureWith(t, 0)
}

// startSecureWith is startSecure with that many local agents running the
// jobs (none: jobs stay queued).
func startSecureWith(t *testing.T, workers int) *secureEnv {
	t.Helper()
	op := oidctest.Start(t, opUsers)
	e := &secureEnv{t: t, op: op, toks: map[string]string{}}
	e.startServer(server.Options{
		DataDir:      t.TempDir(),
		LocalWorkers: workers,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Security: server.SecurityOptions{
			OIDC: &auth.OIDCConfig{Issuer: op.Issuer, Audiences: []string{oidctest.ClientHodei}},
		},
	})
	for _, u := range opUsers {
		e.toks[u.Username] = op.Token(t, oidctest.ClientHodei, u.Username)
	}
	return e
}

// startServer starts a secured server with o, on a loopback HTTP port and
// without a NATS listener, keeps the local admin token it hands out in
// e.admin, and closes it when the test ends.
func (e *secureEnv) startServer(o server.Options) {
	e.t.Helper()
	o.NATSListen, o.HTTPAddr = "none", "127.0.0.1:0"
	o.Security.Enabled = true
	o.Security.OnAdminToken = func(tok string) { e.admin = tok }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, o)
	if err != nil {
		e.t.Fatalf("server.Start: %v", err)
	}
	e.t.Cleanup(srv.Close)
	e.srv, e.base = srv, "http://"+srv.HTTPAddr()
	if e.admin == "" {
		e.t.Fatal("no local admin token was handed out")
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) code() wire.Code {
	var e wire.Error
	_ = json.Unmarshal(a.body, &e)
	return e.Code
}

func (e *secureEnv) call(token, method, path, ctype string, body []byte) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, data}
}

// as calls as a user of the provider (or with a raw token).
func (e *secureEnv) as(user, method, path string) answer {
	e.t.Helper()
	return e.call(e.tokenOf(user), method, path, "", nil)
}

// tokenOf is the token of a user of the provider; any other name is taken
// for a raw token.
func (e *secureEnv) tokenOf(user string) string {
	if tok, ok := e.toks[user]; ok {
		return tok
	}
	return user
}

func (e *secureEnv) want(a answer, status int, code wire.Code, what string) {
	e.t.Helper()
	if a.status != status || (code != "" && a.code() != code) {
		e.t.Errorf("%s: %d %s, want %d %s", what, a.status, a.body, status, code)
	}
}

// submit submits helloYAML as user, with the query (e.g. "?repo=…") added to
// the URL.
func (e *secureEnv) submit(user, query string) wire.Run {
	e.t.Helper()
	return e.submitAs(user, query, helloYAML)
}

// submitAs submits yaml as user (or with a raw token, see tokenOf) and
// fails the test unless the run is created.
func (e *secureEnv) submitAs(user, query, yaml string) wire.Run {
	e.t.Helper()
	a := e.call(e.tokenOf(user), "POST", "/api/v1/runs"+query, "application/yaml", []byte(yaml))
	if a.status != http.StatusCreated {
		e.t.Fatalf("submit as %s: %d %s", user, a.status, a.body)
	}
	var r wire.Run
	if err := json.Unmarshal(a.body, &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *secureEnv) list(user, query string) []string {
	e.t.Helper()
	a := e.as(user, "GET", "/api/v1/runs"+query)
	if a.status != http.StatusOK {
		e.t.Fatalf("list as %s: %d %s", user, a.status, a.body)
	}
	var l wire.RunList
	if err := json.Unmarshal(a.body, &l); err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, r := range l.Runs {
		ids = append(ids, r.Tenant+"/"+r.ID)
	}
	sort.Strings(ids)
	return ids
}

// TestSecuredAPIWithARealIdentityProvider runs Hodei's API with
// authentication on against an OpenID provider started in the test, and
// checks who gets what.
func TestSecuredAPIWithARealIdentityProvider(t *testing.T) {
	e := startSecure(t)

	t.Run("no token is 401", func(t *testing.T) {
		a := e.call("", "GET", "/api/v1/runs", "", nil)
		e.want(a, 401, wire.CodeUnauthenticated, "no token")
		if h := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="hodei"`) {
			t.Errorf("WWW-Authenticate %q", h)
		}
		e.want(e.call("", "POST", "/api/v1/runs", "application/yaml", []byte(helloYAML)), 401, wire.CodeUnauthenticated, "anonymous submit")
		e.want(e.call("", "GET", "/api/v1/workers", "", nil), 401, wire.CodeUnauthenticated, "anonymous workers")
	})

	t.Run("health and metrics stay open", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if a := e.call("", "GET", p, "", nil); a.status != 200 {
				t.Errorf("%s: %d %s", p, a.status, a.body)
			}
		}
	})

	t.Run("bad tokens are 401", func(t *testing.T) {
		bob := e.toks["bob"]
		cases := map[string]string{
			"a token signed by another key":  oidctest.Resign(t, bob, nil),
			"a token with a changed payload": oidctest.Tamper(t, bob),
			"a token for another audience":   e.op.Token(t, oidctest.ClientOther, "bob"),
			"an expired token":               e.toks["olga"],
			"an unknown hodei token":         auth.NewSecret(),
			"not a token":                    "hello",
		}
		for name, tok := range cases {
			a := e.call(tok, "GET", "/api/v1/runs", "", nil)
			e.want(a, 401, wire.CodeUnauthenticated, name)
			if h := a.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
				t.Errorf("%s: WWW-Authenticate %q", name, h)
			}
		}
		a := e.call(cases["an expired token"], "GET", "/api/v1/runs", "", nil)
		if !strings.Contains(string(a.body), "expired") {
			t.Errorf("expired token: %s", a.body)
		}
		a = e.call(cases["a token for another audience"], "GET", "/api/v1/runs", "", nil)
		if !strings.Contains(string(a.body), "audience") {
			t.Errorf("wrong audience: %s", a.body)
		}
	})

	var bobRun, carolRun wire.Run
	t.Run("developers submit in their tenant", func(t *testing.T) {
		bobRun = e.submit("bob", "")
		carolRun = e.submit("carol", "")
		if bobRun.Tenant != "acme" || carolRun.Tenant != "globex" {
			t.Errorf("tenants: bob's run %q, carol's %q", bobRun.Tenant, carolRun.Tenant)
		}
		// Naming another tenant, in the query or the JSON body, is forbidden.
		e.want(e.call(e.toks["bob"], "POST", "/api/v1/runs?tenant=globex", "application/yaml", []byte(helloYAML)), 403, wire.CodeForbidden, "bob submits to globex")
		body, _ := json.Marshal(wire.SubmitRequest{Pipeline: helloYAML, Tenant: "globex"})
		e.want(e.call(e.toks["bob"], "POST", "/api/v1/runs", "application/json", body), 403, wire.CodeForbidden, "bob submits JSON to globex")
		body, _ = json.Marshal(wire.SubmitRequest{Pipeline: helloYAML, Tenant: "acme", File: "ci.yaml"})
		if a := e.call(e.toks["bob"], "POST", "/api/v1/runs", "application/json", body); a.status != 201 {
			t.Errorf("bob submits JSON to acme: %d %s", a.status, a.body)
		}
	})

	t.Run("a viewer cannot submit or cancel", func(t *testing.T) {
		a := e.call(e.toks["vera"], "POST", "/api/v1/runs", "application/yaml", []byte(helloYAML))
		e.want(a, 403, wire.CodeForbidden, "vera submits")
		e.want(e.as("vera", "POST", "/api/v1/runs/"+bobRun.ID+"/cancel"), 403, wire.CodeForbidden, "vera cancels")
		// But she reads her tenant's runs and logs.
		e.want(e.as("vera", "GET", "/api/v1/runs/"+bobRun.ID), 200, "", "vera reads bob's run")
		e.want(e.as("vera", "GET", "/api/v1/runs/"+bobRun.ID+"/logs"), 200, "", "vera reads bob's logs")
	})

	t.Run("tenants do not see each other", func(t *testing.T) {
		bobs := e.list("bob", "")
		if !slices.Contains(bobs, "acme/"+bobRun.ID) {
			t.Errorf("bob's list %v lacks his run %s", bobs, bobRun.ID)
		}
		for _, id := range bobs {
			if !strings.HasPrefix(id, "acme/") {
				t.Errorf("bob's list has %s", id)
			}
		}
		if l := e.list("carol", ""); !slices.Equal(l, []string{"globex/" + carolRun.ID}) {
			t.Errorf("carol's list = %v", l)
		}
		e.want(e.as("bob", "GET", "/api/v1/runs?tenant=globex"), 403, wire.CodeForbidden, "bob lists globex")
		// Another tenant's run answers as if it did not exist.
		for _, p := range []string{"", "/jobs", "/logs", "/jobs/greet"} {
			e.want(e.as("bob", "GET", "/api/v1/runs/"+carolRun.ID+p), 404, wire.CodeNotFound, "bob reads carol's run"+p)
		}
		e.want(e.as("bob", "POST", "/api/v1/runs/"+carolRun.ID+"/cancel"), 404, wire.CodeNotFound, "bob cancels carol's run")
		e.want(e.as("bob", "GET", "/api/v1/runs/no-such-run"), 404, wire.CodeNotFound, "bob reads a missing run")
		// Workers are shared: everyone with a role sees them; nobody but
		// admins sees the audit trail or tokens.
		e.want(e.as("bob", "GET", "/api/v1/workers"), 200, "", "bob lists workers")
		e.want(e.as("bob", "GET", "/api/v1/audit"), 403, wire.CodeForbidden, "bob reads the audit trail")
		e.want(e.as("carol", "GET", "/api/v1/tokens"), 403, wire.CodeForbidden, "carol lists tokens")
		e.want(e.as("bob", "GET", "/api/v1/nothing-here"), 403, wire.CodeForbidden, "bob on an unmapped route")
	})

	t.Run("an admin can do everything", func(t *testing.T) {
		all := e.list("alice", "")
		for _, want := range []string{"acme/" + bobRun.ID, "globex/" + carolRun.ID} {
			if !slices.Contains(all, want) {
				t.Errorf("alice's list %v lacks %s", all, want)
			}
		}
		if l := e.list("alice", "?tenant=globex"); !slices.Equal(l, []string{"globex/" + carolRun.ID}) {
			t.Errorf("alice lists globex: %v", l)
		}
		e.want(e.as("alice", "GET", "/api/v1/runs/"+carolRun.ID+"/logs"), 200, "", "alice reads carol's logs")
		e.want(e.as("alice", "POST", "/api/v1/runs/"+carolRun.ID+"/cancel"), 202, "", "alice cancels carol's run")
		e.want(e.as("alice", "GET", "/api/v1/workers"), 200, "", "alice lists workers")
		e.want(e.as("alice", "GET", "/api/v1/audit?limit=1"), 200, "", "alice reads the audit trail")
		e.want(e.as("alice", "GET", "/api/v1/nothing-here"), 404, wire.CodeNotFound, "alice on an unmapped route")
		run := e.submit("alice", "?tenant=globex")
		if run.Tenant != "globex" {
			t.Errorf("alice's run in globex: %q", run.Tenant)
		}
	})

	t.Run("whoami", func(t *testing.T) {
		a := e.as("carol", "GET", "/api/v1/whoami")
		var p auth.Principal
		if err := json.Unmarshal(a.body, &p); err != nil || p.Name != "carol" || p.Tenant != "globex" || p.ID != "user:u-carol" {
			t.Errorf("whoami: %s", a.body)
		}
	})

	t.Run("the local admin token and API tokens", func(t *testing.T) {
		e.want(e.call(e.admin, "GET", "/api/v1/runs", "", nil), 200, "", "local admin lists")
		// An admin makes a token for a bot of acme that may only read.
		body, _ := json.Marshal(auth.TokenRequest{Name: "reader-bot", Tenant: "acme", Roles: []string{"developer"}, Scopes: []string{"read"}, TTL: "1h"})
		a := e.call(e.toks["alice"], "POST", "/api/v1/tokens", "application/json", body)
		if a.status != 201 {
			t.Fatalf("create token: %d %s", a.status, a.body)
		}
		var nt auth.NewToken
		if err := json.Unmarshal(a.body, &nt); err != nil || nt.Secret == "" || nt.Token.CreatedBy != "user:u-alice" {
			t.Fatalf("new token: %s", a.body)
		}
		e.want(e.call(e.admin, "POST", "/api/v1/tokens", "application/json", body), 409, wire.CodeConflict, "same name again")
		a = e.call(nt.Secret, "GET", "/api/v1/runs", "", nil)
		if a.status != 200 || !strings.Contains(string(a.body), bobRun.ID) || strings.Contains(string(a.body), carolRun.ID) {
			t.Errorf("bot lists: %d %s", a.status, a.body)
		}
		e.want(e.call(nt.Secret, "POST", "/api/v1/runs", "application/yaml", []byte(helloYAML)), 403, wire.CodeForbidden, "bot submits (out of scope)")
		a = e.call(e.admin, "GET", "/api/v1/tokens", "", nil)
		if a.status != 200 || !strings.Contains(string(a.body), "reader-bot") || strings.Contains(string(a.body), nt.Secret) || strings.Contains(string(a.body), "sha256:") {
			t.Errorf("token list: %d %s", a.status, a.body)
		}
		e.want(e.call(e.admin, "DELETE", "/api/v1/tokens/reader-bot", "", nil), 200, "", "revoke")
		e.want(e.call(nt.Secret, "GET", "/api/v1/runs", "", nil), 401, wire.CodeUnauthenticated, "revoked token")
	})

	t.Run("every decision is in the audit trail", func(t *testing.T) {
		// Reads are kept at the metadata level: the decision and the
		// answer's status, not the path (the resource names the run).
		a := e.as("bob", "GET", "/api/v1/runs/"+carolRun.ID)
		reqID := a.header.Get("X-Request-Id")
		recs := e.audit(url.Values{"principal": {"bob"}, "resource": {carolRun.ID}, "action": {"read"}})
		var found *audit.Record
		for i := range recs {
			if recs[i].RequestID == reqID {
				found = &recs[i]
			}
		}
		if found == nil || found.Decision != audit.Deny || found.Principal != "user:u-bob" || found.Tenant != "acme" ||
			found.Resource != `Hodei::Run::"`+carolRun.ID+`"` || found.Status != http.StatusNotFound || found.Path != "" ||
			!strings.HasPrefix(found.Remote, "127.0.0.1:") || !strings.Contains(found.Reason, "tenant-isolation") {
			t.Errorf("audit record of request %s: %+v (of %d)", reqID, found, len(recs))
		}
		for _, r := range recs {
			if r.Principal != "user:u-bob" || r.Action != "read" || !strings.Contains(r.Resource, carolRun.ID) {
				t.Errorf("filter let through %+v", r)
			}
		}
		// Failed authentications are recorded too.
		if recs := e.audit(url.Values{"action": {"authenticate"}, "decision": {"deny"}}); len(recs) < 6 {
			t.Errorf("%d failed authentications recorded", len(recs))
		}
		if recs := e.audit(url.Values{"principal": {"alice"}, "since": {"1h"}, "decision": {"allow"}}); len(recs) == 0 {
			t.Error("no allow of alice in the last hour")
		}
		if recs := e.audit(url.Values{"principal": {"alice"}, "until": {"2000-01-01T00:00:00Z"}}); len(recs) != 0 {
			t.Errorf("records before 2000: %v", recs)
		}
		rep, err := audit.Verify(server.AuditPath(e.srvDataDir()), audit.VerifyOptions{})
		if err != nil || rep.Records < 20 {
			t.Errorf("verify: %+v %v", rep, err)
		}
	})

	// Last: it closes the audit trail.
	t.Run("a decision that cannot be recorded is refused", func(t *testing.T) {
		e.want(e.as("alice", "GET", "/api/v1/runs"), 200, "", "alice lists before")
		if err := e.srv.Audit().Close(); err != nil {
			t.Fatal(err)
		}
		a := e.as("alice", "GET", "/api/v1/runs")
		e.want(a, 503, wire.CodeUnavailable, "alice lists with the audit trail closed")
		if !strings.Contains(string(a.body), "audit trail") {
			t.Errorf("503 body %s", a.body)
		}
		e.want(e.call("", "GET", "/api/v1/runs", "", nil), 503, wire.CodeUnavailable, "an anonymous request with the audit trail closed")
	})
}

func (e *secureEnv) srvDataDir() string {
	return strings.TrimSuffix(e.srv.Audit().Path(), "/audit/audit.jsonl")
}

func (e *secureEnv) audit(q url.Values) []audit.Record {
	e.t.Helper()
	a := e.call(e.admin, "GET", "/api/v1/audit?"+q.Encode(), "", nil)
	if a.status != 200 {
		e.t.Fatalf("audit query %v: %d %s", q, a.status, a.body)
	}
	var l api.AuditList
	if err := json.Unmarshal(a.body, &l); err != nil {
		e.t.Fatal(err)
	}
	return l.Records
}

// TestAuthOffLeavesTheAPIOpen checks that the zero SecurityOptions change
// nothing (other packages' tests rely on it).
func TestAuthOffLeavesTheAPIOpen(t *testing.T) {
	t.Parallel()
	e := start(t)
	resp, body := e.do(t, "GET", "/api/v1/runs", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("open API: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.do(t, "GET", "/api/v1/whoami", "", nil)
	if resp.StatusCode != 404 {
		t.Errorf("whoami without security: %d", resp.StatusCode)
	}
	if e.srv.Audit() != nil {
		t.Error("an audit trail without security")
	}
}

// TestLocalAdminTokenRefusedWhenTurnedOff: the local admin token works on
// the server that made it, and is refused (401) by the same server started
// again on the same data directory with NoLocalAdmin (--local-admin=false).
func TestLocalAdminTokenRefusedWhenTurnedOff(t *testing.T) {
	dir := t.TempDir()
	start := func(noAdmin bool, onToken func(string)) *server.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv, err := server.Start(ctx, server.Options{
			DataDir: dir, NATSListen: "none", HTTPAddr: "127.0.0.1:0",
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Security: server.SecurityOptions{Enabled: true, NoLocalAdmin: noAdmin, OnAdminToken: onToken},
		})
		if err != nil {
			t.Fatalf("server.Start: %v", err)
		}
		return srv
	}
	status := func(srv *server.Server, tok string) int {
		req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr()+"/api/v1/runs", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var admin string
	srv := start(false, func(tok string) { admin = tok })
	if admin == "" {
		t.Fatal("no local admin token was handed out")
	}
	if got := status(srv, admin); got != 200 {
		t.Fatalf("the local admin token on its server: %d", got)
	}
	srv.Close()
	srv = start(true, nil)
	defer srv.Close()
	if got := status(srv, admin); got != 401 {
		t.Errorf("the local admin token with the local admin turned off: %d, want 401", got)
	}
}
