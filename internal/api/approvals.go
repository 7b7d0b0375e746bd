package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/store"
)

// maxDecisionComment bounds the comment of an approval or a rejection.
const maxDecisionComment = 1000

// approve approves a job that waits for an approval: it is queued.
func (a *api) approve(w http.ResponseWriter, r *http.Request) { a.decideJob(w, r, true) }

// reject rejects a job that waits for an approval: it fails, and the jobs
// that need it see a failure.
func (a *api) reject(w http.ResponseWriter, r *http.Request) { a.decideJob(w, r, false) }

// decideJob serves approve and reject. The policies have allowed approveJob
// on the run (authorize); the job's approvers, when it names some, narrow
// that to the principals that hold one of those roles or groups. The
// decision is audited with who made it and the comment, and stored with
// the job.
func (a *api) decideJob(w http.ResponseWriter, r *http.Request, approve bool) {
	var in wire.Decision
	if r.ContentLength != 0 {
		if err := readJSON(w, r, 8<<10, &in); err != nil {
			writeError(w, wire.CodeBadRequest, "body: "+err.Error())
			return
		}
	}
	if n := utf8.RuneCountInString(in.Comment); n > maxDecisionComment || strings.ContainsFunc(in.Comment, pipeline.IsControl) {
		writeError(w, wire.CodeBadRequest, fmt.Sprintf("comment: at most %d characters, without control characters", maxDecisionComment))
		return
	}
	run, j, ok := a.loadJob(w, r)
	if !ok {
		return
	}
	name := r.PathValue("job")
	action, done := "approve", "approved"
	if !approve {
		action, done = "reject", "rejected"
	}
	p, secured := auth.FromContext(r.Context())
	by := "anonymous"
	if secured {
		by = p.Name + " (" + p.ID + ")"
	}
	res := authz.Resource{Type: authz.TypeRun, ID: run.ID, Tenant: run.Tenant}.String() + " job " + j.Key
	var spec struct {
		Environment *pipeline.Environment `json:"environment"`
	}
	_ = json.Unmarshal(j.Spec, &spec)
	if env := spec.Environment; secured && env != nil && len(env.Approvers) > 0 && !holdsOne(p, env.Approvers) {
		reason := "not among the approvers of environment " + env.Name + " (" + strings.Join(env.Approvers, ", ") + ")"
		if a.record(r, p, authz.ActApproveJob, res, audit.Deny, reason) != nil {
			writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
			return
		}
		writeError(w, wire.CodeForbidden, fmt.Sprintf("%s may not %s job %s: %s", by, action, j.Key, reason))
		return
	}
	got, err := a.d.Orch.Decide(r.Context(), run.ID, j.ID, orchestrator.Decision{Approve: approve, By: by, Comment: in.Comment})
	switch {
	case err == nil:
	case errors.Is(err, orchestrator.ErrNotWaiting):
		writeError(w, wire.CodeNotWaiting, fmt.Sprintf("job %s of run %s is %s, not waiting for an approval", j.Key, run.ID, j.State))
		return
	case errors.Is(err, orchestrator.ErrRunFinal):
		writeError(w, wire.CodeRunFinal, "run "+run.ID+" has already ended")
		return
	case errors.Is(err, store.ErrNotFound):
		writeError(w, wire.CodeNotFound, fmt.Sprintf("run %s has no job %q", run.ID, name))
		return
	default:
		if unavailable(w, err) {
			return
		}
		a.log.Error(action+" failed", "request_id", RequestID(r.Context()), "run_id", run.ID, "job", j.Key, "err", err)
		writeError(w, wire.CodeUnavailable, action+": "+err.Error())
		return
	}
	reason := done + " by " + by
	if in.Comment != "" {
		reason += ": " + in.Comment
	}
	if a.record(r, p, action, res, audit.Allow, reason) != nil {
		writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
		return
	}
	forgetRun(r)
	writeJSON(w, http.StatusOK, JobJSON(got, time.Now()))
}

// holdsOne says whether the principal holds one of the roles or groups.
func holdsOne(p auth.Principal, names []string) bool {
	for _, n := range names {
		if slices.Contains(p.Roles, n) || slices.Contains(p.Groups, n) {
			return true
		}
	}
	return false
}
