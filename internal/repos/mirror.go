package repos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hodei-ci/hodei/internal/forge"
)

// Mirrors keeps one bare mirror per repository under a directory, and
// fetches into it only what a webhook names: the pushed ref, and the
// commit itself when the ref no longer points at it.
//
// Credentials reach git only through its environment
// (GIT_CONFIG_COUNT/KEY/VALUE: an http.extraHeader), never through a
// config file or the command line, and never in an error.
type Mirrors struct {
	Dir string // one DIR/TENANT/NAME.git per repository

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Remote is where a mirror fetches from.
type Remote struct {
	URL  string
	User string // the user name beside Token (forge.AuthUser)
	// Token reads a private repository ("" for a public one).
	Token string
}

func (m *Mirrors) lock(dir string) func() {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*sync.Mutex{}
	}
	l := m.locks[dir]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[dir] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Mirror is one repository's bare mirror, locked while it is used.
type Mirror struct {
	dir    string
	remote Remote
	unlock func()
}

// Open returns the mirror of a repository, created if missing, locked
// until Close.
func (m *Mirrors) Open(ctx context.Context, tenant, name string, r Remote) (*Mirror, error) {
	dir := filepath.Join(m.Dir, tenant, name+".git")
	unlock := m.lock(dir)
	mi := &Mirror{dir: dir, remote: r, unlock: unlock}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			unlock()
			return nil, fmt.Errorf("mirror: %w", err)
		}
		if _, err := mi.git(ctx, "init", "--bare", "--quiet"); err != nil {
			unlock()
			return nil, err
		}
	}
	return mi, nil
}

// Close unlocks the mirror.
func (mi *Mirror) Close() { mi.unlock() }

// git runs git in the mirror with the remote's credentials in its
// environment; errors carry git's message, never the environment.
func (mi *Mirror) git(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir", mi.dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=")
	for k, v := range forge.GitAuthEnv(mi.remote.URL, mi.remote.User, mi.remote.Token) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if mi.remote.Token != "" {
			msg = strings.ReplaceAll(msg, mi.remote.Token, "***")
		}
		return nil, fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return out.Bytes(), nil
}

// Fetch brings commit into the mirror: it fetches each ref (into the
// same name), then the commit itself if no ref brought it.
func (mi *Mirror) Fetch(ctx context.Context, commit string, refs ...string) error {
	var specs []string
	for _, r := range refs {
		if r != "" {
			specs = append(specs, "+"+r+":"+r)
		}
	}
	var ferr error
	if len(specs) > 0 {
		_, ferr = mi.git(ctx, append([]string{"fetch", "--quiet", "--no-tags", "--no-write-fetch-head", mi.remote.URL}, specs...)...)
	}
	if mi.Has(ctx, commit) {
		return nil
	}
	if _, err := mi.git(ctx, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", mi.remote.URL, commit); err != nil {
		return fmt.Errorf("fetch %s from %s: %w", commit, mi.remote.URL, errors.Join(ferr, err))
	}
	if !mi.Has(ctx, commit) {
		return fmt.Errorf("fetch %s from %s: the commit is not there", commit, mi.remote.URL)
	}
	return nil
}

// Resolve fetches ref ("main", "v1.0", "refs/heads/main") into the mirror
// and returns its full name and its commit: a branch first, then a tag.
func (mi *Mirror) Resolve(ctx context.Context, ref string) (string, string, error) {
	candidates := []string{ref}
	if !strings.HasPrefix(ref, "refs/") {
		candidates = []string{"refs/heads/" + ref, "refs/tags/" + ref}
	}
	var errs []error
	for _, full := range candidates {
		if _, err := mi.git(ctx, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", mi.remote.URL, "+"+full+":"+full); err != nil {
			errs = append(errs, err)
			continue
		}
		out, err := mi.git(ctx, "rev-parse", "--verify", "--end-of-options", full+"^{commit}")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return full, strings.TrimSpace(string(out)), nil
	}
	return "", "", fmt.Errorf("no branch or tag %q in %s: %w", ref, mi.remote.URL, errors.Join(errs...))
}

