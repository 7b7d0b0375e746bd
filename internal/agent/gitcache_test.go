package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/pipeline"
)

// gitHTTP is a real git server (git http-backend behind net/http/cgi)
// serving one private repository, o/app.git, that counts the fetches
// (upload-pack requests) it answers.
type gitHTTP struct {
	url   string // of the repository
	bare  string
	mu    sync.Mutex
	packs int
}

func (g *gitHTTP) fetches() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.packs
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// newGitHTTP makes the repository with n commits and serves it; every
// request must carry token as basic authentication.
func newGitHTTP(t testing.TB, token string, n int) (*gitHTTP, string) {
	t.Helper()
	root := t.TempDir()
	bare := filepath.Join(root, "o", "app.git")
	git(t, root, "init", "-q", "--bare", bare)
	work := t.TempDir()
	git(t, work, "init", "-q", "-b", "main")
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(work, "f.txt"), []byte(strings.Repeat("line\n", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, work, "add", "f.txt")
		git(t, work, "commit", "-q", "-m", "commit")
	}
	git(t, work, "push", "-q", bare, "main")
	return serveGit(t, root, token), git(t, work, "rev-parse", "HEAD")
}

// serveGit serves the repository o/app.git under root.
func serveGit(t testing.TB, root, token string) *gitHTTP {
	t.Helper()
	g := &gitHTTP{bare: filepath.Join(root, "o", "app.git")}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			g.mu.Lock()
			g.packs++
			g.mu.Unlock()
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/o/app.git"
	return g
}

func (g *gitHTTP) checkout(commit string, depth int) *pipeline.Checkout {
	return &pipeline.Checkout{URL: g.url, Commit: commit, Ref: "refs/heads/main", Depth: depth, AuthUser: "x-access-token"}
}

// checkedOut says whether ws's repository has the commit, where the
// checkout script looks for it.
func checkedOut(t *testing.T, ws, commit string) {
	t.Helper()
	if got := git(t, ws, "rev-parse", "refs/remotes/origin/hodei-checkout"); got != commit {
		t.Fatalf("workspace %s has %s, want %s", ws, got, commit)
	}
	git(t, ws, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit)
}

func newTestCache(t testing.TB) *gitCache {
	t.Helper()
	g, err := newGitCache(filepath.Join(t.TempDir(), "git-cache"))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// newCacheTest serves a repository of n commits whose requests must carry
// token, and makes an empty cache. It returns them with the repository's
// head and a context that ends after timeout, a bound for a hang.
func newCacheTest(t *testing.T, token string, n int, timeout time.Duration) (*gitHTTP, string, *gitCache, context.Context) {
	t.Helper()
	srv, head := newGitHTTP(t, token, n)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return srv, head, newTestCache(t), ctx
}

func TestGitCacheSecondCheckoutUsesTheMirror(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token-4711"
	srv, head, cache, ctx := newCacheTest(t, token, 30, 60*time.Second)

	// A shallow checkout of a commit the mirror lacks is left to the
	// checkout script: nothing fetched into the mirror for it.
	shallow := t.TempDir()
	if _, err := cache.prime(ctx, "acme", srv.checkout(head, 1), token, shallow, -1); !errors.Is(err, errShallowMiss) || srv.fetches() != 0 {
		t.Fatalf("cold shallow checkout: %v, %d fetches; want errShallowMiss and none", err, srv.fetches())
	}
	if _, err := os.Stat(filepath.Join(shallow, ".git")); !os.IsNotExist(err) {
		t.Errorf("a shallow miss left %s/.git", shallow)
	}

	ws1 := t.TempDir()
	res, err := cache.prime(ctx, "acme", srv.checkout(head, 0), token, ws1, -1)
	if err != nil {
		t.Fatal(err)
	}
	cold := srv.fetches()
	if res.Hit || cold == 0 {
		t.Fatalf("first checkout: hit %v with %d fetches from the server", res.Hit, cold)
	}
	checkedOut(t, ws1, head)
	if n := git(t, ws1, "rev-list", "--count", "HEAD"); n != "30" {
		t.Errorf("full history: %s commits, want 30", n)
	}

	ws2 := t.TempDir()
	res2, err := cache.prime(ctx, "acme", srv.checkout(head, 1), token, ws2, -1)
	if err != nil {
		t.Fatal(err)
	}
	if !res2.Hit || res2.Mirror != res.Mirror || srv.fetches() != cold {
		t.Fatalf("second checkout: hit %v, mirror %s (first %s), fetches %d (first %d): want the mirror, nothing from the server",
			res2.Hit, res2.Mirror, res.Mirror, srv.fetches(), cold)
	}
	checkedOut(t, ws2, head)
	if n := git(t, ws2, "rev-list", "--count", "HEAD"); n != "1" {
		t.Errorf("depth 1 from the mirror: %s commits", n)
	}

	// A workspace that is the job's already (a root agent gives it to the
	// step's uid before the checkout) gets a .git that is the job's too.
	if os.Geteuid() == 0 {
		ws3 := t.TempDir()
		if err := os.Chown(ws3, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := cache.prime(ctx, "acme", srv.checkout(head, 0), token, ws3, 65534); err != nil {
			t.Fatal(err)
		}
		_ = filepath.WalkDir(filepath.Join(ws3, ".git"), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if fi, err := os.Lstat(p); err == nil && fi.Sys().(*syscall.Stat_t).Uid != 65534 {
				t.Errorf("%s is not the job's", p)
			}
			return nil
		})
	}

	// The token is in neither repository's files.
	for _, dir := range []string{res.Mirror, filepath.Join(ws1, ".git"), filepath.Join(ws2, ".git")} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, _ := os.ReadFile(p)
			if strings.Contains(string(data), token) || strings.Contains(string(data), base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))) {
				t.Errorf("%s holds the token", p)
			}
			return nil
		})
	}
	if got := git(t, ws1, "remote", "get-url", "origin"); got != srv.url {
		t.Errorf("workspace origin %q, want the repository's URL %q", got, srv.url)
	}
	if fi, err := os.Stat(cache.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
}

