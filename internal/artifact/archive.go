// Package artifact moves files between jobs: the artifacts a job leaves for
// the jobs that need it, and the caches a job restores and saves.
//
// The files travel as one archive per artifact or cache entry (tar,
// compressed with zstd), streamed: never whole in memory on the agent, the
// server or the blob store's client. The sha256 of every file is computed
// while the archive is written and recorded in the store's artifact index
// (store.Artifacts); every extraction checks each file against the record,
// so a changed object fails the download with the file it names.
//
// Agents never reach the blob store themselves. They talk to the server's
// Service over NATS on their own subjects (hodei.art.<worker>.<op>, which
// bus.AgentPermissions lets each agent publish on, and no other agent's),
// and the Service decides what each request may touch from what the store
// says of the worker: an upload only for the attempt the worker runs now,
// a download only of the artifacts of the jobs that attempt needs (in its
// own run, so its own tenant), a cache only in the tenant and scope of its
// run. The blobs live behind Blobs: JetStream's object store
// (JetStreamBlobs) by default, S3-compatible storage with package s3blobs.
package artifact

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// File is one file of an archive as recorded in the index.
type File struct {
	Path   string `json:"path"` // slash-separated; ~/ for the job's HOME
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"`
	SHA256 string `json:"sha256"`
}

// Roots are the directories an archive's paths are relative to: the
// workspace, and HOME for paths that start with ~/.
type Roots struct {
	Workspace string
	Home      string
}

// abs returns the host path of an archive path.
func (r Roots) abs(p string) (string, error) {
	root, rel := r.Workspace, p
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		root, rel = r.Home, rest
	}
	if root == "" || !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", fmt.Errorf("path %q is outside the workspace", p)
	}
	return filepath.Join(root, filepath.FromSlash(rel)), nil
}

