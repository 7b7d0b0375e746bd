package pipeline

import (
	"reflect"
	"strings"
	"testing"
)

const deferredSrc = `
name: release
inputs:
  env: {type: choice, options: [staging, prod], required: true}
  dry_run: {type: boolean, default: true}
env:
  TARGET: ${{ inputs.env }}
jobs:
  build:
    matrix: {os: [linux, darwin]}
    steps:
      - run: make ${{ matrix.os }}
  test:
    steps:
      - run: go test
  deploy:
    needs: [build, test]
    if: always() && needs.build.result == 'success' && inputs.env == 'prod'
    env:
      BUILD: ${{ needs.build.result }}-${{ hodei.run_id }}
      MODE: ${{ inputs.dry_run && 'dry' || 'real' }}
    steps:
      - name: deploy to ${{ env.TARGET }}
        run: echo "${{ needs.test.result }} ${{ inputs.env }} on ${{ hodei.branch }}"
      - run: echo cleanup
        if: failure() || needs.test.result == 'failure'
`

func expandWith(t *testing.T, src string, rc RunContext) map[string]JobSpec {
	t.Helper()
	p := mustParse(t, src)
	specs, err := ExpandRun(p, rc)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]JobSpec)
	for _, s := range specs {
		out[s.Key] = s
	}
	return out
}

// TestReadyEvaluatesDeferredExpressions: what is known when the run is made
// is evaluated then; needs and run_id when the job is ready.
func TestReadyEvaluatesDeferredExpressions(t *testing.T) {
	t.Parallel()
	p := mustParse(t, deferredSrc)
	inputs, err := ResolveInputs(p, map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	specs := expandWith(t, deferredSrc, RunContext{Event: "manual", Branch: "main", Inputs: inputs})
	build := specs["build (linux)"]
	if build.Deferred || build.Steps[0].Run != "make linux" {
		t.Errorf("build: deferred=%v run=%q", build.Deferred, build.Steps[0].Run)
	}
	if build.Env["TARGET"] != "prod" || build.Env["HODEI_INPUT_ENV"] != "prod" || build.Env["HODEI_INPUT_DRY_RUN"] != "true" {
		t.Errorf("build env = %v", build.Env)
	}
	d := specs["deploy"]
	if !d.Deferred {
		t.Fatal("deploy reads needs but is not deferred")
	}
	if want := Condition("always() && needs.build.result == 'success' && true"); d.If != want {
		t.Errorf("if folded to %q, want %q", d.If, want)
	}
	needs := []Need{
		{JobID: "build", Result: ResultSuccess},
		{JobID: "build", Result: ResultSuccess},
		{JobID: "test", Result: ResultFailure},
	}
	s := d
	run, err := Ready(&s, "r-42", needs)
	if err != nil || !run {
		t.Fatalf("Ready = %v, %v", run, err)
	}
	if s.Deferred {
		t.Error("still deferred after Ready")
	}
	if s.Env["BUILD"] != "success-r-42" || s.Env["MODE"] != "dry" || s.Env["TARGET"] != "prod" {
		t.Errorf("env = %v", s.Env)
	}
	if s.Steps[0].Name != "deploy to prod" || s.Steps[0].Run != `echo "failure prod on main"` {
		t.Errorf("step 0 = %+v", s.Steps[0])
	}
	if s.Steps[1].If != "failure() || true" {
		t.Errorf("step 1 if = %q", s.Steps[1].If)
	}
	// The original spec is left alone.
	if !strings.Contains(d.Steps[0].Run, "${{") || d.Env["BUILD"] == s.Env["BUILD"] {
		t.Errorf("Ready changed the spec it was given a copy of: %+v", d)
	}

	// A failed build: the condition is false, the job is skipped.
	s = d
	needs[1].Result = ResultFailure
	if run, err := Ready(&s, "r-42", needs); err != nil || run {
		t.Errorf("with a failed build, Ready = %v, %v", run, err)
	}
}

func TestReadyConditions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cond    Condition
		results []string
		want    bool
	}{
		{Success, nil, true},
		{Failure, nil, false},
		{Success, []string{ResultSuccess, ResultSkipped}, false},
		{Failure, []string{ResultSuccess, ResultFailure}, true},
		{Always, []string{ResultCancelled}, true},
		{"needs.a.result == 'failure'", []string{ResultFailure}, false}, // success() implied
		{"always() && needs.a.result == 'skipped'", []string{ResultSkipped}, true},
		{"!cancelled()", []string{ResultFailure}, true},
	}
	for _, c := range cases {
		var needs []Need
		for _, r := range c.results {
			needs = append(needs, Need{JobID: "a", Result: r})
		}
		s := JobSpec{If: c.cond}
		got, err := Ready(&s, "r", needs)
		if err != nil {
			t.Fatalf("%s: %v", c.cond, err)
		}
		if got != c.want {
			t.Errorf("Ready(if %s, needs %v) = %v, want %v", c.cond, c.results, got, c.want)
		}
	}
}

