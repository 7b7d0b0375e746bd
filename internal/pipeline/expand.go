package pipeline

import (
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sort"
	"strings"

	"github.com/hodei-ci/hodei/internal/expr"
	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// RunContext is what a run is made with besides its file: where it comes
// from (the hodei context of expressions) and its inputs.
type RunContext struct {
	Event, Ref, Branch, Commit, Repo string
	// Tag is the pushed tag (a tag event), PR the number of the pull
	// request (a pull_request event; 0 for none).
	Tag string
	PR  int
	// Inputs are the values of the pipeline's inputs, as ResolveInputs
	// returns them.
	Inputs map[string]string
}

// Expand is ExpandRun with no trigger and the inputs' defaults.
func Expand(p *Pipeline) ([]JobSpec, error) {
	if p == nil {
		return nil, errors.New("pipeline: Expand of a nil pipeline")
	}
	inputs := make(map[string]string)
	for _, in := range p.Inputs {
		if in.HasDefault {
			inputs[in.Name] = in.Default
		}
	}
	return ExpandRun(p, RunContext{Inputs: inputs})
}

// ExpandRun turns a pipeline into the jobs of a run: one JobSpec per job,
// or per combination of a matrix job's values, in topological order of
// their needs (jobs that could go in either order keep their order in the
// file; the combinations of a matrix job come together, the last axis
// varying fastest).
//
// The expressions of each job are evaluated with what is known when the run
// is made: the hodei context (but its run_id), the inputs, the matrix and
// env. A job whose env or steps read needs.* or hodei.run_id keeps its
// expressions, with what is known folded into them, and is Deferred: Ready
// evaluates them when its needs have ended. The job's `if` and its steps'
// `if` are folded the same way and left for Ready and the agent. A need on
// a matrix job becomes a need on every one of its combinations. The
// pipeline env is merged under the job env, with the inputs as
// HODEI_INPUT_NAME; a step's env stays on the step. Resources that are not
// given get DefaultCPUMilli and DefaultMemory.
//
// A pipeline returned by Parse always expands. One built by hand is checked
// first: on failure the error is an ErrorList.
func ExpandRun(p *Pipeline, rc RunContext) ([]JobSpec, error) {
	if p == nil {
		return nil, errors.New("pipeline: Expand of a nil pipeline")
	}
	if errs := validate(p); len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	keys := make(map[string][]string, len(p.Jobs))
	combos := make([][][]string, len(p.Jobs))
	for i, j := range p.Jobs {
		combos[i] = combinations(j.Matrix)
		for _, c := range combos[i] {
			keys[j.ID] = append(keys[j.ID], jobKey(j.ID, c))
		}
	}
	// kept are the jobs that keep artifacts: a job needs to ask for
	// artifacts only of those.
	kept := make(map[string]bool)
	for _, j := range p.Jobs {
		kept[j.ID] = j.Artifacts != nil
	}
	x := newExpander(p, rc)
	var specs []JobSpec
	for _, i := range topoOrder(p.Jobs) {
		j := p.Jobs[i]
		var needs []string
		seen := make(map[string]bool)
		for _, n := range j.Needs {
			if !seen[n] {
				seen[n] = true
				needs = append(needs, keys[n]...)
			}
		}
		for _, c := range combos[i] {
			s, err := x.job(j, c, needs)
			if err != nil {
				return nil, err
			}
			expandArtifacts(&s, j, s.Matrix, keys, kept)
			specs = append(specs, s)
		}
	}
	return specs, nil
}

// ForRun returns the pipeline as a run made with rc sees it: its name and
// concurrency group with their expressions (hodei, inputs) evaluated. The
// jobs are shared with p.
func (p *Pipeline) ForRun(rc RunContext) (*Pipeline, error) {
	x := newExpander(p, rc)
	res := x.resolver(nil, nil, nil)
	q := *p
	var err error
	if q.Name, _, err = foldText(p.Name, res); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if c := p.Concurrency; c != nil {
		group, _, err := foldText(c.Group, res)
		if err != nil {
			return nil, fmt.Errorf("concurrency.group: %w", err)
		}
		q.Concurrency = &Concurrency{Group: group, Limit: c.Limit}
	}
	return &q, nil
}

// expander evaluates the expressions of a run's jobs.
type expander struct {
	p      *Pipeline
	hodei  map[string]any
	inputs map[string]any
	env    map[string]string // the pipeline's env, evaluated
	inEnv  map[string]string // HODEI_INPUT_*
}

func newExpander(p *Pipeline, rc RunContext) *expander {
	x := &expander{p: p, inputs: make(map[string]any), inEnv: make(map[string]string)}
	x.hodei = map[string]any{
		"event": rc.Event, "ref": rc.Ref, "branch": rc.Branch, "commit": rc.Commit,
		"repo": rc.Repo, "pipeline": p.Name, "tag": rc.Tag, "pr": nil,
	}
	if rc.PR > 0 {
		x.hodei["pr"] = float64(rc.PR)
	}
	for _, in := range p.Inputs {
		if v, ok := rc.Inputs[in.Name]; ok {
			x.inputs[in.Name] = in.value(v)
			x.inEnv[InputEnv(in.Name)] = v
		}
	}
	x.env = make(map[string]string, len(p.Env))
	res := x.resolver(nil, nil, nil)
	for _, k := range sortedKeys(p.Env) {
		// The pipeline's env reads no needs: it is always final.
		v, _, err := foldText(p.Env[k], res)
		if err != nil {
			v = p.Env[k]
		}
		x.env[k] = v
	}
	return x
}

// resolver knows the hodei context but its run_id, the inputs, the matrix
// and the env values in env (a name in pending is not known yet).
func (x *expander) resolver(mx map[string]string, env map[string]string, pending map[string]bool) expr.Resolver {
	return func(r *expr.Ref) (any, bool) {
		switch r.Path[0] {
		case "hodei":
			if len(r.Path) > 1 && r.Path[1] == "run_id" {
				return nil, false
			}
			return lookupPath(x.hodei, r.Path[1:]), true
		case "inputs":
			return lookupPath(x.inputs, r.Path[1:]), true
		case "matrix":
			m := make(map[string]any, len(mx))
			for k, v := range mx {
				m[k] = v
			}
			return lookupPath(m, r.Path[1:]), true
		case "env":
			if len(r.Path) < 2 {
				return nil, false
			}
			if pending[r.Path[1]] {
				return nil, false
			}
			all := maps.Clone(x.env)
			maps.Copy(all, env)
			v, ok := all[r.Path[1]]
			if !ok || len(r.Path) > 2 {
				return nil, true
			}
			return v, true
		}
		return nil, false
	}
}

// lookupPath reads properties from a context; absent ones are null.
func lookupPath(m map[string]any, path []string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// foldText folds the expressions of s: the final text and true, or a
// template with what is known folded in and false.
func foldText(s string, res expr.Resolver) (string, bool, error) {
	if !expr.HasExpr(s) {
		return s, true, nil
	}
	t, err := expr.ParseTemplate(s)
	if err != nil {
		return "", false, err
	}
	return t.Fold(res)
}

// foldCondition folds an `if`; "" stays "".
func foldCondition(c Condition, res expr.Resolver) (Condition, error) {
	if c == "" {
		return "", nil
	}
	n, err := parseCondition(string(c))
	if err != nil {
		return "", err
	}
	f, err := expr.Fold(n, res)
	if err != nil {
		return "", err
	}
	return Condition(expr.String(f)), nil
}

// asTemplate is final text written so that evaluating it as a template
// gives it back.
func asTemplate(s string) string {
	if !expr.HasExpr(s) {
		return s
	}
	return "${{ " + expr.String(&expr.Literal{Val: s}) + " }}"
}

// field is one text of a job being expanded: where its result goes and
// whether it is final.
type field struct {
	ptr  *string
	done bool
}

// job makes the JobSpec of one combination (vals nil for a job without
// matrix).
func (x *expander) job(j *Job, vals []string, needs []string) (JobSpec, error) {
	var mx map[string]string
	if vals != nil {
		mx = make(map[string]string, len(vals))
		for k, a := range j.Matrix.Axes {
			mx[a.Name] = vals[k]
		}
	}
	path := "jobs." + j.ID
	var errs ErrorList
	fail := func(f string, err error) {
		file := x.p.File
		if j.File != "" {
			file = j.File
		}
		errs = append(errs, &Error{File: file, Line: j.Line, Field: f, Msg: err.Error()})
	}
	// The name, labels and image read nothing deferred (Parse sees to
	// it): they are final.
	fold := func(f, text string, res expr.Resolver) string {
		out, _, err := foldText(text, res)
		if err != nil {
			fail(f, err)
			return text
		}
		return out
	}
	static := x.resolver(mx, nil, nil)
	name := j.Name
	if name == "" {
		name = j.ID
	}
	if vals != nil && !readsMatrix(name) {
		name += " (" + strings.Join(vals, ", ") + ")"
	} else {
		name = fold(path+".name", name, static)
	}
	s := JobSpec{
		Key:             jobKey(j.ID, vals),
		JobID:           j.ID,
		Name:            name,
		Needs:           slices.Clone(needs),
		CPUMilli:        j.RunsOn.CPUMilli,
		Memory:          j.RunsOn.MemoryBytes,
		GPU:             j.RunsOn.GPU,
		Secrets:         slices.Clone(j.Secrets),
		Timeout:         j.Timeout,
		ContinueOnError: j.ContinueOnError,
		Retry:           j.Retry,
		InfraRetries:    j.InfraRetries,
		Priority:        j.Priority,
		Matrix:          mx,
		Outputs:         slices.Clone(j.Outputs),
	}
	if j.Checkout != nil {
		c := *j.Checkout
		s.Checkout = &c
	}
	if j.Environment != nil {
		e := *j.Environment
		e.Approvers = slices.Clone(e.Approvers)
		s.Environment = &e
	}
	s.LimitCPU, s.LimitMemory = s.CPUMilli != 0, s.Memory != 0
	if s.CPUMilli == 0 {
		s.CPUMilli = DefaultCPUMilli
	}
	if s.Memory == 0 {
		s.Memory = DefaultMemory
	}
	for i, l := range j.RunsOn.Labels {
		s.Labels = append(s.Labels, fold(yamlpos.Index(path+".runs-on.labels", i), l, static))
	}
	if j.Image != "" {
		s.Image = fold(path+".image", j.Image, static)
		s.Network = j.Network
		s.Services = expandServices(path, j.Services, func(f, text string) string { return fold(f, text, static) })
		if !slices.Contains(s.Labels, DockerLabel) {
			s.Labels = append(s.Labels, DockerLabel)
		}
	}
	// What follows may be deferred to Ready.
	var fields []field
	track := func(f, text string, res expr.Resolver, dst *string) bool {
		out, done, err := foldText(text, res)
		if err != nil {
			fail(f, err)
			out, done = text, true
		}
		*dst = out
		fields = append(fields, field{ptr: dst, done: done})
		return done
	}
	env := make(map[string]string, len(x.env)+len(j.Env)+len(x.inEnv))
	maps.Copy(env, x.env)
	maps.Copy(env, x.inEnv)
	pending := make(map[string]bool)
	jobEnv := make(map[string]*string, len(j.Env))
	for _, k := range sortedKeys(j.Env) {
		v := new(string)
		if !track(path+".env."+k, j.Env[k], x.resolver(mx, nil, nil), v) {
			pending[k] = true
		}
		jobEnv[k] = v
	}
	for k, v := range jobEnv {
		env[k] = *v
	}
	final := make(map[string]string, len(env))
	for k, v := range env {
		if !pending[k] {
			final[k] = v
		}
	}
	inJob := x.resolver(mx, final, pending)
	var err error
	if s.If, err = foldCondition(j.If, inJob); err != nil {
		fail(path+".if", err)
	}
	if s.If == "" {
		s.If = Success
	}
	s.Steps = make([]StepSpec, len(j.Steps))
	stepEnv := make([]map[string]*string, len(j.Steps))
	for k, st := range j.Steps {
		sp := yamlpos.Index(path+".steps", k)
		out := &s.Steps[k]
		out.Timeout, out.Shell, out.WorkingDirectory, out.ContinueOnError = st.Timeout, st.Shell, st.WorkingDirectory, st.ContinueOnError
		track(sp+".name", st.Name, inJob, &out.Name)
		track(sp+".run", st.Run, inJob, &out.Run)
		for _, e := range sortedKeys(st.Env) {
			if stepEnv[k] == nil {
				stepEnv[k] = make(map[string]*string, len(st.Env))
			}
			v := new(string)
			track(sp+".env."+e, st.Env[e], inJob, v)
			stepEnv[k][e] = v
		}
		if out.If, err = foldCondition(st.If, inJob); err != nil {
			fail(sp+".if", err)
		}
		if readsContext(out.If) {
			s.Deferred = true // needs or hodei.run_id: Ready folds them
		}
	}
	for _, f := range fields {
		if !f.done {
			s.Deferred = true
		}
	}
	if s.Deferred {
		// Every text stays a template, so that Ready evaluates each once
		// and never reads a value as an expression.
		for _, f := range fields {
			if f.done {
				*f.ptr = asTemplate(*f.ptr)
			}
		}
	}
	for k, vals := range stepEnv {
		if vals != nil {
			s.Steps[k].Env = make(map[string]string, len(vals))
			for e, v := range vals {
				s.Steps[k].Env[e] = *v
			}
		}
	}
	if len(env) > 0 {
		s.Env = make(map[string]string, len(env))
		maps.Copy(s.Env, x.env)
		maps.Copy(s.Env, x.inEnv)
		for k, v := range jobEnv {
			s.Env[k] = *v
		}
		if s.Deferred {
			for k, v := range s.Env {
				if _, ok := jobEnv[k]; !ok {
					s.Env[k] = asTemplate(v)
				}
			}
		}
	}
	if len(errs) > 0 {
		return JobSpec{}, errs
	}
	return s, nil
}

// readsContext reports whether a folded condition still reads a context.
func readsContext(c Condition) bool {
	n, err := parseCondition(string(c))
	if err != nil || c == "" {
		return false
	}
	found := false
	expr.Walk(n, func(n expr.Node) {
		if _, ok := n.(*expr.Ref); ok {
			found = true
		}
	})
	return found
}

// readsMatrix reports whether a text's expressions read the matrix.
func readsMatrix(s string) bool {
	if !expr.HasExpr(s) {
		return false
	}
	t, err := expr.ParseTemplate(s)
	if err != nil {
		return false
	}
	found := false
	for _, n := range t.Exprs() {
		expr.Walk(n, func(n expr.Node) {
			if r, ok := n.(*expr.Ref); ok && r.Path[0] == "matrix" {
				found = true
			}
		})
	}
	return found
}

// jobKey is the key of a job, or of one combination of a matrix job.
func jobKey(id string, vals []string) string {
	if vals == nil {
		return id
	}
	return id + " (" + strings.Join(vals, ", ") + ")"
}

// combinations lists the value tuples of a matrix in axis order, the last
// axis varying fastest; a job without matrix has the single tuple nil.
func combinations(m *Matrix) [][]string {
	if m == nil || len(m.Axes) == 0 {
		return [][]string{nil}
	}
	out := [][]string{{}}
	for _, a := range m.Axes {
		next := make([][]string, 0, len(out)*len(a.Values))
		for _, prefix := range out {
			for _, v := range a.Values {
				next = append(next, append(slices.Clip(prefix), v))
			}
		}
		out = next
	}
	return out
}

// combinationCount is the number of combinations of a matrix, exactly.
func combinationCount(m *Matrix) *big.Int {
	n := big.NewInt(1)
	for _, a := range m.Axes {
		n.Mul(n, big.NewInt(int64(len(a.Values))))
	}
	return n
}

// duplicateKey reports whether two combinations of a matrix give the same
// job key, which values holding ", " can do.
func duplicateKey(id string, m *Matrix) (string, bool) {
	seen := make(map[string]bool)
	for _, c := range combinations(m) {
		k := jobKey(id, c)
		if seen[k] {
			return k, true
		}
		seen[k] = true
	}
	return "", false
}

// cycle is a dependency cycle, as the path of job ids from a job back to
// itself, found through the need jobs[job].Needs[need].
type cycle struct {
	path      []string
	job, need int
}

// findCycles returns the cycles of the needs graph, ignoring needs on
// unknown jobs. Jobs are visited in order, so the result is deterministic.
func findCycles(jobs []*Job) []cycle {
	idx := make(map[string]int, len(jobs))
	for i, j := range jobs {
		if _, dup := idx[j.ID]; !dup {
			idx[j.ID] = i
		}
	}
	const (
		unvisited = iota
		onStack
		done
	)
	state := make([]int, len(jobs))
	var stack []int
	var out []cycle
	var visit func(i int)
	visit = func(i int) {
		state[i] = onStack
		stack = append(stack, i)
		for k, need := range jobs[i].Needs {
			t, ok := idx[need]
			if !ok {
				continue
			}
			switch state[t] {
			case unvisited:
				visit(t)
			case onStack:
				from := slices.Index(stack, t)
				var path []string
				for _, s := range stack[from:] {
					path = append(path, jobs[s].ID)
				}
				out = append(out, cycle{path: append(path, jobs[t].ID), job: i, need: k})
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	for i := range jobs {
		if state[i] == unvisited {
			visit(i)
		}
	}
	return out
}

// topoOrder orders the jobs of an acyclic pipeline so that every job comes
// after its needs, choosing among the ready jobs the first in the file.
func topoOrder(jobs []*Job) []int {
	idx := make(map[string]int, len(jobs))
	for i, j := range jobs {
		idx[j.ID] = i
	}
	indeg := make([]int, len(jobs))
	dependents := make([][]int, len(jobs))
	for i, j := range jobs {
		seen := make(map[int]bool)
		for _, n := range j.Needs {
			t := idx[n]
			if !seen[t] {
				seen[t] = true
				indeg[i]++
				dependents[t] = append(dependents[t], i)
			}
		}
	}
	ready := &intHeap{}
	for i := range jobs {
		if indeg[i] == 0 {
			heap.Push(ready, i)
		}
	}
	order := make([]int, 0, len(jobs))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		order = append(order, i)
		for _, d := range dependents[i] {
			if indeg[d]--; indeg[d] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	return order
}

type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// validate checks a pipeline that may not come from Parse, with the rules
// Parse applies that Expand depends on. Errors carry the job's line.
func validate(p *Pipeline) ErrorList {
	var errs ErrorList
	add := func(line int, field, format string, args ...any) {
		errs = append(errs, &Error{File: p.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if len(p.Jobs) == 0 {
		add(0, "jobs", "must define at least one job")
		return errs
	}
	ids := make(map[string]bool, len(p.Jobs))
	for i, j := range p.Jobs {
		if j == nil {
			add(0, fmt.Sprintf("jobs[%d]", i), "is nil")
			return errs
		}
		switch {
		case !idPattern.MatchString(j.ID):
			add(j.Line, "jobs."+j.ID, "invalid job id %q", j.ID)
		case ids[j.ID]:
			add(j.Line, "jobs."+j.ID, "duplicate job id %q", j.ID)
		}
		ids[j.ID] = true
	}
	for _, j := range p.Jobs {
		path := "jobs." + j.ID
		for _, n := range j.Needs {
			if !ids[n] {
				add(j.Line, path+".needs", "unknown job %q", n)
			}
		}
		if j.If != "" {
			if _, err := parseCondition(string(j.If)); err != nil {
				add(j.Line, path+".if", "invalid expression %q: %v", j.If, err)
			}
		}
		for k, st := range j.Steps {
			if st.If != "" {
				if _, err := parseCondition(string(st.If)); err != nil {
					add(j.Line, yamlpos.Index(path+".steps", k)+".if", "invalid expression %q: %v", st.If, err)
				}
			}
		}
		if len(j.Steps) == 0 {
			add(j.Line, path+".steps", "must have at least one step")
		}
		axes := make(map[string]bool)
		if j.Matrix != nil {
			bad := false
			for _, a := range j.Matrix.Axes {
				if axes[a.Name] {
					add(j.Line, path+".matrix."+a.Name, "duplicate axis")
					bad = true
				}
				axes[a.Name] = true
				if len(a.Values) == 0 {
					add(j.Line, path+".matrix."+a.Name, "must list at least one value")
					bad = true
				}
			}
			if c := combinationCount(j.Matrix); c.Cmp(big.NewInt(MaxMatrixCombinations)) > 0 {
				add(j.Line, path+".matrix", "expands into %s combinations; at most %d are allowed", c, MaxMatrixCombinations)
			} else if key, dup := duplicateKey(j.ID, j.Matrix); dup && !bad {
				add(j.Line, path+".matrix", "two combinations make the same job key %q", key)
			}
		}
		for _, f := range exprFields(j) {
			if !expr.HasExpr(f.text) {
				continue
			}
			t, err := expr.ParseTemplate(f.text)
			if err != nil {
				add(j.Line, f.field, "%v", err)
				continue
			}
			for _, n := range t.Exprs() {
				expr.Walk(n, func(n expr.Node) {
					if r, ok := n.(*expr.Ref); ok && r.Path[0] == "matrix" && len(r.Path) > 1 && !axes[r.Path[1]] {
						add(j.Line, f.field, "unknown matrix key %q in ${{ %s }}", r.Path[1], expr.String(r))
					}
				})
			}
		}
	}
	for _, c := range findCycles(p.Jobs) {
		j := p.Jobs[c.job]
		add(j.Line, "jobs."+j.ID+".needs", "dependency cycle: %s (each job needs the next)", strings.Join(c.path, " -> "))
	}
	return errs
}

type textField struct{ field, text string }

// exprFields lists the fields of a job in which expressions are
// evaluated.
func exprFields(j *Job) []textField {
	path := "jobs." + j.ID
	out := []textField{{path + ".name", j.Name}}
	for i, l := range j.RunsOn.Labels {
		out = append(out, textField{yamlpos.Index(path+".runs-on.labels", i), l})
	}
	for _, k := range sortedKeys(j.Env) {
		out = append(out, textField{path + ".env." + k, j.Env[k]})
	}
	for i, s := range j.Steps {
		sp := yamlpos.Index(path+".steps", i)
		out = append(out, textField{sp + ".name", s.Name}, textField{sp + ".run", s.Run})
		for _, k := range sortedKeys(s.Env) {
			out = append(out, textField{sp + ".env." + k, s.Env[k]})
		}
	}
	return out
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