func TestGitCacheConcurrentCheckouts(t *testing.T) {
	t.Parallel()
	srv, head, cache, ctx := newCacheTest(t, "tok", 10, 90*time.Second)
	const n = 6
	ws := make([]string, n)
	errs := make([]error, n)
	hits := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		ws[i] = t.TempDir()
		wg.Go(func() {
			res, err := cache.prime(ctx, "acme", srv.checkout(head, 0), "tok", ws[i], -1)
			errs[i], hits[i] = err, res.Hit
		})
	}
	wg.Wait()
	misses := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("checkout %d: %v", i, errs[i])
		}
		checkedOut(t, ws[i], head)
		if !hits[i] {
			misses++
		}
	}
	// The checkouts took the mirror one at a time: one fetched, the
	// others found the commit.
	if misses != 1 {
		t.Errorf("%d checkouts fetched from the server, want 1", misses)
	}
	git(t, cache.mirror("acme", srv.url), "fsck", "--no-progress")
}

// TestGitCacheTenantsHaveTheirOwnMirrors: the same URL fetched for two
// tenants makes two mirrors, so what one tenant's fetches put in its mirror
// (a server that answered it otherwise, a token of its own) never serves
// the other's checkouts.
func TestGitCacheTenantsHaveTheirOwnMirrors(t *testing.T) {
	t.Parallel()
	srv, head, cache, ctx := newCacheTest(t, "tok", 5, 60*time.Second)
	a, err := cache.prime(ctx, "acme", srv.checkout(head, 0), "tok", t.TempDir(), -1)
	if err != nil {
		t.Fatal(err)
	}
	before := srv.fetches()
	// A commit planted in acme's mirror that the repository does not
	// have: globex must not get it from there.
	planted := git(t, a.Mirror, "commit-tree", "-m", "planted", git(t, a.Mirror, "rev-parse", head+"^{tree}"))
	b, err := cache.prime(ctx, "globex", srv.checkout(planted, 0), "tok", t.TempDir(), -1)
	if err == nil || b.Mirror == a.Mirror {
		t.Fatalf("globex checked out a commit only acme's mirror has (mirror %s, acme's %s)", b.Mirror, a.Mirror)
	}
	if srv.fetches() == before {
		t.Error("globex's checkout did not go to the server")
	}
	ws := t.TempDir()
	if _, err := cache.prime(ctx, "globex", srv.checkout(head, 0), "tok", ws, -1); err != nil {
		t.Fatal(err)
	}
	checkedOut(t, ws, head)
	if _, err := os.Stat(filepath.Join(ws, ".git")); err != nil {
		t.Fatal(err)
	}
	// A failed prime leaves no repository in the workspace.
	failed := t.TempDir()
	if _, err := cache.prime(ctx, "globex", srv.checkout(strings.Repeat("0", 40), 0), "tok", failed, -1); err == nil {
		t.Fatal("a missing commit was checked out")
	}
	if _, err := os.Stat(filepath.Join(failed, ".git")); !os.IsNotExist(err) {
		t.Errorf("a failed prime left %s/.git (%v)", failed, err)
	}
}

