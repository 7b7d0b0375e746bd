package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/logtest"
	"github.com/hodei-ci/hodei/internal/server"
)

type hardEnv struct {
	*secureEnv
	dataDir string
	log     *logtest.Buffer
}

// startHardened starts a secured server (local admin token and API
// tokens, no OIDC) with these limits, logging at info level into a buffer.
func startHardened(t *testing.T, limits api.Limits, workers int) *hardEnv {
	t.Helper()
	e := &hardEnv{secureEnv: &secureEnv{t: t, toks: map[string]string{}}, dataDir: t.TempDir(), log: &logtest.Buffer{}}
	e.startServer(server.Options{
		DataDir:      e.dataDir,
		LocalWorkers: workers,
		Logger:       slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
		APILimits:    limits,
	})
	return e
}

// token makes an API token with the admin token and returns its secret.
func (e *hardEnv) token(name, tenant string, roles ...string) string {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "tenant": tenant, "roles": roles})
	a := e.call(e.admin, "POST", "/api/v1/tokens", "application/json", body)
	if a.status != http.StatusCreated {
		e.t.Fatalf("create token %s: %d %s", name, a.status, a.body)
	}
	var nt struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal(a.body, &nt); err != nil {
		e.t.Fatal(err)
	}
	return nt.Secret
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestHugeRequestStringsAreCappedInLogs: 50 anonymous requests for a run
// whose id is 500 kB long grow the audit trail and the server log by a
// bounded amount each; what is cut says how long it was.
func TestHugeRequestStringsAreCappedInLogs(t *testing.T) {
	e := startHardened(t, api.Limits{AuthFailBurst: -1}, 0)
	auditPath := server.AuditPath(e.dataDir)
	audit0, log0 := fileSize(t, auditPath), e.log.Len()
	id := strings.Repeat("a", 500_000)
	const n = 50
	for i := 0; i < n; i++ {
		e.want(e.call("", "GET", "/api/v1/runs/"+id, "", nil), http.StatusUnauthorized, wire.CodeUnauthenticated, "anonymous huge id")
	}
	// The admin reads a huge id too: decided (no such run), audited, logged.
	e.want(e.call(e.admin, "GET", "/api/v1/runs/"+id, "", nil), http.StatusNotFound, wire.CodeNotFound, "admin huge id")
	e.srv.Audit().Flush()
	const perRequest = 4 << 10 // generous: a record is under 1.5 kB
	grewAudit, grewLog := fileSize(t, auditPath)-audit0, e.log.Len()-log0
	t.Logf("audit +%d bytes, server log +%d bytes for %d requests with a 500 kB path", grewAudit, grewLog, n+1)
	if grewAudit > (n+1)*perRequest || grewLog > (n+1)*perRequest {
		t.Errorf("audit grew by %d bytes, the server log by %d, for %d requests: want at most %d each",
			grewAudit, grewLog, n+1, (n+1)*perRequest)
	}
	if grewAudit == 0 || grewLog == 0 {
		t.Fatalf("nothing recorded (audit +%d, log +%d)", grewAudit, grewLog)
	}
	data, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{`...(truncated)`, fmt.Sprintf(`"resource":%d`, len(`Hodei::Run::""`)+len(id))} {
		if !strings.Contains(last, want) {
			t.Errorf("last audit record %s lacks %s", last, want)
		}
	}
	if !strings.Contains(e.log.String(), fmt.Sprintf(`"path_len":%d`, len("/api/v1/runs/")+len(id))) {
		t.Errorf("the access log does not record the path's length")
	}
	// The trail still verifies, clipped records included, and reads back.
	if _, err := audit.Verify(auditPath, audit.VerifyOptions{}); err != nil {
		t.Errorf("the trail does not verify: %v", err)
	}
	if a := e.call(e.admin, "GET", "/api/v1/audit?limit=5", "", nil); a.status != http.StatusOK || !strings.Contains(string(a.body), `"lengths":{`) {
		t.Errorf("audit query: %d %.300s", a.status, a.body)
	}
}

