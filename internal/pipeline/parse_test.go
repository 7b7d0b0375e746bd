package pipeline

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustParse parses src or fails the test with every error.
func mustParse(t *testing.T, src string) *Pipeline {
	t.Helper()
	p, err := Parse("ci.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	if p == nil {
		t.Fatal("Parse returned neither pipeline nor error")
	}
	return p
}

// parseErrors parses src, which must be invalid, and returns its errors.
func parseErrors(t *testing.T, src string) ErrorList {
	t.Helper()
	p, err := Parse("ci.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse accepted invalid input: %+v", p)
	}
	if p != nil {
		t.Errorf("Parse returned a pipeline along with an error")
	}
	list, ok := err.(ErrorList)
	if !ok {
		t.Fatalf("error is %T, want ErrorList", err)
	}
	if len(list) == 0 {
		t.Fatal("empty ErrorList")
	}
	return list
}

func TestParseMinimal(t *testing.T) {
	p := mustParse(t, `
name: hello
jobs:
  hello:
    steps:
      - run: echo hi
`)
	want := &Pipeline{
		Name: "hello",
		File: "ci.yaml",
		Jobs: []*Job{{
			ID:    "hello",
			Name:  "hello",
			If:    Success,
			Steps: []Step{{Run: "echo hi"}},
			Line:  4,
		}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

func TestParseEveryField(t *testing.T) {
	p := mustParse(t, `
name: full
env:
  GREETING: hello
  DEBUG: true
  LEVEL: 3
  RATIO: 1.20
priority: 40
jobs:
  build:
    steps:
      - run: make
  test:
    name: Test ${{ matrix.go }}
    needs: [build]
    if: ${{ always() }}
    runs-on:
      labels: [linux, "${{ matrix.os }}"]
      cpu: 500m
      memory: 512Mi
      gpu: 2
    env:
      GOOS: ${{ matrix.os }}
    timeout: 1h30m
    retry: 3
    priority: 7
    matrix:
      go: [1.22, "1.23"]
      os: [linux, darwin]
    steps:
      - name: unit
        run: |
          go test ./...
          echo done
        env:
          GOFLAGS: -count=1
        timeout: 90s
      - run: echo second
`)
	if p.Name != "full" || p.Priority != 40 {
		t.Errorf("name, priority = %q, %d", p.Name, p.Priority)
	}
	wantEnv := map[string]string{"GREETING": "hello", "DEBUG": "true", "LEVEL": "3", "RATIO": "1.20"}
	if !reflect.DeepEqual(p.Env, wantEnv) {
		t.Errorf("env = %v, want %v (scalars kept as written)", p.Env, wantEnv)
	}
	if len(p.Jobs) != 2 || p.Jobs[0].ID != "build" || p.Jobs[1].ID != "test" {
		t.Fatalf("jobs not in file order: %+v", p.Jobs)
	}
	if got := p.Jobs[0].Priority; got != 40 {
		t.Errorf("build inherits pipeline priority: got %d, want 40", got)
	}
	want := &Job{
		ID:    "test",
		Name:  "Test ${{ matrix.go }}",
		Needs: []string{"build"},
		If:    Always,
		RunsOn: Resources{
			CPUMilli:    500,
			MemoryBytes: 512 << 20,
			GPU:         2,
			Labels:      []string{"linux", "${{ matrix.os }}"},
		},
		Env:      map[string]string{"GOOS": "${{ matrix.os }}"},
		Timeout:  90 * time.Minute,
		Retry:    3,
		Priority: 7,
		Matrix: &Matrix{Axes: []MatrixAxis{
			{Name: "go", Values: []string{"1.22", "1.23"}},
			{Name: "os", Values: []string{"linux", "darwin"}},
		}},
		Steps: []Step{
			{Name: "unit", Run: "go test ./...\necho done\n", Env: map[string]string{"GOFLAGS": "-count=1"}, Timeout: 90 * time.Second},
			{Run: "echo second"},
		},
		Line: 13,
	}
	if !reflect.DeepEqual(p.Jobs[1], want) {
		t.Errorf("test job:\ngot  %+v\nwant %+v", p.Jobs[1], want)
	}
}

func TestParseVariants(t *testing.T) {
	tests := []struct {
		name  string
		job   string // the body of job "j", indented by 4
		check func(t *testing.T, j *Job)
	}{
		{"needs as a string", "needs: a\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if !reflect.DeepEqual(j.Needs, []string{"a"}) {
				t.Errorf("needs = %v", j.Needs)
			}
		}},
		{"empty needs list", "needs: []\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if len(j.Needs) != 0 {
				t.Errorf("needs = %v", j.Needs)
			}
		}},
		{"if success()", "if: success()\nsteps: [{run: x}]", condIs(Success)},
		{"if failure()", "if: failure()\nsteps: [{run: x}]", condIs(Failure)},
		{"if always()", "if: always()\nsteps: [{run: x}]", condIs(Always)},
		{"if wrapped", "if: ${{ failure() }}\nsteps: [{run: x}]", condIs(Failure)},
		{"if wrapped tight", "if: ${{always()}}\nsteps: [{run: x}]", condIs(Always)},
		{"if default", "steps: [{run: x}]", condIs(Success)},
		{"single label", "runs-on: {labels: gpu-box}\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if !reflect.DeepEqual(j.RunsOn.Labels, []string{"gpu-box"}) {
				t.Errorf("labels = %v", j.RunsOn.Labels)
			}
		}},
		{"cpu as int", "runs-on: {cpu: 2}\nsteps: [{run: x}]", cpuIs(2000)},
		{"cpu as float", "runs-on: {cpu: 0.25}\nsteps: [{run: x}]", cpuIs(250)},
		{"cpu as string cores", `runs-on: {cpu: "1.5"}` + "\nsteps: [{run: x}]", cpuIs(1500)},
		{"cpu as millicores", "runs-on: {cpu: 1m}\nsteps: [{run: x}]", cpuIs(1)},
		{"memory as int", "runs-on: {memory: 1048576}\nsteps: [{run: x}]", memIs(1 << 20)},
		{"memory decimal unit", "runs-on: {memory: 2G}\nsteps: [{run: x}]", memIs(2e9)},
		{"gpu zero", "runs-on: {gpu: 0}\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.RunsOn.GPU != 0 {
				t.Errorf("gpu = %d", j.RunsOn.GPU)
			}
		}},
		{"resources unset stay zero", "steps: [{run: x}]", func(t *testing.T, j *Job) {
			if !reflect.DeepEqual(j.RunsOn, Resources{}) {
				t.Errorf("runs-on = %+v", j.RunsOn)
			}
		}},
		{"retry bounds", "retry: 10\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.Retry != 10 {
				t.Errorf("retry = %d", j.Retry)
			}
		}},
		{"infra_retries set", "infra_retries: 0\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.InfraRetries == nil || *j.InfraRetries != 0 {
				t.Errorf("infra_retries = %v, want 0 (set)", j.InfraRetries)
			}
		}},
		{"infra_retries unset: the server's default", "steps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.InfraRetries != nil {
				t.Errorf("infra_retries = %d, want unset", *j.InfraRetries)
			}
		}},
		{"explicit priority 0 beats the pipeline's", "priority: 0\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.Priority != 0 {
				t.Errorf("priority = %d, want 0", j.Priority)
			}
		}},
		{"priority inherited", "steps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.Priority != 50 {
				t.Errorf("priority = %d, want the pipeline's 50", j.Priority)
			}
		}},
		{"name defaults to id", "steps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.Name != "j" {
				t.Errorf("name = %q", j.Name)
			}
		}},
		{"date-like name is text", "name: 2024-01-01\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.Name != "2024-01-01" {
				t.Errorf("name = %q", j.Name)
			}
		}},
		{"matrix of mixed scalars", "matrix: {v: [1, 2.5, true, x]}\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			want := []string{"1", "2.5", "true", "x"}
			if j.Matrix == nil || !reflect.DeepEqual(j.Matrix.Axes[0].Values, want) {
				t.Errorf("matrix = %+v", j.Matrix)
			}
		}},
		{"matrix of exactly 256", "matrix: {a: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16], b: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if j.Matrix == nil || len(j.Matrix.Axes) != 2 {
				t.Errorf("matrix = %+v", j.Matrix)
			}
		}},
		{"durations", "timeout: 250ms\nsteps: [{run: x, timeout: 2h}]", func(t *testing.T, j *Job) {
			if j.Timeout != 250*time.Millisecond || j.Steps[0].Timeout != 2*time.Hour {
				t.Errorf("timeouts = %v, %v", j.Timeout, j.Steps[0].Timeout)
			}
		}},
		{"step env", "steps: [{run: x, env: {A_1: b, _X: 0}}]", func(t *testing.T, j *Job) {
			if !reflect.DeepEqual(j.Steps[0].Env, map[string]string{"A_1": "b", "_X": "0"}) {
				t.Errorf("step env = %v", j.Steps[0].Env)
			}
		}},
		{"empty env map", "env: {}\nsteps: [{run: x}]", func(t *testing.T, j *Job) {
			if len(j.Env) != 0 {
				t.Errorf("env = %v", j.Env)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "name: v\npriority: 50\njobs:\n  a:\n    steps: [{run: x}]\n  j:\n" + indent(tt.job, "    ") + "\n"
			p := mustParse(t, src)
			tt.check(t, p.Jobs[1])
		})
	}
}

