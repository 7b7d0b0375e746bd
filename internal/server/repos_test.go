package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/state"
)

// gitServer is a real git server for the tests: `git http-backend` behind
// net/http/cgi, serving the bare repositories under root, private (every
// request must carry the token as basic authentication, as forges take
// it); beside it, under /api/, the forge's commit status API, recording
// each call.
type gitServer struct {
	*httptest.Server
	root  string
	kind  forge.Kind
	token string

	mu       sync.Mutex
	statuses []statusCall
	changed  chan struct{}
	refused  int // git requests without the right credentials
}

type statusCall struct {
	Path   string
	Header http.Header
	Body   map[string]string
}

func newGitServer(t *testing.T, kind forge.Kind, token string) *gitServer {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("the git binary is needed: %v", err)
	}
	g := &gitServer{root: t.TempDir(), kind: kind, token: token, changed: make(chan struct{}, 64)}
	backend := &cgi.Handler{Path: git, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + g.root, "GIT_HTTP_EXPORT_ALL=1"}}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(forge.AuthUser(kind)+":"+token))
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			g.status(t, w, r)
			return
		}
		if r.Header.Get("Authorization") != want {
			g.mu.Lock()
			g.refused++
			g.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

// status checks one status call against the forge's documented API and
// records it.
func (g *gitServer) status(t *testing.T, w http.ResponseWriter, r *http.Request) {
	var prefix, auth string
	switch g.kind {
	case forge.GitHub:
		prefix, auth = "/api/v3/repos/o/app/statuses/", "Bearer "+g.token
		if r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") == "" {
			t.Errorf("github status: Accept %q, X-GitHub-Api-Version %q", r.Header.Get("Accept"), r.Header.Get("X-GitHub-Api-Version"))
		}
	case forge.GitLab:
		prefix, auth = "/api/v4/projects/o%2Fapp/statuses/", ""
		if r.Header.Get("PRIVATE-TOKEN") != g.token {
			t.Errorf("gitlab status: PRIVATE-TOKEN %q", r.Header.Get("PRIVATE-TOKEN"))
		}
	default:
		prefix, auth = "/api/v1/repos/o/app/statuses/", "token "+g.token
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.EscapedPath(), prefix) || r.Header.Get("Authorization") != auth ||
		r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s status call: %s %s, Authorization %q, Content-Type %q", g.kind, r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"))
		http.Error(w, "bad call", http.StatusBadRequest)
		return
	}
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		t.Errorf("status body: %v", err)
	}
	g.mu.Lock()
	g.statuses = append(g.statuses, statusCall{Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body})
	g.mu.Unlock()
	g.changed <- struct{}{}
	w.WriteHeader(http.StatusCreated)
}

// waitStatuses waits until n status calls were made for sha (the server
// posts them in the background, so the test waits on it with a deadline).
func (g *gitServer) waitStatuses(t *testing.T, sha string, n int) []statusCall {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		g.mu.Lock()
		var got []statusCall
		for _, c := range g.statuses {
			if strings.HasSuffix(c.Path, "/"+sha) {
				got = append(got, c)
			}
		}
		g.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-g.changed:
		case <-deadline:
			t.Fatalf("%d status calls for %s, want %d: %+v", len(got), sha, n, got)
		}
	}
}

// runGit runs git in dir and returns its trimmed output.
func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// workRepo is a clone the test commits in and pushes from to the bare
// repository o/app.git of the git server (by path).
type workRepo struct {
	dir, bare string
}

func newWorkRepo(t *testing.T, g *gitServer) *workRepo {
	bare := filepath.Join(g.root, "o", "app.git")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	runGit(t, bare, "init", "-q", "--bare")
	// As GitHub does: a commit can be fetched by its id.
	runGit(t, bare, "config", "uploadpack.allowAnySHA1InWant", "true")
	w := &workRepo{dir: t.TempDir(), bare: bare}
	runGit(t, w.dir, "init", "-q", "-b", "main")
	return w
}

