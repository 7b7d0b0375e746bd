package agent

import (
	"maps"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// TestStepOutputs checks that what steps write to $HODEI_OUTPUT, in both
// forms and in the sandbox too, becomes the job's outputs (a later step
// overwriting an earlier one), and that a declared output never written
// is empty.
func TestStepOutputs(t *testing.T) {
	t.Parallel()
	for _, isolated := range []bool{false, true} {
		t.Run(map[bool]string{false: "unisolated", true: "sandboxed"}[isolated], func(t *testing.T) {
			t.Parallel()
			spec := pipeline.JobSpec{Outputs: []string{"version", "notes", "unset"}, Steps: []pipeline.StepSpec{
				{Run: `echo "version=0.1" >> "$HODEI_OUTPUT"`},
				{Run: `printf 'version=1.2.3\nnotes<<EOF\nline one\nline = two\nEOF\n' >> "$HODEI_OUTPUT"`},
				{Run: `test -f "$HODEI_OUTPUT" && ! test -s "$HODEI_OUTPUT"`}, // emptied for every step
			}}
			outs := make(map[string]string)
			state, errMsg, log, _ := runJobOut(t, spec, isolated, outs)
			if state != bus.StatusSucceeded {
				t.Fatalf("job ended %s %q; log:\n%s", state, errMsg, log)
			}
			got := pipeline.FillOutputs(spec.Outputs, outs)
			want := map[string]string{"version": "1.2.3", "notes": "line one\nline = two", "unset": ""}
			if !maps.Equal(got, want) {
				t.Errorf("outputs = %q, want %q", got, want)
			}
		})
	}
}

// TestStepOutputsRefused checks the outputs that fail a job whose steps
// succeeded: a name not declared, a value holding a secret (by any of its
// forms), more than the limit, and a malformed file.
func TestStepOutputsRefused(t *testing.T) {
	t.Parallel()
	// 600 KiB: each step's file is within its limit, two such values
	// together are not.
	big := func(name string) string {
		return `{ printf '` + name + `='; head -c 614400 /dev/zero | tr '\000' x; echo; } >> "$HODEI_OUTPUT"`
	}
	for _, tc := range []struct {
		name string
		runs []string
		want string
	}{
		{"undeclared", []string{`echo "versoin=1" >> "$HODEI_OUTPUT"`}, "versoin written to $HODEI_OUTPUT but not declared (outputs: version, notes)"},
		{"secret", []string{`echo "version=v-$TOKEN" >> "$HODEI_OUTPUT"`}, "version holds a secret of the job"},
		{"too large", []string{big("version"), big("notes")}, "over the limit of 1048576 bytes per job"},
		{"malformed", []string{`echo "no equals sign" >> "$HODEI_OUTPUT"`}, "$HODEI_OUTPUT line 1: want NAME=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := pipeline.JobSpec{Outputs: []string{"version", "notes"}}
			for _, r := range tc.runs {
				spec.Steps = append(spec.Steps, pipeline.StepSpec{Run: r})
			}
			state, errMsg, log, _ := runJobOut(t, spec, false, make(map[string]string))
			if state != bus.StatusFailed || !strings.Contains(errMsg, tc.want) {
				t.Errorf("job ended %s %q, want a failure with %q; log:\n%s", state, errMsg, tc.want, log)
			}
			if strings.Contains(errMsg, "s3cret-value") || strings.Contains(log, "s3cret-value") {
				t.Errorf("the secret shows: %q\n%s", errMsg, log)
			}
		})
	}
}

// TestNeedsOutputsAreNotExpanded: the outputs of a job's needs reach its
// steps as they are, a $ in them read as no variable, while the job's own
// env values may expand them.
func TestNeedsOutputsAreNotExpanded(t *testing.T) {
	t.Parallel()
	spec := pipeline.JobSpec{
		NeedsOutputs: map[string]string{"HODEI_NEEDS_BUILD_OUTPUTS_PRICE": "$HOME costs $$5"},
		Env:          map[string]string{"COPY": "[$HODEI_NEEDS_BUILD_OUTPUTS_PRICE]"},
		Steps:        []pipeline.StepSpec{{Run: `test "$HODEI_NEEDS_BUILD_OUTPUTS_PRICE" = '$HOME costs $$5' && test "$COPY" = '[$HOME costs $$5]' && echo same`}},
	}
	state, errMsg, log, _ := runJob(t, spec)
	if state != bus.StatusSucceeded || !strings.Contains(log, "same") {
		t.Errorf("job ended %s %q; log:\n%s", state, errMsg, log)
	}
}