// TestExpandKeepsValuesAsText: a value holding ${{ }} (an input here) is
// text, in a deferred job too.
func TestExpandKeepsValuesAsText(t *testing.T) {
	t.Parallel()
	src := `
name: x
inputs:
  msg: {}
jobs:
  a:
    steps: [{run: x}]
  b:
    needs: a
    steps:
      - run: echo '${{ inputs.msg }}' ${{ needs.a.result }}
      - run: echo '${{ inputs.msg }}'
`
	specs := expandWith(t, src, RunContext{Inputs: map[string]string{"msg": "${{ needs.a.result }}"}})
	s := specs["b"]
	if _, err := Ready(&s, "r", []Need{{JobID: "a", Result: ResultSuccess}}); err != nil {
		t.Fatal(err)
	}
	got := []string{s.Steps[0].Run, s.Steps[1].Run}
	want := []string{"echo '${{ needs.a.result }}' success", "echo '${{ needs.a.result }}'"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("runs = %q, want %q", got, want)
	}
}

func TestResolveInputs(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `
name: x
inputs:
  env: {type: choice, options: [staging, prod], required: true}
  dry_run: {type: boolean, default: true}
  n: {type: number}
  s: {type: string}
jobs:
  a: {steps: [{run: x}]}
`)
	got, err := ResolveInputs(p, map[string]string{"env": "prod", "dry_run": "FALSE", "n": "2.5"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"env": "prod", "dry_run": "false", "n": "2.5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("inputs = %v, want %v", got, want)
	}
	_, err = ResolveInputs(p, map[string]string{"env": "dev", "dry_run": "maybe", "n": "two", "evn": "x"})
	want := []string{
		`input evn: unknown input (did you mean "env"?); the pipeline's inputs are env, dry_run, n, s`,
		`input env: "dev" is not one of the options: staging, prod`,
		`input dry_run: "maybe" is not a boolean: give true or false`,
		`input n: "two" is not a number`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	_, err = ResolveInputs(p, nil)
	if err == nil || err.Error() != "input env: is required: give it with --input env=VALUE (one of staging, prod)" {
		t.Errorf("missing required: %v", err)
	}
}

// TestMergeKeysAndExtensions: x- keys hold anchors, merge keys bring their
// fields into jobs and env, and a job's own keys win.
func TestMergeKeysAndExtensions(t *testing.T) {
	t.Parallel()
	specs := expandWith(t, `
name: reuse
x-defaults: &defaults
  timeout: 5m
  retry: 2
  runs-on: {labels: [linux]}
x-env: &env
  GOFLAGS: -mod=readonly
  CGO_ENABLED: "0"
jobs:
  build:
    <<: *defaults
    env:
      <<: *env
      CGO_ENABLED: "1"
    steps: [{run: make}]
  test:
    <<: *defaults
    retry: 0
    steps: [{run: make test}]
`, RunContext{})
	b, tst := specs["build"], specs["test"]
	if b.Timeout.String() != "5m0s" || b.Retry != 2 || !reflect.DeepEqual(b.Labels, []string{"linux"}) {
		t.Errorf("build = %+v", b)
	}
	if want := map[string]string{"GOFLAGS": "-mod=readonly", "CGO_ENABLED": "1"}; !reflect.DeepEqual(b.Env, want) {
		t.Errorf("build env = %v, want %v", b.Env, want)
	}
	if tst.Retry != 0 || tst.Timeout.String() != "5m0s" {
		t.Errorf("test = %+v", tst)
	}
}

func TestForRunEvaluatesNameAndGroup(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `
name: deploy ${{ inputs.env }}
inputs:
  env: {type: choice, options: [staging, prod], required: true}
concurrency: {group: "deploy-${{ inputs.env }}-${{ hodei.branch }}"}
jobs:
  a: {steps: [{run: x}]}
`)
	q, err := p.ForRun(RunContext{Branch: "main", Inputs: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if q.Name != "deploy prod" || q.Concurrency.Group != "deploy-prod-main" || q.Concurrency.Limit != 1 {
		t.Errorf("for the run: name %q, group %+v", q.Name, q.Concurrency)
	}
	if p.Name != "deploy ${{ inputs.env }}" || p.Concurrency.Group != "deploy-${{ inputs.env }}-${{ hodei.branch }}" {
		t.Errorf("ForRun changed the pipeline: %q %+v", p.Name, p.Concurrency)
	}
}

// TestExtends: a job extends templates (x- keys) and jobs, maps merging
// deeply, later templates and the job's own keys winning.
func TestExtends(t *testing.T) {
	t.Parallel()
	specs := expandWith(t, `
name: extends
x-go:
  timeout: 10m
  runs-on: {labels: [linux], cpu: 2}
  env: {GOFLAGS: -mod=readonly, CGO_ENABLED: "0"}
x-race:
  env: {GORACE: halt_on_error=1}
  runs-on: {memory: 1Gi}
jobs:
  build:
    extends: x-go
    env: {CGO_ENABLED: "1"}
    steps: [{run: go build ./...}]
  test:
    extends: [build, x-race]
    needs: build
    steps: [{run: go test -race ./...}]
`, RunContext{})
	b, tst := specs["build"], specs["test"]
	if want := map[string]string{"GOFLAGS": "-mod=readonly", "CGO_ENABLED": "1"}; !reflect.DeepEqual(b.Env, want) || b.Timeout.String() != "10m0s" || b.CPUMilli != 2000 {
		t.Errorf("build = %+v", b)
	}
	if want := map[string]string{"GOFLAGS": "-mod=readonly", "CGO_ENABLED": "1", "GORACE": "halt_on_error=1"}; !reflect.DeepEqual(tst.Env, want) {
		t.Errorf("test env = %v, want %v", tst.Env, want)
	}
	if tst.CPUMilli != 2000 || tst.Memory != 1<<30 || !reflect.DeepEqual(tst.Labels, []string{"linux"}) || tst.Steps[0].Run != "go test -race ./..." {
		t.Errorf("test = %+v", tst)
	}
}

// TestHodeiTagAndPR: hodei.tag is the pushed tag and hodei.pr the pull
// request's number, in a job's `if` and its scripts; both are empty (pr is
// null) for other events.
func TestHodeiTagAndPR(t *testing.T) {
	t.Parallel()
	const src = `
name: events
jobs:
  release:
    if: hodei.tag != ''
    steps: [{run: 'echo release ${{ hodei.tag }}'}]
  review:
    if: hodei.pr > 0
    steps: [{run: 'echo review ${{ hodei.pr }} on ${{ hodei.branch }}'}]
`
	tag := expandWith(t, src, RunContext{Event: EventTag, Ref: "refs/tags/v1.2", Tag: "v1.2"})
	if got := tag["release"].Steps[0].Run; got != "echo release v1.2" {
		t.Errorf("tag: release runs %q", got)
	}
	if tag["release"].If != "true" || tag["review"].If != "false" {
		t.Errorf("tag: release if %q, review if %q", tag["release"].If, tag["review"].If)
	}
	pr := expandWith(t, src, RunContext{Event: EventPullRequest, Branch: "main", PR: 42})
	if got := pr["review"].Steps[0].Run; got != "echo review 42 on main" {
		t.Errorf("pull request: review runs %q", got)
	}
	if pr["release"].If != "false" || pr["review"].If != "true" {
		t.Errorf("pull request: release if %q, review if %q", pr["release"].If, pr["review"].If)
	}
	push := expandWith(t, src, RunContext{Event: EventPush, Branch: "main"})
	if push["release"].If != "false" || push["review"].If != "false" || push["review"].Steps[0].Run != "echo review  on main" {
		t.Errorf("push: release if %q, review if %q, run %q", push["release"].If, push["review"].If, push["review"].Steps[0].Run)
	}
}
