package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// gitCache is the worker's object cache of the repositories its jobs check
// out: one bare mirror per tenant and repository URL, under a directory of
// the agent that steps never see (it is hidden by the sandbox, and 0700).
// The agent, not the job, fetches into a mirror (the full history of the
// commit asked for; only what it lacks comes over the network), then
// copies the commit (at the job's depth) from the mirror into the job's
// workspace over git's local transport; the job's sandboxed checkout then
// only checks it out. A job cannot write a mirror, and a mirror serves only
// the tenant it was fetched for, so no job can poison what another tenant's
// jobs check out; objects are checked by their hashes as they are fetched.
// The token is in the environment of the fetch only (forge.GitAuthEnv):
// neither the mirror's config nor the workspace's holds it.
//
// Concurrency: one mirror is used by one fetch at a time, in this process
// (a mutex per mirror) and across processes sharing the directory (flock
// on the mirror's lock file).
type gitCache struct {
	dir string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newGitCache(dir string) (*gitCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("git object cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("git object cache: %w", err)
	}
	return &gitCache{dir: dir, locks: map[string]*sync.Mutex{}}, nil
}

// mirror is the path of the mirror of a tenant's repository.
func (g *gitCache) mirror(tenant, url string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + url))
	return filepath.Join(g.dir, hex.EncodeToString(sum[:16])+".git")
}

// mutex is the in-process lock of a mirror.
func (g *gitCache) mutex(mirror string) *sync.Mutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.locks[mirror]
	if m == nil {
		m = &sync.Mutex{}
		g.locks[mirror] = m
	}
	return m
}

// lock takes the mirror for the caller; the function returned gives it
// back.
func (g *gitCache) lock(mirror string) (func(), error) {
	m := g.mutex(mirror)
	m.Lock()
	f, err := os.OpenFile(mirror+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		m.Unlock()
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		m.Unlock()
		return nil, err
	}
	// The lock file's time is the mirror's last use (prune).
	now := time.Now()
	_ = os.Chtimes(mirror+".lock", now, now)
	return func() { f.Close(); m.Unlock() }, nil
}