// Peel returns the commit that id names: id itself for a commit, the
// commit an annotated tag points to for the tag's own object (what Gitea's
// and GitHub's push of such a tag carries as "after").
func (mi *Mirror) Peel(ctx context.Context, id string) (string, error) {
	out, err := mi.git(ctx, "rev-parse", "--verify", "--end-of-options", id+"^{commit}")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Has reports whether the mirror holds commit.
func (mi *Mirror) Has(ctx context.Context, commit string) bool {
	_, err := mi.git(ctx, "cat-file", "-e", commit+"^{commit}")
	return err == nil
}

// File is a pipeline file read from a commit.
type File struct {
	Path string // in the repository: .hodei.yaml, .hodei/build.yml
	Data []byte
}

// PipelineFile is the single pipeline file of a repository; PipelineDir
// holds one pipeline per *.yaml or *.yml file.
const (
	PipelineFile = ".hodei.yaml"
	PipelineDir  = ".hodei"
)

// Pipelines reads the pipeline files of a commit: .hodei.yaml and every
// *.yaml and *.yml file directly in .hodei/, sorted by path.
func (mi *Mirror) Pipelines(ctx context.Context, commit string) ([]File, error) {
	out, err := mi.git(ctx, "ls-tree", "-z", commit, "--", PipelineFile, PipelineDir+"/")
	if err != nil {
		return nil, err
	}
	var files []File
	for _, entry := range strings.Split(string(out), "\x00") {
		meta, p, ok := strings.Cut(entry, "\t")
		if !ok || len(strings.Fields(meta)) < 2 || strings.Fields(meta)[1] != "blob" {
			continue
		}
		if ext := path.Ext(p); p != PipelineFile && ext != ".yaml" && ext != ".yml" {
			continue
		}
		data, err := mi.git(ctx, "cat-file", "blob", strings.Fields(meta)[2])
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: p, Data: data})
	}
	return files, nil
}

// ReadFile reads the file at path (slash-separated, from the repository's
// root) of a commit, at most max bytes: a file a pipeline includes. A path
// the commit does not have is an error wrapping fs.ErrNotExist; a
// directory, a symbolic link or a submodule is not read.
func (mi *Mirror) ReadFile(ctx context.Context, commit, p string, max int) ([]byte, error) {
	out, err := mi.git(ctx, "ls-tree", "-l", "-z", commit, "--", p)
	if err != nil {
		return nil, err
	}
	entry := strings.TrimSuffix(string(out), "\x00")
	meta, name, ok := strings.Cut(entry, "\t")
	f := strings.Fields(meta)
	switch {
	case !ok || name != p || len(f) < 4:
		return nil, fmt.Errorf("%s at %s: %w", p, commit, fs.ErrNotExist)
	case f[1] != "blob" || f[0] == "120000":
		return nil, fmt.Errorf("%s at %s: not a regular file", p, commit)
	}
	if size, err := strconv.ParseInt(f[3], 10, 64); err != nil || size > int64(max) {
		return nil, fmt.Errorf("%s at %s: larger than the limit of %d bytes on pipeline files", p, commit, max)
	}
	return mi.git(ctx, "cat-file", "blob", f[2])
}

// Changed lists the paths that differ between two commits (revs "A",
// "B"), or since their merge base (one rev "A...B", for a pull request);
// nil with an error when git cannot say (a commit is not in the mirror).
func (mi *Mirror) Changed(ctx context.Context, revs ...string) ([]string, error) {
	out, err := mi.git(ctx, append([]string{"diff", "--name-only", "-z"}, revs...)...)
	if err != nil {
		return nil, err
	}
	paths := []string{}
	for _, p := range strings.Split(string(out), "\x00") {
		if p != "" {
			paths = append(paths, p)
		}
	}
	return paths, nil
}
