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

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// Expand turns a pipeline into the jobs of a run: one JobSpec per job, or per
// combination of a matrix job's values, in topological order of their needs
// (jobs that could go in either order keep their order in the file; the
// combinations of a matrix job come together, the last axis varying
// fastest).
//
// In each combination ${{ matrix.KEY }} is replaced by the value of KEY in
// the job's name, labels and env values and in the steps' names, scripts
// and env values. A need on a matrix job becomes a need on every one of its
// combinations. The pipeline env is merged under the job env; a step's env
// stays on the step. Resources that are not given get DefaultCPUMilli and
// DefaultMemory.
//
// A pipeline returned by Parse always expands. One built by hand is checked
// first: on failure the error is an ErrorList.
func Expand(p *Pipeline) ([]JobSpec, error) {
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
			s := expandJob(p, j, c, needs)
			expandArtifacts(&s, j, s.Matrix, keys)
			specs = append(specs, s)
		}
	}
	return specs, nil
}

// expandJob makes the JobSpec of one combination (vals nil for a job without
// matrix).
func expandJob(p *Pipeline, j *Job, vals []string, needs []string) JobSpec {
	var mx map[string]string
	if vals != nil {
		mx = make(map[string]string, len(vals))
		for k, a := range j.Matrix.Axes {
			mx[a.Name] = vals[k]
		}
	}
	name := j.Name
	if name == "" {
		name = j.ID
	}
	if vals != nil && !matrixExpr.MatchString(name) {
		name += " (" + strings.Join(vals, ", ") + ")"
	} else {
		name = substitute(name, mx)
	}
	s := JobSpec{
		Key:          jobKey(j.ID, vals),
		JobID:        j.ID,
		Name:         name,
		Needs:        slices.Clone(needs),
		If:           j.If,
		CPUMilli:     j.RunsOn.CPUMilli,
		Memory:       j.RunsOn.MemoryBytes,
		GPU:          j.RunsOn.GPU,
		Env:          mergeEnv(p.Env, j.Env, mx),
		Secrets:      slices.Clone(j.Secrets),
		Timeout:      j.Timeout,
		Retry:        j.Retry,
		InfraRetries: j.InfraRetries,
		Priority:     j.Priority,
		Matrix:       mx,
	}
	if s.If == "" {
		s.If = Success
	}
	s.LimitCPU, s.LimitMemory = s.CPUMilli != 0, s.Memory != 0
	if s.CPUMilli == 0 {
		s.CPUMilli = DefaultCPUMilli
	}
	if s.Memory == 0 {
		s.Memory = DefaultMemory
	}
	for _, l := range j.RunsOn.Labels {
		s.Labels = append(s.Labels, substitute(l, mx))
	}
	if j.Image != "" {
		s.Image = substitute(j.Image, mx)
		s.Network = j.Network
		if !slices.Contains(s.Labels, DockerLabel) {
			s.Labels = append(s.Labels, DockerLabel)
		}
	}
	s.Steps = make([]StepSpec, len(j.Steps))
	for k, st := range j.Steps {
		s.Steps[k] = StepSpec{
			Name:    substitute(st.Name, mx),
			Run:     substitute(st.Run, mx),
			Env:     mergeEnv(nil, st.Env, mx),
			Timeout: st.Timeout,
		}
	}
	return s
}

// jobKey is the key of a job, or of one combination of a matrix job.
func jobKey(id string, vals []string) string {
	if vals == nil {
		return id
	}
	return id + " (" + strings.Join(vals, ", ") + ")"
}

// substitute replaces ${{ matrix.KEY }} by the value of KEY in mx, leaving
// unknown keys alone. Values are inserted as they are: an expression inside
// a value is not expanded again.
func substitute(s string, mx map[string]string) string {
	if len(mx) == 0 || !strings.Contains(s, "${{") {
		return s
	}
	return matrixExpr.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := mx[matrixExpr.FindStringSubmatch(m)[1]]; ok {
			return v
		}
		return m
	})
}

// mergeEnv copies base, then over with its values substituted; nil if both
// are empty.
func mergeEnv(base, over, mx map[string]string) map[string]string {
	if len(base)+len(over) == 0 {
		return nil
	}
	out := maps.Clone(base)
	if out == nil {
		out = make(map[string]string, len(over))
	}
	for k, v := range over {
		out[k] = substitute(v, mx)
	}
	return out
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
		switch j.If {
		case "", Success, Failure, Always:
		default:
			add(j.Line, path+".if", "must be one of success(), failure() or always(), got %q", j.If)
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
			for _, m := range matrixExpr.FindAllStringSubmatch(f.text, -1) {
				if !axes[m[1]] {
					add(j.Line, f.field, "unknown matrix key %q in %s", m[1], m[0])
				}
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

// exprFields lists the fields of a job in which matrix expressions are
// substituted.
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
