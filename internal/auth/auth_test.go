package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func claimsOf(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClaimMappingKeycloakDefaults(t *testing.T) {
	t.Parallel()
	m := DefaultClaimMapping("hodei")
	// An access token as Keycloak writes it, with a group mapper (full
	// paths) and an audience mapper.
	p := m.Principal(claimsOf(t, `{
	  "sub": "f1c2", "preferred_username": "alice", "email": "alice@example.com",
	  "realm_access": {"roles": ["offline_access", "developer"]},
	  "resource_access": {"hodei": {"roles": ["maintainer"]}, "account": {"roles": ["manage-account"]}},
	  "groups": ["/staff", "/tenant:acme"]}`))
	if p.ID != "user:f1c2" || p.Kind != KindUser || p.Name != "alice" || p.Tenant != "acme" {
		t.Errorf("principal %+v", p)
	}
	if !slices.Equal(p.Roles, []string{"offline_access", "developer", "maintainer"}) {
		t.Errorf("roles %v", p.Roles)
	}
	if !slices.Equal(p.Groups, []string{"/staff", "/tenant:acme"}) {
		t.Errorf("groups %v", p.Groups)
	}
	// No tenant anywhere: the default tenant; no name: the email.
	p = m.Principal(claimsOf(t, `{"sub": "x", "email": "x@example.com"}`))
	if p.Tenant != "default" || p.Name != "x@example.com" || len(p.Roles) != 0 {
		t.Errorf("bare token: %+v", p)
	}
	// A tenant claim wins over groups.
	p = m.Principal(claimsOf(t, `{"sub": "x", "tenant": "globex", "groups": ["tenant:acme"]}`))
	if p.Tenant != "globex" {
		t.Errorf("tenant claim: %+v", p)
	}
}

func TestClaimMappingConfigured(t *testing.T) {
	t.Parallel()
	// Another issuer: roles in a nested custom claim and in a
	// space-separated string, tenants in "org.id", a role prefix, no
	// default tenant.
	m := ClaimMapping{
		Roles:         []string{"https://hodei.example/claims.roles", "scp"},
		RolePrefix:    "hodei-",
		Groups:        "memberOf",
		Username:      "upn",
		Tenant:        "org.id",
		DefaultTenant: "-",
	}.withDefaults("api://hodei")
	p := m.Principal(claimsOf(t, `{"sub": "s", "upn": "bob@corp",
	  "https://hodei": {"example/claims": {"roles": []}},
	  "scp": "hodei-viewer openid hodei-developer",
	  "org": {"id": "corp"}, "memberOf": ["a", "b"]}`))
	if p.Name != "bob@corp" || p.Tenant != "corp" || !slices.Equal(p.Roles, []string{"viewer", "developer"}) || len(p.Groups) != 2 {
		t.Errorf("principal %+v", p)
	}
	p = m.Principal(claimsOf(t, `{"sub": "s"}`))
	if p.Tenant != "" {
		t.Errorf("no default tenant: %+v", p)
	}
	// {client} stands for the client id, even one with dots.
	m = ClaimMapping{Roles: []string{"resource_access.{client}.roles"}, Client: "ci.hodei"}.withDefaults("x")
	p = m.Principal(claimsOf(t, `{"sub": "s", "resource_access": {"ci.hodei": {"roles": ["admin"]}}}`))
	if !slices.Equal(p.Roles, []string{"admin"}) {
		t.Errorf("client roles: %v", p.Roles)
	}
}

func reqWith(tok string) *http.Request {
	r := httptest.NewRequest("GET", "/api/v1/runs", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

func TestTokensRegistry(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth", "tokens.json")
	reg, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	reg.now = func() time.Time { return now }
	ci, err := reg.Create(TokenRequest{Name: "ci", Tenant: "acme", Roles: []string{"developer"}, Scopes: []string{"submit", "read"}, TTL: "30d"}, "admin:local")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ci.Secret, TokenPrefix) || len(ci.Secret) != len(TokenPrefix)+43 {
		t.Errorf("secret %q", ci.Secret)
	}
	if ci.Token.ExpiresAt == nil || !ci.Token.ExpiresAt.Equal(now.Add(30*24*time.Hour)) || ci.Token.CreatedBy != "admin:local" {
		t.Errorf("token %+v", ci.Token)
	}
	if _, err := reg.Create(TokenRequest{Name: "ci", Roles: []string{"viewer"}}, ""); !errors.Is(err, ErrTokenExists) {
		t.Errorf("duplicate name: %v", err)
	}
	for _, bad := range []TokenRequest{{Name: "", Roles: []string{"x"}}, {Name: "a b", Roles: []string{"x"}}, {Name: "n"}, {Name: "n", Roles: []string{"x"}, TTL: "soon"}} {
		if _, err := reg.Create(bad, ""); !errors.Is(err, ErrBadToken) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	// The file holds the hash, never the secret, and only its owner reads it.
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), ci.Secret) || !strings.Contains(string(data), HashToken(ci.Secret)) {
		t.Errorf("tokens file: %s", data)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	p, err := reg.Authenticate(reqWith(ci.Secret))
	if err != nil || p.ID != "token:ci" || p.Kind != KindToken || p.Tenant != "acme" || !slices.Equal(p.Scopes, []string{"submit", "read"}) {
		t.Errorf("authenticate: %+v %v", p, err)
	}
	// Another registry on the same file knows it.
	reg2, err := OpenTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	reg2.now = reg.now
	if p, err := reg2.Authenticate(reqWith(ci.Secret)); err != nil || p.Name != "ci" {
		t.Errorf("reloaded: %+v %v", p, err)
	}
	// Not its token, a JWT, no token: not its business.
	for _, tok := range []string{NewSecret(), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", ""} {
		if _, err := reg.Authenticate(reqWith(tok)); !errors.Is(err, ErrNoCredentials) {
			t.Errorf("%q: %v", tok, err)
		}
	}
	// Expired.
	now = now.Add(31 * 24 * time.Hour)
	if _, err := reg.Authenticate(reqWith(ci.Secret)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v", err)
	}
	// Revoked.
	if _, err := reg.Revoke(ci.Token.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Revoke("ci"); !errors.Is(err, ErrTokenNotFound) {
		t.Errorf("revoke twice: %v", err)
	}
	if len(reg.List()) != 0 {
		t.Errorf("list after revoke: %v", reg.List())
	}
}

func TestLocalAdminAndChain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "admin-token.json")
	admin, secret, err := EnsureLocalAdmin(path)
	if err != nil || secret == "" {
		t.Fatalf("first start: %v %q", err, secret)
	}
	again, secret2, err := EnsureLocalAdmin(path)
	if err != nil || secret2 != "" {
		t.Fatalf("second start must not make a new token: %v %q", err, secret2)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), secret) {
		t.Error("the admin token is stored in clear")
	}
	reg, _ := OpenTokens(filepath.Join(dir, "tokens.json"))
	api, _ := reg.Create(TokenRequest{Name: "bot", Tenant: "t", Roles: []string{"viewer"}}, "")
	chain := Chain{reg, again}
	cases := []struct {
		tok    string
		wantID string
		want   error
	}{
		{secret, "admin:local", nil},
		{api.Secret, "token:bot", nil},
		{"", "", ErrNoCredentials},
		{NewSecret(), "", ErrInvalid},
		{"not-a-token", "", ErrInvalid},
	}
	for _, c := range cases {
		p, err := chain.Authenticate(reqWith(c.tok))
		if c.want != nil {
			if !errors.Is(err, c.want) {
				t.Errorf("%q: %v, want %v", c.tok, err, c.want)
			}
			continue
		}
		if err != nil || p.ID != c.wantID {
			t.Errorf("%q: %+v %v", c.tok, p, err)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Basic dTpw")
	if _, err := chain.Authenticate(r); !errors.Is(err, ErrInvalid) {
		t.Errorf("basic auth: %v", err)
	}
	_ = admin
}

func TestCredentialsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hodei", "credentials.json")
	if err := SaveCredential(path, "http://127.0.0.1:8080/", Credential{Token: "hodei_x"}); err != nil {
		t.Fatal(err)
	}
	jwt := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	if err := SaveCredential(path, "HTTPS://CI.example.com", Credential{Issuer: "https://idp", AccessToken: "opaque", IDToken: jwt}); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	c, err := LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers[ServerKey("http://127.0.0.1:8080")].Bearer(); got != "hodei_x" {
		t.Errorf("token credential: %q", got)
	}
	// An opaque access token is not sent: the ID token is.
	if got := c.Servers[ServerKey("https://ci.example.com/")].Bearer(); got != jwt {
		t.Errorf("oidc credential: %q", got)
	}
	if got := (Credential{AccessToken: jwt, IDToken: "other"}).Bearer(); got != jwt {
		t.Errorf("JWT access token: %q", got)
	}
	exp := Credential{AccessToken: jwt, Expiry: time.Now().Add(10 * time.Second)}
	if !exp.Expired(time.Now()) || (Credential{Token: "x"}).Expired(time.Now()) {
		t.Error("Expired")
	}
}

func TestPKCEChallengeRFC7636(t *testing.T) {
	t.Parallel()
	// RFC 7636, appendix B.
	if got := PKCEChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("challenge %q", got)
	}
}

func TestParseTTL(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]time.Duration{"": 0, "0": 0, "90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseTTL(s); err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"d", "-1h", "1.5d", "x"} {
		if _, err := ParseTTL(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}