// prune removes the mirrors last used before cutoff, so that the cache of
// a worker that served many repositories does not grow without end; it
// returns how many it removed. A mirror in use (its lock held, here or by
// another process) is left for a later pass. The lock file stays: a
// process waiting on it would otherwise lock a file that no longer has
// that name while another locks a new one, and both would use the mirror.
// A mirror removed is fetched again by the next job that checks it out.
func (g *gitCache) prune(cutoff time.Time) (int, error) {
	locks, err := filepath.Glob(filepath.Join(g.dir, "*.git.lock"))
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, l := range locks {
		mirror := strings.TrimSuffix(l, ".lock")
		ok, err := g.pruneOne(mirror, cutoff)
		if err != nil {
			return removed, fmt.Errorf("prune %s: %w", filepath.Base(mirror), err)
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// pruneOne removes mirror if it was last used before cutoff and nothing
// holds it.
func (g *gitCache) pruneOne(mirror string, cutoff time.Time) (bool, error) {
	m := g.mutex(mirror)
	if !m.TryLock() {
		return false, nil
	}
	defer m.Unlock()
	f, err := os.OpenFile(mirror+".lock", os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, err
	}
	// Its time under the lock: a use that ended while this waited counts.
	st, err := f.Stat()
	if err != nil || !st.ModTime().Before(cutoff) {
		return false, err
	}
	if _, err := os.Lstat(mirror); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return true, os.RemoveAll(mirror)
}

// errShallowMiss: a shallow checkout of a commit the mirror lacks, which
// the checkout script fetches itself.
var errShallowMiss = errors.New("a shallow checkout of a commit not in this worker's mirror")

// cacheResult says what prime did: Hit when the mirror had the commit
// already (nothing came over the network).
type cacheResult struct {
	Mirror string
	Hit    bool
}

// prime puts the checkout's commit into ws/.git from the tenant's mirror
// of the repository, fetching into the mirror first what it lacks; the
// workspace's origin is the repository's URL. uid >= 0 chowns what it made
// to the job's identity. On error, ws holds no .git. A shallow checkout
// (depth > 0) uses the mirror only when it has the commit already
// (errShallowMiss otherwise): filling the mirror means fetching the whole
// history, which only a full checkout asks for anyway.
func (g *gitCache) prime(ctx context.Context, tenant string, c *pipeline.Checkout, token, ws string, uid int) (res cacheResult, err error) {
	mirror := g.mirror(tenant, c.URL)
	res.Mirror = mirror
	unlock, err := g.lock(mirror)
	if err != nil {
		return res, fmt.Errorf("lock the mirror: %w", err)
	}
	defer unlock()
	defer func() {
		if err != nil {
			_ = os.RemoveAll(filepath.Join(ws, ".git"))
		}
	}()
	if _, err := os.Stat(filepath.Join(mirror, "HEAD")); err != nil {
		if err := runGit(ctx, nil, "", "init", "-q", "--bare", mirror); err != nil {
			return res, err
		}
	}
	want := "refs/hodei/" + c.Commit
	res.Hit = runGit(ctx, nil, mirror, "cat-file", "-e", c.Commit+"^{commit}") == nil
	if !res.Hit && c.Depth > 0 {
		// A shallow checkout does not pay for the whole history: it
		// fetches directly, unless the mirror has the commit already.
		return res, errShallowMiss
	}
	if !res.Hit {
		auth := forge.GitAuthEnv(c.URL, c.AuthUser, token)
		err := runGit(ctx, auth, mirror, "fetch", "-q", "--no-tags", "--", c.URL, "+"+c.Commit+":"+want)
		if err != nil && c.Ref != "" {
			// Servers that do not serve a commit by its id: its ref.
			err = runGit(ctx, auth, mirror, "fetch", "-q", "--no-tags", "--", c.URL, "+"+c.Ref+":refs/hodei/fetched")
		}
		if err != nil {
			return res, err
		}
		if err := runGit(ctx, nil, mirror, "cat-file", "-e", c.Commit+"^{commit}"); err != nil {
			return res, fmt.Errorf("the repository has no commit %s", c.Commit)
		}
		// Each fetch adds a pack: past a few, one pack serves the copies
		// and the lookups better.
		if packs, _ := filepath.Glob(filepath.Join(mirror, "objects", "pack", "*.pack")); len(packs) > 8 {
			if err := runGit(ctx, nil, mirror, "repack", "-adq"); err != nil {
				return res, err
			}
		}
	}
	// A ref keeps the commit in the mirror and lets the workspace fetch it.
	if err := runGit(ctx, nil, mirror, "update-ref", want, c.Commit); err != nil {
		return res, err
	}
	// The workspace may be the job's already (chowned before the
	// checkout); it is new and empty, so the agent may work in it.
	inWS := map[string]string{"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": ws}
	if err := runGit(ctx, inWS, ws, "init", "-q", "."); err != nil {
		return res, err
	}
	if err := runGit(ctx, inWS, ws, "remote", "add", "origin", c.URL); err != nil {
		return res, err
	}
	if c.Depth > 0 {
		// A shallow history: git makes the small pack it needs.
		err = runGit(ctx, inWS, ws, "fetch", "-q", "--no-tags", "--depth="+strconv.Itoa(c.Depth), "--",
			"file://"+mirror, "+"+want+":refs/remotes/origin/hodei-checkout")
	} else {
		// The whole history: a copy of the mirror's objects (new files,
		// never links: the job owns what is in its workspace) is much
		// cheaper than a pack made for the fetch.
		if err = copyObjects(filepath.Join(mirror, "objects"), filepath.Join(ws, ".git", "objects")); err == nil {
			err = runGit(ctx, inWS, ws, "update-ref", "refs/remotes/origin/hodei-checkout", c.Commit)
		}
	}
	if err != nil {
		return res, err
	}
	if uid >= 0 {
		err := filepath.WalkDir(filepath.Join(ws, ".git"), func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, uid)
		})
		if err != nil {
			return res, fmt.Errorf("give the workspace's .git to the job: %w", err)
		}
	}
	return res, nil
}

// copyObjects copies the packs and loose objects of a repository's object
// directory into another's (not its info, whose alternates would point out
// of the workspace).
func copyObjects(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			if rel == "info" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() || strings.HasSuffix(rel, ".lock") {
			return nil
		}
		return copyFile(p, filepath.Join(to, rel))
	})
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// runGit runs git in dir ("" for the current one) with only the
// environment it needs (and env), no terminal prompt, no system or global
// config, and returns its output with any error.
func runGit(ctx context.Context, env map[string]string, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := bytes.TrimSpace(out.Bytes())
		if len(msg) > 500 {
			msg = msg[:500]
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && len(msg) > 0 {
			return fmt.Errorf("git %s: %s", args[0], msg)
		}
		return fmt.Errorf("git %s: %w", args[0], err)
	}
	return nil
}
