package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/state"
)

// approvalYAML has a job of environment production whose approvers are
// APPROVERS.
const approvalYAML = `name: release
jobs:
  deploy:
    environment: {name: production, approvers: [APPROVERS]}
    steps: [{run: "echo deployed"}]
  announce:
    needs: deploy
    steps: [{run: "echo announced"}]
`

// submitYAML submits yaml as user (see submitAs).
func (e *secureEnv) submitYAML(user, yaml string) wire.Run {
	e.t.Helper()
	return e.submitAs(user, "", yaml)
}

// job reads one job of a run as the admin sees it.
func (e *secureEnv) job(runID, key string) wire.Job {
	e.t.Helper()
	a := e.call(e.admin, "GET", "/api/v1/runs/"+runID+"/jobs/"+key, "", nil)
	var j wire.Job
	if a.status != http.StatusOK || json.Unmarshal(a.body, &j) != nil {
		e.t.Fatalf("job %s of %s: %d %s", key, runID, a.status, a.body)
	}
	return j
}

// waitJob waits until the job is in state want; the server's local
// agents run the jobs, in other goroutines of this process.
func (e *secureEnv) waitJob(runID, key string, want state.JobState) wire.Job {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j := e.job(runID, key)
		if j.State == want {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s of %s is %s, want %s", key, runID, j.State, want)
		}
		time.Sleep(20 * time.Millisecond) // a poll of the server's state, bounded above
	}
}

func (e *secureEnv) decide(user, runID, key, verb, comment string) answer {
	e.t.Helper()
	body, _ := json.Marshal(wire.Decision{Comment: comment})
	return e.call(e.toks[user], "POST", "/api/v1/runs/"+runID+"/jobs/"+key+"/"+verb, "application/json", body)
}

// TestApprovalGateThroughTheAPI: a job of an environment waits; a viewer
// may not approve it (the policies), nor a developer outside its approvers;
// a developer among them may, and the decision is on the job and in the
// audit trail. A rejection fails the job and skips its dependents.
func TestApprovalGateThroughTheAPI(t *testing.T) {
	e := startSecureWith(t, 1)

	run := e.submitYAML("bob", strings.Replace(approvalYAML, "APPROVERS", "developer", 1))
	j := e.waitJob(run.ID, "deploy", state.JobWaitingApproval)
	if j.Approval == nil || j.Approval.Environment != "production" || j.Approval.Deadline == nil || j.Approval.Decision != "" {
		t.Fatalf("waiting job's approval: %+v", j.Approval)
	}
	e.want(e.decide("vera", run.ID, "deploy", "approve", ""), 403, wire.CodeForbidden, "a viewer approves")
	e.want(e.decide("vera", run.ID, "deploy", "reject", ""), 403, wire.CodeForbidden, "a viewer rejects")
	e.want(e.decide("carol", run.ID, "deploy", "approve", ""), 404, wire.CodeNotFound, "another tenant's developer approves")
	e.want(e.decide("bob", run.ID, "announce", "approve", ""), 409, wire.CodeNotWaiting, "approving a job that does not wait")
	e.want(e.decide("bob", run.ID, "nope", "approve", ""), 404, wire.CodeNotFound, "approving a missing job")
	if s := e.job(run.ID, "deploy").State; s != state.JobWaitingApproval {
		t.Fatalf("after refused decisions deploy is %s", s)
	}

	a := e.decide("bob", run.ID, "deploy", "approve", "ship it")
	var got wire.Job
	if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil || got.Approval == nil ||
		got.Approval.Decision != "approved" || got.Approval.DecidedBy != "bob (user:u-bob)" || got.Approval.Comment != "ship it" || got.Approval.DecidedAt == nil {
		t.Fatalf("bob approves: %d %s", a.status, a.body)
	}
	e.waitJob(run.ID, "announce", state.JobSucceeded)
	if j := e.job(run.ID, "deploy"); j.State != state.JobSucceeded {
		t.Errorf("approved deploy %s", j.State)
	}
	e.want(e.decide("bob", run.ID, "deploy", "approve", ""), 409, wire.CodeRunFinal, "approving again once the run ended")

	// Approvers narrow the policies: a developer who is not one is refused.
	gated := e.submitYAML("bob", strings.Replace(approvalYAML, "APPROVERS", "release-managers", 1))
	e.waitJob(gated.ID, "deploy", state.JobWaitingApproval)
	a = e.decide("bob", gated.ID, "deploy", "approve", "")
	e.want(a, 403, wire.CodeForbidden, "a developer outside the approvers approves")
	if !strings.Contains(string(a.body), "not among the approvers of environment production (release-managers)") {
		t.Errorf("refusal does not say why: %s", a.body)
	}

	rejected := e.submitYAML("bob", strings.Replace(approvalYAML, "APPROVERS", "developer", 1))
	e.waitJob(rejected.ID, "deploy", state.JobWaitingApproval)
	e.want(e.decide("bob", rejected.ID, "deploy", "reject", "freeze"), 200, "", "bob rejects")
	j = e.waitJob(rejected.ID, "deploy", state.JobFailed)
	if j.Approval.Decision != "rejected" || j.Error != "rejected by bob (user:u-bob): freeze" || j.Attempt != 0 {
		t.Errorf("rejected deploy: %+v error %q attempts %d", j.Approval, j.Error, j.Attempt)
	}
	e.waitJob(rejected.ID, "announce", state.JobSkipped)

	// Who decided, and when, is in the audit trail; so are the refusals.
	e.srv.Audit().Flush()
	for _, c := range []struct{ action, principal, decision, reason string }{
		{"approve", "user:u-bob", audit.Allow, "approved by bob (user:u-bob): ship it"},
		{"reject", "user:u-bob", audit.Allow, "rejected by bob (user:u-bob): freeze"},
		{"approveJob", "user:u-vera", audit.Deny, ""},
		{"approveJob", "user:u-bob", audit.Deny, "not among the approvers"},
	} {
		recs, err := e.srv.Audit().Query(audit.Filter{Action: c.action, Principal: c.principal})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range recs {
			found = found || (r.Decision == c.decision && strings.Contains(r.Reason, c.reason) && !r.Time.IsZero())
		}
		if !found {
			t.Errorf("no audit record %+v in %+v", c, recs)
		}
	}
}
