package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// Client is an agent's side of the protocol, on the agent's own subjects.
type Client struct {
	nc       *nats.Conn
	subjects bus.Subjects
	worker   string
}

// NewClient makes the client of worker.
func NewClient(nc *nats.Conn, s bus.Subjects, worker string) *Client {
	if s.Prefix == "" {
		s = bus.DefaultSubjects
	}
	return &Client{nc: nc, subjects: s, worker: worker}
}

func (c *Client) subject(op string) string { return Subject(c.subjects, c.worker, op) }

// List returns the artifacts the attempt receives.
func (c *Client) List(ctx context.Context, ref AttemptRef) ([]Entry, error) {
	var r ListReply
	if err := call(ctx, c.nc, c.subject(opList), ListRequest{AttemptRef: ref}, &r); err != nil {
		return nil, err
	}
	return r.Entries, nil
}

// LookupCache finds the entry of key, else the newest of a restore key.
func (c *Client) LookupCache(ctx context.Context, ref AttemptRef, key string, restore []string) (CacheReply, error) {
	var r CacheReply
	err := call(ctx, c.nc, c.subject(opCache), CacheRequest{AttemptRef: ref, Key: key, RestoreKeys: restore}, &r)
	return r, err
}

// Download extracts an entry under roots, checking every file's sha256
// against the record (an error wrapping ErrCorrupt on a mismatch).
func (c *Client) Download(ctx context.Context, ref AttemptRef, e Entry, roots Roots, uid int) error {
	var open OpenReply
	if err := call(ctx, c.nc, c.subject(opOpen), OpenRequest{AttemptRef: ref, ID: e.ID}, &open); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rd := newSessionReader(ctx, c.nc, c.subject(opRead), open.Session)
	if err := Unpack(rd, roots, e.Files, uid); err != nil {
		return err
	}
	// Read to the end: the session ends, and trailing bytes are corruption.
	if n, err := io.Copy(io.Discard, rd); err != nil || n > 0 {
		if err == nil {
			err = fmt.Errorf("archive: %w: %d bytes after its end", ErrCorrupt, n)
		}
		return err
	}
	return nil
}

// Upload packs files under roots and stores them as an artifact (kind
// store.KindArtifact, its name) or a cache entry (store.KindCache, its
// key), streaming the archive in chunks. It returns the bytes stored, the
// files, and whether a cache entry of that key existed already.
func (c *Client) Upload(ctx context.Context, ref AttemptRef, kind, name string, roots Roots, files []string) (int64, []File, bool, error) {
	var up UploadReply
	if err := call(ctx, c.nc, c.subject(opUpload), UploadRequest{AttemptRef: ref, Kind: kind, Name: name}, &up); err != nil {
		if errors.Is(err, ErrExists) {
			return 0, nil, true, nil
		}
		return 0, nil, false, err
	}
	pr, pw := io.Pipe()
	packed := make(chan []File, 1)
	go func() {
		fs, err := Pack(pw, roots, files)
		packed <- fs
		_ = pw.CloseWithError(err)
	}()
	// The archive is cut into chunks ahead of the sends, so that packing
	// and sending overlap.
	chunks := readChunks(pr, chunkSize(c.nc))
	fail := func(err error) (int64, []File, bool, error) {
		_ = pr.CloseWithError(err)
		for range chunks { // the reader ends on the closed pipe
		}
		<-packed
		return 0, nil, false, err
	}
	hdr := nats.Header{HdrSession: []string{up.Session}}
	for ch := range chunks {
		if ch.err != nil {
			return fail(ch.err)
		}
		if len(ch.data) > 0 {
			if _, err := request(ctx, c.nc, c.subject(opPut), hdr, ch.data); err != nil {
				return fail(err)
			}
		}
	}
	fs := <-packed
	var done CommitReply
	if err := call(ctx, c.nc, c.subject(opCommit), CommitRequest{Session: up.Session, Files: fs}, &done); err != nil {
		return 0, nil, false, err
	}
	return done.Size, fs, done.Exists, nil
}

// CacheKey evaluates the ${{ hashFiles('glob', ...) }} expressions of a
// cache key in the workspace: each becomes the hex sha256 of the sha256 of
// every file matched, in path order ("" when none is matched, as GitHub's).
func CacheKey(key string, roots Roots) (string, error) {
	var b strings.Builder
	last := 0
	for _, m := range pipeline.CacheExprs(key) {
		b.WriteString(key[last:m[0]])
		last = m[1]
		inner := key[m[2]:m[3]]
		globs, ok := pipeline.HashFilesArgs(inner)
		if !ok {
			return "", fmt.Errorf("cache key %q: unknown expression ${{%s}}", key, inner)
		}
		h, err := HashFiles(roots, globs)
		if err != nil {
			return "", fmt.Errorf("cache key %q: %w", key, err)
		}
		b.WriteString(h)
	}
	b.WriteString(key[last:])
	return b.String(), nil
}

// HashFiles hashes the files matched by globs in the workspace.
func HashFiles(roots Roots, globs []string) (string, error) {
	files, err := Collect(Roots{Workspace: roots.Workspace}, globs)
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", nil
	}
	all := sha256.New()
	for _, f := range files {
		p, err := roots.abs(f)
		if err != nil {
			return "", err
		}
		fh, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("hashFiles: %w", err)
		}
		h := sha256.New()
		_, err = io.Copy(h, fh)
		_ = fh.Close()
		if err != nil {
			return "", fmt.Errorf("hashFiles: %w", err)
		}
		all.Write(h.Sum(nil))
	}
	return hex.EncodeToString(all.Sum(nil)), nil
}

// Elapsed formats a duration for the job's log.
func Elapsed(d time.Duration) string { return d.Round(time.Millisecond).String() }
