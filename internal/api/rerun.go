package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/store"
)

// rerun makes a new run of a run's pipeline file, inputs and trigger, in
// the run's tenant; with failed_only (the body's, or the query's), only
// its failed and cancelled jobs and their dependents run again.
func (a *api) rerun(w http.ResponseWriter, r *http.Request) {
	if a.d.Rerun == nil {
		writeError(w, wire.CodeUnavailable, "this server does not accept runs")
		return
	}
	id := r.PathValue("id")
	var req wire.RerunRequest
	if r.ContentLength != 0 && r.Body != nil {
		if err := readJSON(w, r, 4096, &req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, wire.CodeBadRequest, "rerun: the body must be {\"failed_only\": true|false}: "+err.Error())
			return
		}
	}
	if v := r.URL.Query().Get("failed_only"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, wire.CodeBadRequest, fmt.Sprintf("failed_only must be true or false, got %q", v))
			return
		}
		req.FailedOnly = b
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	next, err := a.d.Rerun(r.Context(), id, req.FailedOnly, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, wire.CodeNotFound, err.Error())
		return
	case errors.Is(err, store.ErrConflict):
		writeError(w, wire.CodeConflict, err.Error())
		return
	case err != nil:
		run, _ := a.d.Store.GetRun(r.Context(), id)
		a.submitted(w, r, run.File, next, err)
		return
	}
	noteRun(r, next.ID)
	out := RunJSON(next, nil, time.Now())
	out.RerunOf, out.FailedOnly = id, req.FailedOnly
	w.Header().Set("Location", "/api/v1/runs/"+next.ID)
	writeJSON(w, http.StatusCreated, out)
}