// TestFailedAuthenticationsAreRateLimited: past the burst, failed
// authentications from an address are answered 429 with Retry-After, while
// requests with valid credentials from the same address go on.
func TestFailedAuthenticationsAreRateLimited(t *testing.T) {
	const burst = 5
	e := startHardened(t, api.Limits{AuthFailBurst: burst, AuthFailEvery: time.Hour}, 0)
	for i := 0; i < burst; i++ {
		e.want(e.call("hodei_wrong", "GET", "/api/v1/runs", "", nil), http.StatusUnauthorized, wire.CodeUnauthenticated, fmt.Sprintf("failure %d", i+1))
	}
	for i := 0; i < 3; i++ {
		a := e.call("", "GET", "/api/v1/runs", "", nil)
		e.want(a, http.StatusTooManyRequests, wire.CodeTooManyRequests, "failure past the burst")
		if ra := a.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("429 without a Retry-After: %q", ra)
		}
	}
	// Valid credentials are not limited.
	for i := 0; i < 2*burst; i++ {
		e.want(e.call(e.admin, "GET", "/api/v1/runs", "", nil), http.StatusOK, "", "admin after the limit")
	}
}

// rawConn is a TCP connection that writes a request by hand.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// trickle writes one byte of body per tick until the connection fails
// or stop is closed.
func trickle(c net.Conn, stop <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}
}

// closedWithin reads what the server sends until it closes the connection
// (EOF or reset), failing if that takes longer than bound. It returns what
// was read.
func (c *rawConn) closedWithin(bound time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(bound))
	data, err := io.ReadAll(c.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(data), fmt.Errorf("still open after %s (read %q)", bound, data)
	}
	return string(data), nil
}

// TestSlowClientsAreCut: 100 connections without credentials trickling a
// 100 kB body get their 401 at once and are closed; a request whose headers
// trickle is cut after ReadHeaderTimeout; an authenticated request whose
// body trickles is cut after ReadTimeout; a kept-alive connection with no
// next request is closed after IdleTimeout; and all the while the API
// answers others.
func TestSlowClientsAreCut(t *testing.T) {
	limits := api.Limits{ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 5 * time.Second,
		IdleTimeout: 2 * time.Second, AuthFailBurst: -1}
	e := startHardened(t, limits, 0)
	addr := e.srv.HTTPAddr()
	stop := make(chan struct{})
	defer close(stop)
	// 100 kB at 10 bytes a second: 10,000 s if nobody cuts it.
	const bound = 20 * time.Second
	post := "POST /api/v1/runs HTTP/1.1\r\nHost: hodei\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n"

	const n = 100
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
		if _, err := io.WriteString(conns[i], post+"\r\n"); err != nil {
			t.Fatal(err)
		}
		go trickle(conns[i], stop)
	}
	slowHeader := dialRaw(t, addr)
	if _, err := io.WriteString(slowHeader, "GET /api/v1/runs HTTP/1.1\r\nHost: hodei\r\n"); err != nil {
		t.Fatal(err)
	}
	slowBody := dialRaw(t, addr)
	if _, err := io.WriteString(slowBody, post+"Authorization: Bearer "+e.admin+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	go trickle(slowBody, stop)
	// A kept-alive connection that asks once, then says nothing.
	idle := dialRaw(t, addr)
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: hodei\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(idle.r, nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz on the idle connection: %v %v", resp, err)
	} else if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}

	// The API answers while they hang on.
	e.want(e.call(e.admin, "GET", "/api/v1/runs", "", nil), http.StatusOK, "", "a normal request beside 102 slow ones")

	var wg sync.WaitGroup
	errs := make(chan error, n+2)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.closedWithin(bound)
			switch {
			case err != nil:
				errs <- fmt.Errorf("unauthenticated slow body %d: %v", i, err)
			case !strings.HasPrefix(got, "HTTP/1.1 401"):
				errs <- fmt.Errorf("unauthenticated slow body %d: answered %.60q, want a 401", i, got)
			}
		}()
	}
	for what, c := range map[string]*rawConn{"trickled headers": slowHeader, "authenticated slow body": slowBody, "idle keep-alive": idle} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.closedWithin(bound); err != nil {
				errs <- fmt.Errorf("%s: %v", what, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestLongStreamOutlivesTimeouts: a followed run's log stream keeps going
// past the read and write timeouts while its client reads.
func TestLongStreamOutlivesTimeouts(t *testing.T) {
	limits := api.Limits{ReadHeaderTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond, IdleTimeout: time.Second}
	e := startHardened(t, limits, 1)
	// A step that prints, waits past every timeout, and prints again.
	yaml := "name: slow\njobs:\n  s:\n    steps: [{run: 'echo first; sleep 3; echo second'}]\n"
	run := e.submitAs(e.admin, "", yaml)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/v1/runs/"+run.ID+"/logs?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream cut: %v after %q", err, body)
	}
	for _, want := range []string{"first", "second", "event: end"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("stream lacks %q: %s", want, body)
		}
	}
}

