package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Login flows.
const (
	FlowAuto   = "auto"   // device flow if the issuer offers it, else PKCE
	FlowDevice = "device" // OAuth 2.0 Device Authorization Grant (RFC 8628)
	FlowPKCE   = "pkce"   // authorization code with PKCE (RFC 7636) on a loopback redirect (RFC 8252)
)

// LoginOptions configure Login.
type LoginOptions struct {
	Issuer       string
	ClientID     string
	ClientSecret string   // only for confidential clients; a CLI client is normally public
	Scopes       []string // default: openid profile email offline_access
	Flow         string   // FlowAuto if empty
	// ListenAddr is the loopback address of the PKCE redirect
	// ("127.0.0.1:0": a free port, which RFC 8252 lets the issuer accept
	// for a redirect URI registered as http://127.0.0.1/callback).
	ListenAddr string
	// OpenURL shows the user the authorization URL of the PKCE flow (the
	// CLI prints it and tries to open a browser). It may return at once.
	OpenURL func(url string) error
	// ShowCode tells the user where to enter the device flow's code.
	ShowCode   func(*oauth2.DeviceAuthResponse) error
	HTTPClient *http.Client
}

// Login signs a user in at an OIDC issuer and returns the tokens to keep.
func Login(ctx context.Context, o LoginOptions) (Credential, error) {
	if o.Issuer == "" || o.ClientID == "" {
		return Credential{}, errors.New("login: the issuer and the client id are required")
	}
	if len(o.Scopes) == 0 {
		o.Scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	ctx = oidc.ClientContext(ctx, hc)
	p, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		return Credential{}, fmt.Errorf("login: discovery: %w", err)
	}
	cfg := oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, Endpoint: p.Endpoint(), Scopes: o.Scopes}
	flow := o.Flow
	if flow == "" || flow == FlowAuto {
		flow = FlowPKCE
		if cfg.Endpoint.DeviceAuthURL != "" {
			flow = FlowDevice
		}
	}
	var tok *oauth2.Token
	switch flow {
	case FlowDevice:
		if cfg.Endpoint.DeviceAuthURL == "" {
			return Credential{}, fmt.Errorf("login: %s does not offer the device flow (use --flow pkce)", o.Issuer)
		}
		tok, err = deviceLogin(ctx, &cfg, o)
	case FlowPKCE:
		tok, err = pkceLogin(ctx, &cfg, o)
	default:
		return Credential{}, fmt.Errorf("login: unknown flow %q (auto, device or pkce)", o.Flow)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("login: %w", err)
	}
	c := Credential{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret}
	c.setToken(tok)
	if c.Bearer() == "" {
		return Credential{}, errors.New("login: the issuer returned neither a JWT access token nor an ID token")
	}
	return c, nil
}

func deviceLogin(ctx context.Context, cfg *oauth2.Config, o LoginOptions) (*oauth2.Token, error) {
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("device authorization: %w", err)
	}
	if o.ShowCode != nil {
		if err := o.ShowCode(da); err != nil {
			return nil, err
		}
	}
	// DeviceAccessToken polls at the interval the issuer asks for.
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("device flow: %w", err)
	}
	return tok, nil
}

// PKCEChallenge returns the S256 code challenge of a verifier (RFC 7636
// section 4.2): base64url(SHA-256(verifier)).
func PKCEChallenge(verifier string) string { return oauth2.S256ChallengeFromVerifier(verifier) }

func randomString() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

type callback struct {
	code string
	err  error
}

func pkceLogin(ctx context.Context, cfg *oauth2.Config, o LoginOptions) (*oauth2.Token, error) {
	addr := o.ListenAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the redirect: %w", err)
	}
	cfg.RedirectURL = "http://" + ln.Addr().String() + "/callback"
	state, verifier := randomString(), oauth2.GenerateVerifier()
	got := make(chan callback, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var cb callback
		switch {
		case q.Get("state") != state:
			cb.err = errors.New("the redirect's state does not match this login (a stale or forged redirect)")
		case q.Get("error") != "":
			cb.err = fmt.Errorf("the issuer refused: %s %s", q.Get("error"), q.Get("error_description"))
		case q.Get("code") == "":
			cb.err = errors.New("the redirect carries no code")
		default:
			cb.code = q.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if cb.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<p>Hodei login failed: %s</p>", html.EscapeString(cb.err.Error()))
		} else {
			fmt.Fprint(w, "<p>Hodei login complete: you can close this page.</p>")
		}
		select {
		case got <- cb:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
	if o.OpenURL != nil {
		if err := o.OpenURL(authURL); err != nil {
			return nil, err
		}
	}
	var cb callback
	select {
	case cb = <-got:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the browser: %w", ctx.Err())
	}
	if cb.err != nil {
		return nil, cb.err
	}
	tok, err := cfg.Exchange(ctx, cb.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("code exchange: %w", err)
	}
	return tok, nil
}
