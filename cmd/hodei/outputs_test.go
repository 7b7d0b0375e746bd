package main

import (
	"maps"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
)

// submitExample submits the pipeline file path with hodei submit to a real
// server with a local worker, follows its logs with hodei logs --follow
// until the run ends, and returns the run as submitted and the logs.
func submitExample(t *testing.T, path string) (wire.Run, string) {
	t.Helper()
	t.Setenv("HODEI_TOKEN", "")
	_, base := startServer(t, server.Options{NATSListen: "none", LocalWorkers: 1})
	t.Setenv("HODEI_SERVER", base)
	run := jsonOf[wire.Run](t, exitOK, "submit", path, "--json")
	code, logs, errOut := capture(t, "logs", run.ID, "--follow")
	if code != exitOK {
		t.Fatalf("logs --follow: exit %d: %s", code, errOut)
	}
	return run, logs
}

// TestOutputsEndToEnd submits examples/outputs.yaml to a real server with a
// local worker: the outputs the first job writes reach the job that needs
// it (its steps check them, through expressions and variables), decide
// the if of the one that does not run, and show in hodei runs RUN --json.
func TestOutputsEndToEnd(t *testing.T) {
	run, logs := submitExample(t, "../../examples/outputs.yaml")
	got := jsonOf[wire.Run](t, exitOK, "runs", run.ID, "--json")
	if got.State != state.RunSucceeded {
		t.Fatalf("run ended %s (%s); logs:\n%s", got.State, got.Error, logs)
	}
	jobs := map[string]wire.Job{}
	for _, j := range got.Jobs {
		jobs[j.Key] = j
	}
	want := map[string]string{"version": "1.4.2", "notes": "first line\nsecond line"}
	if o := jobs["version"].Outputs; !maps.Equal(o, want) {
		t.Errorf("outputs of version = %q, want %q", o, want)
	}
	if jobs["release"].State != state.JobSucceeded || jobs["unreleased"].State != state.JobSkipped {
		t.Errorf("release %s, unreleased %s; logs:\n%s", jobs["release"].State, jobs["unreleased"].State, logs)
	}
	if !strings.Contains(logs, "released 1.4.2") || !strings.Contains(logs, "Release 1.4.2") {
		t.Errorf("the release job's log does not show the version:\n%s", logs)
	}
	code, out, errOut := capture(t, "runs", run.ID)
	if want := `outputs of version: notes="first line\nsecond line" version="1.4.2"`; code != exitOK || !strings.Contains(out, want) {
		t.Errorf("hodei runs RUN: exit %d, want a line %q:\n%s%s", code, want, out, errOut)
	}
}

// TestSubmitSendsIncludes submits examples/include.yaml to a real server:
// hodei submit reads the files it includes and sends them with it, the run
// has the jobs of every file and succeeds, and the included files' outputs
// reach the job that needs them.
func TestSubmitSendsIncludes(t *testing.T) {
	run, logs := submitExample(t, "../../examples/include.yaml")
	got := jsonOf[wire.Run](t, exitOK, "runs", run.ID, "--json")
	var keys []string
	for _, j := range got.Jobs {
		keys = append(keys, j.Key)
	}
	if got.State != state.RunSucceeded || strings.Join(keys, ",") != "build,lint,test,package" {
		t.Fatalf("run %s with jobs %v; logs:\n%s", got.State, keys, logs)
	}
	if !strings.Contains(logs, "packaged app 2.1.0") {
		t.Errorf("the included package job did not read build's output:\n%s", logs)
	}
}