func condIs(c Condition) func(*testing.T, *Job) {
	return func(t *testing.T, j *Job) {
		t.Helper()
		if j.If != c {
			t.Errorf("if = %q, want %q", j.If, c)
		}
	}
}

func cpuIs(m int64) func(*testing.T, *Job) {
	return func(t *testing.T, j *Job) {
		t.Helper()
		if j.RunsOn.CPUMilli != m {
			t.Errorf("cpu = %d millicores, want %d", j.RunsOn.CPUMilli, m)
		}
	}
}

func memIs(b int64) func(*testing.T, *Job) {
	return func(t *testing.T, j *Job) {
		t.Helper()
		if j.RunsOn.MemoryBytes != b {
			t.Errorf("memory = %d bytes, want %d", j.RunsOn.MemoryBytes, b)
		}
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func TestParseYAMLFeatures(t *testing.T) {
	t.Run("anchors and aliases", func(t *testing.T) {
		p := mustParse(t, `
name: aliases
jobs:
  a:
    env: &common
      REGION: eu
    steps: &steps
      - run: make
  b:
    env: *common
    steps: *steps
`)
		if !reflect.DeepEqual(p.Jobs[1].Env, map[string]string{"REGION": "eu"}) ||
			!reflect.DeepEqual(p.Jobs[1].Steps, []Step{{Run: "make"}}) {
			t.Errorf("aliases not followed: %+v", p.Jobs[1])
		}
	})
	t.Run("CRLF line endings", func(t *testing.T) {
		p := mustParse(t, "name: crlf\r\njobs:\r\n  a:\r\n    steps:\r\n      - run: echo hi\r\n")
		if p.Jobs[0].Steps[0].Run != "echo hi" {
			t.Errorf("run = %q", p.Jobs[0].Steps[0].Run)
		}
	})
	t.Run("explicit document markers", func(t *testing.T) {
		mustParse(t, "---\nname: x\njobs: {a: {steps: [{run: x}]}}\n...\n")
	})
	t.Run("quoted keys", func(t *testing.T) {
		p := mustParse(t, `{"name": "json style", "jobs": {"a": {"steps": [{"run": "x"}]}}}`)
		if p.Name != "json style" {
			t.Errorf("name = %q", p.Name)
		}
	})
}

// wantErr is an expected error: position, field and a part of the message.
type wantErr struct {
	line, col int
	field     string
	msg       string
}

func TestParseErrors(t *testing.T) {
	const okJob = "  ok:\n    steps: [{run: x}]\n"
	tests := []struct {
		name string
		src  string
		want []wantErr
	}{
		{"empty file", "", []wantErr{{0, 0, "", "the file is empty"}}},
		{"whitespace only", "\n\n   \n", []wantErr{{0, 0, "", "the file is empty"}}},
		{"document marker only", "---", []wantErr{{0, 0, "", "the file is empty"}}},
		{"null document", "~\n", []wantErr{{1, 1, "", "must be a map with name and jobs, got null"}}},
		{"scalar document", "hello\n", []wantErr{{1, 1, "", "got a string"}}},
		{"syntax error", "name: x\njobs:\n  a: [\n", []wantErr{{3, 0, "", "invalid YAML: did not find expected node content"}}},
		{"tab indentation", "name: x\njobs:\n\ta: 1\n", []wantErr{{3, 0, "", "invalid YAML: found character that cannot start any token"}}},
		{"missing name and jobs", "priority: 1\n", []wantErr{
			{1, 1, "name", "is required"}, {1, 1, "jobs", "is required"}}},
		{"empty name", "name: ''\njobs:\n" + okJob, []wantErr{{1, 7, "name", "must not be empty"}}},
		{"jobs is a list", "name: x\njobs: [a, b]\n", []wantErr{{2, 7, "jobs", "must be a map of job ids to jobs, got a list"}}},
		{"jobs empty", "name: x\njobs: {}\n", []wantErr{{2, 7, "jobs", "must define at least one job"}}},
		{"jobs null", "name: x\njobs:\n", []wantErr{{2, 6, "jobs", "got null"}}},
		{"unknown top-level field", "name: x\nversion: 1\njobs:\n" + okJob, []wantErr{
			{2, 1, "version", `unknown field "version"; allowed fields: name, on, inputs, env, priority, concurrency, include, jobs`}}},
		{"unknown job field", "name: x\njobs:\n  a:\n    step: []\n    steps: [{run: x}]\n", []wantErr{
			{4, 5, "jobs.a.step", `unknown field "step" (did you mean "steps"?)`}}},
		{"unknown step field", "name: x\njobs:\n  a:\n    steps:\n      - run: x\n        with: {a: b}\n", []wantErr{
			{6, 9, "jobs.a.steps[0].with", `unknown field "with"; allowed fields: name, if, run, shell, working-directory, env, timeout, continue-on-error`}}},
		{"unknown runs-on field", "name: x\njobs:\n  a:\n    runs-on: {os: linux}\n    steps: [{run: x}]\n", []wantErr{
			{4, 15, "jobs.a.runs-on.os", "allowed fields: labels, cpu, memory, gpu"}}},
		{"duplicate top key", "name: x\nname: y\njobs:\n" + okJob, []wantErr{
			{2, 1, "name", `duplicate key "name" (first defined at line 1)`}}},
		{"duplicate env key", "name: x\nenv: {A: 1, A: 2}\njobs:\n" + okJob, []wantErr{
			{2, 13, "env.A", `duplicate key "A"`}}},
		{"non-scalar key", "name: x\n? [a]\n: 1\njobs:\n" + okJob, []wantErr{
			{2, 3, "", "keys must be names, got a list"}}},
		{"steps missing", "name: x\njobs:\n  a:\n    name: A\n", []wantErr{{4, 5, "jobs.a.steps", "is required"}}},
		{"steps empty", "name: x\njobs:\n  a:\n    steps: []\n", []wantErr{{4, 12, "jobs.a.steps", "must have at least one step"}}},
		{"step without run", "name: x\njobs:\n  a:\n    steps:\n      - name: n\n", []wantErr{
			{5, 9, "jobs.a.steps[0].run", "is required"}}},
		{"step run blank", "name: x\njobs:\n  a:\n    steps:\n      - run: ' '\n", []wantErr{
			{5, 14, "jobs.a.steps[0].run", "must not be empty"}}},
		{"step run not a string", "name: x\njobs:\n  a:\n    steps:\n      - run: 1\n", []wantErr{
			{5, 14, "jobs.a.steps[0].run", "must be a string, got an integer"}}},
		{"job not a map", "name: x\njobs:\n  a: [1]\n", []wantErr{{3, 6, "jobs.a", "must be a map with the job's steps, got a list"}}},
		{"bad job id", "name: x\njobs:\n  -a:\n    steps: [{run: x}]\n", []wantErr{{3, 3, "jobs.-a", `invalid job id "-a"`}}},
		{"needs unknown", "name: x\njobs:\n" + okJob + "  b:\n    needs: [ok, nope]\n    steps: [{run: x}]\n", []wantErr{
			{6, 17, "jobs.b.needs", `unknown job "nope"`}}},
		{"needs typo", "name: x\njobs:\n" + okJob + "  b:\n    needs: oj\n    steps: [{run: x}]\n", []wantErr{
			{6, 12, "jobs.b.needs", `unknown job "oj" (did you mean "ok"?)`}}},
		{"needs twice", "name: x\njobs:\n" + okJob + "  b:\n    needs: [ok, ok]\n    steps: [{run: x}]\n", []wantErr{
			{6, 17, "jobs.b.needs[1]", `job "ok" is needed twice`}}},
		{"needs a map", "name: x\njobs:\n  b:\n    needs: {a: 1}\n    steps: [{run: x}]\n", []wantErr{
			{4, 12, "jobs.b.needs", "must be a job id or a list of job ids, got a map"}}},
		{"self need", "name: x\njobs:\n  a:\n    needs: a\n    steps: [{run: x}]\n", []wantErr{
			{4, 12, "jobs.a.needs", "dependency cycle: a -> a"}}},
		{"two-job cycle", "name: x\njobs:\n  build:\n    needs: test\n    steps: [{run: x}]\n  test:\n    needs: build\n    steps: [{run: x}]\n", []wantErr{
			{7, 12, "jobs.test.needs", "dependency cycle: build -> test -> build"}}},
		{"two separate cycles", "name: x\njobs:\n  a: {needs: b, steps: [{run: x}]}\n  b: {needs: a, steps: [{run: x}]}\n  c: {needs: [c], steps: [{run: x}]}\n", []wantErr{
			{4, 14, "jobs.b.needs", "dependency cycle: a -> b -> a"},
			{5, 15, "jobs.c.needs", "dependency cycle: c -> c (each job needs the next)"}}},
		{"bad if", "name: x\njobs:\n  a:\n    if: succeeded()\n    steps: [{run: x}]\n", []wantErr{
			{4, 9, "jobs.a.if", `unknown function succeeded`}}},
		{"if is a map", "name: x\njobs:\n  a:\n    if: {a: 1}\n    steps: [{run: x}]\n", []wantErr{
			{4, 9, "jobs.a.if", `must be an expression such as success()`}}},
		{"unclosed if expression", "name: x\njobs:\n  a:\n    if: ${{ success()\n    steps: [{run: x}]\n", []wantErr{
			{4, 9, "jobs.a.if", "${{ is not closed by }}"}}},
		{"error inside an if", "name: x\njobs:\n  a:\n    if: ${{ success() && = }}\n    steps: [{run: x}]\n", []wantErr{
			{4, 26, "jobs.a.if", "unexpected character '=' (compare with ==)"}}},
		{"step if reads an unknown need", "name: x\njobs:\n  a:\n    steps: [{run: x, if: \"needs.b.result == 'failure'\"}]\n", []wantErr{
			{4, 33, "jobs.a.steps[0].if", `job "b" is not in the needs of job "a"`}}},
		{"status function outside if", "name: x\njobs:\n  a:\n    steps: [{run: 'echo ${{ failure() }}'}]\n", []wantErr{
			{4, 29, "jobs.a.steps[0].run", "failure() can only be used in if"}}},
		{"needs in a job name", "name: x\njobs:\n  b: {steps: [{run: x}]}\n  a:\n    needs: b\n    name: 'after ${{ needs.b.result }}'\n    steps: [{run: x}]\n", []wantErr{
			{6, 22, "jobs.a.name", "needs is not known when the run is made"}}},
		{"timeout without unit", "name: x\njobs:\n  a:\n    timeout: '30'\n    steps: [{run: x}]\n", []wantErr{
			{4, 14, "jobs.a.timeout", `invalid duration "30"`}}},
		{"timeout as number", "name: x\njobs:\n  a:\n    timeout: 30\n    steps: [{run: x}]\n", []wantErr{
			{4, 14, "jobs.a.timeout", "must be a duration such as 30s, 10m or 1h30m, got 30"}}},
		{"timeout zero", "name: x\njobs:\n  a:\n    timeout: 0s\n    steps: [{run: x}]\n", []wantErr{
			{4, 14, "jobs.a.timeout", "must be greater than zero"}}},
		{"step timeout negative", "name: x\njobs:\n  a:\n    steps: [{run: x, timeout: -1s}]\n", []wantErr{
			{4, 31, "jobs.a.steps[0].timeout", "must be greater than zero, got -1s"}}},
		{"retry too high", "name: x\njobs:\n  a:\n    retry: 11\n    steps: [{run: x}]\n", []wantErr{
			{4, 12, "jobs.a.retry", "must be an integer from 0 to 10, got 11"}}},
		{"retry negative", "name: x\njobs:\n  a:\n    retry: -1\n    steps: [{run: x}]\n", []wantErr{
			{4, 12, "jobs.a.retry", "got -1"}}},
		{"priority too high", "name: x\npriority: 101\njobs:\n" + okJob, []wantErr{
			{2, 11, "priority", "must be an integer from -100 to 100, got 101"}}},
		{"priority too low", "name: x\npriority: -101\njobs:\n" + okJob, []wantErr{
			{2, 11, "priority", "must be an integer from -100 to 100, got -101"}}},
		{"job priority too low", "name: x\njobs:\n  a:\n    priority: -101\n    steps: [{run: x}]\n", []wantErr{
			{4, 15, "jobs.a.priority", "must be an integer from -100 to 100, got -101"}}},
		{"job priority string", "name: x\njobs:\n  a:\n    priority: high\n    steps: [{run: x}]\n", []wantErr{
			{4, 15, "jobs.a.priority", `got "high"`}}},
		{"gpu too many", "name: x\njobs:\n  a:\n    runs-on: {gpu: 65}\n    steps: [{run: x}]\n", []wantErr{
			{4, 20, "jobs.a.runs-on.gpu", "must be an integer from 0 to 64, got 65"}}},
		{"cpu zero", "name: x\njobs:\n  a:\n    runs-on: {cpu: 0m}\n    steps: [{run: x}]\n", []wantErr{
			{4, 20, "jobs.a.runs-on.cpu", "must be greater than zero"}}},
		{"cpu negative number", "name: x\njobs:\n  a:\n    runs-on: {cpu: -2}\n    steps: [{run: x}]\n", []wantErr{
			{4, 20, "jobs.a.runs-on.cpu", "must be greater than zero"}}},
		{"cpu a list", "name: x\njobs:\n  a:\n    runs-on: {cpu: [1]}\n    steps: [{run: x}]\n", []wantErr{
			{4, 20, "jobs.a.runs-on.cpu", "got a list"}}},
		{"memory garbage", "name: x\njobs:\n  a:\n    runs-on: {memory: lots}\n    steps: [{run: x}]\n", []wantErr{
			{4, 23, "jobs.a.runs-on.memory", `invalid memory quantity "lots"`}}},
		{"memory zero", "name: x\njobs:\n  a:\n    runs-on: {memory: 0}\n    steps: [{run: x}]\n", []wantErr{
			{4, 23, "jobs.a.runs-on.memory", "must be greater than zero"}}},
		{"memory float", "name: x\njobs:\n  a:\n    runs-on: {memory: 1.5}\n    steps: [{run: x}]\n", []wantErr{
			{4, 23, "jobs.a.runs-on.memory", "got a number"}}},
		{"runs-on a string", "name: x\njobs:\n  a:\n    runs-on: linux\n    steps: [{run: x}]\n", []wantErr{
			{4, 14, "jobs.a.runs-on", "write `labels: [linux]` under runs-on"}}},
		{"empty label", "name: x\njobs:\n  a:\n    runs-on: {labels: [a, '']}\n    steps: [{run: x}]\n", []wantErr{
			{4, 27, "jobs.a.runs-on.labels[1]", "must not be empty"}}},
		{"env a list", "name: x\nenv: [A=1]\njobs:\n" + okJob, []wantErr{
			{2, 6, "env", "must be a map of variable names to values, got a list"}}},
		{"env bad name", "name: x\nenv: {A-B: 1}\njobs:\n" + okJob, []wantErr{
			{2, 7, "env.A-B", `invalid variable name "A-B"`}}},
		{"env name starting with digit", "name: x\njobs:\n  a:\n    steps: [{run: x, env: {9A: 1}}]\n", []wantErr{
			{4, 28, "jobs.a.steps[0].env.9A", `invalid variable name "9A"`}}},
		{"env reserved name", "name: x\njobs:\n  a:\n    env: {HODEI_JOB_KEY: x}\n    steps: [{run: x}]\n", []wantErr{
			{4, 11, "jobs.a.env.HODEI_JOB_KEY", "reserved for Hodei"}}},
		{"env value a map", "name: x\nenv: {A: {b: c}}\njobs:\n" + okJob, []wantErr{
			{2, 10, "env.A", "must be a string, number or boolean, got a map"}}},
		{"matrix empty axis", "name: x\njobs:\n  a:\n    matrix: {os: []}\n    steps: [{run: x}]\n", []wantErr{
			{4, 18, "jobs.a.matrix.os", "must list at least one value"}}},
		{"matrix axis not a list", "name: x\njobs:\n  a:\n    matrix: {os: linux}\n    steps: [{run: x}]\n", []wantErr{
			{4, 18, "jobs.a.matrix.os", "must be a list of values, got a string"}}},
		{"matrix too large", "name: x\njobs:\n  a:\n    matrix: {a: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17], b: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}\n    steps: [{run: x}]\n", []wantErr{
			{4, 13, "jobs.a.matrix", "expands into 272 combinations; at most 256 are allowed"}}},
		{"matrix duplicate value", "name: x\njobs:\n  a:\n    matrix: {v: [1, '1']}\n    steps: [{run: x}]\n", []wantErr{
			{4, 21, "jobs.a.matrix.v[1]", `duplicate value "1"`}}},
		{"matrix null value", "name: x\njobs:\n  a:\n    matrix: {v: [~]}\n    steps: [{run: x}]\n", []wantErr{
			{4, 18, "jobs.a.matrix.v[0]", "got null"}}},
		{"matrix key unknown", "name: x\njobs:\n  a:\n    matrix: {os: [l]}\n    steps: [{run: 'echo ${{ matrix.arch }}'}]\n", []wantErr{
			{5, 25, "jobs.a.steps[0].run", `unknown matrix key "arch" in ${{ matrix.arch }} (matrix keys: os)`}}},
		{"matrix key in plain job", "name: x\njobs:\n  a:\n    name: a ${{ matrix.os }}\n    steps: [{run: x}]\n", []wantErr{
			{4, 13, "jobs.a.name", "(the job has no matrix)"}}},
		{"matrix expression in step env", "name: x\njobs:\n  a:\n    matrix: {os: [l]}\n    steps: [{run: x, env: {A: '${{ matrix.o }}'}}]\n", []wantErr{
			{5, 32, "jobs.a.steps[0].env.A", `unknown matrix key "o"`}}},
		{"escaped expression falls back to the scalar's position", "name: x\njobs:\n  a:\n    steps: [{run: \"echo \\u0024{{ matrix.x }}\"}]\n", []wantErr{
			{4, 19, "jobs.a.steps[0].run", `unknown matrix key "x"`}}},
		{"expression in a folded block", "name: x\njobs:\n  a:\n    steps:\n      - run: >\n          echo a\n          echo ${{ matrix.y }}\n", []wantErr{
			{7, 16, "jobs.a.steps[0].run", `unknown matrix key "y"`}}},
		{"matrix expression in pipeline env", "name: x\nenv: {A: '${{ matrix.os }}'}\njobs:\n" + okJob, []wantErr{
			{2, 11, "env.A", "matrix expressions are only allowed inside jobs"}}},
		{"merge key of a number", "name: x\njobs:\n  a:\n    <<: 3\n    steps: [{run: x}]\n", []wantErr{
			{4, 9, "jobs.a", "a merge key (<<) takes a map or a list of maps"}}},
		{"merged field placed at its anchor", "name: x\nx-d: &d {retry: 11}\njobs:\n  a:\n    <<: *d\n    steps: [{run: x}]\n", []wantErr{
			{2, 17, "jobs.a.retry", "must be an integer from 0 to 10, got 11"}}},
		{"second document", "name: x\njobs:\n" + okJob + "---\nname: y\n", []wantErr{
			{6, 1, "", "found a second YAML document"}}},
		{"control character", "name: \"x\"\njobs: {}\x07\n", []wantErr{
			{2, 9, "", "invalid YAML: control characters are not allowed"}}},
		{"invalid UTF-8", "name: x\x80y\n", []wantErr{
			{1, 8, "", "invalid YAML: invalid"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := parseErrors(t, tt.src)
			if len(list) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(tt.want), list)
			}
			for i, w := range tt.want {
				e := list[i]
				if e.File != "ci.yaml" || e.Line != w.line || e.Col != w.col || e.Field != w.field || !strings.Contains(e.Msg, w.msg) {
					t.Errorf("error %d:\ngot  %d:%d field %q msg %q\nwant %d:%d field %q msg containing %q",
						i, e.Line, e.Col, e.Field, e.Msg, w.line, w.col, w.field, w.msg)
				}
			}
		})
	}
}

// TestParseCollectsErrors checks that problems in separate places are all
// reported in one pass, in file order.
func TestParseCollectsErrors(t *testing.T) {
	list := parseErrors(t, `
name: many
priority: 1000
jobs:
  b:
    needs: missing
    retry: 99
    steps:
      - name: no run
  a:
    if: sometimes
    steps:
      - run: x
        bogus: 1
`)
	var got []string
	for _, e := range list {
		got = append(got, e.Field)
	}
	want := []string{"priority", "jobs.b.needs", "jobs.b.retry", "jobs.b.steps[0].run", "jobs.a.if", "jobs.a.steps[0].bogus"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %q\nwant     %q", got, want)
	}
	for i := 1; i < len(list); i++ {
		if list[i].Line < list[i-1].Line {
			t.Errorf("errors not sorted by line: %v", list)
		}
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("name: g\njobs: {a: {steps: [{run: x}]}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := ParseFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if p.File != good || p.Name != "g" {
		t.Errorf("File, Name = %q, %q", p.File, p.Name)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: b\njobs: {a: {steps: []}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(bad)
	want := bad + ":2:19: jobs.a.steps: must have at least one step"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}

	_, err = ParseFile(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error = %v, want fs.ErrNotExist", err)
	}
	var list ErrorList
	if errors.As(err, &list) {
		t.Errorf("a read error is not a list of problems in the file")
	}
}

func TestParseReportsEachUnknownMatrixKeyOnce(t *testing.T) {
	list := parseErrors(t, `name: x
jobs:
  a:
    matrix: {os: [linux]}
    steps:
      - run: |
          echo ${{ matrix.arch }}
          echo ${{ matrix.os }} ${{ matrix.arch }}
          echo ${{ matrix.cpu }}
`)
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	want := []string{
		`ci.yaml:7:16: jobs.a.steps[0].run: unknown matrix key "arch" in ${{ matrix.arch }} (matrix keys: os)`,
		`ci.yaml:9:16: jobs.a.steps[0].run: unknown matrix key "cpu" in ${{ matrix.cpu }} (matrix keys: os)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestParseLocatesEncodingErrors(t *testing.T) {
	tests := []struct {
		src       string
		line, col int
	}{
		{"\ufeffname: x\njobs: {a: {steps: [{run: \"\x01\"}]}}\n", 2, 27},
		{"name: \ufffd ok\njobs:\n  a: x\xff\n", 3, 7},
		{"name: é\x00\n", 1, 8},
	}
	for _, tt := range tests {
		list := parseErrors(t, tt.src)
		if len(list) != 1 || list[0].Line != tt.line || list[0].Col != tt.col || !strings.HasPrefix(list[0].Msg, "invalid YAML: ") {
			t.Errorf("%q: got %v, want one YAML error at %d:%d", tt.src, list, tt.line, tt.col)
		}
	}
}
