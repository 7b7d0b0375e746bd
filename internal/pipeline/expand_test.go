package pipeline

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustExpand(t *testing.T, src string) []JobSpec {
	t.Helper()
	specs, err := Expand(mustParse(t, src))
	if err != nil {
		t.Fatalf("Expand: %v", err)
	}
	return specs
}

func keys(specs []JobSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Key
	}
	return out
}

// specsByKey indexes specs by their key.
func specsByKey(specs []JobSpec) map[string]JobSpec {
	m := make(map[string]JobSpec, len(specs))
	for _, s := range specs {
		m[s.Key] = s
	}
	return m
}

func specByKey(t *testing.T, specs []JobSpec, key string) JobSpec {
	t.Helper()
	for _, s := range specs {
		if s.Key == key {
			return s
		}
	}
	t.Fatalf("no job %q in %q", key, keys(specs))
	return JobSpec{}
}

func TestExpandPlainJob(t *testing.T) {
	specs := mustExpand(t, `
name: p
jobs:
  build:
    steps:
      - name: compile
        run: make
        timeout: 1m
`)
	want := []JobSpec{{
		Key:      "build",
		JobID:    "build",
		Name:     "build",
		If:       Success,
		CPUMilli: DefaultCPUMilli,
		Memory:   DefaultMemory,
		Steps:    []StepSpec{{Name: "compile", Run: "make", Timeout: time.Minute}},
	}}
	if !reflect.DeepEqual(specs, want) {
		t.Errorf("got  %+v\nwant %+v", specs, want)
	}
}

func TestExpandCarriesJobSettings(t *testing.T) {
	specs := mustExpand(t, `
name: p
priority: 20
jobs:
  a:
    steps: [{run: x}]
  b:
    name: Build B
    needs: a
    if: always()
    runs-on: {labels: [linux, big], cpu: 1.5, memory: 2Gi, gpu: 1}
    timeout: 10m
    retry: 2
    priority: 90
    steps: [{run: y}]
`)
	b := specByKey(t, specs, "b")
	want := JobSpec{
		Key: "b", JobID: "b", Name: "Build B", Needs: []string{"a"}, If: Always,
		CPUMilli: 1500, Memory: 2 << 30, LimitCPU: true, LimitMemory: true, GPU: 1, Labels: []string{"linux", "big"},
		Timeout: 10 * time.Minute, Retry: 2, Priority: 90,
		Steps: []StepSpec{{Run: "y"}},
		// a keeps no artifacts: b's worker asks for none.
		NoArtifactsFrom: []string{"a"},
	}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("got  %+v\nwant %+v", b, want)
	}
	if a := specByKey(t, specs, "a"); a.Priority != 20 || a.CPUMilli != 100 || a.Memory != 64<<20 || a.LimitCPU || a.LimitMemory {
		t.Errorf("a: priority %d, cpu %d, memory %d; want the pipeline's 20 and the defaults", a.Priority, a.CPUMilli, a.Memory)
	}
}

func TestExpandMatrixProductOrder(t *testing.T) {
	specs := mustExpand(t, `
name: p
jobs:
  test:
    matrix:
      go: ["1.22", "1.23"]
      os: [linux, darwin]
      arch: [amd64]
    steps: [{run: x}]
`)
	wantKeys := []string{
		"test (1.22, linux, amd64)",
		"test (1.22, darwin, amd64)",
		"test (1.23, linux, amd64)",
		"test (1.23, darwin, amd64)",
	}
	if got := keys(specs); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("keys = %q\nwant   %q", got, wantKeys)
	}
	for _, s := range specs {
		if s.Name != s.Key || s.JobID != "test" {
			t.Errorf("%s: name %q, job id %q", s.Key, s.Name, s.JobID)
		}
	}
	wantMatrix := map[string]string{"go": "1.23", "os": "linux", "arch": "amd64"}
	if !reflect.DeepEqual(specs[2].Matrix, wantMatrix) {
		t.Errorf("matrix of %s = %v, want %v", specs[2].Key, specs[2].Matrix, wantMatrix)
	}
}

func TestExpandMatrixNames(t *testing.T) {
	specs := mustExpand(t, `
name: p
jobs:
  plain:
    name: Unit tests
    matrix: {v: [1, 2]}
    steps: [{run: x}]
  templated:
    name: Test on ${{ matrix.os }}
    matrix: {os: [linux, darwin], v: [1]}
    steps: [{run: x}]
`)
	got := map[string]string{}
	for _, s := range specs {
		got[s.Key] = s.Name
	}
	want := map[string]string{
		"plain (1)":             "Unit tests (1)",
		"plain (2)":             "Unit tests (2)",
		"templated (linux, 1)":  "Test on linux",
		"templated (darwin, 1)": "Test on darwin",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("names = %v\nwant    %v", got, want)
	}
}

