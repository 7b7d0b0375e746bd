package main

import (
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// hodei runs RUN lists the attempts of jobs that had more than one, or whose
// attempt was lost, with how each ended and why.
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
	printRun(&b, run)
	out := b.String()
	_, attempts, ok := strings.Cut(out, "ATTEMPT ")
	if !ok {
		t.Fatalf("no attempts table:\n%s", out)
	}
	for _, want := range []string{"lost: worker restarted", "w2", "succeeded"} {
		if !strings.Contains(attempts, want) {
			t.Errorf("attempts table lacks %q:\n%s", want, attempts)
		}
	}
	// Jobs with one attempt that ended by itself are in the jobs table only.
	if strings.Contains(attempts, "lint") || strings.Contains(attempts, "exit 1") {
		t.Errorf("attempts table lists single-attempt jobs:\n%s", attempts)
	}
}
