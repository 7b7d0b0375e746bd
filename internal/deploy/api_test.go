//go:build docker || kubernetes

package deploy_test

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
)

// freeAddr returns a loopback address whose port nothing listens on now,
// drawn below the ephemeral range so that the kernel does not hand it to an
// outgoing connection meanwhile.
func freeAddr(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return l.Addr().String()
	}
	t.Fatal("no free port below the ephemeral range after 100 draws")
	return ""
}

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
