package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/auth/oidctest"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/web"
)

// The people of the browser tests: two developers of different tenants and
// a viewer, as the identity provider's users (roles and tenant in their
// tokens, as Keycloak writes them).
var people = []oidctest.User{
	{ID: "u-bob", Username: "bob", RealmRoles: []string{"developer"}, Groups: []string{"tenant:acme"}},
	{ID: "u-carol", Username: "carol", RealmRoles: []string{"developer"}, Groups: []string{"tenant:globex"}},
}

// chromium finds the browser: $HODEI_CHROMIUM, else Debian's chromium.
// The browser tests fail without one, so that a machine without it cannot
// pass them by skipping.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HODEI_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the browser tests need a headless Chromium: install Debian's chromium package " +
		"(apt-get install chromium; scripts/test does), or set HODEI_CHROMIUM to a Chromium binary")
	return ""
}

// screenshots is where the pages' screenshots go: $HODEI_SCREENSHOTS, else
// the test's temporary directory.
func screenshots(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HODEI_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type uiEnv struct {
	t     *testing.T
	srv   *server.Server
	base  string
	op    *oidctest.Provider
	admin string
	shots string
	exe   string

	mu      sync.Mutex
	console []string // what the pages wrote to their consoles
}

func startUI(t *testing.T) *uiEnv {
	t.Helper()
	return startUIWith(t, nil)
}

// startUIWith is startUI with the server's options edited first.
func startUIWith(t *testing.T, edit func(*server.Options)) *uiEnv {
	t.Helper()
	e := &uiEnv{t: t, exe: chromium(t), shots: screenshots(t)}
	e.op = oidctest.Start(t, people)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := server.Options{
		DataDir:          t.TempDir(),
		NATSListen:       "none",
		HTTPAddr:         "127.0.0.1:0",
		LocalWorkers:     1,
		UnsafeSharedUser: true, // the steps wait on files of the test's temporary directory
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Security: server.SecurityOptions{
			Enabled:      true,
			OIDC:         &auth.OIDCConfig{Issuer: e.op.Issuer, Audiences: []string{oidctest.ClientHodei}},
			OnAdminToken: func(tok string) { e.admin = tok },
		},
	}
	if edit != nil {
		edit(&o)
	}
	srv, err := server.Start(ctx, o)
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(srv.Close)
	e.srv, e.base = srv, "http://"+srv.HTTPAddr()
	t.Logf("screenshots in %s", e.shots)
	return e
}

// browser starts a headless Chromium of its own (its own cookies) that
// lives until the test ends.
func (e *uiEnv) browser() context.Context {
	e.t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(e.exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(e.t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	e.t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		e.t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			e.mu.Lock()
			e.console = append(e.console, m.String()+" ("+m.URL+")")
			e.mu.Unlock()
		}
	}()
	return ctx
}

// do runs browser actions with a deadline.
func (e *uiEnv) do(ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	e.t.Helper()
	c, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		e.t.Fatalf("%s: %v%s", what, err, e.pageText(ctx))
	}
}

// pageText is the page's text, for failure messages.
func (e *uiEnv) pageText(ctx context.Context) string {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Evaluate[string]("document.body.innerText"))
	if err != nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return "\npage:\n" + s + "\nconsole:\n" + strings.Join(e.console, "\n")
}

// until waits for a JavaScript condition on the page (false while it
// throws: the page is not drawn yet). The page changes as
// the server's run goes on (polls and the log's SSE stream), so the
// browser evaluates the condition at each change of the DOM.
func (e *uiEnv) until(ctx context.Context, what, cond string) {
	e.t.Helper()
	e.do(ctx, what, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			_, err := chromedp.Poll[bool]("(() => { try { return !!("+cond+") } catch (e) { return false } })()", chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(60*time.Second))(ctx, t)
			// A navigation (a redirect of the sign-in) destroys the page's
			// context under the poll: poll the new page.
			if err == nil || !strings.Contains(err.Error(), "Cannot find context") || ctx.Err() != nil {
				return err
			}
		}
	}))
}

func (e *uiEnv) eval(ctx context.Context, expr string) string {
	e.t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(c, chromedp.Evaluate[string](expr))
	if err != nil {
		e.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

func (e *uiEnv) shot(ctx context.Context, name string) {
	e.t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.CaptureScreenshot())
	if err != nil {
		e.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(e.shots, name+".png"), png, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *uiEnv) open(ctx context.Context, hash string) {
	e.t.Helper()
	e.do(ctx, "open "+hash, chromedp.Navigate(e.base+"/"+hash))
}

// signInSSO signs in through the identity provider's pages.
func (e *uiEnv) signInSSO(ctx context.Context, user string) {
	e.t.Helper()
	e.do(ctx, "sign-in page", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.ID("sso")))
	e.shot(ctx, "signin")
	e.do(ctx, "provider's login page of "+user,
		chromedp.Click(chromedp.ID("sso")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), oidctest.Password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("signout")))
	e.until(ctx, user+" signed in", fmt.Sprintf(`document.getElementById('who').textContent.startsWith(%q)`, user))
}

