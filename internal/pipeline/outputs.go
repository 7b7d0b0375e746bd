package pipeline

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Limits of a job's outputs.
const (
	// MaxOutputs bounds the outputs a job declares.
	MaxOutputs = 64
	// MaxOutputBytes bounds the names and values of one job's outputs
	// together: they travel with the attempt's final status and are kept
	// with the job.
	MaxOutputBytes = 1 << 20
)

// outputNamePattern is the form of an output's name: a variable name, so
// that it can be read as an expression's property and become part of an
// environment variable.
var outputNamePattern = envNamePattern

// needsVarPattern keeps in a job id only what a variable name may hold.
var needsVarPattern = regexp.MustCompile(`[^A-Za-z0-9_]`)

// outputs reads a job's `outputs:`, a list of names.
func (p *parser) outputs(n *yaml.Node, field string) []string {
	items, ok := p.List(n, field, "a list of output names (outputs: [version])", "")
	if !ok {
		return nil
	}
	if len(items) > MaxOutputs {
		p.Errorf(n, field, "declares %d outputs; at most %d are allowed", len(items), MaxOutputs)
		return nil
	}
	var out []string
	seen := make(map[string]bool)
	p.Texts(items, field, func(it *yaml.Node, f, s string) {
		switch {
		case !outputNamePattern.MatchString(s):
			p.Errorf(it, f, "invalid output name %q: must start with a letter or _ and hold only letters, digits and _", s)
		case seen[strings.ToUpper(s)]:
			p.Errorf(it, f, "output %q is declared twice (names must differ by more than case: each becomes part of a variable name)", s)
		default:
			seen[strings.ToUpper(s)] = true
			out = append(out, s)
		}
	})
	return out
}

// checkOutputRef reports needs.JOB.outputs.NAME where JOB declares no
// output NAME.
func (p *parser) checkOutputRef(jobID string, path []string, offs []int, at func(off int, format string, args ...any)) {
	if len(path) < 4 {
		return
	}
	var need *Job
	for _, info := range p.jobs {
		if info.job.ID == jobID {
			need = info.job
		}
	}
	if need == nil || slices.Contains(need.Outputs, path[3]) {
		return
	}
	if len(need.Outputs) == 0 {
		at(offs[3], "job %q declares no outputs: add outputs: [%s] to it and write %s=VALUE to $HODEI_OUTPUT in a step", jobID, path[3], path[3])
		return
	}
	at(offs[3], "job %q has no output %q%s (outputs: %s)", jobID, path[3], yamlpos.DidYouMean(path[3], need.Outputs), strings.Join(need.Outputs, ", "))
}

// CheckOutputs checks what the steps of a job wrote to $HODEI_OUTPUT
// against the job's declared outputs and MaxOutputBytes. A declared output
// never written is empty; a name not declared is an error.
func CheckOutputs(declared []string, got map[string]string) error {
	size := 0
	var unknown []string
	for k, v := range got {
		if !slices.Contains(declared, k) {
			unknown = append(unknown, k)
		}
		size += len(k) + len(v)
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		if len(declared) == 0 {
			return fmt.Errorf("outputs: %s written to $HODEI_OUTPUT but the job declares no outputs (add outputs: [%s])", strings.Join(unknown, ", "), strings.Join(unknown, ", "))
		}
		return fmt.Errorf("outputs: %s written to $HODEI_OUTPUT but not declared (outputs: %s)", strings.Join(unknown, ", "), strings.Join(declared, ", "))
	}
	if size > MaxOutputBytes {
		return fmt.Errorf("outputs: %d bytes of names and values, over the limit of %d bytes per job", size, MaxOutputBytes)
	}
	return nil
}

// FillOutputs returns the outputs of a job that succeeded: every declared
// name, empty when no step wrote it.
func FillOutputs(declared []string, got map[string]string) map[string]string {
	if len(declared) == 0 {
		return nil
	}
	out := make(map[string]string, len(declared))
	for _, k := range declared {
		out[k] = got[k]
	}
	return out
}

// NeedsOutputVar is the environment variable that holds output name of
// the needed job jobID: HODEI_NEEDS_<JOB>_OUTPUTS_<NAME>, upper case, with
// every character of the id that a variable name cannot hold (-) as _.
func NeedsOutputVar(jobID, name string) string {
	return "HODEI_NEEDS_" + strings.ToUpper(needsVarPattern.ReplaceAllString(jobID, "_")) + "_OUTPUTS_" + strings.ToUpper(name)
}

// outputsEnv is the variables of the outputs of a job's needs (for a
// matrix need, merged over its combinations as the expressions read them).
func outputsEnv(needs []Need) map[string]string {
	var out map[string]string
	for _, n := range needs {
		for _, k := range slices.Sorted(maps.Keys(n.Outputs)) {
			if out == nil {
				out = make(map[string]string)
			}
			out[NeedsOutputVar(n.JobID, k)] = n.Outputs[k]
		}
	}
	return out
}
