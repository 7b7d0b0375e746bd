package pipeline

import (
	"fmt"
	"maps"
	"slices"

	"github.com/hodei-ci/hodei/internal/expr"
)

// Results of a need, as needs.<job>.result reads them.
const (
	ResultSuccess   = "success"
	ResultFailure   = "failure"
	ResultCancelled = "cancelled"
	ResultSkipped   = "skipped"
)

// Need is how one need of a job ended (one combination, for a matrix job).
type Need struct {
	JobID   string // the id in the file
	Result  string // ResultSuccess, ResultFailure, ResultCancelled or ResultSkipped
	Outputs map[string]string
}

// needsContext builds the needs context: per job id, its result (for a
// matrix job: failure if a combination failed, else cancelled if one was,
// else skipped if all were, else success) and its outputs (merged over
// the combinations).
func needsContext(needs []Need) map[string]any {
	type agg struct {
		failed, cancelled, all, skipped int
		outputs                         map[string]any
	}
	by := make(map[string]*agg)
	var order []string
	for _, n := range needs {
		a := by[n.JobID]
		if a == nil {
			a = &agg{outputs: make(map[string]any)}
			by[n.JobID] = a
			order = append(order, n.JobID)
		}
		a.all++
		switch n.Result {
		case ResultFailure:
			a.failed++
		case ResultCancelled:
			a.cancelled++
		case ResultSkipped:
			a.skipped++
		}
		for k, v := range n.Outputs {
			a.outputs[k] = v
		}
	}
	out := make(map[string]any, len(by))
	for _, id := range order {
		a := by[id]
		r := ResultSuccess
		switch {
		case a.failed > 0:
			r = ResultFailure
		case a.cancelled > 0:
			r = ResultCancelled
		case a.skipped == a.all:
			r = ResultSkipped
		}
		out[id] = map[string]any{"result": r, "outputs": a.outputs}
	}
	return out
}

// Ready decides, once every need of a job has ended, whether the job runs:
// it evaluates the job's `if` against its needs (success() holds when every
// need succeeded, failure() when one failed), and when it runs and is
// Deferred, evaluates the expressions left in its env and steps with the
// needs context and hodei.run_id; the outputs of its needs become its
// NeedsOutputs. An error (an expression that
// cannot be evaluated) fails the job.
func Ready(s *JobSpec, runID string, needs []Need) (bool, error) {
	st := &expr.Status{Success: true}
	for _, n := range needs {
		if n.Result != ResultSuccess {
			st.Success = false
		}
		if n.Result == ResultFailure {
			st.Failure = true
		}
	}
	ctx := map[string]any{
		"needs": needsContext(needs),
		"hodei": map[string]any{"run_id": runID},
	}
	cond := s.If
	if cond == "" {
		cond = Success
	}
	n, err := parseCondition(string(cond))
	if err != nil {
		return false, fmt.Errorf("if: %w", err)
	}
	res := readyResolver(ctx, s.Env)
	f, err := expr.Fold(n, res)
	if err != nil {
		return false, fmt.Errorf("if: %w", err)
	}
	run, err := expr.Condition(f, &expr.Env{Status: st})
	if err != nil {
		return false, fmt.Errorf("if: %w", err)
	}
	if !run {
		return false, nil
	}
	if s.Deferred {
		if err := s.resolve(ctx); err != nil {
			return true, err
		}
	}
	// Apart from the templates and the env: an output's value is never
	// read as an expression, nor its $ as a variable.
	s.NeedsOutputs = outputsEnv(needs)
	return true, nil
}

// HasOutputs reports whether a need of needs has outputs: Ready then adds
// their variables to the job's env.
func HasOutputs(needs []Need) bool {
	for _, n := range needs {
		if len(n.Outputs) > 0 {
			return true
		}
	}
	return false
}

// readyResolver knows the needs, hodei.run_id and the final values of env.
func readyResolver(ctx map[string]any, env map[string]string) expr.Resolver {
	return func(r *expr.Ref) (any, bool) {
		switch r.Path[0] {
		case "needs", "hodei":
			if r.Path[0] == "hodei" && (len(r.Path) < 2 || r.Path[1] != "run_id") {
				return nil, false
			}
			return lookupPath(ctx, r.Path), true
		case "env":
			if len(r.Path) < 2 {
				return nil, false
			}
			v, ok := env[r.Path[1]]
			if !ok {
				return nil, true
			}
			if expr.HasExpr(v) {
				return nil, false
			}
			return v, true
		}
		return nil, false
	}
}

// resolve evaluates the templates of a Deferred spec: the job's env first,
// then its steps (whose env context is the job's resolved env).
func (s *JobSpec) resolve(ctx map[string]any) error {
	eval := func(field, text string, res expr.Resolver) (string, error) {
		t, err := expr.ParseTemplate(text)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		out, done, err := t.Fold(res)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		if !done {
			return "", fmt.Errorf("%s: %q reads what is not known", field, out)
		}
		return out, nil
	}
	// s may share its steps and maps with the spec it was copied from.
	s.Steps = slices.Clone(s.Steps)
	for i := range s.Steps {
		s.Steps[i].Env = maps.Clone(s.Steps[i].Env)
	}
	env := maps.Clone(s.Env)
	noEnv := readyResolver(ctx, nil)
	for _, k := range sortedKeys(s.Env) {
		v, err := eval("env."+k, s.Env[k], noEnv)
		if err != nil {
			return err
		}
		env[k] = v
	}
	res := readyResolver(ctx, env)
	for i := range s.Steps {
		st := &s.Steps[i]
		var err error
		if st.Name, err = eval(fmt.Sprintf("steps[%d].name", i), st.Name, res); err != nil {
			return err
		}
		if st.Run, err = eval(fmt.Sprintf("steps[%d].run", i), st.Run, res); err != nil {
			return err
		}
		for _, k := range sortedKeys(st.Env) {
			if st.Env[k], err = eval(fmt.Sprintf("steps[%d].env.%s", i, k), st.Env[k], res); err != nil {
				return err
			}
		}
		if st.If != "" {
			if st.If, err = foldCondition(st.If, res); err != nil {
				return fmt.Errorf("steps[%d].if: %w", i, err)
			}
		}
	}
	s.Env = env
	s.Deferred = false
	return nil
}

// StepRuns evaluates a step's `if` ("" is success()) given whether a step
// before it failed: success() holds when none did, failure() when one did.
func StepRuns(st StepSpec, failed bool) (bool, error) {
	c := st.If
	if c == "" {
		c = Success
	}
	n, err := parseCondition(string(c))
	if err != nil {
		return false, err
	}
	return expr.Condition(n, &expr.Env{Status: &expr.Status{Success: !failed, Failure: failed}})
}
