package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/auth/oidctest"
)

var users = []oidctest.User{
	{ID: "u-bob", Username: "bob", RealmRoles: []string{"developer", "offline_access"}, Groups: []string{"/tenant:acme", "/staff"}},
	{ID: "u-vera", Username: "vera", ClientRoles: []string{"viewer"}, Tenant: "acme"},
	{ID: "u-olga", Username: "olga", RealmRoles: []string{"admin"}, Expired: true},
}

func verifier(t *testing.T, issuer string, skew time.Duration) *auth.OIDC {
	t.Helper()
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: issuer, Audiences: []string{oidctest.ClientHodei}, ClockSkew: skew})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func verify(o *auth.OIDC, tok string) (auth.Principal, error) {
	r := httptest.NewRequest("GET", "/api/v1/runs", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return o.Authenticate(r)
}

func TestOIDCAgainstARealProvider(t *testing.T) {
	t.Parallel()
	op := oidctest.Start(t, users)
	o := verifier(t, op.Issuer, 0)
	bob := op.Token(t, oidctest.ClientHodei, "bob")

	p, err := verify(o, bob)
	if err != nil {
		t.Fatalf("bob's token: %v", err)
	}
	if p.ID != "user:u-bob" || p.Kind != auth.KindUser || p.Name != "bob" || p.Tenant != "acme" ||
		!slices.Equal(p.Roles, []string{"developer", "offline_access"}) {
		t.Errorf("bob = %+v", p)
	}
	// Client roles and a tenant claim.
	if p, err := verify(o, op.Token(t, oidctest.ClientHodei, "vera")); err != nil || p.Tenant != "acme" || !slices.Equal(p.Roles, []string{"viewer"}) {
		t.Errorf("vera = %+v, %v", p, err)
	}

	invalid := []struct {
		name, tok, msg string
	}{
		{"signed by another key", oidctest.Resign(t, bob, nil), "signature"},
		{"another key, claims changed", oidctest.Resign(t, bob, func(c map[string]any) { c["realm_access"] = map[string]any{"roles": []string{"admin"}} }), "signature"},
		{"payload changed", oidctest.Tamper(t, bob), "signature"},
		{"wrong audience", op.Token(t, oidctest.ClientOther, "bob"), "audience"},
		{"expired", op.Token(t, oidctest.ClientHodei, "olga"), "expired"},
		{"garbage JWT", "eyJhbGciOiJSUzI1NiJ9.eyJ4Ijp9.AAAA", ""},
	}
	for _, c := range invalid {
		_, err := verify(o, c.tok)
		if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", c.name, err, c.msg)
		}
	}
	// Not a JWT at all: not this authenticator's business.
	if _, err := verify(o, "hodei_abc"); !errors.Is(err, auth.ErrNoCredentials) {
		t.Errorf("hodei token: %v", err)
	}

	// The clock skew is configurable: olga's token expired an hour ago.
	if _, err := verify(verifier(t, op.Issuer, 2*time.Hour), op.Token(t, oidctest.ClientHodei, "olga")); err != nil {
		t.Errorf("expired within a skew of 2h: %v", err)
	}

	// A token of another provider (its own key and issuer).
	other := oidctest.Start(t, users)
	if _, err := verify(o, other.Token(t, oidctest.ClientHodei, "bob")); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("another issuer's token: %v", err)
	}
	// The issuer alone: a verifier of an issuer that publishes this
	// provider's keys refuses bob's token, whose signature it can check,
	// because the token names another issuer.
	sameKeys := verifier(t, republish(t, op.Issuer), 0)
	if _, err := verify(sameKeys, bob); !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "issued by a different provider") {
		t.Errorf("a token of another issuer, with keys the verifier trusts: %v, want ErrInvalid for the issuer", err)
	}
}

