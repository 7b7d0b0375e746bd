package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/store"
)

// runArtifacts lists the artifacts of a run: the latest attempt of each job
// and name.
func (a *api) runArtifacts(w http.ResponseWriter, r *http.Request) {
	run, _, ok := a.loadRun(w, r)
	if !ok {
		return
	}
	out, ok := a.artifactsOf(w, r, run)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, wire.Artifacts{Artifacts: out})
}

// artifactsOf reads the artifact records of a run, latest attempt first
// for each job and name, as the API shows them.
func (a *api) artifactsOf(w http.ResponseWriter, r *http.Request, run store.Run) ([]wire.Artifact, bool) {
	recs, err := a.d.Store.ListArtifacts(r.Context(), store.ArtifactFilter{Kind: store.KindArtifact, RunID: run.ID})
	if err != nil {
		a.storeError(w, r, err, "artifacts of run "+run.ID)
		return nil, false
	}
	latest := make(map[string]int)
	out := []wire.Artifact{}
	for _, rec := range recs {
		if rec.Tenant != run.Tenant {
			continue
		}
		wa := wire.Artifact{Job: rec.JobKey, JobID: rec.JobID, Attempt: rec.Attempt, Name: rec.Name, Size: rec.Size, CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt}
		if err := json.Unmarshal(rec.Files, &wa.Files); err != nil {
			a.storeError(w, r, fmt.Errorf("artifact %s: files: %w", rec.ID, err), "artifacts of run "+run.ID)
			return nil, false
		}
		k := rec.JobKey + "\x00" + rec.Name
		if i, seen := latest[k]; seen {
			if out[i].Attempt < wa.Attempt {
				out[i] = wa
			}
			continue
		}
		latest[k] = len(out)
		out = append(out, wa)
	}
	return out, true
}

// artifactContent streams one artifact's archive, with single ranges.
func (a *api) artifactContent(w http.ResponseWriter, r *http.Request) {
	run, job, ok := a.loadJob(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	recs, err := a.d.Store.ListArtifacts(r.Context(), store.ArtifactFilter{Kind: store.KindArtifact, RunID: run.ID})
	if err != nil {
		a.storeError(w, r, err, "artifacts of run "+run.ID)
		return
	}
	var rec *store.Artifact
	for i := range recs {
		if recs[i].JobID == job.ID && recs[i].Name == name && recs[i].Tenant == run.Tenant && (rec == nil || recs[i].Attempt > rec.Attempt) {
			rec = &recs[i]
		}
	}
	if rec == nil || a.d.Artifacts == nil {
		writeError(w, wire.CodeNotFound, fmt.Sprintf("job %s of run %s has no artifact %q", job.Key, run.ID, name))
		return
	}
	start, end, partial, ok := byteRange(r.Header.Get("Range"), rec.Size)
	if !ok {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(rec.Size, 10))
		writeError(w, wire.CodeRange, fmt.Sprintf("range %q is not one range of bytes inside the artifact's %d bytes", r.Header.Get("Range"), rec.Size))
		return
	}
	body, err := a.d.Artifacts.Get(r.Context(), rec.Object)
	if err != nil {
		if errors.Is(err, artifact.ErrNoObject) {
			writeError(w, wire.CodeNotFound, fmt.Sprintf("artifact %q of job %s is gone from the blob store", name, job.Key))
			return
		}
		a.storeError(w, r, err, "artifact "+name)
		return
	}
	defer body.Close()
	// The object store streams from the start: a range skips what is before.
	if _, err := io.CopyN(io.Discard, body, start); err != nil {
		a.storeError(w, r, err, "artifact "+name)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/zstd")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+".tar.zst"))
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, rec.Size))
		status = http.StatusPartialContent
	}
	beforeWrite := a.longResponse(w)
	beforeWrite()
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	// Each write gets the write timeout anew: a large artifact may take
	// longer than one.
	if _, err := io.CopyN(deadlineWriter{w, beforeWrite}, body, end-start); err != nil {
		a.log.Warn("artifact download cut", "run", run.ID, "job", job.Key, "name", name, "err", err)
	}
}

type deadlineWriter struct {
	w      io.Writer
	before func()
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.before()
	return d.w.Write(p)
}

// byteRange reads a Range header of one range: the start and end
// (exclusive) to send, and whether it is a partial answer. A header of
// another unit is ignored (the whole body), as RFC 9110 allows.
func byteRange(h string, size int64) (start, end int64, partial, ok bool) {
	spec, isBytes := strings.CutPrefix(h, "bytes=")
	if h == "" || !isBytes {
		return 0, size, false, true
	}
	if strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if first == "" { // the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 || size == 0 {
			return 0, 0, false, false
		}
		return max(size-n, 0), size, true, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 || s >= size {
		return 0, 0, false, false
	}
	e := size - 1
	if last != "" {
		if e, err = strconv.ParseInt(last, 10, 64); err != nil || e < s {
			return 0, 0, false, false
		}
		e = min(e, size-1)
	}
	return s, e + 1, true, true
}