func TestExpandSubstitution(t *testing.T) {
	specs := mustExpand(t, `
name: p
inputs:
  level: {type: number}
env:
  STATIC: "${{ hodei.commit }}-${{ inputs.level }}"
jobs:
  test:
    matrix:
      os: [linux]
      v: ["${{ matrix.os }}"]
    runs-on:
      labels: ["os-${{ matrix.os }}"]
    env:
      TARGET: ${{matrix.os}}/${{   matrix.os   }}
      RAW: ${{ matrix.v }}
    steps:
      - name: step on ${{ matrix.os }}
        run: |
          echo ${{ matrix.os }}
          echo ${{ format('{0}', '${{ x }}') }} $HOME
        env:
          STEP: "${{ matrix.os }}-x"
`)
	if len(specs) != 1 {
		t.Fatalf("got %d specs", len(specs))
	}
	s := specs[0]
	if !reflect.DeepEqual(s.Labels, []string{"os-linux"}) {
		t.Errorf("labels = %q", s.Labels)
	}
	wantEnv := map[string]string{
		"STATIC": "-",                // no commit, no input given
		"TARGET": "linux/linux",      // spaces inside the braces tolerated
		"RAW":    "${{ matrix.os }}", // a value is inserted as is, not expanded again
	}
	if !reflect.DeepEqual(s.Env, wantEnv) {
		t.Errorf("env = %v\nwant  %v", s.Env, wantEnv)
	}
	st := s.Steps[0]
	if st.Name != "step on linux" {
		t.Errorf("step name = %q", st.Name)
	}
	if want := "echo linux\necho ${{ x }} $HOME\n"; st.Run != want {
		t.Errorf("run = %q, want %q", st.Run, want)
	}
	if !reflect.DeepEqual(st.Env, map[string]string{"STEP": "linux-x"}) {
		t.Errorf("step env = %v", st.Env)
	}
}

func TestExpandEnvPrecedence(t *testing.T) {
	specs := mustExpand(t, `
name: p
env: {A: pipeline, B: pipeline, C: pipeline}
jobs:
  j:
    env: {B: job, D: job}
    steps:
      - run: x
        env: {C: step, D: step, E: step}
      - run: y
  k:
    steps: [{run: z}]
`)
	j := specByKey(t, specs, "j")
	if want := map[string]string{"A": "pipeline", "B": "job", "C": "pipeline", "D": "job"}; !reflect.DeepEqual(j.Env, want) {
		t.Errorf("job env = %v, want %v", j.Env, want)
	}
	if want := map[string]string{"C": "step", "D": "step", "E": "step"}; !reflect.DeepEqual(j.Steps[0].Env, want) {
		t.Errorf("step env = %v, want only the step's own %v", j.Steps[0].Env, want)
	}
	if j.Steps[1].Env != nil {
		t.Errorf("a step without env got %v", j.Steps[1].Env)
	}
	k := specByKey(t, specs, "k")
	if want := map[string]string{"A": "pipeline", "B": "pipeline", "C": "pipeline"}; !reflect.DeepEqual(k.Env, want) {
		t.Errorf("job without env: %v, want the pipeline's %v", k.Env, want)
	}
}

func TestExpandSpecsDoNotShareState(t *testing.T) {
	p := mustParse(t, `
name: p
env: {A: "1"}
jobs:
  a:
    needs: b
    matrix: {v: [x, y]}
    env: {B: "${{ matrix.v }}"}
    runs-on: {labels: [l]}
    steps: [{run: x, env: {C: "3"}}]
  b:
    steps: [{run: x}]
`)
	specs, err := Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(specs); !reflect.DeepEqual(got, []string{"b", "a (x)", "a (y)"}) {
		t.Fatalf("keys = %q", got)
	}
	x, y := specs[1], specs[2]
	x.Env["A"] = "changed"
	x.Steps[0].Env["C"] = "changed"
	x.Labels[0] = "changed"
	x.Needs[0] = "changed"
	x.Matrix["v"] = "changed"
	if y.Env["A"] != "1" || y.Steps[0].Env["C"] != "3" || y.Labels[0] != "l" || y.Needs[0] != "b" ||
		p.Env["A"] != "1" || p.Jobs[0].Steps[0].Env["C"] != "3" || p.Jobs[0].RunsOn.Labels[0] != "l" || p.Jobs[0].Needs[0] != "b" {
		t.Errorf("specs share maps or slices with each other or with the pipeline")
	}
	again, err := Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	if again[1].Env["A"] != "1" || again[1].Matrix["v"] != "x" {
		t.Errorf("expanding again was affected by changes to earlier specs")
	}
}

