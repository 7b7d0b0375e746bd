package web

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/auth"
)

// tokenAuth accepts one bearer token.
type tokenAuth string

func (a tokenAuth) Authenticate(r *http.Request) (auth.Principal, error) {
	tok, err := auth.BearerToken(r)
	if err != nil {
		return auth.Principal{}, err
	}
	if tok != string(a) {
		return auth.Principal{}, auth.ErrInvalid
	}
	return auth.Principal{ID: "token:ci", Name: "ci", Tenant: "acme", Roles: []string{"developer"}}, nil
}

// echoAPI answers with the Authorization header it was given.
var echoAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Seen-Authorization", r.Header.Get("Authorization"))
	w.WriteHeader(http.StatusTeapot)
})

type fixture struct {
	h   http.Handler
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	f.h = New(Options{API: echoAPI, Auth: tokenAuth("good"), SessionTTL: time.Hour, Now: func() time.Time { return f.now }})
	return f
}

func (f *fixture) do(method, path, body string, hdr map[string]string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://hodei.test"+path, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:5555"
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func errorCode(w *httptest.ResponseRecorder) wire.Code {
	var e wire.Error
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	return e.Code
}

var jsonSameOrigin = map[string]string{"Content-Type": "application/json", "Origin": "http://hodei.test"}

// signIn pastes a token and returns the session cookie and CSRF token.
func (f *fixture) signIn(t *testing.T) (*http.Cookie, string) {
	t.Helper()
	w := f.do("POST", "/ui/session", `{"token":"good"}`, jsonSameOrigin)
	if w.Code != http.StatusOK {
		t.Fatalf("sign-in: %d %s", w.Code, w.Body)
	}
	var info SessionInfo
	if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || !info.SignedIn || info.CSRF == "" || info.Principal.ID != "token:ci" {
		t.Fatalf("sign-in answer %s (%v)", w.Body, err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookie {
			return c, info.CSRF
		}
	}
	t.Fatal("no session cookie")
	return nil, ""
}

// TestSessionGivesTheAPIItsCredential: a request with the session cookie
// reaches the API with the session's bearer token; a state change needs
// the CSRF token too; signing out and expiry end it.
func TestSessionGivesTheAPIItsCredential(t *testing.T) {
	f := newFixture(t)
	c, csrf := f.signIn(t)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, not Secure over plain HTTP from loopback", c)
	}
	if w := f.do("GET", "/api/v1/runs", "", nil, c); w.Header().Get("X-Seen-Authorization") != "Bearer good" {
		t.Errorf("GET with the cookie: the API saw %q", w.Header().Get("X-Seen-Authorization"))
	}
	w := f.do("POST", "/api/v1/runs/r1/cancel", "", nil, c)
	if w.Code != http.StatusForbidden || errorCode(w) != wire.CodeCSRF || w.Header().Get("X-Seen-Authorization") != "" {
		t.Errorf("POST without the CSRF token: %d %s", w.Code, w.Body)
	}
	w = f.do("POST", "/api/v1/runs/r1/cancel", "", map[string]string{CSRFHeader: csrf + "x"}, c)
	if w.Code != http.StatusForbidden || errorCode(w) != wire.CodeCSRF {
		t.Errorf("POST with another CSRF token: %d %s", w.Code, w.Body)
	}
	if w := f.do("POST", "/api/v1/runs/r1/cancel", "", map[string]string{CSRFHeader: csrf}, c); w.Header().Get("X-Seen-Authorization") != "Bearer good" {
		t.Errorf("POST with the CSRF token: %d, the API saw %q", w.Code, w.Header().Get("X-Seen-Authorization"))
	}
	// A request's own credentials are used as they are.
	if w := f.do("GET", "/api/v1/runs", "", map[string]string{"Authorization": "Bearer other"}, c); w.Header().Get("X-Seen-Authorization") != "Bearer other" {
		t.Errorf("own Authorization replaced by the session's")
	}
	// Signing out needs the CSRF token, then the cookie is worth nothing.
	if w := f.do("DELETE", "/ui/session", "", nil, c); w.Code != http.StatusForbidden {
		t.Errorf("sign-out without the CSRF token: %d", w.Code)
	}
	if w := f.do("DELETE", "/ui/session", "", map[string]string{CSRFHeader: csrf}, c); w.Code != http.StatusOK {
		t.Errorf("sign-out: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/api/v1/runs", "", nil, c); w.Header().Get("X-Seen-Authorization") != "" {
		t.Errorf("after sign-out the API still saw %q", w.Header().Get("X-Seen-Authorization"))
	}
	// A session ends after its lifetime.
	c, _ = f.signIn(t)
	f.now = f.now.Add(time.Hour)
	if w := f.do("GET", "/api/v1/runs", "", nil, c); w.Header().Get("X-Seen-Authorization") != "" {
		t.Errorf("an expired session still gave %q", w.Header().Get("X-Seen-Authorization"))
	}
}

// TestTokenSignInRefusals: a bad token, another site's page, a form post.
func TestTokenSignInRefusals(t *testing.T) {
	f := newFixture(t)
	if w := f.do("POST", "/ui/session", `{"token":"bad"}`, jsonSameOrigin); w.Code != http.StatusUnauthorized || errorCode(w) != wire.CodeUnauthenticated {
		t.Errorf("bad token: %d %s", w.Code, w.Body)
	}
	evil := map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}
	if w := f.do("POST", "/ui/session", `{"token":"good"}`, evil); w.Code != http.StatusForbidden || errorCode(w) != wire.CodeCSRF {
		t.Errorf("sign-in from another site: %d %s", w.Code, w.Body)
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://hodei.test"}
	if w := f.do("POST", "/ui/session", `token=good`, form); w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("form post: %d %s", w.Code, w.Body)
	}
}

// TestSecureCookieUnlessLoopbackHTTP: the Secure attribute is left out only
// over plain HTTP from a loopback address.
func TestSecureCookieUnlessLoopbackHTTP(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": false, "[::1]:1": false, "192.0.2.7:1": true, "nonsense": true} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		if got := secureCookie(r); got != want {
			t.Errorf("%s: Secure %v, want %v", addr, got, want)
		}
	}
}

