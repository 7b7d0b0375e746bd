package authz

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/auth"
)

func mustDefault(t *testing.T) *Cedar {
	t.Helper()
	p, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return NewCedar(p)
}

// tenantRequests are the requests on resources of a tenant.
func tenantRequests(tenant string) []Request {
	run := Resource{Type: TypeRun, ID: "run-" + tenant, Tenant: tenant, Attrs: map[string]string{"state": "running", "pipeline": "ci"}}
	return []Request{
		{Action: ActSubmit, Resource: Resource{Type: TypePipeline, ID: "ci.yaml", Tenant: tenant, Attrs: map[string]string{"file": "ci.yaml"}}},
		{Action: ActRead, Resource: run},
		{Action: ActRead, Resource: Tenant(tenant)},
		{Action: ActReadLogs, Resource: run},
		{Action: ActReadArtifacts, Resource: run},
		{Action: ActCancel, Resource: run},
		{Action: ActApproveJob, Resource: run},
		{Action: ActListSecrets, Resource: Resource{Type: TypeSecret, ID: "db-password", Tenant: tenant}},
		{Action: ActManageSecrets, Resource: Resource{Type: TypeSecret, ID: "db-password", Tenant: tenant}},
		{Action: ActListSecrets, Resource: Tenant(tenant)},
		{Action: ActListRepos, Resource: Tenant(tenant)},
		{Action: ActListRepos, Resource: Resource{Type: TypeRepo, ID: "web", Tenant: tenant}},
		{Action: ActManageRepos, Resource: Tenant(tenant)},
		{Action: ActManageRepos, Resource: Resource{Type: TypeRepo, ID: "web", Tenant: tenant}},
		{Action: ActRunRepo, Resource: Resource{Type: TypeRepo, ID: "web", Tenant: tenant}},
	}
}

var clusterRequests = []Request{
	{Action: ActRead, Resource: Cluster()},
	{Action: ActReadWorkers, Resource: Cluster()},
	{Action: ActReadWorkers, Resource: Resource{Type: TypeWorker, ID: "w1", Attrs: map[string]string{"pool": "local"}}},
	{Action: ActManageWorkers, Resource: Resource{Type: TypeWorker, ID: "w1"}},
	{Action: ActManageWorkers, Resource: Cluster()},
	{Action: ActReadAudit, Resource: Cluster()},
	{Action: ActReadMetrics, Resource: Cluster()},
	{Action: ActManageTokens, Resource: Cluster()},
	{Action: ActAdmin, Resource: Cluster()},
}

func key(r Request) string { return r.Action + " " + r.Resource.Type }

