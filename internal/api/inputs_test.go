package api_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/steplog"
)

const inputsYAML = `name: deploy
inputs:
  env: {type: choice, options: [staging, prod], required: true}
  dry_run: {type: boolean, default: true}
jobs:
  plan:
    steps:
      - run: echo "plan ${{ inputs.env }} $HODEI_INPUT_DRY_RUN"
  apply:
    needs: plan
    if: ${{ !inputs.dry_run }}
    steps:
      - run: echo applied
  report:
    needs: [plan, apply]
    if: always()
    steps:
      - run: echo "apply was ${{ needs.apply.result }}, plan ${{ needs.plan.result }}"
      - run: exit 3
        continue-on-error: true
      - run: echo never
        if: failure()
`

// TestSubmitInputs: inputs given through the API reach expressions and
// variables, are stored with the run, and bad ones are refused with one
// detail per problem before anything runs.
func TestSubmitInputs(t *testing.T) {
	e := start(t)
	ctx := testCtx(t, 60*time.Second)
	run, err := e.c.SubmitRun(ctx, "deploy.yaml", []byte(inputsYAML), "", map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if run.Inputs["env"] != "prod" || run.Inputs["dry_run"] != "true" {
		t.Errorf("run inputs = %v", run.Inputs)
	}
	evs, end := e.follow(t, ctx, run.ID, "")
	if end.State != "succeeded" {
		t.Fatalf("run ended %s (%s)", end.State, end.Error)
	}
	states := map[string]string{}
	for _, j := range end.Jobs {
		states[j.Key] = string(j.State)
	}
	if states["plan"] != "succeeded" || states["apply"] != "skipped" || states["report"] != "succeeded" {
		t.Errorf("job states = %v", states)
	}
	out := output(t, evs)
	if got := steplog.ZeroDurations(out["plan"]); got != oneStep(`echo "plan prod $HODEI_INPUT_DRY_RUN"`, "plan prod true\n", 0) {
		t.Errorf("plan output = %q", got)
	}
	if !strings.Contains(out["report"], "apply was skipped, plan success\n") || strings.Contains(out["report"], "\nnever\n") {
		t.Errorf("report output = %q", out["report"])
	}
	got, err := e.c.GetRun(ctx, run.ID)
	if err != nil || got.Inputs["env"] != "prod" {
		t.Errorf("GET run inputs = %v, %v", got.Inputs, err)
	}

	_, err = e.c.SubmitRun(ctx, "deploy.yaml", []byte(inputsYAML), "", map[string]string{"env": "dev", "dry_run": "maybe", "evn": "x"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Code != wire.CodeInvalidInputs || len(ce.Details) != 3 {
		t.Fatalf("bad inputs: %#v", err)
	}
	if d := ce.Details[0]; d.Field != "inputs.evn" || !strings.Contains(d.Message, `did you mean "env"?`) {
		t.Errorf("detail 0 = %+v", d)
	}
	if d := ce.Details[1]; d.Field != "inputs.env" || d.Message != `"dev" is not one of the options: staging, prod` {
		t.Errorf("detail 1 = %+v", d)
	}
	_, err = e.c.SubmitRun(ctx, "deploy.yaml", []byte(inputsYAML), "", map[string]string{"dry_run": "false"})
	if !errors.As(err, &ce) || ce.Code != wire.CodeInvalidInputs || !strings.Contains(ce.Message, "input env: is required") {
		t.Errorf("missing required input: %#v", err)
	}
}