// Collect lists the regular files matched by patterns (globs relative to
// the workspace, or to HOME with ~/; ** matches any number of directories;
// a matched directory brings everything under it), sorted, without
// duplicates. Symbolic links are not followed nor kept.
func Collect(r Roots, patterns []string) ([]string, error) {
	seen := make(map[string]bool)
	for _, pat := range patterns {
		prefix, root := "", r.Workspace
		if rest, ok := strings.CutPrefix(pat, "~/"); ok || pat == "~" {
			prefix, root, pat = "~/", r.Home, rest
			if pat == "" {
				pat = "**"
			}
		}
		pat = strings.TrimSuffix(path.Clean(pat), "/")
		if root == "" {
			continue
		}
		// The walk starts at the pattern's longest literal prefix.
		base := literalPrefix(pat)
		start := filepath.Join(root, filepath.FromSlash(base))
		err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				if rel != "." && match(pat, rel) {
					return addTree(root, p, prefix, seen)
				}
				return nil
			}
			if d.Type().IsRegular() && match(pat, rel) {
				seen[prefix+rel] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("collect %s: %w", pat, err)
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// addTree adds every regular file under dir.
func addTree(root, dir, prefix string, seen map[string]bool) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			seen[prefix+filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	return filepath.SkipDir
}

// literalPrefix is the directory part of a pattern before its first
// wildcard.
func literalPrefix(pat string) string {
	segs := strings.Split(pat, "/")
	var lit []string
	for _, s := range segs[:len(segs)-1] {
		if strings.ContainsAny(s, `*?[\`) {
			break
		}
		lit = append(lit, s)
	}
	return strings.Join(lit, "/")
}

// match reports whether the slash path name matches pat, where a ** segment
// matches any number of segments.
func match(pat, name string) bool {
	return matchSegs(strings.Split(pat, "/"), strings.Split(name, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// Pack writes the files (as Collect lists them) to w as a zstd-compressed
// tar stream, and returns each file with its size and sha256, computed
// from the bytes written.
func Pack(w io.Writer, r Roots, files []string) ([]File, error) {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	out := make([]File, 0, len(files))
	buf := make([]byte, 256<<10)
	for _, name := range files {
		f, err := packOne(tw, r, name, buf)
		if err != nil {
			_ = zw.Close()
			return nil, fmt.Errorf("pack %s: %w", name, err)
		}
		out = append(out, f)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

func packOne(tw *tar.Writer, r Roots, name string, buf []byte) (File, error) {
	p, err := r.abs(name)
	if err != nil {
		return File{}, err
	}
	fh, err := os.Open(p)
	if err != nil {
		return File{}, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return File{}, err
	}
	if !st.Mode().IsRegular() {
		return File{}, errors.New("not a regular file")
	}
	mode := uint32(st.Mode().Perm())
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: int64(mode), ModTime: st.ModTime()}); err != nil {
		return File{}, err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(tw, h), io.LimitReader(fh, st.Size()), buf)
	if err != nil {
		return File{}, err
	}
	if n != st.Size() {
		return File{}, fmt.Errorf("changed while it was read (%d bytes of %d)", n, st.Size())
	}
	return File{Path: name, Size: n, Mode: mode, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ErrCorrupt is wrapped by the errors of Unpack when the archive does not
// hold exactly the files recorded, byte for byte.
var ErrCorrupt = errors.New("corrupt")

// Unpack extracts the archive read from rd under r, checking that it holds
// exactly the recorded files with their sizes and sha256. Files are written
// owned by uid (when it is not -1). On a mismatch it stops with an error
// wrapping ErrCorrupt that names the file; what was written stays (the
// caller fails the job).
func Unpack(rd io.Reader, r Roots, files []File, uid int) error {
	zr, err := zstd.NewReader(rd, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return fmt.Errorf("archive: %w: %w", ErrCorrupt, err)
	}
	defer zr.Close()
	want := make(map[string]File, len(files))
	for _, f := range files {
		want[f.Path] = f
	}
	tr := tar.NewReader(zr)
	buf := make([]byte, 256<<10)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("archive: %w: %w", ErrCorrupt, err)
		}
		f, ok := want[hdr.Name]
		if !ok || hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("archive: %w: it holds %q, which was not recorded", ErrCorrupt, hdr.Name)
		}
		delete(want, hdr.Name)
		if err := unpackOne(tr, r, f, uid, buf); err != nil {
			return err
		}
	}
	if len(want) > 0 {
		missing := make([]string, 0, len(want))
		for p := range want {
			missing = append(missing, p)
		}
		sort.Strings(missing)
		return fmt.Errorf("archive: %w: %d recorded files missing, first %q", ErrCorrupt, len(missing), missing[0])
	}
	return nil
}

func unpackOne(tr io.Reader, r Roots, f File, uid int, buf []byte) error {
	p, err := r.abs(f.Path)
	if err != nil {
		return fmt.Errorf("archive: %w: %w", ErrCorrupt, err)
	}
	if err := mkdirs(r, filepath.Dir(p), uid); err != nil {
		return err
	}
	// O_NOFOLLOW: a link left in the workspace does not redirect the write.
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, os.FileMode(f.Mode&0o777|0o200))
	if err != nil {
		return fmt.Errorf("extract %s: %w", f.Path, err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(out, h), tr, buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("archive: %w: %s is cut short: %w", ErrCorrupt, f.Path, err)
		}
		return fmt.Errorf("extract %s: %w", f.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != f.Size || got != f.SHA256 {
		return fmt.Errorf("archive: %w: %s: sha256 %s (%d bytes), recorded %s (%d bytes)", ErrCorrupt, f.Path, got, n, f.SHA256, f.Size)
	}
	if uid >= 0 {
		if err := os.Lchown(p, uid, uid); err != nil {
			return fmt.Errorf("extract %s: %w", f.Path, err)
		}
	}
	return nil
}

// mkdirs makes dir and its parents under the roots, owned by uid.
func mkdirs(r Roots, dir string, uid int) error {
	if _, err := os.Lstat(dir); err == nil {
		return nil
	}
	if err := mkdirs(r, filepath.Dir(dir), uid); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("extract: %w", err)
	}
	if uid >= 0 {
		if err := os.Lchown(dir, uid, uid); err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	return nil
}
