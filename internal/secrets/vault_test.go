package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVault is a loopback stand-in for the parts of Vault's HTTP API that
// the Vault provider calls: AppRole login, KV v2 data (GET, PUT/POST with
// check-and-set) and metadata (GET, LIST, DELETE). It checks the token of
// every request. It is not Vault: it proves that the official client is
// driven as Vault's API documents, not that a real Vault agrees.
type fakeVault struct {
	mu       sync.Mutex
	roleID   string
	secretID string
	tokens   map[string]bool
	logins   int
	entries  map[string]*fakeEntry // path under the mount -> entry
	requests []string
}

type fakeEntry struct {
	versions []fakeVersion // index i is version i+1
}

type fakeVersion struct {
	data    map[string]any
	created time.Time
}

func newFakeVault() *fakeVault {
	return &fakeVault{roleID: "role-1", secretID: "secret-1", tokens: map[string]bool{"root-token": true}, entries: map[string]*fakeEntry{}}
}

func (f *fakeVault) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]bool{}
}

func vaultJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func vaultErr(w http.ResponseWriter, status int, msg string) {
	vaultJSON(w, status, map[string]any{"errors": []string{msg}})
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	method := r.Method
	if method == http.MethodGet && r.URL.Query().Get("list") == "true" {
		method = "LIST"
	}
	f.requests = append(f.requests, method+" "+r.URL.Path)
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if path == "auth/approle/login" {
		if method != http.MethodPut && method != http.MethodPost {
			vaultErr(w, 405, "method")
			return
		}
		var body struct {
			RoleID   string `json:"role_id"`
			SecretID string `json:"secret_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body.RoleID != f.roleID || body.SecretID != f.secretID {
			vaultErr(w, 400, "invalid role or secret ID")
			return
		}
		f.logins++
		tok := "approle-token-" + strconv.Itoa(f.logins)
		f.tokens[tok] = true
		vaultJSON(w, 200, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": 3600, "renewable": true, "policies": []string{"hodei"}}})
		return
	}
	if !f.tokens[r.Header.Get("X-Vault-Token")] {
		vaultErr(w, 403, "permission denied")
		return
	}
	switch {
	case strings.HasPrefix(path, "secret/data/"):
		f.data(w, r, method, strings.TrimPrefix(path, "secret/data/"))
	case strings.HasPrefix(path, "secret/metadata/"):
		f.metadata(w, method, strings.TrimPrefix(path, "secret/metadata/"))
	default:
		vaultErr(w, 404, "no handler for route "+path)
	}
}

func versionMeta(n int, v fakeVersion) map[string]any {
	return map[string]any{"version": n, "created_time": v.created.Format(time.RFC3339Nano), "deletion_time": "", "destroyed": false, "custom_metadata": nil}
}

func (f *fakeVault) data(w http.ResponseWriter, r *http.Request, method, p string) {
	e := f.entries[p]
	switch method {
	case http.MethodGet:
		if e == nil || len(e.versions) == 0 {
			vaultJSON(w, 404, map[string]any{"errors": []string{}})
			return
		}
		n := len(e.versions)
		if q := r.URL.Query().Get("version"); q != "" {
			n, _ = strconv.Atoi(q)
			if n < 1 || n > len(e.versions) {
				vaultJSON(w, 404, map[string]any{"errors": []string{}})
				return
			}
		}
		v := e.versions[n-1]
		vaultJSON(w, 200, map[string]any{"data": map[string]any{"data": v.data, "metadata": versionMeta(n, v)}})
	case http.MethodPut, http.MethodPost:
		var body struct {
			Data    map[string]any `json:"data"`
			Options struct {
				CAS *int `json:"cas"`
			} `json:"options"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Data == nil {
			vaultErr(w, 400, "no data provided")
			return
		}
		if e == nil {
			e = &fakeEntry{}
			f.entries[p] = e
		}
		if body.Options.CAS != nil && *body.Options.CAS != len(e.versions) {
			vaultErr(w, 400, "check-and-set parameter did not match the current version")
			return
		}
		v := fakeVersion{data: body.Data, created: time.Now().UTC()}
		e.versions = append(e.versions, v)
		vaultJSON(w, 200, map[string]any{"data": versionMeta(len(e.versions), v)})
	default:
		vaultErr(w, 405, "unsupported operation")
	}
}

func (f *fakeVault) metadata(w http.ResponseWriter, method, p string) {
	switch method {
	case "LIST":
		// Vault lists the folder a path names, with or without its
		// trailing slash (the client strips it).
		if p != "" && !strings.HasSuffix(p, "/") {
			p += "/"
		}
		seen := map[string]bool{}
		for k := range f.entries {
			if rest, ok := strings.CutPrefix(k, p); ok && rest != "" {
				if i := strings.IndexByte(rest, '/'); i >= 0 {
					rest = rest[:i+1]
				}
				seen[rest] = true
			}
		}
		if len(seen) == 0 {
			vaultJSON(w, 404, map[string]any{"errors": []string{}})
			return
		}
		keys := make([]string, 0, len(seen))
		for k := range seen {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		vaultJSON(w, 200, map[string]any{"data": map[string]any{"keys": keys}})
	case http.MethodGet:
		e := f.entries[p]
		if e == nil {
			vaultJSON(w, 404, map[string]any{"errors": []string{}})
			return
		}
		versions := map[string]any{}
		for i, v := range e.versions {
			versions[strconv.Itoa(i+1)] = map[string]any{"created_time": v.created.Format(time.RFC3339Nano), "deletion_time": "", "destroyed": false}
		}
		last := e.versions[len(e.versions)-1]
		vaultJSON(w, 200, map[string]any{"data": map[string]any{
			"cas_required": false, "created_time": e.versions[0].created.Format(time.RFC3339Nano),
			"current_version": len(e.versions), "custom_metadata": nil, "delete_version_after": "0s",
			"max_versions": 0, "oldest_version": 0, "updated_time": last.created.Format(time.RFC3339Nano), "versions": versions,
		}})
	case http.MethodDelete:
		delete(f.entries, p)
		w.WriteHeader(http.StatusNoContent)
	default:
		vaultErr(w, 405, "unsupported operation")
	}
}

func startFakeVault(t *testing.T) (*fakeVault, string) {
	t.Helper()
	f := newFakeVault()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func TestVaultTokenAuthKVv2(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, addr := startFakeVault(t)
	v, err := NewVault(ctx, VaultOptions{Address: addr, Token: "root-token"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "API_KEY"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing secret: %v", err)
	}
	m1 := mustPut(t, ctx, v, "API_KEY", "first-value")
	m2 := mustPut(t, ctx, v, "API_KEY", "second-value")
	if m1.Version != "1" || m2.Version != "2" {
		t.Errorf("versions %s, %s", m1.Version, m2.Version)
	}
	mustPut(t, ctx, v, "OTHER", "other-value")
	got, err := v.Get(ctx, "API_KEY")
	if err != nil || got.Value != "second-value" || got.Version != "2" {
		t.Fatalf("Get = %q version %s, %v", got.Value, got.Version, err)
	}
	old, err := v.GetVersion(ctx, "API_KEY", "1")
	if err != nil || old.Value != "first-value" {
		t.Fatalf("GetVersion(1) = %q, %v", old.Value, err)
	}
	list, err := v.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		f.mu.Lock()
		t.Fatalf("List = %+v; requests %v", list, f.requests)
	}
	if fmt.Sprintf("%s %s %s %s", list[0].Name, list[0].Version, list[1].Name, list[1].Version) != "API_KEY 2 OTHER 1" {
		t.Errorf("List = %+v", list)
	}
	r, err := v.Restore(ctx, "API_KEY", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := v.Get(ctx, "API_KEY"); got.Value != "first-value" || got.Version != r.Version || r.Version != "3" {
		t.Errorf("after Restore(1): %q version %s (restore said %s)", got.Value, got.Version, r.Version)
	}
	if err := v.Delete(ctx, "API_KEY"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "API_KEY"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []string{"GET /v1/secret/data/hodei/API_KEY", "PUT /v1/secret/data/hodei/API_KEY", "LIST /v1/secret/metadata/hodei", "GET /v1/secret/metadata/hodei/OTHER", "DELETE /v1/secret/metadata/hodei/API_KEY"}
	for _, w := range want {
		found := false
		for _, r := range f.requests {
			found = found || r == w
		}
		if !found {
			t.Errorf("no request %q among %v", w, f.requests)
		}
	}
}

func TestVaultAppRoleLoginAndReloginOn403(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, addr := startFakeVault(t)
	if _, err := NewVault(ctx, VaultOptions{Address: addr, RoleID: "role-1", SecretID: "wrong"}); err == nil {
		t.Fatal("login with a wrong secret id succeeded")
	}
	v, err := NewVault(ctx, VaultOptions{Address: addr, RoleID: "role-1", SecretID: "secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, ctx, v, "TOKEN", "value-1")
	f.revokeAll() // the AppRole token expires
	got, err := v.Get(ctx, "TOKEN")
	if err != nil || got.Value != "value-1" {
		t.Fatalf("Get after the token expired: %q, %v", got.Value, err)
	}
	f.mu.Lock()
	logins := f.logins
	f.mu.Unlock()
	if logins != 2 {
		t.Errorf("%d logins, want 2 (start, then after the 403)", logins)
	}
	tv, err := NewVault(ctx, VaultOptions{Address: addr, Token: "not-a-token"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tv.Get(ctx, "TOKEN"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get with a bad token: %v, want a permission error", err)
	}
}
