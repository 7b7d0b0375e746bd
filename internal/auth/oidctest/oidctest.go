// Package oidctest runs a real OpenID provider inside tests: the example
// provider of github.com/zitadel/oidc (discovery, JWKS, authorization code
// with PKCE, device flow, token endpoint, all signing with its own RSA key)
// on a loopback port, with users whose roles, groups and tenant become
// claims of their access tokens, and a "browser" that drives its login
// pages over HTTP.
//
// What is ours and not the provider's: the example storage knows users but
// not their roles, so Storage wraps it to (1) add Keycloak-shaped claims
// (realm_access.roles, resource_access.<client>.roles, groups, tenant,
// preferred_username) to access tokens, (2) issue access tokens as JWTs
// (the example clients issue opaque ones; Keycloak issues JWTs), and (3)
// give the users marked Expired tokens that expired an hour before they
// were issued, which the provider then signs like any other.
package oidctest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
	"golang.org/x/text/language"

	"github.com/hodei-ci/hodei/internal/auth"
)

// Password of every user.
const Password = "verysecure"

// User is a user of the provider.
type User struct {
	ID       string
	Username string
	// RealmRoles go to realm_access.roles; ClientRoles to
	// resource_access.<client id>.roles.
	RealmRoles  []string
	ClientRoles []string
	Groups      []string
	Tenant      string // the "tenant" claim, if set
	Expired     bool   // tokens expire an hour before they are issued
}

// Provider is a running OpenID provider.
type Provider struct {
	Issuer string
	users  []User
	hc     *http.Client
}

type userStore struct{ users []User }

func (u userStore) find(f func(User) bool) *storage.User {
	for _, x := range u.users {
		if f(x) {
			return &storage.User{ID: x.ID, Username: x.Username, Password: Password, FirstName: x.Username,
				LastName: "Test", Email: x.Username + "@example.com", EmailVerified: true, PreferredLanguage: language.English}
		}
	}
	return nil
}

// GetUserByID also accepts a username: the example's device flow makes the
// username the subject.
func (u userStore) GetUserByID(id string) *storage.User {
	return u.find(func(x User) bool { return x.ID == id || x.Username == id })
}

func (u userStore) GetUserByUsername(name string) *storage.User {
	return u.find(func(x User) bool { return x.Username == name })
}

func (u userStore) ExampleClientID() string { return storage.ServiceUserID }

// Storage is the example storage with the three changes described in the
// package comment.
type Storage struct {
	*storage.Storage
	users []User
}

func (s *Storage) user(idOrName string) (User, bool) {
	for _, u := range s.users {
		if u.ID == idOrName || u.Username == idOrName { // the device flow's subject is the username
			return u, true
		}
	}
	return User{}, false
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

// GetClientByClientID gives every client JWT access tokens.
func (s *Storage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

// GetPrivateClaimsFromScopes adds the user's roles, groups and tenant.
func (s *Storage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	u, ok := s.user(userID)
	if !ok {
		return claims, nil
	}
	claims["preferred_username"] = u.Username
	if len(u.RealmRoles) > 0 {
		claims["realm_access"] = map[string]any{"roles": u.RealmRoles}
	}
	if len(u.ClientRoles) > 0 {
		claims["resource_access"] = map[string]any{clientID: map[string]any{"roles": u.ClientRoles}}
	}
	if len(u.Groups) > 0 {
		claims["groups"] = u.Groups
	}
	if u.Tenant != "" {
		claims["tenant"] = u.Tenant
	}
	return claims, nil
}

func (s *Storage) expire(subject string, exp time.Time) time.Time {
	if u, ok := s.user(subject); ok && u.Expired {
		return time.Now().Add(-time.Hour)
	}
	return exp
}

// CreateAccessToken issues already expired tokens to Expired users.
func (s *Storage) CreateAccessToken(ctx context.Context, r op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, r)
	return id, s.expire(r.GetSubject(), exp), err
}

// CreateAccessAndRefreshTokens issues already expired tokens to Expired
// users.
func (s *Storage) CreateAccessAndRefreshTokens(ctx context.Context, r op.TokenRequest, current string) (string, string, time.Time, error) {
	id, refresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, r, current)
	return id, refresh, s.expire(r.GetSubject(), exp), err
}

// Clients registered by Start.
const (
	ClientHodei  = "hodei"        // public native client: PKCE, loopback redirects (CLI and web UI)
	ClientOther  = "other-app"    // another public client: tokens for another audience
	ClientDevice = "hodei-device" // device flow client (the example requires a secret)
	DeviceSecret = "device-secret"
)