// TestHeadersAndAssets: the page, its assets and the API's answers carry
// the security headers; the UI makes no request off its origin and runs
// no inline script.
func TestHeadersAndAssets(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/", "/ui/assets/app.js", "/ui/session", "/api/v1/runs"} {
		w := f.do("GET", p, "", nil)
		if w.Header().Get("Content-Security-Policy") != ContentSecurityPolicy || w.Header().Get("X-Frame-Options") != "DENY" ||
			w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", p, w.Header())
		}
	}
	if w := f.do("GET", "/", "", nil); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Errorf("/: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if w := f.do("GET", "/ui/assets/app.js", "", nil); w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), "javascript") {
		t.Errorf("app.js: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if w := f.do("GET", "/ui/assets/", "", nil); w.Code != http.StatusNotFound {
		t.Errorf("directory listing: %d", w.Code)
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import`)
	inline := regexp.MustCompile(`(?i)\son[a-z]+\s*=|\sstyle\s*=|<style`)
	scriptTag := regexp.MustCompile(`(?i)<script[^>]*>`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := fs.ReadFile(static, path)
		if m := external.Find(data); m != nil {
			t.Errorf("%s refers off the origin: %q", path, m)
		}
		if strings.HasSuffix(path, ".html") {
			if m := inline.Find(data); m != nil {
				t.Errorf("%s has inline script or style: %q", path, m)
			}
			for _, tag := range scriptTag.FindAll(data, -1) {
				if !strings.Contains(string(tag), "src=") {
					t.Errorf("%s has an inline script: %q", path, tag)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenAPINeedsNoSignIn: without an authenticator the UI says so and
// hands requests to the API untouched.
func TestOpenAPINeedsNoSignIn(t *testing.T) {
	h := New(Options{API: echoAPI})
	r := httptest.NewRequest("GET", "/ui/session", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var info SessionInfo
	if err := json.Unmarshal(w.Body.Bytes(), &info); err != nil || info.Auth || info.SignedIn {
		t.Errorf("session of an open API: %s", w.Body)
	}
}
