//go:build docker || kubernetes

package deploy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/porttest"
)

// freeAddr is porttest.FreeAddr.
func freeAddr(t *testing.T) string { t.Helper(); return porttest.FreeAddr(t) }

// waitFor polls cond every 200 ms until it holds or timeout passes: the
// tests wait on processes outside them (containers, pods), which tell
// nothing when they change.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond) // a poll of outside processes (API server, kubelet, containers)
	}
}

// adminToken finds the local admin token in a server's output: the line
// after "the local admin token".
func adminToken(out string) string {
	_, after, ok := strings.Cut(out, "the local admin token")
	if !ok {
		return ""
	}
	lines := strings.Split(after, "\n")
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// runPipeline submits yaml to the server at base with token, waits until
// the run is final and returns it with the output of all its jobs.
func runPipeline(t *testing.T, base, token, yaml string) (client.Run, string) {
	t.Helper()
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	run, err := c.Submit(ctx, "deploy.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitFor(t, 150*time.Second, "run "+run.ID+" to end", func() bool {
		r, err := c.GetRun(ctx, run.ID)
		if err == nil {
			run = r
		}
		return err == nil && run.State.Final()
	})
	var out strings.Builder
	if err := c.Logs(ctx, run.ID, "", client.LogsOptions{}, &out); err != nil {
		t.Fatalf("logs of run %s: %v", run.ID, err)
	}
	return run, out.String()
}

// mustClient is a client of the API at base with token.
func mustClient(t *testing.T, base, token string) *client.Client {
	t.Helper()
	c, err := client.New(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}