// TestGitCacheBadToken: a fetch refused by the server fails the prime
// (the checkout script then tries itself), and says so without the token.
func TestGitCacheBadToken(t *testing.T) {
	t.Parallel()
	srv, head, cache, ctx := newCacheTest(t, "right", 2, 60*time.Second)
	_, err := cache.prime(ctx, "acme", srv.checkout(head, 0), "wrong-token-99", t.TempDir(), -1)
	if err == nil || strings.Contains(err.Error(), "wrong-token-99") {
		t.Fatalf("prime with a wrong token: %v", err)
	}
}

// TestGitCachePrunesUnusedMirrors: a mirror unused for the max age is
// removed, one used since is kept, one in use (its lock held by another
// process) is left for later, and a removed mirror is fetched again by
// the next checkout.
func TestGitCachePrunesUnusedMirrors(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token-4712"
	srv, head, cache, ctx := newCacheTest(t, token, 3, 60*time.Second)
	prime := func(tenant string) cacheResult {
		t.Helper()
		res, err := cache.prime(ctx, tenant, srv.checkout(head, 0), token, t.TempDir(), -1)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	old, recent, busy := prime("old"), prime("recent"), prime("busy")
	// "old" and "busy" were last used 10 days ago, "recent" an hour ago.
	for m, age := range map[string]time.Duration{old.Mirror: 240 * time.Hour, busy.Mirror: 240 * time.Hour, recent.Mirror: time.Hour} {
		at := time.Now().Add(-age)
		if err := os.Chtimes(m+".lock", at, at); err != nil {
			t.Fatal(err)
		}
	}
	// Another process holds the lock of "busy" (as a second agent sharing
	// the directory would while it fetches).
	holder := exec.Command("flock", busy.Mirror+".lock", "sh", "-c", "echo locked; read _")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = holder.Wait() }()
	if _, err := io.ReadFull(out, make([]byte, 7)); err != nil { // "locked": the lock is held
		t.Fatal(err)
	}

	n, err := cache.prune(time.Now().Add(-DefaultGitCacheMaxAge))
	if err != nil || n != 1 {
		t.Fatalf("prune: %d removed, %v; want 1", n, err)
	}
	for m, want := range map[string]bool{old.Mirror: false, recent.Mirror: true, busy.Mirror: true} {
		if _, err := os.Stat(filepath.Join(m, "HEAD")); (err == nil) != want {
			t.Errorf("mirror %s present: %v, want %v", filepath.Base(m), err == nil, want)
		}
	}
	if _, err := os.Stat(old.Mirror + ".lock"); err != nil {
		t.Errorf("the lock file of a removed mirror is gone: %v", err)
	}
	// Once released, the busy mirror goes too; a second pass removes
	// nothing more.
	stdin.Close()
	_ = holder.Wait()
	if n, err := cache.prune(time.Now().Add(-DefaultGitCacheMaxAge)); err != nil || n != 1 {
		t.Fatalf("second prune: %d removed, %v; want the released one", n, err)
	}
	if n, err := cache.prune(time.Now().Add(-DefaultGitCacheMaxAge)); err != nil || n != 0 {
		t.Fatalf("third prune: %d removed, %v; want none", n, err)
	}
	// A use makes a mirror recent; a removed one is fetched again.
	before := srv.fetches()
	if res := prime("old"); res.Hit || srv.fetches() == before {
		t.Errorf("checkout after the prune: hit %v, fetches %d → %d; want a fetch", res.Hit, before, srv.fetches())
	}
	if fi, err := os.Stat(old.Mirror + ".lock"); err != nil || time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("a use did not mark the mirror as used: %v", err)
	}
	if res := prime("recent"); !res.Hit {
		t.Error("the recent mirror was not kept")
	}
}
