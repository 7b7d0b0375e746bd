package api

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/orchestrator"
)

// actionPermissions is the audit action of a permissions query.
const actionPermissions = "permissions"

// clusterActions are the actions GET /api/v1/permissions answers without
// ?run: on the cluster, and "submit" in the caller's tenant.
var clusterActions = []string{authz.ActReadWorkers, authz.ActManageWorkers, authz.ActReadAudit,
	authz.ActReadMetrics, authz.ActManageTokens, authz.ActAdmin}

// runActions are the actions answered for ?run=ID; "submit" is a re-run:
// the run's pipeline file submitted in the run's tenant.
var runActions = []string{authz.ActRead, authz.ActReadLogs, authz.ActCancel}

// permissions answers which actions the caller may do, decided one by one
// by the same authorizer (with the same token scopes) as the API's
// requests, so that a client shows only the buttons that would work and
// never holds a copy of the policies. The query is audited once, with
// every answer. A run of another tenant that the caller may not read is a
// 404, as it is for GET /api/v1/runs/{id}.
func (a *api) permissions(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("run")
	type ask struct {
		action string
		res    authz.Resource
	}
	var asks []ask
	res := authz.Cluster()
	p, secured := auth.FromContext(r.Context())
	if id != "" {
		noteRun(r, id)
		run, err := a.d.Store.GetRun(r.Context(), id)
		if err != nil {
			a.storeError(w, r, err, "run "+id)
			return
		}
		res = authz.Resource{Type: authz.TypeRun, ID: id, Tenant: run.Tenant,
			Attrs: map[string]string{"pipeline": run.Pipeline, "state": string(run.State)}}
		for _, act := range runActions {
			asks = append(asks, ask{act, res})
		}
		asks = append(asks, ask{authz.ActSubmit, pipelineResource(run.File, run.Tenant)})
	} else {
		for _, act := range clusterActions {
			asks = append(asks, ask{act, res})
		}
		tenant := p.Tenant
		if tenant == "" {
			tenant = orchestrator.DefaultTenant
		}
		asks = append(asks, ask{authz.ActSubmit, pipelineResource("pipeline.yaml", tenant)})
	}
	out := wire.Permissions{Resource: res.String(), Actions: map[string]bool{}}
	if !secured || a.d.Auth == nil {
		// An open API lets everyone do everything.
		for _, q := range asks {
			out.Actions[q.action] = true
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	for _, q := range asks {
		d, err := a.d.Authz.Authorize(r.Context(), authz.Request{Principal: p, Action: q.action, Resource: q.res})
		if err != nil {
			a.log.Error("authorization failed", "request_id", RequestID(r.Context()), "err", err)
			if a.record(r, p, actionPermissions, res.String(), audit.Deny, "no decision: "+err.Error()) != nil {
				writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
				return
			}
			writeError(w, wire.CodeUnavailable, "authorization unavailable: "+err.Error())
			return
		}
		out.Actions[q.action] = d.Allow
	}
	if id != "" && !out.Actions[authz.ActRead] && res.Tenant != p.Tenant {
		if a.record(r, p, actionPermissions, res.String(), audit.Deny, "another tenant's run, not readable") != nil {
			writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
			return
		}
		writeError(w, wire.CodeNotFound, "run "+id+" not found")
		return
	}
	if a.record(r, p, actionPermissions, res.String(), audit.Allow, "answered "+describe(out.Actions)) != nil {
		writeError(w, wire.CodeUnavailable, "the audit trail cannot be written")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// describe lists answers as "cancel=deny, read=allow".
func describe(actions map[string]bool) string {
	parts := make([]string, 0, len(actions))
	for act, ok := range actions {
		word := audit.Deny
		if ok {
			word = audit.Allow
		}
		parts = append(parts, act+"="+word)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// rerun submits the pipeline file of a run again, in the run's tenant,
// as it was submitted (the same file name, text and inputs).
func (a *api) rerun(w http.ResponseWriter, r *http.Request) {
	if a.d.Submit == nil {
		writeError(w, wire.CodeUnavailable, "this server does not accept runs")
		return
	}
	id := r.PathValue("id")
	run, err := a.d.Store.GetRun(r.Context(), id)
	if err != nil {
		a.storeError(w, r, err, "run "+id)
		return
	}
	if len(run.Source) == 0 {
		writeError(w, wire.CodeNotFound, fmt.Sprintf("run %s has no stored pipeline file to run again", id))
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	next, err := a.d.Submit(r.Context(), Submission{File: run.File, Data: run.Source, Tenant: run.Tenant, Inputs: run.Inputs, Key: key})
	a.submitted(w, r, run.File, next, err)
}