// TestDefaultPolicies checks every role against every action, on its own
// tenant, on another tenant, and on the cluster.
func TestDefaultPolicies(t *testing.T) {
	t.Parallel()
	c := mustDefault(t)
	ownTenant := map[string][]string{ // what each role may do in its own tenant
		"admin":      {"submit Pipeline", "read Run", "read Tenant", "readLogs Run", "readArtifacts Run", "cancel Run", "approveJob Run", "listSecrets Secret", "manageSecrets Secret", "listSecrets Tenant", "listRepos Tenant", "listRepos Repository", "manageRepos Tenant", "manageRepos Repository", "runRepo Repository"},
		"maintainer": {"submit Pipeline", "read Run", "read Tenant", "readLogs Run", "readArtifacts Run", "cancel Run", "approveJob Run", "listSecrets Secret", "manageSecrets Secret", "listSecrets Tenant", "listRepos Tenant", "listRepos Repository", "manageRepos Tenant", "manageRepos Repository", "runRepo Repository"},
		"developer":  {"submit Pipeline", "read Run", "read Tenant", "readLogs Run", "readArtifacts Run", "cancel Run", "approveJob Run", "listSecrets Secret", "listSecrets Tenant", "listRepos Tenant", "listRepos Repository", "manageRepos Tenant", "manageRepos Repository", "runRepo Repository"},
		"viewer":     {"read Run", "read Tenant", "readLogs Run", "readArtifacts Run", "listRepos Tenant", "listRepos Repository"},
		"":           {},
	}
	otherTenant := map[string][]string{"admin": ownTenant["admin"]} // nobody else
	cluster := map[string][]string{
		"admin":      {"read Cluster", "readWorkers Cluster", "readWorkers Worker", "manageWorkers Worker", "manageWorkers Cluster", "readAudit Cluster", "readMetrics Cluster", "manageTokens Cluster", "admin Cluster"},
		"maintainer": {"readWorkers Cluster", "readWorkers Worker"},
		"developer":  {"readWorkers Cluster", "readWorkers Worker"},
		"viewer":     {"readWorkers Cluster", "readWorkers Worker"},
	}
	for role := range ownTenant {
		p := auth.Principal{ID: "user:u-" + role, Kind: auth.KindUser, Name: "u-" + role, Tenant: "acme"}
		if role != "" {
			p.Roles = []string{role}
		}
		check := func(where string, reqs []Request, allowed []string) {
			for _, r := range reqs {
				r.Principal = p
				d, err := c.Authorize(context.Background(), r)
				if err != nil {
					t.Fatalf("%s: %v", key(r), err)
				}
				if want := slices.Contains(allowed, key(r)); d.Allow != want {
					t.Errorf("role %q, %s, %s: allow = %v, want %v (%s)", role, where, key(r), d.Allow, want, d.Explain())
				}
				if len(d.Errors) > 0 {
					t.Errorf("role %q, %s: evaluation errors %v", role, key(r), d.Errors)
				}
			}
		}
		check("own tenant", tenantRequests("acme"), ownTenant[role])
		check("other tenant", tenantRequests("globex"), otherTenant[role])
		check("cluster", clusterRequests, cluster[role])
	}
}

func TestTenantlessPrincipalReachesNoTenant(t *testing.T) {
	t.Parallel()
	c := mustDefault(t)
	p := auth.Principal{ID: "user:x", Kind: auth.KindUser, Name: "x", Roles: []string{"maintainer"}}
	for _, r := range tenantRequests("") {
		r.Principal = p
		if d, _ := c.Authorize(context.Background(), r); d.Allow {
			t.Errorf("%s on tenant \"\": allowed by %v", key(r), d.Reasons)
		}
	}
	for _, r := range tenantRequests("acme") {
		r.Principal = p
		if d, _ := c.Authorize(context.Background(), r); d.Allow {
			t.Errorf("%s on tenant acme: allowed by %v", key(r), d.Reasons)
		}
	}
}