// Start runs a provider until the test ends.
func Start(t testing.TB, users []User) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	clients := map[string]*storage.Client{
		// The CLI's loopback redirect, and the web UI's (served by the test
		// server on a loopback port).
		ClientHodei:  storage.NativeClient(ClientHodei, "http://127.0.0.1/callback", "http://127.0.0.1/ui/callback"),
		ClientOther:  storage.NativeClient(ClientOther, "http://127.0.0.1/callback"),
		ClientDevice: storage.DeviceClient(ClientDevice, DeviceSecret),
	}
	st := &Storage{Storage: storage.NewStorageWithClients(userStore{users}, clients), users: users}
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, st, nil, false), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return &Provider{Issuer: issuer, users: users, hc: &http.Client{Timeout: 30 * time.Second}}
}

// Browser returns an OpenURL function for auth.Login's PKCE flow: it opens
// the authorization URL, signs in on the provider's login page as username
// and follows the redirects back to the loopback listener.
func (p *Provider) Browser(username string) func(string) error {
	return func(authURL string) error {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		resp, err := hc.Get(authURL)
		if err != nil {
			return fmt.Errorf("browser: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id := resp.Request.URL.Query().Get("authRequestID")
		if resp.StatusCode != http.StatusOK || id == "" {
			return fmt.Errorf("browser: the login page did not come (%s %s)", resp.Status, resp.Request.URL)
		}
		resp, err = hc.PostForm(p.Issuer+"/login/username", url.Values{"username": {username}, "password": {Password}, "id": {id}})
		if err != nil {
			return fmt.Errorf("browser: %w", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Request.URL.Path, "/callback") {
			return fmt.Errorf("browser: sign-in as %s ended at %s (%s): %.300s", username, resp.Request.URL, resp.Status, body)
		}
		return nil
	}
}

// ApproveDevice returns a ShowCode function for auth.Login's device flow:
// it signs in as username on the provider's device pages, enters the user
// code and allows the device.
func (p *Provider) ApproveDevice(username string) func(*oauth2.DeviceAuthResponse) error {
	return func(da *oauth2.DeviceAuthResponse) error {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		resp, err := hc.PostForm(p.Issuer+"/device/login", url.Values{"user_code": {da.UserCode}, "username": {username}, "password": {Password}})
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("device login: %s", resp.Status)
		}
		resp, err = hc.PostForm(p.Issuer+"/device/confirm", url.Values{"action": {"allowed"}})
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "Device authorization allowed") {
			return fmt.Errorf("device confirm: %s: %.300s", resp.Status, body)
		}
		return nil
	}
}

// Token signs username in through clientID with PKCE, as "hodei login"
// does, and returns the bearer token the CLI would send.
//
// For an Expired user the code is exchanged by hand: the provider answers
// an already expired token with an expires_in that overflows (it is
// unsigned), which golang.org/x/oauth2 rightly refuses to parse.
func (p *Provider) Token(t testing.TB, clientID, username string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, u := range p.users {
		if u.Username == username && u.Expired {
			tok, err := p.rawCodeFlow(ctx, clientID, username)
			if err != nil {
				t.Fatalf("login of %s through %s: %v", username, clientID, err)
			}
			return tok
		}
	}
	c, err := auth.Login(ctx, auth.LoginOptions{Issuer: p.Issuer, ClientID: clientID, Flow: auth.FlowPKCE,
		OpenURL: p.Browser(username), HTTPClient: p.hc})
	if err != nil {
		t.Fatalf("login of %s through %s: %v", username, clientID, err)
	}
	if c.Bearer() == "" {
		t.Fatal(errors.New("login gave no bearer token"))
	}
	return c.Bearer()
}

// rawCodeFlow is the authorization code flow with PKCE, done by hand, that
// returns the access token.
func (p *Provider) rawCodeFlow(ctx context.Context, clientID, username string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	redirect := "http://" + ln.Addr().String() + "/callback"
	codes := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case codes <- r.URL.Query().Get("code"):
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	verifier := oauth2.GenerateVerifier()
	q := url.Values{"client_id": {clientID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid profile"},
		"state": {"s"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	if err := p.Browser(username)(p.Issuer + "/auth?" + q.Encode()); err != nil {
		return "", err
	}
	var code string
	select {
	case code = <-codes:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	resp, err := p.hc.PostForm(p.Issuer+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirect}, "client_id": {clientID}, "code_verifier": {verifier}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &body); err != nil || body.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: %s: %.300s", resp.Status, data)
	}
	return body.AccessToken, nil
}
