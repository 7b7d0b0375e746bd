package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/backoff"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/store"
)

// transferTimeout bounds the uploads at a job's end, which run after the
// job's own deadline may have passed.
const transferTimeout = 30 * time.Minute

// pendingCache is a cache the job saves if it succeeds: its key was missed.
type pendingCache struct {
	key   string
	paths []string
}

// restore brings, before the first step, the artifacts of the jobs the
// attempt needs into its workspace (every file checked against its
// recorded sha256), then its caches (the exact key, else the newest entry
// of a restore key). It returns the caches to save at the end and says
// what it did in the job's log.
func (a *Agent) restore(ctx context.Context, d bus.Dispatch, spec pipeline.JobSpec, roots artifact.Roots, uid int, out io.Writer) ([]pendingCache, error) {
	ref := artifact.AttemptRef{JobID: d.JobID, Attempt: d.Attempt}
	if len(spec.Needs) > len(spec.NoArtifactsFrom) {
		var entries []artifact.Entry
		err := retryUnavailable(ctx, func() (err error) { entries, err = a.art.List(ctx, ref); return err })
		if err != nil {
			return nil, fmt.Errorf("artifacts: list: %w", err)
		}
		for _, e := range entries {
			start := time.Now()
			if err := retryUnavailable(ctx, func() error { return a.art.Download(ctx, ref, e, roots, uid) }); err != nil {
				return nil, fmt.Errorf("artifacts of %s (%s): %w", e.JobKey, e.Name, err)
			}
			fmt.Fprintf(out, "hodei: artifacts %s of %s: %d files, %s, verified, in %s\n", e.Name, e.JobKey, len(e.Files), sizeOf(e.Files), artifact.Elapsed(time.Since(start)))
		}
	}
	var save []pendingCache
	for _, c := range spec.Cache {
		key, err := artifact.CacheKey(c.Key, roots)
		if err != nil {
			return nil, err
		}
		restore := make([]string, 0, len(c.RestoreKeys))
		for _, r := range c.RestoreKeys {
			k, err := artifact.CacheKey(r, roots)
			if err != nil {
				return nil, err
			}
			restore = append(restore, k)
		}
		start := time.Now()
		var found artifact.CacheReply
		err = retryUnavailable(ctx, func() (err error) { found, err = a.art.LookupCache(ctx, ref, key, restore); return err })
		if err != nil {
			return nil, fmt.Errorf("cache %s: %w", key, err)
		}
		if !found.Exact {
			save = append(save, pendingCache{key: key, paths: c.Paths})
		}
		if found.Entry == nil {
			fmt.Fprintf(out, "hodei: cache %s: miss\n", key)
			continue
		}
		if err := retryUnavailable(ctx, func() error { return a.art.Download(ctx, ref, *found.Entry, roots, uid) }); err != nil {
			return nil, fmt.Errorf("cache %s: %w", found.Entry.Name, err)
		}
		how := "hit"
		if !found.Exact {
			how = "restored from " + found.Entry.Name
		}
		fmt.Fprintf(out, "hodei: cache %s: %s: %d files, %s, in %s\n", key, how, len(found.Entry.Files), sizeOf(found.Entry.Files), artifact.Elapsed(time.Since(start)))
	}
	return save, nil
}

// keep uploads, after the last step, the job's artifacts (when its when
// says so) and, after a success, the caches it missed. A failed upload
// fails a job that had succeeded; a job stopped (canceled, lost) keeps
// nothing.
func (a *Agent) keep(ctx context.Context, d bus.Dispatch, spec pipeline.JobSpec, roots artifact.Roots, save []pendingCache, out io.Writer, state string, code int, errMsg string) (string, int, string) {
	if state != bus.StatusSucceeded && state != bus.StatusFailed {
		return state, code, errMsg
	}
	ok := state == bus.StatusSucceeded
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), transferTimeout)
	defer cancel()
	ref := artifact.AttemptRef{JobID: d.JobID, Attempt: d.Attempt}
	fail := func(err error) (string, int, string) {
		fmt.Fprintf(out, "hodei: %v\n", err)
		if !ok {
			return state, code, errMsg
		}
		return bus.StatusFailed, -1, err.Error()
	}
	if ar := spec.Artifacts; ar != nil && ar.When.Uploads(ok) {
		files, err := artifact.Collect(roots, ar.Paths)
		if err != nil {
			return fail(fmt.Errorf("artifacts %s: %w", ar.Name, err))
		}
		start := time.Now()
		var n int64
		var fs []artifact.File
		err = retryUnavailable(ctx, func() (err error) {
			n, fs, _, err = a.art.Upload(ctx, ref, store.KindArtifact, ar.Name, roots, files)
			return err
		})
		if err != nil {
			return fail(fmt.Errorf("artifacts %s: upload: %w", ar.Name, err))
		}
		fmt.Fprintf(out, "hodei: artifacts %s: %d files, %s (%s stored), uploaded in %s\n", ar.Name, len(fs), sizeOf(fs), humanSize(n), artifact.Elapsed(time.Since(start)))
	}
	if !ok {
		return state, code, errMsg
	}
	for _, c := range save {
		files, err := artifact.Collect(roots, c.paths)
		if err != nil {
			return fail(fmt.Errorf("cache %s: %w", c.key, err))
		}
		if len(files) == 0 {
			fmt.Fprintf(out, "hodei: cache %s: nothing to save\n", c.key)
			continue
		}
		start := time.Now()
		var n int64
		var fs []artifact.File
		var exists bool
		err = retryUnavailable(ctx, func() (err error) {
			n, fs, exists, err = a.art.Upload(ctx, ref, store.KindCache, c.key, roots, files)
			return err
		})
		switch {
		case errors.Is(err, artifact.ErrTooLarge):
			// A cache is an optimisation: one over the limits is skipped.
			fmt.Fprintf(out, "hodei: cache %s: not saved: %v\n", c.key, err)
		case err != nil:
			return fail(fmt.Errorf("cache %s: save: %w", c.key, err))
		case exists:
			fmt.Fprintf(out, "hodei: cache %s: saved meanwhile by another job\n", c.key)
		default:
			fmt.Fprintf(out, "hodei: cache %s: saved %d files, %s (%s stored) in %s\n", c.key, len(fs), sizeOf(fs), humanSize(n), artifact.Elapsed(time.Since(start)))
		}
	}
	return state, code, errMsg
}

// homeOf is the host directory of the job's HOME (~ in cache paths).
func homeOf(tmp string) string { return filepath.Join(tmp, "home") }

func sizeOf(fs []artifact.File) string {
	var n int64
	for _, f := range fs {
		n += f.Size
	}
	return humanSize(n)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// artifactOutage is how long the agent waits for an artifact service that
// does not answer (a server restarting) before the transfer fails.
const artifactOutage = 2 * time.Minute

// retryUnavailable runs f until it succeeds, fails for a reason of its
// own, or the artifact service has not answered for artifactOutage: a
// server that restarts mid-transfer is not the job's failure.
func retryUnavailable(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(artifactOutage)
	for n := 1; ; n++ {
		err := f()
		if err == nil || !errors.Is(err, artifact.ErrUnavailable) || time.Now().After(deadline) {
			return err
		}
		if werr := (backoff.Backoff{Base: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}).Wait(ctx, n); werr != nil {
			return err
		}
	}
}
