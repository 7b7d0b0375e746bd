package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/auth"
)

// Cookie and header names.
const (
	SessionCookie = "hodei_session"
	CSRFHeader    = "X-CSRF-Token"
)

// session is one signed-in browser.
type session struct {
	credential string // the bearer token the API is given
	principal  auth.Principal
	csrf       string
	via        string // "oidc" or "token"
	expires    time.Time
}

// sessions are kept in memory, by the SHA-256 of their cookie's value: a
// restart of the server signs everyone out.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]*session{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// create stores s and returns the cookie value that names it; expired
// sessions are dropped on the way.
func (ss *sessions) create(s *session) string {
	id := randomToken()
	s.csrf = randomToken()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for k, old := range ss.m {
		if !now.Before(old.expires) {
			delete(ss.m, k)
		}
	}
	ss.m[sessionKey(id)] = s
	return id
}

// get returns the live session a cookie value names, or nil.
func (ss *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	k := sessionKey(id)
	s := ss.m[k]
	if s != nil && !ss.now().Before(s.expires) {
		delete(ss.m, k)
		return nil
	}
	return s
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sessionKey(id))
}

// fromRequest returns the session of the request's cookie, or nil.
func (u *ui) fromRequest(r *http.Request) (*session, string) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, ""
	}
	return u.sessions.get(c.Value), c.Value
}

// secureCookie says whether cookies get the Secure attribute: always,
// except over plain HTTP from a loopback address (a server tried on the
// machine it runs on). A server reached over plain HTTP from elsewhere
// still sets Secure, so that the browser never sends the cookie in clear
// and sign-in does not stick: serve the UI over TLS (--tls-cert), or
// behind a proxy that terminates TLS.
func secureCookie(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return true
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

func (u *ui) setSessionCookie(w http.ResponseWriter, r *http.Request, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", Expires: expires,
		HttpOnly: true, Secure: secureCookie(r), SameSite: http.SameSiteLaxMode})
}

func clearCookie(w http.ResponseWriter, r *http.Request, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1,
		HttpOnly: true, Secure: secureCookie(r), SameSite: http.SameSiteLaxMode})
}

// toAPI hands a request to the API, with the session's credential when it
// has the session cookie and no credentials of its own; a state change
// must then carry the session's CSRF token.
func (u *ui) toAPI(w http.ResponseWriter, r *http.Request) {
	if u.o.Auth == nil || r.Header.Get("Authorization") != "" {
		u.o.API.ServeHTTP(w, r)
		return
	}
	s, _ := u.fromRequest(r)
	if s == nil {
		u.o.API.ServeHTTP(w, r)
		return
	}
	if !safeMethod(r.Method) && !sameToken(r.Header.Get(CSRFHeader), s.csrf) {
		u.log.Warn("state change refused: no valid CSRF token with the session cookie",
			"method", r.Method, "path", r.URL.Path, "principal", s.principal.ID, "remote", r.RemoteAddr)
		writeError(w, wire.CodeCSRF, "this request carries the web UI's session cookie but not its CSRF token: send it in the "+CSRFHeader+" header")
		return
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+s.credential)
	u.o.API.ServeHTTP(w, r2)
}

func sameToken(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// SessionInfo is the answer of GET /ui/session (and of a sign-in).
type SessionInfo struct {
	// Auth is false when the API is open: no sign-in is needed.
	Auth bool `json:"auth"`
	// OIDC says that sign-in through the OpenID provider is offered
	// (GET /ui/login).
	OIDC      bool            `json:"oidc"`
	SignedIn  bool            `json:"signed_in"`
	Principal *auth.Principal `json:"principal,omitempty"`
	Via       string          `json:"via,omitempty"`
	// CSRF is the token to send in X-CSRF-Token with every state change.
	CSRF      string     `json:"csrf,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (u *ui) info(s *session) SessionInfo {
	out := SessionInfo{Auth: u.o.Auth != nil, OIDC: u.login != nil}
	if s != nil {
		p, exp := s.principal, s.expires
		out.SignedIn, out.Principal, out.Via, out.CSRF, out.ExpiresAt = true, &p, s.via, s.csrf, &exp
	}
	return out
}

func (u *ui) getSession(w http.ResponseWriter, r *http.Request) {
	s, _ := u.fromRequest(r)
	writeJSON(w, http.StatusOK, u.info(s))
}

// sameOrigin reports whether a request was sent by a page of this server:
// its Origin (which browsers send with every POST) names this host, or
// Sec-Fetch-Site says so. A sign-in must not be forced on a browser by
// another site.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	o, err := url.Parse(origin)
	return err == nil && o.Host == r.Host
}

// postSession signs in with an API token (or any bearer credential the API
// accepts): JSON {"token": "..."}.
func (u *ui) postSession(w http.ResponseWriter, r *http.Request) {
	if u.o.Auth == nil {
		writeError(w, wire.CodeBadRequest, "this server's API is open: no sign-in is needed")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, wire.CodeUnsupported, `send JSON {"token": "..."}`)
		return
	}
	if !sameOrigin(r) {
		writeError(w, wire.CodeCSRF, "a sign-in must come from a page of this server")
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		writeError(w, wire.CodeBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	tok := strings.TrimSpace(body.Token)
	if tok == "" {
		writeError(w, wire.CodeBadRequest, `"token" is required`)
		return
	}
	p, err := u.check(r, tok)
	if err != nil {
		u.refuse(w, err)
		return
	}
	s := &session{credential: tok, principal: p, via: "token", expires: u.o.Now().Add(u.o.SessionTTL)}
	id := u.sessions.create(s)
	u.log.Info("web sign-in", "principal", p.ID, "via", s.via, "remote", r.RemoteAddr)
	u.setSessionCookie(w, r, id, s.expires)
	writeJSON(w, http.StatusOK, u.info(s))
}

// check authenticates a credential as the API would.
func (u *ui) check(r *http.Request, tok string) (auth.Principal, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/", nil)
	if err != nil {
		return auth.Principal{}, err
	}
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+tok)
	return u.o.Auth.Authenticate(req)
}

func (u *ui) refuse(w http.ResponseWriter, err error) {
	if errors.Is(err, auth.ErrInvalid) || errors.Is(err, auth.ErrNoCredentials) {
		writeError(w, wire.CodeUnauthenticated, "sign-in refused: "+err.Error())
		return
	}
	writeError(w, wire.CodeUnavailable, "credentials cannot be checked now: "+err.Error())
}

// deleteSession signs out.
func (u *ui) deleteSession(w http.ResponseWriter, r *http.Request) {
	s, id := u.fromRequest(r)
	if s != nil {
		if !sameToken(r.Header.Get(CSRFHeader), s.csrf) {
			writeError(w, wire.CodeCSRF, "signing out needs the session's CSRF token in the "+CSRFHeader+" header")
			return
		}
		u.sessions.delete(id)
	}
	clearCookie(w, r, SessionCookie, "/")
	writeJSON(w, http.StatusOK, u.info(nil))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(wire.Error{Code: wire.CodeInternal, Message: err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

func writeError(w http.ResponseWriter, code wire.Code, msg string) {
	writeJSON(w, code.Status(), wire.Error{Code: code, Message: msg})
}
