package pipeline

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvironmentForms(t *testing.T) {
	t.Parallel()
	src := `name: p
jobs:
  build:
    steps: [{run: make}]
  staging:
    needs: [build]
    environment: staging
    steps: [{run: deploy}]
  production:
    needs: [staging]
    environment: {name: production, approvers: [release-managers, maintainer], timeout: 2h}
    steps: [{run: deploy}]
`
	specs := mustExpand(t, src)
	byKey := specsByKey(specs)
	if byKey["build"].Environment != nil {
		t.Errorf("build has an environment: %+v", byKey["build"].Environment)
	}
	if e := byKey["staging"].Environment; e == nil || e.Name != "staging" || len(e.Approvers) != 0 || e.Timeout != DefaultApprovalTimeout {
		t.Errorf("short form = %+v", e)
	}
	if e := byKey["production"].Environment; e == nil || e.Name != "production" ||
		!slices.Equal(e.Approvers, []string{"release-managers", "maintainer"}) || e.Timeout != 2*time.Hour {
		t.Errorf("long form = %+v", e)
	}
}

func TestEnvironmentErrorsNamePositions(t *testing.T) {
	t.Parallel()
	src := `name: p
jobs:
  a:
    environment: {approvers: [x, x], timeout: 2000h, who: me}
    steps: [{run: x}]
  b:
    environment: {name: "", approvers: []}
    steps: [{run: x}]
  c:
    environment: [production]
    steps: [{run: x}]
`
	_, err := Parse("p.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`p.yaml:4:18: jobs.a.environment.name: is required`,
		`p.yaml:4:34: jobs.a.environment.approvers[1]: "x" is named twice`,
		`p.yaml:4:47: jobs.a.environment.timeout: must be at most 720h0m0s, got 2000h0m0s`,
		`p.yaml:4:54: jobs.a.environment.who: unknown field "who"`,
		`p.yaml:7:25: jobs.b.environment.name: must not be empty`,
		`p.yaml:7:40: jobs.b.environment.approvers: must name at least one role or group`,
		`p.yaml:10:18: jobs.c.environment: must be an environment name or a map`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q; got:\n%s", want, err)
		}
	}
}