// signInToken signs in by pasting an API token.
func (e *uiEnv) signInToken(ctx context.Context, token string) {
	e.t.Helper()
	e.do(ctx, "token sign-in", chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS("#token-form button[type=submit]")))
	e.until(ctx, "signed in with a token", `document.getElementById('who').textContent !== ''`)
}

// call is an API request with a bearer token.
func (e *uiEnv) call(token, method, path, ctype string, body []byte, out any) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode
}

func (e *uiEnv) submit(token, yaml string) wire.Run {
	e.t.Helper()
	var run wire.Run
	if st := e.call(token, "POST", "/api/v1/runs", "application/yaml", []byte(yaml), &run); st != http.StatusCreated {
		e.t.Fatalf("submit: %d %+v", st, run)
	}
	return run
}

func gate(t *testing.T, path string) {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Error(err)
	}
}

// TestUIInARealBrowser drives the web UI in a headless Chromium against a
// secured server and the tests' OpenID provider: a developer signs in
// through the provider, watches a run's graph and log move live, searches
// the log, sees why a job waits and cancels a run; a viewer (signed in with
// an API token) sees no cancel button; a developer of another tenant sees
// nothing of the run. Each page's screenshot is saved.
func TestUIInARealBrowser(t *testing.T) {
	e := startUI(t)
	dir := t.TempDir()
	gate1, gate2 := filepath.Join(dir, "gate1"), filepath.Join(dir, "gate2")
	defer gate(t, gate1)
	defer gate(t, gate2)
	bobToken := e.op.Token(t, oidctest.ClientHodei, "bob")

	bob := e.browser()
	e.signInSSO(bob, "bob")

	// A run whose first job prints coloured lines and waits, and whose
	// second needs it.
	run := e.submit(bobToken, fmt.Sprintf(`name: web-demo
jobs:
  build:
    steps:
      - name: compile
        run: |
          printf '\033[32mgreen build line\033[0m\n'
          echo "needle-4711 is in the log"
          while [ ! -f %q ]; do sleep 0.02; done
          echo after-the-gate
  test:
    needs: [build]
    steps:
      - name: unit tests
        run: echo testing
  lint:
    needs: [build]
    steps: [{run: echo linting}]
`, gate1))

	{
		t.Log("runs list")
		e.open(bob, "#/runs")
		e.until(bob, "the run is listed", fmt.Sprintf(`!!document.querySelector('tr[data-run=%q]')`, run.ID))
		e.shot(bob, "runs")
		e.open(bob, "#/runs?state=running&pipeline=DEMO")
		e.until(bob, "filtered on state and pipeline", fmt.Sprintf(`!!document.querySelector('tr[data-run=%q]') && document.getElementById('f-state').value === 'running'`, run.ID))
		e.open(bob, "#/runs?pipeline=nothing-like-it")
		e.until(bob, "filtered out", `document.getElementById('runs').textContent.includes('No run matches.')`)
		e.open(bob, "#/runs?state=succeeded")
		e.until(bob, "no succeeded run yet", `document.getElementById('runs').textContent.includes('No run matches.')`)
	}

	{
		t.Log("the graph moves live")
		e.open(bob, "#/runs/"+run.ID)
		e.until(bob, "build running, test pending in the graph",
			`!!document.querySelector('#dag a.node.running[data-job="build"]') && !!document.querySelector('#dag a.node.pending[data-job="test"]')`)
		if n := e.eval(bob, `String(document.querySelectorAll('#dag path.edge').length)`); n != "2" {
			t.Errorf("the graph has %s edges, want 2 (build→test, build→lint)", n)
		}
		e.shot(bob, "run-running")
	}

	{
		t.Log("the log streams live, searchable")
		e.open(bob, fmt.Sprintf("#/runs/%s/jobs/build", run.ID))
		e.until(bob, "the first lines", `document.getElementById('log').textContent.includes('needle-4711')`)
		if got := e.eval(bob, `(document.querySelector('#log .line.step') || {}).textContent || ''`); !strings.Contains(got, "==> step 1/1: compile") {
			t.Errorf("step header line: %q", got)
		}
		if got := e.eval(bob, `(document.querySelector('#log span.fg-2') || {}).textContent || ''`); got != "green build line" {
			t.Errorf("the ANSI green text: %q (the log: %s)", got, e.eval(bob, `document.getElementById('log').innerHTML`))
		}
		if got := e.eval(bob, `(document.querySelector('#log .line .ts') || {}).textContent || ''`); len(got) != len("15:04:05.000") {
			t.Errorf("timestamp of a line: %q", got)
		}
		if strings.Contains(e.eval(bob, `document.getElementById('log').textContent`), "\x1b") {
			t.Error("escape sequences left in the log")
		}
		e.do(bob, "search", chromedp.SendKeys(chromedp.ID("log-search"), "needle"))
		e.until(bob, "one match", `document.getElementById('log-count').textContent === '1 match'`)
		if got := e.eval(bob, `document.querySelector('#log .line.match').textContent`); !strings.Contains(got, "needle-4711 is in the log") {
			t.Errorf("matching line: %q", got)
		}
		e.shot(bob, "job-log")
		// The job is still running: what it prints now arrives over the
		// open stream.
		gate(t, gate1)
		e.until(bob, "a line printed after the page opened", `document.getElementById('log').textContent.includes('after-the-gate')`)
		e.until(bob, "the step's footer", `[...document.querySelectorAll('#log .line.step-end')].some(l => l.textContent.includes('exited 0'))`)
		e.shot(bob, "job-log-done")
	}

	{
		t.Log("the graph ends")
		e.open(bob, "#/runs/"+run.ID)
		e.until(bob, "every job succeeded", `document.querySelectorAll('#dag a.node.succeeded').length === 3`)
		e.until(bob, "the run succeeded", `document.querySelector('.meta .state').textContent === 'succeeded'`)
		if got := e.eval(bob, `String(document.getElementById('rerun-failed').hidden)`); got != "true" {
			t.Errorf("a succeeded run offers to run its failed jobs again (hidden = %s)", got)
		}
		e.shot(bob, "run-succeeded")
	}

	{
		t.Log("run again")
		e.do(bob, "run again", chromedp.WaitVisible(chromedp.ID("rerun")), chromedp.Click(chromedp.ID("rerun")))
		// The new run's own page: its h1 names it (the page before has the
		// same pipeline name, and the same state).
		e.until(bob, "the new run's page", fmt.Sprintf(`location.hash.startsWith('#/runs/') && location.hash !== %q && document.querySelector('h1').textContent === 'web-demo · run ' + decodeURIComponent(location.hash.slice('#/runs/'.length))`, "#/runs/"+run.ID))
		e.until(bob, "the new run succeeded", `document.querySelector('.meta .state').textContent === 'succeeded'`)
	}

	{
		t.Log("approve a job that waits for an approval")
		gated := e.submit(bobToken, "name: gated\njobs:\n  deploy:\n    environment: production\n    steps: [{run: echo deployed}]\n")
		e.open(bob, "#/runs/"+gated.ID)
		e.until(bob, "the Approve button", `!!document.querySelector('#jobs button.approve[data-job="deploy"]')`)
		e.shot(bob, "run-waiting-approval")
		e.do(bob, "approve", chromedp.Click(`#jobs button.approve[data-job="deploy"]`))
		e.until(bob, "the approved job ran", `document.querySelector('.meta .state').textContent === 'succeeded'`)
		if got := e.eval(bob, `document.querySelector('#jobs tr[data-job="deploy"] td.approval').textContent`); !strings.Contains(got, "approved by bob") {
			t.Errorf("approval cell after the approval: %q", got)
		}
	}
	// A job that waits while a viewer looks at it.
	waiting := e.submit(bobToken, "name: gated\njobs:\n  deploy:\n    environment: production\n    steps: [{run: echo deployed}]\n")

	// A run that holds the one worker, and a second job that waits for it.
	cpus := max(runtime.NumCPU(), 1)
	busy := e.submit(bobToken, fmt.Sprintf(`name: busy
jobs:
  hold:
    runs-on: {cpu: %d}
    steps:
      - run: |
          while [ ! -f %q ]; do sleep 0.02; done
  waiter:
    runs-on: {cpu: %d}
    steps: [{run: "true"}]
`, cpus, gate2, cpus))

	{
		t.Log("a queued job says why")
		e.open(bob, "#/queue")
		e.until(bob, "the waiting job in the queue", fmt.Sprintf(
			`[...document.querySelectorAll('#queue tr[data-job="waiter"]')].some(r => r.textContent.includes(%q) && r.textContent.includes('workers_busy'))`, busy.ID))
		e.shot(bob, "queue")
		e.open(bob, "#/runs/"+busy.ID)
		e.until(bob, "the reason on the run's page",
			`(document.querySelector('#jobs tr[data-job="waiter"] td.reason') || {}).textContent?.startsWith('workers_busy: ')`)
	}

	{
		t.Log("a viewer sees no cancel button")
		var nt auth.NewToken
		body, _ := json.Marshal(auth.TokenRequest{Name: "vera", Tenant: "acme", Roles: []string{"viewer"}})
		if st := e.call(e.admin, "POST", "/api/v1/tokens", "application/json", body, &nt); st != http.StatusCreated {
			t.Fatalf("create the viewer's token: %d", st)
		}
		vera := e.browser()
		e.signInToken(vera, nt.Secret)
		e.open(vera, "#/runs/"+busy.ID)
		e.until(vera, "the run's graph", `!!document.querySelector('#dag a.node[data-job="hold"]')`)
		if got := e.eval(vera, `String(document.getElementById('cancel').hidden) + ' ' + String(document.getElementById('rerun').hidden)`); got != "true true" {
			t.Errorf("viewer: cancel and re-run hidden = %s, want true true", got)
		}
		e.shot(vera, "run-viewer")
		e.open(vera, "#/runs/"+waiting.ID)
		e.until(vera, "the waiting job", `(document.querySelector('#jobs tr[data-job="deploy"] td.approval') || {}).textContent?.startsWith('production: waiting')`)
		if got := e.eval(vera, `String(document.querySelectorAll('#jobs button.approve, #jobs button.reject').length)`); got != "0" {
			t.Errorf("viewer sees %s approve or reject buttons, want none", got)
		}
	}

	{
		t.Log("a developer of another tenant sees nothing")
		carol := e.browser()
		e.signInSSO(carol, "carol")
		e.open(carol, "#/runs/"+busy.ID)
		e.until(carol, "not found", `document.querySelector('h1').textContent === 'Not found'`)
		e.shot(carol, "run-other-tenant")
		e.open(carol, "#/runs")
		e.until(carol, "an empty list", `document.getElementById('runs').textContent.includes('No run matches.')`)
		e.open(carol, fmt.Sprintf("#/runs/%s/jobs/hold", busy.ID))
		e.until(carol, "no job page", `document.querySelector('h1').textContent === 'Not found'`)
	}

	{
		t.Log("cookie, CSRF and headers")
		cookies, err := chromedp.Run(bob, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
			res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{e.base + "/"}})
			return res.Cookies, err
		})
		if err != nil {
			t.Fatal(err)
		}
		var session *network.Cookie
		for _, c := range cookies {
			if c.Name == web.SessionCookie {
				session = c
			}
		}
		if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax {
			t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax", session)
		}
		if got := e.eval(bob, `document.cookie`); strings.Contains(got, web.SessionCookie) {
			t.Errorf("the page's script can read the session cookie: %q", got)
		}
		// The cookie alone does not change anything: the CSRF token is
		// missing.
		req, _ := http.NewRequest("POST", e.base+"/api/v1/runs/"+busy.ID+"/cancel", nil)
		req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: session.Value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var werr wire.Error
		_ = json.NewDecoder(resp.Body).Decode(&werr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || werr.Code != wire.CodeCSRF {
			t.Errorf("cancel with the cookie and no CSRF token: %d %s, want 403 %s", resp.StatusCode, werr.Code, wire.CodeCSRF)
		}
		for k, want := range map[string]string{"Content-Security-Policy": web.ContentSecurityPolicy, "X-Frame-Options": "DENY"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %q", k, got)
			}
		}
	}

	{
		t.Log("the developer cancels")
		e.open(bob, "#/runs/"+busy.ID)
		e.do(bob, "cancel", chromedp.WaitVisible(chromedp.ID("cancel")), chromedp.Click(chromedp.ID("cancel")))
		e.until(bob, "the run canceled", `document.querySelector('.meta .state').textContent === 'canceled'`)
		e.until(bob, "no cancel button once final", `document.getElementById('cancel').hidden`)
		e.shot(bob, "run-canceled")
		var got wire.Run
		e.call(bobToken, "GET", "/api/v1/runs/"+busy.ID, "", nil, &got)
		if got.State != "canceled" {
			t.Errorf("the run is %s", got.State)
		}
		// The browser's cancel went through the API's authorization and
		// audit as bob.
		e.srv.Audit().Flush() // records are written behind the answers
		recs, err := e.srv.Audit().Query(audit.Filter{Action: "cancel"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range recs {
			found = found || r.Principal == "user:u-bob" && r.Decision == audit.Allow && strings.Contains(r.Resource, busy.ID)
		}
		if !found {
			t.Errorf("no audit record of bob's cancel: %+v", recs)
		}
	}

	{
		t.Log("workers")
		e.open(bob, "#/workers")
		e.until(bob, "the local worker", `document.querySelectorAll('#workers tbody tr').length === 1`)
		e.shot(bob, "workers")
	}
}
