package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/state"
)

// gatedPipeline: test fails unless the secret GATE is "open"; it reads
// the artifact build keeps; deploy needs test and lint.
const gatedPipeline = `name: gated
jobs:
  build:
    steps:
      - run: echo "built in $HODEI_RUN_ID" > bin.txt
    artifacts: {paths: [bin.txt]}
  lint:
    steps: [{run: echo lint-ok}]
  test:
    needs: [build]
    secrets: [GATE]
    steps:
      - run: cat bin.txt && test "$GATE" = open
  deploy:
    needs: [test, lint]
    steps: [{run: echo deployed}]
`

// TestRerunFailedCarriesTheSucceededJobs: POST /api/v1/runs/{id}/rerun
// with failed_only runs again the failed job and its dependents, carries
// the jobs that succeeded (recorded as carried, pointing at the attempt
// that ran them, their artifact still reachable by the jobs that need
// them) and records rerun_of; a re-run with failed_only of a run where
// nothing failed, or of one still running, is a conflict.
func TestRerunFailedCarriesTheSucceededJobs(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 3*time.Minute)
	if _, err := e.srv.Secrets.Put(ctx, "", "GATE", "closed", nil); err != nil {
		t.Fatal(err)
	}
	first, err := e.c.Submit(ctx, "gated.yaml", []byte(gatedPipeline), "")
	if err != nil {
		t.Fatal(err)
	}
	_, end := e.follow(t, ctx, first.ID, "")
	if end.State != state.RunFailed {
		t.Fatalf("first run ended %s, want failed", end.State)
	}
	old := map[string]wire.Job{}
	for _, j := range end.Jobs {
		old[j.Key] = j
	}
	if old["build"].State != state.JobSucceeded || old["lint"].State != state.JobSucceeded || old["test"].State != state.JobFailed || old["deploy"].State != state.JobSkipped {
		t.Fatalf("first run's jobs: %+v", end.Jobs)
	}

	// The gate opens; the failed job and its dependent run again.
	if _, err := e.srv.Secrets.Put(ctx, "", "GATE", "open", nil); err != nil {
		t.Fatal(err)
	}
	resp, body := e.do(t, http.MethodPost, "/api/v1/runs/"+first.ID+"/rerun", "application/json", []byte(`{"failed_only": true}`))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("rerun --failed: %d %s", resp.StatusCode, body)
	}
	var again wire.Run
	if err := json.Unmarshal(body, &again); err != nil {
		t.Fatal(err)
	}
	if again.ID == first.ID || again.RerunOf != first.ID || !again.FailedOnly || again.File != "gated.yaml" {
		t.Errorf("the re-run = %+v", again)
	}
	evs, end2 := e.follow(t, ctx, again.ID, "")
	if end2.State != state.RunSucceeded {
		t.Fatalf("re-run ended %s: %+v", end2.State, end2.Jobs)
	}
	out := output(t, evs)
	if want := "built in " + first.ID; !strings.Contains(out["test"], want) {
		t.Errorf("test did not read the carried build's artifact (%q):\n%s", want, out["test"])
	}
	if !strings.Contains(out["deploy"], "deployed") {
		t.Errorf("deploy did not run again:\n%s", out["deploy"])
	}
	if out["build"] != "" || out["lint"] != "" {
		t.Errorf("carried jobs ran: build %q, lint %q", out["build"], out["lint"])
	}

	got, err := e.c.GetRun(ctx, again.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RerunOf != first.ID || !got.FailedOnly {
		t.Errorf("GET the re-run: rerun_of %q, failed_only %v", got.RerunOf, got.FailedOnly)
	}
	for _, j := range got.Jobs {
		switch j.Key {
		case "build", "lint":
			want := wire.Carried{RunID: first.ID, JobID: old[j.Key].ID, Attempt: 1}
			if j.State != state.JobSucceeded || j.Carried == nil || *j.Carried != want || j.Attempt != 0 {
				t.Errorf("job %s: state %s, attempt %d, carried %+v; want succeeded, no attempt, carried from %+v", j.Key, j.State, j.Attempt, j.Carried, want)
			}
		default:
			if j.State != state.JobSucceeded || j.Carried != nil || j.Attempt != 1 {
				t.Errorf("job %s: state %s, attempt %d, carried %+v; want it run again", j.Key, j.State, j.Attempt, j.Carried)
			}
		}
	}

	// Nothing failed in the re-run: nothing to run again.
	resp, body = e.do(t, http.MethodPost, "/api/v1/runs/"+again.ID+"/rerun?failed_only=true", "", nil)
	wantError(t, resp, body, http.StatusConflict, wire.CodeConflict)
	resp, body = e.do(t, http.MethodPost, "/api/v1/runs/"+again.ID+"/rerun", "application/json", []byte(`{"failed_only": "yes"}`))
	wantError(t, resp, body, http.StatusBadRequest, wire.CodeBadRequest)

	// A re-run of the re-run, in full: every job runs, none carried.
	full, err := e.c.Rerun(context.Background(), again.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if full.RerunOf != again.ID || full.FailedOnly {
		t.Errorf("full re-run = %+v", full)
	}
	_, end3 := e.follow(t, ctx, full.ID, "")
	if end3.State != state.RunSucceeded {
		t.Fatalf("full re-run ended %s", end3.State)
	}
	fullRun, err := e.c.GetRun(ctx, full.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range fullRun.Jobs {
		if j.Carried != nil || j.Attempt != 1 {
			t.Errorf("full re-run: job %s carried %+v, attempt %d", j.Key, j.Carried, j.Attempt)
		}
	}
}
