package pipeline

import (
	"maps"
	"strings"
	"testing"
)

const outputsSrc = `
name: outputs
jobs:
  build:
    matrix: {os: [linux, darwin]}
    outputs: [version, notes]
    steps:
      - run: echo "version=1" >> "$HODEI_OUTPUT"
  build-docs:
    outputs: [url]
    steps: [{run: make docs}]
  deploy:
    needs: [build, build-docs]
    if: needs.build.outputs.version != ''
    env:
      V: v${{ needs.build.outputs.version }}
    steps:
      - name: deploy ${{ needs.build.outputs.version }}
        run: echo "${{ needs.build.outputs.notes }}" "${{ needs.build-docs.outputs.url }}"
`

// TestReadyReadsOutputs checks that the outputs of a job's needs reach its
// if, env, step names and scripts, and its environment as
// HODEI_NEEDS_ID_OUTPUTS_NAME; that a value is never read as an expression;
// and that a need without outputs reads as empty.
func TestReadyReadsOutputs(t *testing.T) {
	t.Parallel()
	specs := expandWith(t, outputsSrc, RunContext{Event: "manual"})
	if got := specs["build (linux)"].Outputs; len(got) != 2 || got[0] != "version" {
		t.Fatalf("build's spec declares outputs %v", got)
	}
	deploy := specs["deploy"]
	if !deploy.Deferred {
		t.Fatal("deploy reads outputs but is not deferred")
	}
	s := deploy
	run, err := Ready(&s, "run-1", []Need{
		{JobID: "build", Result: ResultSuccess, Outputs: map[string]string{"version": "1.0", "notes": "a"}},
		{JobID: "build", Result: ResultSuccess, Outputs: map[string]string{"version": "1.2", "notes": "${{ hodei.run_id }}"}},
		{JobID: "build-docs", Result: ResultSuccess, Outputs: map[string]string{"url": "https://docs/x"}},
	})
	if err != nil || !run {
		t.Fatalf("Ready = %v, %v", run, err)
	}
	if s.Env["V"] != "v1.2" || s.Steps[0].Name != "deploy 1.2" || s.Steps[0].Run != `echo "${{ hodei.run_id }}" "https://docs/x"` {
		t.Errorf("evaluated: env V %q, name %q, run %q", s.Env["V"], s.Steps[0].Name, s.Steps[0].Run)
	}
	want := map[string]string{
		"HODEI_NEEDS_BUILD_OUTPUTS_VERSION":  "1.2",
		"HODEI_NEEDS_BUILD_OUTPUTS_NOTES":    "${{ hodei.run_id }}",
		"HODEI_NEEDS_BUILD_DOCS_OUTPUTS_URL": "https://docs/x",
	}
	if !maps.Equal(s.NeedsOutputs, want) {
		t.Errorf("NeedsOutputs = %q, want %q", s.NeedsOutputs, want)
	}

	// No version: the if is false, the job is skipped.
	s = deploy
	run, err = Ready(&s, "run-1", []Need{{JobID: "build", Result: ResultSuccess}, {JobID: "build-docs", Result: ResultSuccess}})
	if err != nil || run {
		t.Errorf("Ready without outputs = %v, %v; want the job skipped", run, err)
	}
}

func TestCheckOutputs(t *testing.T) {
	t.Parallel()
	declared := []string{"version", "notes"}
	if err := CheckOutputs(declared, map[string]string{"version": "1"}); err != nil {
		t.Errorf("declared output refused: %v", err)
	}
	if got := FillOutputs(declared, map[string]string{"version": "1"}); !maps.Equal(got, map[string]string{"version": "1", "notes": ""}) {
		t.Errorf("FillOutputs = %q", got)
	}
	for _, tc := range []struct {
		declared []string
		got      map[string]string
		want     string
	}{
		{declared, map[string]string{"tag": "x", "version": "1"}, "outputs: tag written to $HODEI_OUTPUT but not declared (outputs: version, notes)"},
		{nil, map[string]string{"tag": "x"}, "but the job declares no outputs (add outputs: [tag])"},
		{declared, map[string]string{"version": strings.Repeat("x", MaxOutputBytes)}, "over the limit of 1048576 bytes per job"},
	} {
		err := CheckOutputs(tc.declared, tc.got)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckOutputs(%v, ...) = %v, want %q", tc.declared, err, tc.want)
		}
	}
	if v := NeedsOutputVar("build-app", "version"); v != "HODEI_NEEDS_BUILD_APP_OUTPUTS_VERSION" {
		t.Errorf("NeedsOutputVar = %s", v)
	}
}