// commit writes files (path: content) and commits them; it returns the
// commit's id.
func (w *workRepo) commit(t *testing.T, msg string, files map[string]string) string {
	for p, c := range files {
		full := filepath.Join(w.dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runGit(t, w.dir, "add", "-A")
	runGit(t, w.dir, "commit", "-q", "-m", msg)
	return runGit(t, w.dir, "rev-parse", "HEAD")
}

func (w *workRepo) push(t *testing.T, refspecs ...string) {
	runGit(t, w.dir, append([]string{"push", "-q", "-f", w.bare}, refspecs...)...)
}

const (
	buildPipeline = `name: build
on:
  push:
    branches: [main]
jobs:
  head:
    steps:
      - run: |
          echo "HEAD=$(git rev-parse HEAD)"
          echo "EVENT=$HODEI_EVENT BRANCH=$HODEI_BRANCH TAG=$HODEI_TAG COMMIT=$HODEI_COMMIT REF=$HODEI_REF REPO=$HODEI_REPO"
          echo "CONFIG:"; cat .git/config
          echo "GITENV=$(env | grep -c '^GIT_CONFIG' || true)"
          echo "SHALLOW=$(git rev-parse --is-shallow-repository)"
`
	docsPipeline = `name: docs
on:
  push:
    paths: ["docs/**", "!docs/drafts/**"]
jobs:
  docs:
    checkout: false
    steps:
      - run: echo "DOCS=$HODEI_COMMIT FILES=$(ls | wc -l)"
`
	tagPipeline = `name: release
on:
  push:
    tags: ["v*"]
jobs:
  release:
    checkout: {depth: 0}
    steps:
      - run: echo "TAG=$HODEI_TAG HEAD=$(git rev-parse HEAD) SHALLOW=$(git rev-parse --is-shallow-repository)"
`
	prPipeline = `name: pr
on:
  pull_request:
    branches: [main]
jobs:
  check:
    steps:
      - run: echo "PR=$HODEI_PR BASE=$HODEI_BRANCH HEAD=$(git rev-parse HEAD)"
`
)

// hookServer is a server with the HTTP API and one local worker.
func hookServer(t *testing.T) *Server {
	t.Helper()
	return startTestServer(t, Options{
		NATSListen:   "none",
		HTTPAddr:     "127.0.0.1:0",
		PublicURL:    "https://ci.example.com/",
		LocalWorkers: 1,
		WorkerTTL:    2 * time.Second,
	})
}

func apiCall(t *testing.T, s *Server, method, path string, h http.Header, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// githubPush is a push event as GitHub documents it (the fields Hodei
// reads, and some it does not).
func githubPush(ref, before, after string, added ...string) []byte {
	commits := []map[string]any{}
	if len(added) > 0 {
		commits = append(commits, map[string]any{"id": after, "message": "change", "added": added, "removed": []string{}, "modified": []string{}})
	}
	b, _ := json.Marshal(map[string]any{
		"ref": ref, "before": before, "after": after, "created": before == strings.Repeat("0", 40), "deleted": false, "forced": false,
		"commits": commits, "head_commit": map[string]any{"id": after},
		"repository": map[string]any{"full_name": "o/app", "clone_url": "https://github.com/o/app.git"},
		"pusher":     map[string]any{"name": "t"},
	})
	return b
}

// githubHeaders signs body as GitHub does: X-Hub-Signature-256 is
// "sha256=" and the hex HMAC-SHA256 of the body with the webhook secret.
func githubHeaders(event, delivery string, body []byte, secret string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "GitHub-Hookshot/test")
	h.Set("X-GitHub-Event", event)
	h.Set("X-GitHub-Delivery", delivery)
	h.Set("X-Hub-Signature-256", "sha256="+forge.Sign(body, secret))
	return h
}

func hook(t *testing.T, s *Server, kind string, h http.Header, body []byte) (int, wire.HookResult, string) {
	t.Helper()
	code, data := apiCall(t, s, http.MethodPost, "/api/v1/hooks/"+kind+"/app", h, body)
	var res wire.HookResult
	_ = json.Unmarshal(data, &res)
	return code, res, string(data)
}

// runLogs waits for a run to end and returns its state and the logs of
// its jobs, joined.
func runLogs(t *testing.T, s *Server, sub *hub.Sub, runID string) (state.RunState, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if r, err := s.Store.GetRun(ctx, runID); err != nil || !r.State.Final() {
		waitRun(ctx, t, s, sub, runID)
	}
	run, jobs := loadRun(t, s, runID)
	var all strings.Builder
	for _, j := range jobs {
		all.WriteString(logsOf(t, s, j.ID))
	}
	return run.State, all.String()
}

// repoOnForge starts a hookServer and a git server that plays the forge
// kind (its token, token), adds the forge's repository o/app to the server
// with the webhook secret, and clones it into a work repository to push
// from.
func repoOnForge(t *testing.T, kind forge.Kind, token, secret string) (*Server, *gitServer, *workRepo) {
	t.Helper()
	s := hookServer(t)
	g := newGitServer(t, kind, token)
	addRepo(t, s, g, kind, token, secret)
	return s, g, newWorkRepo(t, g)
}

func addRepo(t *testing.T, s *Server, g *gitServer, kind forge.Kind, token, secret string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Secrets.Put(ctx, "", "FORGE_TOKEN", token, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secrets.Put(ctx, "", "HOOK_SECRET", secret, nil); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(wire.Repo{Name: "app", URL: g.URL + "/o/app.git", Forge: string(kind), TokenSecret: "FORGE_TOKEN", WebhookSecret: "HOOK_SECRET"})
	if code, data := apiCall(t, s, http.MethodPost, "/api/v1/repos", http.Header{"Content-Type": {"application/json"}}, body); code != http.StatusCreated {
		t.Fatalf("add repository: %d %s", code, data)
	}
}

// TestGitHubPushToGreenStatus is the front door end to end: a push to a
// private repository on a real git server, GitHub's signed webhook, one
// run per matching pipeline file, the job sees the pushed commit, and the
// commit status goes pending then success; a redelivery and a bad
// signature start nothing; branch, tag, path and pull request filters.
func TestGitHubPushToGreenStatus(t *testing.T) {
	const token, secret = "ghs_s3cretT0ken", "It's a Secret to Everybody"
	s, g, w := repoOnForge(t, forge.GitHub, token, secret)
	zero := strings.Repeat("0", 40)

	sha := w.commit(t, "first", map[string]string{
		".hodei/build.yaml": buildPipeline, ".hodei/docs.yml": docsPipeline,
		".hodei/release.yaml": tagPipeline, ".hodei/pr.yaml": prPipeline, ".hodei/notes.txt": "not a pipeline",
		"src/main.go": "package main\n",
	})
	w.push(t, "main:refs/heads/main")

	sub := s.Hub.Subscribe("", 1<<16)
	defer sub.Close()
	body := githubPush("refs/heads/main", zero, sha, ".hodei/build.yaml", ".hodei/docs.yml", ".hodei/release.yaml", ".hodei/pr.yaml", ".hodei/notes.txt", "src/main.go")
	h := githubHeaders("push", "d-push-1", body, secret)
	code, res, raw := hook(t, s, "github", h, body)
	if code != http.StatusOK || len(res.RunIDs) != 1 || !slices.Equal(res.Matched, []string{".hodei/build.yaml"}) {
		t.Fatalf("push webhook: %d %s; want 200 and one run, of .hodei/build.yaml", code, raw)
	}
	if !slices.Equal(res.Files, []string{".hodei/build.yaml", ".hodei/docs.yml", ".hodei/pr.yaml", ".hodei/release.yaml"}) {
		t.Errorf("pipeline files = %v", res.Files)
	}
	runID := res.RunIDs[0]
	st, logs := runLogs(t, s, sub, runID)
	if st != state.RunSucceeded {
		t.Fatalf("run %s: %s\n%s", runID, st, logs)
	}
	for _, want := range []string{"HEAD=" + sha, "EVENT=push BRANCH=main TAG= COMMIT=" + sha + " REF=refs/heads/main REPO=app", "GITENV=0", "SHALLOW=true", "==> checkout " + sha,
		"object cache: the commit is not in this worker's mirror; a shallow checkout fetches directly"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	cred := base64.StdEncoding.EncodeToString([]byte("x-access-token:" + token))
	for _, leak := range []string{token, cred, "extraheader", "extraHeader"} {
		if strings.Contains(logs, leak) {
			t.Errorf("the logs (with the workspace's .git/config) hold %q:\n%s", leak, logs)
		}
	}
	calls := g.waitStatuses(t, sha, 2)
	for i, want := range []string{"pending", "success"} {
		b := calls[i].Body
		if b["state"] != want || b["context"] != "hodei/.hodei/build.yaml" || b["target_url"] != "https://ci.example.com/api/v1/runs/"+runID {
			t.Errorf("status %d: %v, want state %s, context hodei/.hodei/build.yaml, the run's url", i, b, want)
		}
	}
	_, data := apiCall(t, s, http.MethodGet, "/api/v1/runs/"+runID, nil, nil)
	var run wire.Run
	if err := json.Unmarshal(data, &run); err != nil {
		t.Fatal(err)
	}
	if run.File != ".hodei/build.yaml" || run.Trigger == nil || run.Trigger.Commit != sha || run.Trigger.Event != "push" ||
		run.Trigger.Ref != "refs/heads/main" || run.Trigger.Repo != "app" || run.Trigger.Delivery != "d-push-1" {
		t.Errorf("run as the API shows it: file %q, trigger %+v", run.File, run.Trigger)
	}
	if len(run.Statuses) < 1 || run.Statuses[0].State != "pending" || run.Statuses[0].Error != "" {
		t.Errorf("run statuses: %+v", run.Statuses)
	}

	countRuns := func() int {
		n, err := s.Store.CountRuns(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, c := range n {
			total += c
		}
		return total
	}
	before := countRuns()

	// A redelivery starts nothing and answers the first runs.
	code, res, raw = hook(t, s, "github", h, body)
	if code != http.StatusOK || !res.Duplicate || !slices.Equal(res.RunIDs, []string{runID}) {
		t.Errorf("redelivery: %d %s; want 200, duplicate, the first run", code, raw)
	}
	// A bad signature gets 401 and starts nothing.
	bad := githubHeaders("push", "d-push-2", body, "not the secret")
	code, _, raw = hook(t, s, "github", bad, body)
	if code != http.StatusUnauthorized || !strings.Contains(raw, `"bad_signature"`) {
		t.Errorf("bad signature: %d %s; want 401 bad_signature", code, raw)
	}
	// An event that starts nothing: 202.
	ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	if code, _, raw = hook(t, s, "github", githubHeaders("ping", "d-ping", ping, secret), ping); code != http.StatusAccepted {
		t.Errorf("ping: %d %s; want 202", code, raw)
	}
	// A malformed body: 400.
	junk := []byte(`{"ref": 7`)
	if code, _, raw = hook(t, s, "github", githubHeaders("push", "d-junk", junk, secret), junk); code != http.StatusBadRequest {
		t.Errorf("malformed: %d %s; want 400", code, raw)
	}
	if n := countRuns(); n != before {
		t.Errorf("runs after redelivery, bad signature, ping and junk: %d, want %d", n, before)
	}

	// Path filter: a change under docs/ (not drafts) starts docs as well;
	// the payload lists no files, so the server asks git.
	sha2 := w.commit(t, "docs", map[string]string{"docs/guide.md": "# guide\n"})
	w.push(t, "main:refs/heads/main")
	body = githubPush("refs/heads/main", sha, sha2)
	code, res, raw = hook(t, s, "github", githubHeaders("push", "d-push-3", body, secret), body)
	if code != http.StatusOK || !slices.Equal(res.Matched, []string{".hodei/build.yaml", ".hodei/docs.yml"}) || len(res.RunIDs) != 2 {
		t.Fatalf("docs push: %d %s; want build and docs", code, raw)
	}
	for _, id := range res.RunIDs {
		if st, logs := runLogs(t, s, sub, id); st != state.RunSucceeded {
			t.Fatalf("run %s: %s\n%s", id, st, logs)
		} else if strings.Contains(logs, "DOCS=") && !strings.Contains(logs, "DOCS="+sha2+" FILES=0") {
			t.Errorf("checkout: false still checked out:\n%s", logs)
		}
	}
	sha3 := w.commit(t, "draft", map[string]string{"docs/drafts/wip.md": "wip\n"})
	w.push(t, "main:refs/heads/main")
	body = githubPush("refs/heads/main", sha2, sha3, "docs/drafts/wip.md")
	if code, res, raw = hook(t, s, "github", githubHeaders("push", "d-push-4", body, secret), body); code != http.StatusOK || !slices.Equal(res.Matched, []string{".hodei/build.yaml"}) {
		t.Errorf("drafts push: %d %s; want build only (docs/drafts excluded)", code, raw)
	} else {
		runLogs(t, s, sub, res.RunIDs[0])
	}

	// Branch filter: a push to another branch starts nothing.
	runGit(t, w.dir, "checkout", "-q", "-b", "feature")
	sha4 := w.commit(t, "feature", map[string]string{"src/feature.go": "package main\n"})
	w.push(t, "feature:refs/heads/feature", "feature:refs/pull/7/head")
	body = githubPush("refs/heads/feature", zero, sha4, "src/feature.go")
	if code, res, raw = hook(t, s, "github", githubHeaders("push", "d-push-5", body, secret), body); code != http.StatusOK || len(res.RunIDs) != 0 {
		t.Errorf("feature push: %d %s; want no run", code, raw)
	}

	// Pull request to main: pr.yaml only, with the head commit checked out.
	pr, _ := json.Marshal(map[string]any{"action": "opened", "number": 7, "pull_request": map[string]any{
		"number": 7, "state": "open", "head": map[string]any{"ref": "feature", "sha": sha4}, "base": map[string]any{"ref": "main", "sha": sha3}}})
	code, res, raw = hook(t, s, "github", githubHeaders("pull_request", "d-pr-1", pr, secret), pr)
	if code != http.StatusOK || !slices.Equal(res.Matched, []string{".hodei/pr.yaml"}) || len(res.RunIDs) != 1 {
		t.Fatalf("pull request: %d %s; want pr.yaml", code, raw)
	}
	if st, logs := runLogs(t, s, sub, res.RunIDs[0]); st != state.RunSucceeded || !strings.Contains(logs, "PR=7 BASE=main HEAD="+sha4) {
		t.Errorf("pull request run: %s\n%s", st, logs)
	}

	// Tag filter: a tag starts release.yaml, with the whole history; and,
	// as on GitHub, docs.yml too: its push filter names neither branches
	// nor tags, so it takes both, and paths are not checked for a tag.
	runGit(t, w.dir, "checkout", "-q", "main")
	runGit(t, w.dir, "tag", "v1.0", sha3)
	w.push(t, "refs/tags/v1.0:refs/tags/v1.0")
	body = githubPush("refs/tags/v1.0", zero, sha3)
	code, res, raw = hook(t, s, "github", githubHeaders("push", "d-tag-1", body, secret), body)
	if code != http.StatusOK || !slices.Equal(res.Matched, []string{".hodei/docs.yml", ".hodei/release.yaml"}) || len(res.RunIDs) != 2 {
		t.Fatalf("tag: %d %s; want docs.yml and release.yaml", code, raw)
	}
	runLogs(t, s, sub, res.RunIDs[0])
	if st, logs := runLogs(t, s, sub, res.RunIDs[1]); st != state.RunSucceeded || !strings.Contains(logs, "TAG=v1.0 HEAD="+sha3+" SHALLOW=false") ||
		!strings.Contains(logs, "object cache: fetched into this worker's mirror") {
		t.Errorf("tag run: %s\n%s", st, logs)
	}
}

// TestGitServerIsPrivate: the test's git server refuses a fetch without
// the token, so that the checkouts above prove the token was sent.
func TestGitServerIsPrivate(t *testing.T) {
	g := newGitServer(t, forge.GitHub, "tok")
	w := newWorkRepo(t, g)
	w.commit(t, "x", map[string]string{"a": "a"})
	w.push(t, "main:refs/heads/main")
	cmd := exec.Command("git", "ls-remote", g.URL+"/o/app.git")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("ls-remote without credentials succeeded: %s", out)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refused == 0 {
		t.Fatal("no request refused")
	}
}

// TestStatusesPerForge runs a push through GitLab's and Gitea's and
// Forgejo's webhooks and checks each status call against their API.
func TestStatusesPerForge(t *testing.T) {
	for _, kind := range []forge.Kind{forge.GitLab, forge.Gitea, forge.Forgejo} {
		t.Run(string(kind), func(t *testing.T) {
			const token, secret = "tok-3141", "hook-2718"
			s, g, w := repoOnForge(t, kind, token, secret)
			sha := w.commit(t, "first", map[string]string{".hodei.yaml": "name: ci\njobs:\n  head:\n    steps:\n      - run: git rev-parse HEAD\n"})
			w.push(t, "main:refs/heads/main")
			zero := strings.Repeat("0", 40)
			h := http.Header{}
			var body []byte
			switch kind {
			case forge.GitLab:
				body, _ = json.Marshal(map[string]any{"object_kind": "push", "event_name": "push", "ref": "refs/heads/main", "before": zero, "after": sha,
					"checkout_sha": sha, "project": map[string]any{"path_with_namespace": "o/app"},
					"commits": []map[string]any{{"id": sha, "added": []string{".hodei.yaml"}, "modified": []string{}, "removed": []string{}}}})
				h.Set("X-Gitlab-Event", "Push Hook")
				h.Set("X-Gitlab-Event-UUID", "u-1")
				h.Set("X-Gitlab-Token", secret)
			default:
				body = githubPush("refs/heads/main", zero, sha, ".hodei.yaml")
				name := "Gitea"
				if kind == forge.Forgejo {
					name = "Forgejo"
				}
				h.Set("X-"+name+"-Event", "push")
				h.Set("X-"+name+"-Delivery", "g-1")
				h.Set("X-"+name+"-Signature", forge.Sign(body, secret))
			}
			sub := s.Hub.Subscribe("", 1<<16)
			defer sub.Close()
			code, res, raw := hook(t, s, string(kind), h, body)
			if code != http.StatusOK || len(res.RunIDs) != 1 {
				t.Fatalf("webhook: %d %s", code, raw)
			}
			if st, logs := runLogs(t, s, sub, res.RunIDs[0]); st != state.RunSucceeded || !strings.Contains(logs, sha) {
				t.Fatalf("run: %s\n%s", st, logs)
			}
			calls := g.waitStatuses(t, sha, 2)
			ctxKey := "context"
			if kind == forge.GitLab {
				ctxKey = "name"
			}
			for i, want := range []string{"pending", "success"} {
				if b := calls[i].Body; b["state"] != want || b[ctxKey] != "hodei/.hodei.yaml" {
					t.Errorf("status %d: %v, want %s", i, b, want)
				}
			}
			if kind != forge.GitLab {
				// Gitea's replay of a delivery, and Forgejo's: the same
				// body under a new delivery id starts nothing.
				name := "Gitea"
				if kind == forge.Forgejo {
					name = "Forgejo"
				}
				h.Set("X-"+name+"-Delivery", "g-2")
				if code, again, raw := hook(t, s, string(kind), h, body); code != http.StatusOK || !again.Duplicate || !slices.Equal(again.RunIDs, res.RunIDs) {
					t.Errorf("replay with a new delivery id: %d %s; want 200, duplicate, the first run %v", code, raw, res.RunIDs)
				}
			}
			if kind == forge.Gitea {
				// A manual run of the default branch: .hodei.yaml has no
				// on:, so it takes manual runs.
				code, data := apiCall(t, s, http.MethodPost, "/api/v1/repos/app/runs", http.Header{"Content-Type": {"application/json"}}, []byte(`{}`))
				var man wire.HookResult
				_ = json.Unmarshal(data, &man)
				if code != http.StatusCreated || len(man.RunIDs) != 1 || man.Commit != sha || man.Event != "manual" {
					t.Fatalf("manual run: %d %s", code, data)
				}
				if st, logs := runLogs(t, s, sub, man.RunIDs[0]); st != state.RunSucceeded || !strings.Contains(logs, sha) {
					t.Fatalf("manual run: %s\n%s", st, logs)
				}
				if code, data := apiCall(t, s, http.MethodPost, "/api/v1/repos/app/runs", nil, []byte(`{"ref":"nope"}`)); code != http.StatusBadGateway {
					t.Errorf("manual run of a missing branch: %d %s", code, data)
				}
			}
			// A wrong signature: 401.
			h.Set("X-Gitlab-Token", "nope")
			for _, k := range []string{"X-Gitea-Signature", "X-Forgejo-Signature"} {
				if h.Get(k) != "" {
					h.Set(k, forge.Sign(body, "nope"))
				}
			}
			if code, _, raw := hook(t, s, string(kind), h, body); code != http.StatusUnauthorized {
				t.Errorf("wrong signature: %d %s", code, raw)
			}
		})
	}
}

// TestCheckoutWithSubmodules: a job with checkout: {submodules: true} gets
// the submodule of its commit, fetched from the same private server with
// the same token.
func TestCheckoutWithSubmodules(t *testing.T) {
	const token, secret = "tok-submodule", "hook-submodule"
	s, g, w := repoOnForge(t, forge.Gitea, token, secret)

	// The library: its own bare repository on the same server.
	libBare := filepath.Join(g.root, "o", "lib.git")
	if err := os.MkdirAll(libBare, 0o755); err != nil {
		t.Fatal(err)
	}
	runGit(t, libBare, "init", "-q", "--bare")
	runGit(t, libBare, "config", "uploadpack.allowAnySHA1InWant", "true")
	lib := t.TempDir()
	runGit(t, lib, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(lib, "README.md"), []byte("library v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runGit(t, lib, "add", "-A")
	runGit(t, lib, "commit", "-q", "-m", "lib")
	libSHA := runGit(t, lib, "rev-parse", "HEAD")
	runGit(t, lib, "push", "-q", libBare, "main:refs/heads/main")

	// The application points at it (a gitlink and .gitmodules, as
	// "git submodule add" writes them).
	w.commit(t, "pipeline", map[string]string{
		".gitmodules": "[submodule \"lib\"]\n\tpath = lib\n\turl = " + g.URL + "/o/lib.git\n",
		".hodei.yaml": "name: sub\njobs:\n  s:\n    checkout: {submodules: true}\n    steps:\n      - run: cat lib/README.md; git -C lib rev-parse HEAD\n",
	})
	runGit(t, w.dir, "update-index", "--add", "--cacheinfo", "160000,"+libSHA+",lib")
	runGit(t, w.dir, "commit", "-q", "-m", "with lib")
	sha := runGit(t, w.dir, "rev-parse", "HEAD")
	w.push(t, "main:refs/heads/main")

	body := githubPush("refs/heads/main", strings.Repeat("0", 40), sha, ".gitmodules", ".hodei.yaml", "lib")
	h := http.Header{}
	h.Set("X-Gitea-Event", "push")
	h.Set("X-Gitea-Delivery", "sub-1")
	h.Set("X-Gitea-Signature", forge.Sign(body, secret))
	sub := s.Hub.Subscribe("", 1<<16)
	defer sub.Close()
	code, res, raw := hook(t, s, "gitea", h, body)
	if code != http.StatusOK || len(res.RunIDs) != 1 {
		t.Fatalf("webhook: %d %s", code, raw)
	}
	st, logs := runLogs(t, s, sub, res.RunIDs[0])
	if st != state.RunSucceeded || !strings.Contains(logs, "library v1") || !strings.Contains(logs, libSHA) {
		t.Fatalf("run: %s\n%s", st, logs)
	}
	if strings.Contains(logs, token) {
		t.Errorf("the token is in the logs:\n%s", logs)
	}
}