func TestExpandNeedsRewriting(t *testing.T) {
	specs := mustExpand(t, `
name: p
jobs:
  checkout:
    steps: [{run: x}]
  test:
    needs: checkout
    matrix: {v: [1, 2]}
    steps: [{run: x}]
  e2e:
    needs: [test, checkout]
    matrix: {browser: [firefox, chrome]}
    steps: [{run: x}]
  package:
    needs: [test, e2e]
    steps: [{run: x}]
`)
	want := map[string][]string{
		"checkout":      nil,
		"test (1)":      {"checkout"},
		"test (2)":      {"checkout"},
		"e2e (firefox)": {"test (1)", "test (2)", "checkout"},
		"e2e (chrome)":  {"test (1)", "test (2)", "checkout"},
		"package":       {"test (1)", "test (2)", "e2e (firefox)", "e2e (chrome)"},
	}
	if len(specs) != len(want) {
		t.Fatalf("keys = %q", keys(specs))
	}
	for _, s := range specs {
		if !reflect.DeepEqual(s.Needs, want[s.Key]) {
			t.Errorf("%s needs %q, want %q", s.Key, s.Needs, want[s.Key])
		}
	}
}

func TestExpandTopologicalOrder(t *testing.T) {
	tests := []struct {
		name string
		jobs string
		want []string
	}{
		{"file order when independent", `
  c: {steps: [{run: x}]}
  a: {steps: [{run: x}]}
  b: {steps: [{run: x}]}`, []string{"c", "a", "b"}},
		{"needs first, then file order among ready jobs", `
  deploy: {needs: build, steps: [{run: x}]}
  build: {steps: [{run: x}]}
  lint: {steps: [{run: x}]}`, []string{"build", "deploy", "lint"}},
		{"diamond", `
  report: {needs: [test, lint], steps: [{run: x}]}
  test: {needs: checkout, steps: [{run: x}]}
  lint: {needs: checkout, steps: [{run: x}]}
  checkout: {steps: [{run: x}]}`, []string{"checkout", "test", "lint", "report"}},
		{"chain written backwards", `
  d: {needs: c, steps: [{run: x}]}
  c: {needs: b, steps: [{run: x}]}
  b: {needs: a, steps: [{run: x}]}
  a: {steps: [{run: x}]}`, []string{"a", "b", "c", "d"}},
		{"matrix combinations stay together", `
  z: {needs: m, steps: [{run: x}]}
  m: {matrix: {v: [2, 1]}, steps: [{run: x}]}
  y: {steps: [{run: x}]}`, []string{"m (2)", "m (1)", "z", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs := mustExpand(t, "name: p\njobs:"+tt.jobs+"\n")
			if got := keys(specs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("order = %q, want %q", got, tt.want)
			}
			assertTopological(t, specs)
		})
	}
}

// assertTopological checks that keys are unique and every need comes
// earlier in the list.
func assertTopological(t *testing.T, specs []JobSpec) {
	t.Helper()
	seen := make(map[string]bool)
	for _, s := range specs {
		if seen[s.Key] {
			t.Errorf("key %q appears twice", s.Key)
		}
		for _, n := range s.Needs {
			if !seen[n] {
				t.Errorf("%q needs %q, which does not come before it", s.Key, n)
			}
		}
		seen[s.Key] = true
	}
}

func TestExpandDeterministic(t *testing.T) {
	src := `
name: p
env: {A: "1", B: "2", C: "3"}
jobs:
  x: {needs: [y, z], matrix: {a: [1, 2, 3], b: [p, q]}, steps: [{run: "${{ matrix.a }}${{ matrix.b }}"}]}
  y: {steps: [{run: x}]}
  z: {needs: y, steps: [{run: x}]}
`
	first := mustExpand(t, src)
	for i := 0; i < 20; i++ {
		if again := mustExpand(t, src); !reflect.DeepEqual(first, again) {
			t.Fatalf("expansion %d differs:\n%+v\n%+v", i, first, again)
		}
	}
}

