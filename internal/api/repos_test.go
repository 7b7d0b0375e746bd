package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
)

// TestReposUnderCedar: a developer adds and removes the repositories of
// its tenant, a viewer lists them but may not add one, another tenant
// sees none; the webhook endpoint takes no bearer token, refuses a bad
// signature with 401 and audits it.
func TestReposUnderCedar(t *testing.T) {
	e := startSecure(t)
	repo := []byte(`{"name":"app","url":"https://github.com/acme/app.git","forge":"github","webhook_secret":"HOOK"}`)
	tok := func(u string) string { return e.toks[u] }

	e.want(e.call(tok("vera"), "POST", "/api/v1/repos", "application/json", repo), http.StatusForbidden, wire.CodeForbidden, "viewer adds a repository")
	e.want(e.call(tok("bob"), "POST", "/api/v1/repos", "application/json", repo), http.StatusCreated, "", "developer adds a repository")
	e.want(e.call(tok("bob"), "POST", "/api/v1/repos", "application/json", repo), http.StatusConflict, wire.CodeConflict, "the same name again")
	bad := []byte(`{"name":"x","url":"https://github.com/acme/x.git","forge":"svn"}`)
	e.want(e.call(tok("bob"), "POST", "/api/v1/repos", "application/json", bad), http.StatusBadRequest, wire.CodeBadRequest, "an unknown forge")

	a := e.as("vera", "GET", "/api/v1/repos")
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `"name":"app"`) || !strings.Contains(string(a.body), `"hook_path":"/api/v1/hooks/github/app?tenant=acme"`) {
		t.Errorf("viewer lists: %d %s", a.status, a.body)
	}
	e.want(e.as("vera", "GET", "/api/v1/repos/app"), http.StatusOK, "", "viewer shows a repository")
	if a := e.as("carol", "GET", "/api/v1/repos"); a.status != http.StatusOK || strings.Contains(string(a.body), `"app"`) {
		t.Errorf("another tenant lists: %d %s", a.status, a.body)
	}
	e.want(e.as("carol", "GET", "/api/v1/repos/app?tenant=acme"), http.StatusForbidden, wire.CodeForbidden, "another tenant's repository")
	e.want(e.call("", "GET", "/api/v1/repos", "", nil), http.StatusUnauthorized, wire.CodeUnauthenticated, "no token")

	// The webhook: no bearer token; the signature decides.
	body := []byte(`{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"1111111111111111111111111111111111111111"}`)
	req, _ := http.NewRequest("POST", e.base+"/api/v1/hooks/github/app?tenant=acme", strings.NewReader(string(body)))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "d-1")
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("webhook with a bad signature: %d, want 401", resp.StatusCode)
	}
	recs := e.audit(url.Values{"action": {"webhook"}})
	if len(recs) != 1 || recs[0].Decision != audit.Deny || recs[0].Principal != "webhook:github" || !strings.Contains(recs[0].Reason, "signature") {
		t.Errorf("audit of the webhook: %+v", recs)
	}

	e.want(e.as("vera", "DELETE", "/api/v1/repos/app"), http.StatusForbidden, wire.CodeForbidden, "viewer removes")
	e.want(e.as("bob", "DELETE", "/api/v1/repos/app"), http.StatusNoContent, "", "developer removes")
	e.want(e.as("bob", "GET", "/api/v1/repos/app"), http.StatusNotFound, wire.CodeNotFound, "after removal")
}
