package pipeline

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// runLocally executes specs in order the way the documentation describes a
// run: each job in its own empty workspace, each step with sh -e, env
// layered pipeline < job < step, and `if` deciding from the outcomes of the
// needs. It returns each job's outcome and output.
func runLocally(t *testing.T, specs []JobSpec) (map[string]string, map[string]string) {
	t.Helper()
	outcome := make(map[string]string)
	output := make(map[string]string)
	for _, s := range specs {
		succeeded, failed := 0, 0
		for _, n := range s.Needs {
			switch outcome[n] {
			case "succeeded":
				succeeded++
			case "failed":
				failed++
			}
		}
		run := false
		switch s.If {
		case Success:
			run = succeeded == len(s.Needs)
		case Failure:
			run = failed > 0
		case Always:
			run = true
		}
		if !run {
			outcome[s.Key] = "skipped"
			continue
		}
		ws := t.TempDir()
		base := []string{
			"PATH=" + os.Getenv("PATH"), "CI=true", "HODEI_RUN_ID=local-run",
			"HODEI_JOB_KEY=" + s.Key, "HODEI_ATTEMPT=1", "HODEI_WORKSPACE=" + ws,
		}
		for k, v := range s.Env {
			base = append(base, k+"="+v)
		}
		outcome[s.Key] = "succeeded"
		var out strings.Builder
		for _, st := range s.Steps {
			env := append([]string(nil), base...)
			for k, v := range st.Env {
				env = append(env, k+"="+v)
			}
			cmd := exec.Command("sh", "-e", "-c", st.Run)
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = ws, env, &out, &out
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(&out, "step failed: %v\n", err)
				outcome[s.Key] = "failed"
				break
			}
		}
		output[s.Key] = out.String()
	}
	return outcome, output
}

func runExample(t *testing.T, name string) (map[string]string, map[string]string) {
	t.Helper()
	p, err := ParseFile(filepath.Join("../../examples", name))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	return runLocally(t, specs)
}

func TestExampleHelloRuns(t *testing.T) {
	outcome, output := runExample(t, "hello.yaml")
	if !reflect.DeepEqual(outcome, map[string]string{"hello": "succeeded"}) {
		t.Errorf("outcomes = %v\n%v", outcome, output)
	}
	if !strings.Contains(output["hello"], "Hello from Hodei, job hello") {
		t.Errorf("output = %q", output["hello"])
	}
}

func TestExampleCIRuns(t *testing.T) {
	outcome, output := runExample(t, "ci.yaml")
	want := map[string]string{
		"checkout": "succeeded", "lint": "succeeded",
		"test (unit, 1)": "succeeded", "test (unit, 2)": "succeeded",
		"test (integration, 1)": "succeeded", "test (integration, 2)": "succeeded",
		"package": "succeeded", "report": "succeeded",
	}
	if !reflect.DeepEqual(outcome, want) {
		t.Fatalf("outcomes = %v\noutput: %v", outcome, output)
	}
	for shard, sum := range map[int]int{1: 15, 2: 30} {
		for _, suite := range []string{"unit", "integration"} {
			key := "test (" + suite + ", " + strconv.Itoa(shard) + ")"
			line := fmt.Sprintf("%s shard %d: 5 passed (checksum %d)", suite, shard, sum)
			if !strings.Contains(output[key], line) {
				t.Errorf("%s: output lacks %q:\n%s", key, line, output[key])
			}
		}
	}
	if !strings.Contains(output["package"], "manifest ok") {
		t.Errorf("package output:\n%s", output["package"])
	}
}

func TestExampleFailingRuns(t *testing.T) {
	outcome, output := runExample(t, "failing.yaml")
	want := map[string]string{"build": "succeeded", "test": "failed", "deploy": "skipped", "notify": "succeeded"}
	if !reflect.DeepEqual(outcome, want) {
		t.Fatalf("outcomes = %v, want %v\noutput: %v", outcome, want, output)
	}
	if strings.Contains(output["test"], "this step does not run") {
		t.Errorf("the step after the failing one ran:\n%s", output["test"])
	}
}