func TestTenantIsolationForbidWinsOverALaterPermit(t *testing.T) {
	t.Parallel()
	// A careless permit for developers on every run: the default forbid
	// still keeps other tenants' runs out of reach.
	p, err := Load(DefaultSchemaFile, DefaultSchema(), map[string][]byte{
		DefaultPoliciesFile: DefaultPolicyText(),
		"extra.cedar":       []byte(`@id("careless") permit (principal in Hodei::Role::"developer", action == Hodei::Action::"read", resource is Hodei::Run);`),
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewCedar(p).Authorize(context.Background(), Request{
		Principal: auth.Principal{ID: "user:d", Name: "d", Kind: "user", Tenant: "acme", Roles: []string{"developer"}},
		Action:    ActRead, Resource: Resource{Type: TypeRun, ID: "r", Tenant: "globex"},
	})
	if err != nil || d.Allow || !slices.Equal(d.Reasons, []string{"tenant-isolation"}) {
		t.Errorf("decision %+v, %v; want deny by tenant-isolation", d, err)
	}
}

func TestScopesNarrowAToken(t *testing.T) {
	t.Parallel()
	a := Scoped{Next: mustDefault(t)}
	p := auth.Principal{ID: "token:ci", Kind: auth.KindToken, Name: "ci", Tenant: "acme", Roles: []string{"developer"}, Scopes: []string{ActSubmit}}
	run := Resource{Type: TypeRun, ID: "r", Tenant: "acme"}
	if d, _ := a.Authorize(context.Background(), Request{Principal: p, Action: ActSubmit, Resource: Resource{Type: TypePipeline, ID: "x", Tenant: "acme"}}); !d.Allow {
		t.Errorf("submit within scope: %+v", d)
	}
	if d, _ := a.Authorize(context.Background(), Request{Principal: p, Action: ActCancel, Resource: run}); d.Allow || d.Reasons[0] != "token-scopes" {
		t.Errorf("cancel outside scope: %+v", d)
	}
	p.Scopes = []string{"*"}
	if d, _ := a.Authorize(context.Background(), Request{Principal: p, Action: ActCancel, Resource: run}); !d.Allow {
		t.Errorf("cancel with scope *: %+v", d)
	}
}

func TestUnknownActionIsAnError(t *testing.T) {
	t.Parallel()
	_, err := mustDefault(t).Authorize(context.Background(), Request{Action: "fly", Resource: Cluster()})
	if err == nil || !strings.Contains(err.Error(), `unknown action "fly"`) {
		t.Errorf("err = %v", err)
	}
}

// TestInvalidPolicyFilesNameFileAndLine loads broken policy directories and
// checks the problems against testdata/invalid/*/want.txt.
func TestInvalidPolicyFilesNameFileAndLine(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob("testdata/invalid/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, dir := range dirs {
		want, err := os.ReadFile(filepath.Join(dir, "want.txt"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = LoadDir(dir)
		if err == nil {
			t.Errorf("%s: loaded, want an error", dir)
			continue
		}
		got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
		if os.Getenv("UPDATE_GOLDEN") != "" {
			os.WriteFile(filepath.Join(dir, "want.txt"), []byte(got+"\n"), 0o644)
			continue
		}
		if got != strings.TrimSpace(string(want)) {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", dir, got, want)
		}
	}
}

func TestLoadDirWithOwnSchemaAndPolicies(t *testing.T) {
	t.Parallel()
	p, err := LoadDir("testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.IDs(); !slices.Equal(got, []string{"ops-all", "readers"}) {
		t.Errorf("ids %v", got)
	}
	c := NewCedar(p)
	ops := auth.Principal{ID: "user:o", Name: "o", Kind: "user", Tenant: "x", Groups: []string{"ops"}}
	if d, _ := c.Authorize(context.Background(), Request{Principal: ops, Action: ActCancel, Resource: Resource{Type: TypeRun, ID: "r", Tenant: "y"}}); !d.Allow {
		t.Errorf("ops group: %+v", d)
	}
	reader := auth.Principal{ID: "user:r", Name: "r", Kind: "user", Tenant: "x", Roles: []string{"reader"}}
	if d, _ := c.Authorize(context.Background(), Request{Principal: reader, Action: ActRead, Resource: Resource{Type: TypeRun, ID: "r", Tenant: "x"}}); !d.Allow {
		t.Errorf("reader, own tenant: %+v", d)
	}
	if d, _ := c.Authorize(context.Background(), Request{Principal: reader, Action: ActCancel, Resource: Resource{Type: TypeRun, ID: "r", Tenant: "x"}}); d.Allow {
		t.Errorf("reader may not cancel: %+v", d)
	}
}

func TestPolicyTestCases(t *testing.T) {
	t.Parallel()
	cases, err := ParseTestCases([]byte(`[
	  {"name": "viewer cannot submit", "principal": {"name": "vera", "tenant": "acme", "roles": ["viewer"]},
	   "action": "submit", "resource": {"type": "Pipeline", "id": "ci.yaml", "tenant": "acme"}, "expect": "deny"},
	  {"principal": {"name": "dev", "tenant": "acme", "roles": ["developer"]},
	   "action": "read", "resource": {"type": "Tenant", "id": "acme"}, "expect": "allow"},
	  {"principal": {"name": "dev", "tenant": "acme", "roles": ["developer"]},
	   "action": "read", "resource": {"type": "Cluster"}, "expect": "allow"}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	res := RunTests(context.Background(), mustDefault(t), cases)
	if !res[0].Pass() || !res[1].Pass() || res[2].Pass() {
		t.Errorf("results: %+v", res)
	}
	if res[1].Case.Name != `user:dev read Hodei::Tenant::"acme"` {
		t.Errorf("default name %q", res[1].Case.Name)
	}
	if _, err := ParseTestCases([]byte(`{"principal": {}, "action": "read", "resource": {}, "expect": "maybe"}`)); err == nil {
		t.Error("expect maybe: no error")
	}
	if _, err := ParseTestCases([]byte(`{"principal": {}, "actoin": "read"}`)); err == nil {
		t.Error("unknown field: no error")
	}
	lines, err := ParseTestCases([]byte("{\"action\": \"read\"}\n{\"action\": \"cancel\"}\n"))
	if err != nil || len(lines) != 2 {
		t.Errorf("JSON lines: %v %v", lines, err)
	}
}

// TestDocsQuoteTheEmbeddedPolicies keeps docs/security.md in step with the
// schema and policies the binary embeds.
func TestDocsQuoteTheEmbeddedPolicies(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string][]byte{DefaultSchemaFile: DefaultSchema(), DefaultPoliciesFile: DefaultPolicyText()} {
		if !strings.Contains(string(doc), "```cedar\n"+string(text)+"```") {
			t.Errorf("docs/security.md does not quote %s as embedded", name)
		}
	}
}

// TestPoliciesListTheirRoles: the roles a token may be given are those the
// policies name, the embedded defaults' or a directory's own.
func TestPoliciesListTheirRoles(t *testing.T) {
	t.Parallel()
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if got := NewCedar(def).Roles(); !slices.Equal(got, []string{"admin", "developer", "maintainer", "viewer"}) {
		t.Errorf("default roles %v", got)
	}
	own, err := LoadDir("testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	if got := own.Roles(); !slices.Equal(got, []string{"reader"}) {
		t.Errorf("roles of testdata/valid %v", got)
	}
}

// TestRepeatedRequestsGetTheSameDecisions: decisions are kept by everything
// they depend on; asking again, in any order, gives what a fresh evaluation
// gives, and a request that differs in one thing (the resource's tenant,
// an attribute, the principal's roles or tenant) is decided afresh.
func TestRepeatedRequestsGetTheSameDecisions(t *testing.T) {
	c := mustDefault(t)
	dev := auth.Principal{ID: "user:d", Name: "d", Kind: "user", Tenant: "acme", Roles: []string{"developer"}}
	viewer := dev
	viewer.Roles = []string{"viewer"}
	other := dev
	other.Tenant = "globex"
	run := func(tenant, state string) Resource {
		return Resource{Type: TypeRun, ID: "r1", Tenant: tenant, Attrs: map[string]string{"pipeline": "p", "state": state}}
	}
	reqs := []Request{
		{Principal: dev, Action: ActRead, Resource: run("acme", "running")},
		{Principal: dev, Action: ActRead, Resource: run("globex", "running")},
		{Principal: other, Action: ActRead, Resource: run("acme", "running")},
		{Principal: dev, Action: ActCancel, Resource: run("acme", "running")},
		{Principal: viewer, Action: ActCancel, Resource: run("acme", "running")},
		{Principal: dev, Action: ActCancel, Resource: run("acme", "succeeded")},
		{Principal: dev, Action: ActReadWorkers, Resource: Cluster()},
	}
	fresh := make([]Decision, len(reqs))
	for i, r := range reqs {
		var err error
		if fresh[i], err = NewCedar(c.Policies()).Authorize(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if fresh[0].Allow == fresh[1].Allow || fresh[0].Allow == fresh[2].Allow || fresh[3].Allow == fresh[4].Allow {
		t.Fatalf("the requests do not tell the cases apart: %+v", fresh)
	}
	for round := range 3 {
		for k := range reqs {
			i := (k*5 + round) % len(reqs)
			d, err := c.Authorize(context.Background(), reqs[i])
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != fresh[i].Allow || !slices.Equal(d.Reasons, fresh[i].Reasons) {
				t.Errorf("round %d, request %d: %+v, fresh %+v", round, i, d, fresh[i])
			}
		}
	}
}
