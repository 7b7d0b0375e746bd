package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/store"
)

// TestRunsEscapesNamesOfOlderData: names stored before validation refused
// control characters (a window title, a screen clear, a right-to-left
// override) reach "hodei runs" and "hodei runs RUN" escaped and inert.
func TestRunsEscapesNamesOfOlderData(t *testing.T) {
	srv, base := startServer(t, server.Options{NATSListen: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const id = "0194d2a9f3c0000a1b2"
	now := time.Now().UTC()
	err := srv.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertRun(store.Run{ID: id, Pipeline: "deploy\x1b]0;owned\a\x1b[2J", File: "ci\u202Elmay.yaml", Tenant: "default",
			State: "failed", Error: "job \x1b[2Jx failed", CreatedAt: now, FinishedAt: now}); err != nil {
			return err
		}
		return tx.InsertJobs([]store.Job{{ID: id + "-1", RunID: id, Key: "build\u2066x\u2069", Name: "build", State: "failed", Spec: []byte("{}"), MaxAttempts: 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"runs"}, {"runs", id}} {
		code, out, errOut := capture(t, append(args, "--server", base)...)
		if code != exitOK {
			t.Fatalf("hodei %v: exit %d %s", args, code, errOut)
		}
		if i := strings.IndexFunc(out, func(r rune) bool {
			return r == 0x1b || r == 0x07 || r == 0x202e || r == 0x2066 || r == 0x2069
		}); i >= 0 {
			t.Errorf("hodei %v printed a control character at %d:\n%q", args, i, out)
		}
		if !strings.Contains(out, `deploy\x1b]0;owned\x07\x1b[2J`) {
			t.Errorf("hodei %v: the pipeline name is not shown escaped:\n%s", args, out)
		}
	}
	_, out, _ := capture(t, "runs", id, "--server", base)
	for _, want := range []string{`ci\u202elmay.yaml`, `build\u2066x\u2069`, `job \x1b[2Jx failed`} {
		if !strings.Contains(out, want) {
			t.Errorf("hodei runs RUN: %q not shown:\n%s", want, out)
		}
	}
}