func TestExpandHandBuiltPipeline(t *testing.T) {
	step := []Step{{Run: "true"}}
	p := &Pipeline{
		Name: "manual",
		Jobs: []*Job{
			{ID: "b", Needs: []string{"a", "a"}, Steps: step, Matrix: &Matrix{}},
			{ID: "a", Steps: step},
		},
	}
	specs, err := Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(specs); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("keys = %q", got)
	}
	b := specs[1]
	if b.Name != "b" || b.If != Success || !reflect.DeepEqual(b.Needs, []string{"a"}) || b.Matrix != nil {
		t.Errorf("defaults of a hand-built job: %+v", b)
	}
}

func TestExpandRejectsInvalidPipelines(t *testing.T) {
	step := []Step{{Run: "true"}}
	tests := []struct {
		name  string
		p     *Pipeline
		field string
		msg   string
	}{
		{"no jobs", &Pipeline{}, "jobs", "must define at least one job"},
		{"nil job", &Pipeline{Jobs: []*Job{nil}}, "jobs[0]", "is nil"},
		{"duplicate id", &Pipeline{Jobs: []*Job{{ID: "a", Steps: step}, {ID: "a", Steps: step, Line: 7}}}, "jobs.a", "duplicate job id"},
		{"bad id", &Pipeline{Jobs: []*Job{{ID: "a b", Steps: step}}}, "jobs.a b", "invalid job id"},
		{"unknown need", &Pipeline{Jobs: []*Job{{ID: "a", Needs: []string{"x"}, Steps: step}}}, "jobs.a.needs", `unknown job "x"`},
		{"cycle", &Pipeline{Jobs: []*Job{{ID: "a", Needs: []string{"b"}, Steps: step}, {ID: "b", Needs: []string{"a"}, Steps: step}}},
			"jobs.b.needs", "dependency cycle: a -> b -> a"},
		{"bad condition", &Pipeline{Jobs: []*Job{{ID: "a", If: "never()", Steps: step}}}, "jobs.a.if", "unknown function never"},
		{"no steps", &Pipeline{Jobs: []*Job{{ID: "a"}}}, "jobs.a.steps", "must have at least one step"},
		{"empty axis", &Pipeline{Jobs: []*Job{{ID: "a", Steps: step, Matrix: &Matrix{Axes: []MatrixAxis{{Name: "v"}}}}}},
			"jobs.a.matrix.v", "must list at least one value"},
		{"duplicate axis", &Pipeline{Jobs: []*Job{{ID: "a", Steps: step, Matrix: &Matrix{Axes: []MatrixAxis{{Name: "v", Values: []string{"1"}}, {Name: "v", Values: []string{"2"}}}}}}},
			"jobs.a.matrix.v", "duplicate axis"},
		{"duplicate values", &Pipeline{Jobs: []*Job{{ID: "a", Steps: step, Matrix: &Matrix{Axes: []MatrixAxis{{Name: "v", Values: []string{"1", "1"}}}}}}},
			"jobs.a.matrix", `two combinations make the same job key "a (1)"`},
		{"too many combinations", &Pipeline{Jobs: []*Job{{ID: "a", Steps: step, Matrix: &Matrix{Axes: []MatrixAxis{
			{Name: "x", Values: strings.Split("0123456789abcdefg", "")}, {Name: "y", Values: strings.Split("0123456789abcdef", "")}}}}}},
			"jobs.a.matrix", "expands into 272 combinations"},
		{"unknown matrix key", &Pipeline{Jobs: []*Job{{ID: "a", Steps: []Step{{Run: "echo ${{ matrix.v }}"}}}}},
			"jobs.a.steps[0].run", `unknown matrix key "v"`},
		{"matrix key in labels", &Pipeline{Jobs: []*Job{{ID: "a", Steps: step, RunsOn: Resources{Labels: []string{"${{ matrix.os }}"}}}}},
			"jobs.a.runs-on.labels[0]", `unknown matrix key "os"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.File = "manual.yaml"
			specs, err := Expand(tt.p)
			if err == nil {
				t.Fatalf("Expand accepted it: %+v", specs)
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			found := false
			for _, e := range list {
				if e.Field == tt.field && strings.Contains(e.Msg, tt.msg) && e.File == "manual.yaml" {
					found = true
				}
			}
			if !found {
				t.Errorf("no error on %s containing %q in:\n%v", tt.field, tt.msg, err)
			}
		})
	}
	if _, err := Expand(nil); err == nil {
		t.Error("Expand(nil) succeeded")
	}
}
