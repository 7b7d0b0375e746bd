// Package web serves Hodei's web UI beside the API: plain HTML, CSS and
// JavaScript modules embedded in the binary (static/, no build step, no
// request leaves the server's origin), the sign-in (OIDC authorization code
// with PKCE, or an API token pasted), and server-side sessions.
//
// A session holds the credential its sign-in checked. A request to the API
// that carries the session cookie and no Authorization header is given the
// session's credential as a bearer token and handed to the API, which then
// authenticates, authorizes and audits it exactly as a request of the CLI;
// a state change must also carry the session's CSRF token in X-CSRF-Token.
// What the UI shows is what the API answers: it asks GET
// /api/v1/permissions which buttons to show, and holds no policy of its own.
// See docs/ui.md.
package web

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/auth"
)

//go:embed static
var static embed.FS

// Options configure the UI.
type Options struct {
	// API is the API's handler (api.New); the UI's requests reach it.
	API http.Handler
	// Auth checks the credential of a sign-in (the API's authenticator);
	// nil means the API is open and the UI needs no sign-in.
	Auth auth.Authenticator
	// OIDC, if set, offers sign-in through an OpenID provider.
	OIDC *OIDCLogin
	// SessionTTL is how long a session lasts at most (DefaultSessionTTL if
	// zero); an OIDC session ends earlier, with its access token.
	SessionTTL time.Duration
	Logger     *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// DefaultSessionTTL is the default Options.SessionTTL.
const DefaultSessionTTL = 8 * time.Hour

// ContentSecurityPolicy is sent with every answer: scripts, styles and
// connections of the server's own origin only (no inline script, no
// eval), no framing, forms posted only to the origin.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type ui struct {
	o        Options
	log      *slog.Logger
	sessions *sessions
	login    *oidcLogin // nil without OIDC
	assets   http.Handler
	index    []byte
}

// New returns the handler of the whole HTTP server: the UI at /, its
// assets under /ui/assets/, sign-in under /ui/, and the API (with
// /healthz, /readyz and /metrics) as it is.
func New(o Options) http.Handler {
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	u := &ui{o: o, log: o.Logger, sessions: newSessions(o.Now)}
	if u.log == nil {
		u.log = slog.Default()
	}
	if o.OIDC != nil {
		u.login = newOIDCLogin(*o.OIDC, o.Now)
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	if u.index, err = fs.ReadFile(sub, "index.html"); err != nil {
		panic(err)
	}
	u.assets = http.StripPrefix("/ui/assets/", http.FileServerFS(sub))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", u.serveIndex)
	mux.HandleFunc("GET /ui/assets/", u.serveAsset)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/assets/icon.svg", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /ui/session", u.getSession)
	mux.HandleFunc("POST /ui/session", u.postSession)
	mux.HandleFunc("DELETE /ui/session", u.deleteSession)
	mux.HandleFunc("GET /ui/login", u.startLogin)
	mux.HandleFunc("GET /ui/callback", u.callback)
	mux.HandleFunc("/", u.toAPI)
	return headers(mux)
}

// headers adds the security headers to every answer.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (u *ui) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(u.index)
}

func (u *ui) serveAsset(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/") {
		http.NotFound(w, r) // no directory listings
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	u.assets.ServeHTTP(w, r)
}

// safeMethod reports whether a method changes nothing (no CSRF token
// needed).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
