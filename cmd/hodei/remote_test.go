package main

import (
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// hodei runs RUN lists every attempt, with how each ended and why.
func TestPrintRunListsAttempts(t *testing.T) {
	zero, one := 0, 1
	run := wire.Run{ID: "r1", Pipeline: "p", State: "succeeded", Jobs: []wire.Job{
		{Key: "build", State: "succeeded", Attempt: 2, InfraLost: 1, Attempts: []wire.Attempt{
			{N: 1, Worker: "w1", State: "lost", ExitCode: nil, Reason: "lost: worker restarted"},
			{N: 2, Worker: "w2", State: "succeeded", ExitCode: &zero, Reason: "succeeded"},
		}},
		{Key: "lint", State: "succeeded", Attempt: 1, Attempts: []wire.Attempt{
			{N: 1, Worker: "w1", State: "succeeded", ExitCode: &zero, Reason: "succeeded"},
		}},
		{Key: "test", State: "failed", Attempt: 1, Attempts: []wire.Attempt{
			{N: 1, Worker: "w2", State: "failed", ExitCode: &one, Reason: "exit 1"},
		}},
	}}
	var b strings.Builder
	printRun(&b, run, run.Jobs)
	out := b.String()
	_, attempts, ok := strings.Cut(out, "ATTEMPT ")
	if !ok {
		t.Fatalf("no attempts table:\n%s", out)
	}
	for _, want := range []string{"lost: worker restarted", "w2", "succeeded", "lint", "exit 1"} {
		if !strings.Contains(attempts, want) {
			t.Errorf("attempts table lacks %q:\n%s", want, attempts)
		}
	}
	for _, line := range strings.Split(attempts, "\n") {
		if strings.HasPrefix(line, "build") && strings.Contains(line, " 1 ") && !strings.Contains(line, "lost: worker restarted") {
			t.Errorf("build's lost attempt does not say why: %q", line)
		}
	}
}

// hodei runs RUN shows the inputs the run was made with.
func TestPrintRunShowsInputs(t *testing.T) {
	run := wire.Run{ID: "r1", Pipeline: "deploy", State: "succeeded", Inputs: map[string]string{"env": "prod", "dry_run": "false"}}
	var b strings.Builder
	printRun(&b, run, nil)
	if !strings.Contains(b.String(), "inputs    dry_run=false env=prod\n") {
		t.Errorf("no inputs line:\n%s", b.String())
	}
}

// hodei runs RUN of a re-run names the run it re-runs and, for each
// carried job, the attempt it was carried from.
func TestPrintRunShowsRerun(t *testing.T) {
	run := wire.Run{ID: "r2", Pipeline: "p", State: "succeeded", RerunOf: "r1", FailedOnly: true, Jobs: []wire.Job{
		{Key: "build", State: "succeeded", Carried: &wire.Carried{RunID: "r1", JobID: "r1-1", Attempt: 2}},
		{Key: "test", State: "succeeded", Attempt: 1},
	}}
	var b strings.Builder
	printRun(&b, run, nil)
	out := b.String()
	if !strings.Contains(out, "rerun of  r1 (failed jobs and their dependents)\n") {
		t.Errorf("no rerun line:\n%s", out)
	}
	if !strings.Contains(out, "carried from run r1, attempt 2 of r1-1") {
		t.Errorf("build is not shown carried:\n%s", out)
	}
	if strings.Count(out, "carried from") != 1 {
		t.Errorf("a job that ran again is shown carried:\n%s", out)
	}
}
