//go:build gitea

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"

	_ "modernc.org/sqlite" // to read Gitea's record of its webhook deliveries
)

// The tests of this file run against a real Gitea, built from the Go module
// proxy by scripts/build-gitea (tools/gitea); scripts/test sets HODEI_GITEA
// to the binary. They fail, not skip, without it.
const giteaEnv = "HODEI_GITEA"

// giteaServer is a Gitea started for one test: its own work directory,
// SQLite database and loopback port, one administrator, and an access
// token of that user made through the API.
type giteaServer struct {
	url      string // http://127.0.0.1:PORT/ (Gitea's ROOT_URL)
	dir      string
	bin      string
	conf     string
	env      []string
	user     string
	password string
	token    string
	hc       *http.Client
	db       *sql.DB // Gitea's database, read only
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startGitea starts Gitea as its documentation says to run it
// unattended: an app.ini with INSTALL_LOCK, `gitea migrate`, `gitea admin
// user create`, then `gitea web`.
func startGitea(t *testing.T) *giteaServer {
	t.Helper()
	bin := os.Getenv(giteaEnv)
	if bin == "" {
		t.Fatalf("$%s must name a gitea binary: scripts/build-gitea builds one (scripts/test does, and sets it)", giteaEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("$%s: %v (scripts/build-gitea builds it)", giteaEnv, err)
	}
	// The files Gitea reads at start (options/, templates/): beside the
	// binary's directory, where scripts/build-gitea puts them.
	static := filepath.Join(filepath.Dir(filepath.Dir(bin)), "static")
	if _, err := os.Stat(filepath.Join(static, "options")); err != nil {
		t.Fatalf("gitea's static files: %v (scripts/build-gitea copies them)", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	g := &giteaServer{url: "http://" + addr + "/", dir: t.TempDir(), bin: bin, user: "octo", password: "pw-" + randomHex(t, 12),
		hc: &http.Client{Timeout: 60 * time.Second}}
	g.conf = filepath.Join(g.dir, "app.ini")
	ini := fmt.Sprintf(`APP_NAME = hodei-test
RUN_MODE = prod
RUN_USER = %[1]s
WORK_PATH = %[2]s
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]s
ROOT_URL = %[4]s
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = %[5]s
APP_DATA_PATH = %[2]s/data

; WAL: the test reads Gitea's record of its deliveries (hook_task) while
; Gitea writes; in SQLite's default journal mode each read would lock
; Gitea's writes out, and Gitea drops a delivery it cannot mark.
[database]
DB_TYPE = sqlite3
PATH = %[2]s/data/gitea.db
SQLITE_JOURNAL_MODE = WAL
SQLITE_TIMEOUT = 30000

[repository]
ROOT = %[2]s/repositories
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = %[6]s
INTERNAL_TOKEN = %[7]s

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[indexer]
ISSUE_INDEXER_TYPE = db

[actions]
ENABLED = false

[cron.update_checker]
ENABLED = false

; Webhooks to Hodei on loopback; Hodei answers after it has fetched the
; commit, which a busy machine can slow past Gitea's default 5 s.
[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 120

; The in-process queue: a push reaches the webhook in well under a second.
[queue]
TYPE = channel

[log]
MODE = console
LEVEL = Info
ROOT_PATH = %[2]s/log
`, me.Username, g.dir, port, g.url, static, randomHex(t, 32), randomHex(t, 32))
	if err := os.WriteFile(g.conf, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	g.env = []string{"HOME=" + g.dir, "PATH=" + os.Getenv("PATH"), "GITEA_WORK_DIR=" + g.dir, "USER=" + me.Username}
	g.cli(t, "migrate")
	g.cli(t, "admin", "user", "create", "--admin", "--username", g.user, "--password", g.password,
		"--email", g.user+"@example.com", "--must-change-password=false")
	cmd := exec.Command(bin, "web", "--config", g.conf, "--work-path", g.dir)
	cmd.Dir, cmd.Env = g.dir, g.env
	p := startCmd(t, "gitea.log", cmd)
	// Gitea is another program: its readiness is polled, with a deadline.
	eventually(t, 2*time.Minute, "gitea answers /api/v1/version", func() (bool, error) {
		select {
		case <-p.done:
			t.Fatal("gitea exited before it was ready")
		default:
		}
		resp, err := g.hc.Get(g.url + "api/v1/version")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	// The token, through the API with the user's password (basic
	// authentication, as Gitea's documentation shows).
	var tok struct {
		SHA1 string `json:"sha1"`
	}
	g.call(t, http.MethodPost, "api/v1/users/"+g.user+"/tokens", map[string]any{"name": "hodei", "scopes": []string{"all"}}, &tok, http.StatusCreated)
	if tok.SHA1 == "" {
		t.Fatal("gitea made a token without a value")
	}
	g.token = tok.SHA1
	return g
}

// cli runs a gitea command on this server's configuration.
func (g *giteaServer) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(g.bin, append(args, "--config", g.conf, "--work-path", g.dir)...)
	cmd.Dir, cmd.Env = g.dir, g.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gitea %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// call makes an API call with the token (or, before there is one, the
// user's password) and decodes the answer into out; any status other than
// want fails the test.
func (g *giteaServer) call(t *testing.T, method, path string, in, out any, want int) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if g.token != "" {
		req.Header.Set("Authorization", "token "+g.token)
	} else {
		req.SetBasicAuth(g.user, g.password)
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatalf("gitea %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("gitea %s %s: %d %s, want %d", method, path, resp.StatusCode, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("gitea %s %s: %v\n%s", method, path, err, data)
		}
	}
}

// giteaDelivery is one delivery of a webhook, as Gitea records it (its
// table hook_task: Gitea's API does not list deliveries; its web UI
// shows the same rows).
type giteaDelivery struct {
	ID       int64
	UUID     string
	Event    string
	Payload  string
	Request  struct{ Headers map[string]string }
	Response struct {
		Status int
		Body   string
	}
	payload struct {
		Ref         string `json:"ref"`
		After       string `json:"after"`
		Action      string `json:"action"`
		PullRequest *struct {
			Head struct {
				SHA string `json:"sha"`
			} `json:"head"`
		} `json:"pull_request"`
	}
}

// deliveries reads the deliveries Gitea has made and recorded the answer
// of, oldest first.
func (g *giteaServer) deliveries(t *testing.T) []giteaDelivery {
	t.Helper()
	if g.db == nil {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(g.dir, "data", "gitea.db")+"?mode=ro&_pragma=busy_timeout(30000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		g.db = db
	}
	rows, err := g.db.Query(`SELECT id, uuid, event_type, payload_content, request_content, response_content
		FROM hook_task WHERE is_delivered AND response_content IS NOT NULL AND response_content != '' ORDER BY id`)
	if err != nil {
		t.Fatalf("gitea's hook_task: %v", err)
	}
	defer rows.Close()
	var out []giteaDelivery
	for rows.Next() {
		var d giteaDelivery
		var req, resp string
		if err := rows.Scan(&d.ID, &d.UUID, &d.Event, &d.Payload, &req, &resp); err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal([]byte(req), &d.Request)
		_ = json.Unmarshal([]byte(resp), &d.Response)
		_ = json.Unmarshal([]byte(d.Payload), &d.payload)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitDelivery waits for Gitea to have delivered a webhook that match
// takes, and got Hodei's answer; it returns the first such delivery not in
// skip. Gitea delivers from its own queue: polled, with a deadline.
func (g *giteaServer) waitDelivery(t *testing.T, what string, skip []int64, match func(d giteaDelivery) bool) giteaDelivery {
	t.Helper()
	var got giteaDelivery
	eventually(t, 2*time.Minute, "gitea delivers "+what, func() (bool, error) {
		for _, d := range g.deliveries(t) {
			if !slices.Contains(skip, d.ID) && match(d) {
				got = d
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

// hookResult is Hodei's answer to a delivery, as Gitea recorded it; a
// status other than 200 fails the test.
func hookResult(t *testing.T, d giteaDelivery) wire.HookResult {
	t.Helper()
	var res wire.HookResult
	if d.Response.Status != http.StatusOK {
		t.Fatalf("delivery %s (%s): Hodei answered %d %s", d.UUID, d.Event, d.Response.Status, d.Response.Body)
	}
	if err := json.Unmarshal([]byte(d.Response.Body), &res); err != nil {
		t.Fatalf("delivery %s: Hodei's answer: %v\n%s", d.UUID, err, d.Response.Body)
	}
	return res
}

type giteaStatus struct {
	ID        int64  `json:"id"`
	Status    string `json:"status"`
	Context   string `json:"context"`
	TargetURL string `json:"target_url"`
}

// waitStatuses waits until Gitea's commit status API lists, for sha, a
// status of the run's end (anything but pending), and returns them all,
// oldest first. Hodei posts them in the background: polled, with a deadline.
func (g *giteaServer) waitStatuses(t *testing.T, repo, sha string) []giteaStatus {
	t.Helper()
	var got []giteaStatus
	eventually(t, 2*time.Minute, "gitea lists the final status of "+sha, func() (bool, error) {
		got = nil
		g.call(t, http.MethodGet, "api/v1/repos/"+g.user+"/"+repo+"/statuses/"+sha+"?limit=50", nil, &got, http.StatusOK)
		sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
		for _, s := range got {
			if s.Status != "pending" {
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

// replay asks Gitea to deliver a past delivery again, as its web UI's
// "Replay" button does (the API has no such call): signed in with the
// user's password, POST .../settings/hooks/ID/replay/UUID.
func (g *giteaServer) replay(t *testing.T, repo string, hookID int64, uuid string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.PostForm(g.url+"user/login", url.Values{"user_name": {g.user}, "password": {g.password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("gitea sign in: %d, want 303", resp.StatusCode)
	}
	resp, err = hc.Post(fmt.Sprintf("%s%s/%s/settings/hooks/%d/replay/%s", g.url, g.user, repo, hookID, uuid), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("gitea replay of %s: %d %s, want 303", uuid, resp.StatusCode, data)
	}
}

// gitIn runs git in dir, with no user or system configuration.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func commitFiles(t *testing.T, dir, msg string, files map[string]string) string {
	t.Helper()
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "-m", msg)
	return gitIn(t, dir, "rev-parse", "HEAD")
}

// giteaPipeline runs on a push to main, a v* tag and a pull request to
// main; it prints what the job sees, and fails on a commit that has a file
// named fail.
const giteaPipeline = `name: ci
on:
  push:
    branches: [main]
    tags: ["v*"]
  pull_request:
    branches: [main]
jobs:
  check:
    steps:
      - run: |
          echo "HEAD=$(git rev-parse HEAD)"
          echo "README=$(cat README)"
          echo "EVENT=$HODEI_EVENT BRANCH=$HODEI_BRANCH TAG=$HODEI_TAG PR=$HODEI_PR COMMIT=$HODEI_COMMIT"
          if [ -f fail ]; then echo "this commit fails"; exit 3; fi
`

// TestGiteaPushToStatus is the front door against a real forge: a push to
// a private Gitea repository, Gitea's signed webhook to a real `hodei
// server`, exactly one run at the pushed commit with that commit checked
// out, and Gitea's commit status API showing pending then success (failure
// for a failing commit). Gitea's replay of a delivery starts nothing; a tag
// and a pull request reach their jobs as HODEI_TAG and HODEI_PR.
func TestGiteaPushToStatus(t *testing.T) {
	g := startGitea(t)

	// A real Hodei server, with authentication on: the CLI and this test
	// use the local admin token; the webhook carries none.
	httpAddr := freeAddr(t)
	base := "http://" + httpAddr
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "HODEI_CREDENTIALS=" + filepath.Join(home, "credentials.json")}
	srvCmd := exec.Command(hodeiBin, withStore(t, []string{"server", "--data-dir", t.TempDir(), "--http", httpAddr,
		"--nats-listen", "none", "--workers", "1", "--public-url", base})...)
	srvCmd.Env = env
	srv := startCmd(t, "server.log", srvCmd)
	waitReady(t, api{base: base, hc: &http.Client{Timeout: 10 * time.Second}}, srv)
	var admin string
	eventually(t, 30*time.Second, "the admin token in the server's log", func() (bool, error) {
		b, _ := os.ReadFile(srv.log)
		m := regexp.MustCompile(`local admin token[^\n]*\n\n\s+(\S+)`).FindSubmatch(b)
		if m != nil {
			admin = string(m[1])
		}
		return m != nil, nil
	})
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(admin)
	hodei := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(hodeiBin, append(args, "--server", base)...)
		cmd.Env, cmd.Stdin = env, strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("hodei %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// A private repository on Gitea, its token and webhook secret in
	// Hodei's secrets store, the repository in Hodei, the webhook in Gitea.
	const repo = "app"
	g.call(t, http.MethodPost, "api/v1/user/repos", map[string]any{"name": repo, "private": true, "default_branch": "main"}, nil, http.StatusCreated)
	cloneURL := g.url + g.user + "/" + repo + ".git"
	hookSecret := randomHex(t, 32)
	hodei(g.token, "secret", "set", "GITEA_TOKEN")
	hodei(hookSecret, "secret", "set", "GITEA_HOOK")
	hodei("", "repo", "add", repo, "--url", cloneURL, "--forge", "gitea", "--token-secret", "GITEA_TOKEN", "--webhook-secret-secret", "GITEA_HOOK")
	var shown wire.Repo
	if err := json.Unmarshal([]byte(hodei("", "repo", "show", repo, "--json")), &shown); err != nil || shown.HookPath == "" {
		t.Fatalf("hodei repo show --json: %+v, %v", shown, err)
	}
	var hook struct {
		ID int64 `json:"id"`
	}
	g.call(t, http.MethodPost, "api/v1/repos/"+g.user+"/"+repo+"/hooks", map[string]any{
		"type": "gitea", "active": true, "branch_filter": "*", "events": []string{"push", "pull_request"},
		"config": map[string]string{"url": base + shown.HookPath, "content_type": "json", "secret": hookSecret},
	}, &hook, http.StatusCreated)

	work := t.TempDir()
	gitIn(t, work, "init", "-q", "-b", "main")
	pushURL := strings.Replace(cloneURL, "://", "://"+g.user+":"+g.token+"@", 1)
	gitIn(t, work, "remote", "add", "origin", pushURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// runOf waits for Gitea's delivery that match takes, checks that
	// Hodei started exactly one run for it, waits for the run's end and
	// returns it with its log.
	var seen []int64
	runOf := func(what string, match func(d giteaDelivery) bool) (giteaDelivery, client.Run, string) {
		t.Helper()
		d := g.waitDelivery(t, what, seen, match)
		seen = append(seen, d.ID)
		res := hookResult(t, d)
		if len(res.RunIDs) != 1 || res.Duplicate {
			t.Fatalf("%s: Hodei answered %s; want exactly one new run", what, d.Response.Body)
		}
		if err := c.FollowLogs(ctx, res.RunIDs[0], "", func(client.Event) error { return nil }); err != nil {
			t.Fatalf("%s: follow run %s: %v", what, res.RunIDs[0], err)
		}
		run, err := c.GetRun(ctx, res.RunIDs[0])
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		if err := c.Logs(ctx, run.ID, "", client.LogsOptions{}, &logs); err != nil {
			t.Fatal(err)
		}
		return d, run, logs.String()
	}
	isPush := func(ref, sha string) func(d giteaDelivery) bool {
		return func(d giteaDelivery) bool {
			return d.Event == "push" && d.payload.Ref == ref && d.payload.After == sha
		}
	}
	wantStatuses := func(sha, final, runID string) {
		t.Helper()
		got := g.waitStatuses(t, repo, sha)
		var states []string
		for _, s := range got {
			states = append(states, s.Status)
			if s.Context != "hodei/.hodei.yaml" || s.TargetURL != base+"/api/v1/runs/"+runID {
				t.Errorf("status of %s: %+v; want context hodei/.hodei.yaml, target %s/api/v1/runs/%s", sha, s, base, runID)
			}
		}
		if !slices.Equal(states, []string{"pending", final}) {
			t.Errorf("statuses of %s: %v, want [pending %s]", sha, states, final)
		}
	}

	// A push to main: one run at the pushed commit, checked out; pending,
	// then success.
	sha1 := commitFiles(t, work, "first", map[string]string{".hodei.yaml": giteaPipeline, "README": "one"})
	gitIn(t, work, "push", "-q", "origin", "main")
	first, run, logs := runOf("the push of main", isPush("refs/heads/main", sha1))
	if run.State != "succeeded" || run.Trigger == nil || run.Trigger.Commit != sha1 || run.Trigger.Event != "push" {
		t.Fatalf("run of the push: %s, trigger %+v\n%s", run.State, run.Trigger, logs)
	}
	for _, want := range []string{"HEAD=" + sha1, "README=one", "EVENT=push BRANCH=main TAG= PR= COMMIT=" + sha1} {
		if !strings.Contains(logs, want) {
			t.Errorf("the job's log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, g.token) {
		t.Errorf("the token is in the job's log:\n%s", logs)
	}
	wantStatuses(sha1, "success", run.ID)

	// Gitea's replay of that delivery: a new X-Gitea-Delivery, the same
	// body; Hodei answers with the first run and starts nothing.
	g.replay(t, repo, hook.ID, first.UUID)
	again := g.waitDelivery(t, "the replay", seen, func(d giteaDelivery) bool { return d.Payload == first.Payload })
	seen = append(seen, again.ID)
	if id := again.Request.Headers["X-Gitea-Delivery"]; id == "" || id == first.Request.Headers["X-Gitea-Delivery"] {
		// Why Hodei keys Gitea's deliveries by the body (forge.DeliveryKey).
		t.Errorf("gitea's replay sent X-Gitea-Delivery %q, the first delivery %q: want a new one", id, first.Request.Headers["X-Gitea-Delivery"])
	}
	if res := hookResult(t, again); !res.Duplicate || !slices.Equal(res.RunIDs, []string{run.ID}) {
		t.Errorf("replay: Hodei answered %s; want duplicate, the first run %s", again.Response.Body, run.ID)
	}

	// A failing commit: failure.
	sha2 := commitFiles(t, work, "second", map[string]string{"fail": "yes", "README": "two"})
	gitIn(t, work, "push", "-q", "origin", "main")
	_, run2, logs := runOf("the push of a failing commit", isPush("refs/heads/main", sha2))
	if run2.State != "failed" || !strings.Contains(logs, "HEAD="+sha2) || !strings.Contains(logs, "this commit fails") {
		t.Fatalf("run of the failing commit: %s\n%s", run2.State, logs)
	}
	wantStatuses(sha2, "failure", run2.ID)

	// An annotated tag: HODEI_TAG (the expression context has no tag).
	// Gitea's push names the tag's own object; the run is of its commit.
	gitIn(t, work, "tag", "-a", "-m", "release 1.0", "v1.0", sha1)
	tagObject := gitIn(t, work, "rev-parse", "v1.0")
	gitIn(t, work, "push", "-q", "origin", "v1.0")
	tagPush, run3, logs := runOf("the push of tag v1.0", func(d giteaDelivery) bool { return d.Event == "push" && d.payload.Ref == "refs/tags/v1.0" })
	if tagPush.payload.After != tagObject {
		t.Errorf("gitea's push of an annotated tag: after %s, want the tag's object %s", tagPush.payload.After, tagObject)
	}
	if run3.State != "succeeded" || !strings.Contains(logs, "HEAD="+sha1) || !strings.Contains(logs, "EVENT=tag BRANCH= TAG=v1.0 PR= COMMIT="+sha1) ||
		run3.Trigger == nil || run3.Trigger.Commit != sha1 {
		t.Errorf("run of the tag (object %s, commit %s): %s, trigger %+v\n%s", tagObject, sha1, run3.State, run3.Trigger, logs)
	}

	// A branch push that no pipeline takes, then a pull request from it
	// to main: HODEI_PR, with the pull request's head checked out.
	gitIn(t, work, "checkout", "-q", "-b", "feature", sha1)
	sha3 := commitFiles(t, work, "feature", map[string]string{"README": "feature"})
	gitIn(t, work, "push", "-q", "origin", "feature")
	d := g.waitDelivery(t, "the push of feature", seen, isPush("refs/heads/feature", sha3))
	seen = append(seen, d.ID)
	if res := hookResult(t, d); len(res.RunIDs) != 0 {
		t.Errorf("push of feature: Hodei answered %s; want no run (on: push: branches: [main])", d.Response.Body)
	}
	var pr struct {
		Number int `json:"number"`
	}
	g.call(t, http.MethodPost, "api/v1/repos/"+g.user+"/"+repo+"/pulls", map[string]any{"head": "feature", "base": "main", "title": "feature"}, &pr, http.StatusCreated)
	_, run4, logs := runOf("the pull request", func(d giteaDelivery) bool {
		return d.Event == "pull_request" && d.payload.Action == "opened" && d.payload.PullRequest != nil && d.payload.PullRequest.Head.SHA == sha3
	})
	if want := fmt.Sprintf("EVENT=pull_request BRANCH=main TAG= PR=%d COMMIT=%s", pr.Number, sha3); run4.State != "succeeded" ||
		!strings.Contains(logs, "HEAD="+sha3) || !strings.Contains(logs, "README=feature") || !strings.Contains(logs, want) {
		t.Errorf("run of the pull request: %s, want a log with %q\n%s", run4.State, want, logs)
	}
	wantStatuses(sha3, "success", run4.ID)

	// Four runs in all: the replay and the feature push made none.
	list, err := c.ListRuns(ctx, client.ListOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Runs) != 4 {
		var ids []string
		for _, r := range list.Runs {
			ids = append(ids, r.ID)
		}
		t.Errorf("Hodei has %d runs %v, want 4 (%s %s %s %s)", len(list.Runs), ids, run.ID, run2.ID, run3.ID, run4.ID)
	}
}