// republish serves, at an address of its own, the discovery document of
// the provider at issuer with its own URL as issuer: same keys (jwks_uri),
// another issuer. It returns its URL.
func republish(t *testing.T, issuer string) string {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var url string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		d := maps.Clone(doc)
		d["issuer"] = url
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d)
	}))
	t.Cleanup(srv.Close)
	url = srv.URL
	return url
}

func TestOIDCIssuerDownIsUnavailableNotInvalid(t *testing.T) {
	t.Parallel()
	op := oidctest.Start(t, users)
	tok := op.Token(t, oidctest.ClientHodei, "bob")
	o := verifier(t, "http://127.0.0.1:1", 0)
	_, err := verify(o, tok)
	if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalid) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}

// TestLoginDeviceFlow signs in with the device flow, which the provider
// offers, so "auto" picks it. It waits for the provider's poll interval
// (5 s): the client must not poll faster (RFC 8628, section 3.5).
func TestLoginDeviceFlow(t *testing.T) {
	t.Parallel()
	op := oidctest.Start(t, users)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	shown := false
	c, err := auth.Login(ctx, auth.LoginOptions{
		Issuer: op.Issuer, ClientID: oidctest.ClientDevice, ClientSecret: oidctest.DeviceSecret, Flow: auth.FlowAuto,
		ShowCode: func(da *oauth2.DeviceAuthResponse) error { shown = true; return op.ApproveDevice("bob")(da) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !shown || c.RefreshToken == "" && c.AccessToken == "" {
		t.Fatalf("credential %+v", c)
	}
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: op.Issuer, Audiences: []string{oidctest.ClientDevice}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := verify(o, c.Bearer())
	if err != nil || p.Name != "bob" || p.Tenant != "acme" {
		t.Errorf("device token: %+v %v", p, err)
	}
}

// TestOIDCTenantMustBeAName: a token whose tenant (claim or group) is not a
// plain tenant name is refused, as such a tenant could not be made by hand.
func TestOIDCTenantMustBeAName(t *testing.T) {
	t.Parallel()
	op := oidctest.Start(t, []oidctest.User{
		{ID: "u-mal", Username: "mal", RealmRoles: []string{"developer"}, Tenant: "../x"},
		{ID: "u-grp", Username: "grp", RealmRoles: []string{"developer"}, Groups: []string{"/tenant:a/b"}},
		{ID: "u-ok", Username: "ok", RealmRoles: []string{"developer"}, Tenant: "acme-2"},
	})
	o := verifier(t, op.Issuer, 0)
	for _, u := range []string{"mal", "grp"} {
		_, err := verify(o, op.Token(t, oidctest.ClientHodei, u))
		if !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), auth.TenantPattern) {
			t.Errorf("%s: %v, want ErrInvalid with the tenant pattern", u, err)
		}
	}
	if p, err := verify(o, op.Token(t, oidctest.ClientHodei, "ok")); err != nil || p.Tenant != "acme-2" {
		t.Errorf("ok: %+v %v", p, err)
	}
}

// TestVerifiedTokenIsKeptOnlyWhileValid: a token verified once is answered
// from memory on the next requests, but not past its expiry (nor past the
// time a verified token is trusted without a new check).
func TestVerifiedTokenIsKeptOnlyWhileValid(t *testing.T) {
	t.Parallel()
	op := oidctest.Start(t, users)
	bob := op.Token(t, oidctest.ClientHodei, "bob")
	var mu sync.Mutex
	now := time.Now() // after the token was issued: not before its nbf
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: op.Issuer, Audiences: []string{oidctest.ClientHodei}, ClockSkew: -1, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if p, err := verify(o, bob); err != nil || p.Name != "bob" {
			t.Fatalf("request %d: %+v, %v", i, p, err)
		}
	}
	mu.Lock()
	now = now.Add(48 * time.Hour) // past any expiry of the provider's tokens
	mu.Unlock()
	if _, err := verify(o, bob); !errors.Is(err, auth.ErrInvalid) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("a verified token two days later: %v, want ErrInvalid (expired)", err)
	}
}