// TestTenantsAndRolesValidatedWhereMade: a token with a role no policy
// knows, or a tenant that is not a plain name, is refused with 400 and what
// is allowed; so is a submission to such a tenant.
func TestTenantsAndRolesValidatedWhereMade(t *testing.T) {
	e := startHardened(t, api.Limits{}, 0)
	for _, c := range []struct {
		tenant string
		roles  []string
		want   string
	}{
		{"acme", []string{"superuser"}, `unknown role "superuser": the policies give permissions to admin, developer, maintainer, viewer`},
		{"../x", []string{"developer"}, `invalid tenant "../x": a tenant's name matches ` + "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
		{".hidden", []string{"viewer"}, `invalid tenant ".hidden"`},
		{"a/b", []string{"viewer"}, `invalid tenant "a/b"`},
	} {
		body, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("t%d", len(c.want)), "tenant": c.tenant, "roles": c.roles})
		a := e.call(e.admin, "POST", "/api/v1/tokens", "application/json", body)
		e.want(a, http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("token for tenant %q roles %v", c.tenant, c.roles))
		if !strings.Contains(string(a.body), strings.ReplaceAll(c.want, `"`, `\"`)) {
			t.Errorf("tenant %q roles %v: %s, want the message to hold %s", c.tenant, c.roles, a.body, c.want)
		}
	}
	e.token("ok", "acme-2.prod_x", "developer", "viewer")
	a := e.call(e.admin, "POST", "/api/v1/runs?tenant=..%2Fx", "application/yaml", []byte(helloYAML))
	e.want(a, http.StatusBadRequest, wire.CodeBadRequest, "submission to tenant ../x")
	if !strings.Contains(string(a.body), "a tenant's name matches") {
		t.Errorf("submission to ../x: %s", a.body)
	}
}

// TestWorkersHideOtherTenantsJobs: a developer of tenant B sees the workers,
// but not the ids of tenant A's jobs on them; A's developer and the admin
// do.
func TestWorkersHideOtherTenantsJobs(t *testing.T) {
	e := startHardened(t, api.Limits{}, 1)
	devA, devB := e.token("dev-a", "a", "developer"), e.token("dev-b", "b", "developer")
	a := e.call(devA, "POST", "/api/v1/runs", "application/yaml",
		[]byte("name: long\njobs:\n  wait:\n    steps: [{run: 'sleep 60'}]\n"))
	if a.status != http.StatusCreated {
		t.Fatalf("submit as dev-a: %d %s", a.status, a.body)
	}
	var run wire.Run
	if err := json.Unmarshal(a.body, &run); err != nil {
		t.Fatal(err)
	}
	defer e.call(e.admin, "POST", "/api/v1/runs/"+run.ID+"/cancel", "", nil)
	workers := func(token string) []wire.Worker {
		t.Helper()
		a := e.call(token, "GET", "/api/v1/workers", "", nil)
		if a.status != http.StatusOK {
			t.Fatalf("workers: %d %s", a.status, a.body)
		}
		var l wire.WorkerList
		if err := json.Unmarshal(a.body, &l); err != nil {
			t.Fatal(err)
		}
		return l.Workers
	}
	jobsSeen := func(token string) []string {
		t.Helper()
		ws := workers(token)
		if len(ws) != 1 {
			t.Fatalf("%d workers listed, want 1: %+v", len(ws), ws)
		}
		return ws[0].Jobs
	}
	// Wait for the worker to join and the job to be on it, as the admin
	// sees it.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ws := workers(e.admin); len(ws) != 1 || len(ws[0].Jobs) == 0; ws = workers(e.admin) {
		if time.Now().After(deadline) {
			t.Fatal("the job never reached the worker")
		}
		<-tick.C
	}
	jobID := jobsSeen(e.admin)[0]
	if !strings.HasPrefix(jobID, run.ID) {
		t.Fatalf("job %s on the worker is not of run %s", jobID, run.ID)
	}
	if got := jobsSeen(devA); len(got) != 1 || got[0] != jobID {
		t.Errorf("dev-a sees jobs %v, want [%s]", got, jobID)
	}
	if got := jobsSeen(devB); len(got) != 0 {
		t.Errorf("dev-b sees jobs %v of tenant a", got)
	}
}
