package web

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCLogin is the OpenID provider the UI signs people in with: the issuer
// whose tokens the API accepts, and a public client (no secret) that lists
// the UI's redirect URI, https://HOST/ui/callback.
type OIDCLogin struct {
	Issuer   string
	ClientID string
	// Scopes are asked for (default: openid profile email).
	Scopes []string
	// HTTPClient reaches the issuer (a 30 s timeout if nil).
	HTTPClient *http.Client
}

// loginTTL is how long a browser has to come back from the provider.
const loginTTL = 10 * time.Minute

// loginCookie ties the browser that started a sign-in to its callback.
const loginCookie = "hodei_login"

type pendingLogin struct {
	verifier string
	redirect string
	expires  time.Time
}

// oidcLogin runs the authorization code flow with PKCE (RFC 7636): the
// browser is sent to the provider with a code challenge, comes back with a
// code, and the server exchanges the code and the verifier for tokens. The
// access token becomes the session's credential once the API's
// authenticator has checked it.
type oidcLogin struct {
	cfg OIDCLogin
	now func() time.Time

	mu       sync.Mutex // guards the fields below
	endpoint *oauth2.Endpoint
	pending  map[string]pendingLogin // by state
}

func newOIDCLogin(cfg OIDCLogin, now func() time.Time) *oidcLogin {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &oidcLogin{cfg: cfg, now: now, pending: map[string]pendingLogin{}}
}

// config discovers the provider's endpoints (once, and again after a
// failure) and returns the client's configuration for redirect.
func (l *oidcLogin) config(ctx context.Context, redirect string) (*oauth2.Config, error) {
	l.mu.Lock()
	ep := l.endpoint
	l.mu.Unlock()
	if ep == nil {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.cfg.HTTPClient), l.cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("discovery of %s: %w", l.cfg.Issuer, err)
		}
		e := p.Endpoint()
		ep = &e
		l.mu.Lock()
		l.endpoint = ep
		l.mu.Unlock()
	}
	return &oauth2.Config{ClientID: l.cfg.ClientID, Endpoint: *ep, Scopes: l.cfg.Scopes, RedirectURL: redirect}, nil
}

func (l *oidcLogin) begin(state string, p pendingLogin) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for k, old := range l.pending {
		if !now.Before(old.expires) {
			delete(l.pending, k)
		}
	}
	l.pending[state] = p
}

// end takes the sign-in of state, once.
func (l *oidcLogin) end(state string) (pendingLogin, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.pending[state]
	delete(l.pending, state)
	if !ok || !l.now().Before(p.expires) {
		return pendingLogin{}, false
	}
	return p, true
}

// origin is the scheme and host the browser reached this server at. The
// provider accepts only the redirect URIs registered for the client, so a
// forged Host header cannot send a code elsewhere.
func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// startLogin sends the browser to the provider.
func (u *ui) startLogin(w http.ResponseWriter, r *http.Request) {
	if u.login == nil {
		http.Error(w, "this server offers no sign-in through an OpenID provider: paste an API token instead", http.StatusNotFound)
		return
	}
	redirect := origin(r) + "/ui/callback"
	cfg, err := u.login.config(r.Context(), redirect)
	if err != nil {
		u.log.Warn("web sign-in: identity provider unavailable", "err", err)
		http.Error(w, "the identity provider cannot be reached: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	state, verifier := randomToken(), oauth2.GenerateVerifier()
	u.login.begin(state, pendingLogin{verifier: verifier, redirect: redirect, expires: u.o.Now().Add(loginTTL)})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state, Path: "/ui/callback", MaxAge: int(loginTTL / time.Second),
		HttpOnly: true, Secure: secureCookie(r), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// callback ends a sign-in: the state must be the one this browser was
// given, the code is exchanged with its verifier, and the access token
// must pass the API's authenticator.
func (u *ui) callback(w http.ResponseWriter, r *http.Request) {
	if u.login == nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	fail := func(status int, msg string) {
		u.log.Warn("web sign-in failed", "remote", r.RemoteAddr, "err", msg)
		clearCookie(w, r, loginCookie, "/ui/callback")
		http.Error(w, "sign-in failed: "+msg+"\n\nStart again from the home page.", status)
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "the identity provider answered "+e+": "+q.Get("error_description"))
		return
	}
	state := q.Get("state")
	c, err := r.Cookie(loginCookie)
	if err != nil || state == "" || !sameToken(c.Value, state) {
		fail(http.StatusBadRequest, "this answer does not belong to a sign-in started by this browser")
		return
	}
	p, ok := u.login.end(state)
	if !ok {
		fail(http.StatusBadRequest, "the sign-in expired or was already used")
		return
	}
	cfg, err := u.login.config(r.Context(), p.redirect)
	if err != nil {
		fail(http.StatusServiceUnavailable, err.Error())
		return
	}
	ctx := oidc.ClientContext(r.Context(), u.login.cfg.HTTPClient)
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		fail(http.StatusBadGateway, "code exchange: "+err.Error())
		return
	}
	principal, err := u.check(r, tok.AccessToken)
	if err != nil {
		fail(http.StatusUnauthorized, "the access token was refused: "+err.Error())
		return
	}
	expires := u.o.Now().Add(u.o.SessionTTL)
	if !tok.Expiry.IsZero() && tok.Expiry.Before(expires) {
		expires = tok.Expiry
	}
	s := &session{credential: tok.AccessToken, principal: principal, via: "oidc", expires: expires}
	id := u.sessions.create(s)
	u.log.Info("web sign-in", "principal", principal.ID, "via", s.via, "remote", r.RemoteAddr)
	clearCookie(w, r, loginCookie, "/ui/callback")
	u.setSessionCookie(w, r, id, expires)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
