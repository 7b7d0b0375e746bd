package api_test

import (
	"net/http"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// TestStoreReadFailureSaysRetryAfter: a read the store cannot answer (here
// its database closed under the server, as while PostgreSQL restarts) is
// a 503 with Retry-After, which clients and load balancers take as "try
// again shortly", not a failure of the request.
func TestStoreReadFailureSaysRetryAfter(t *testing.T) {
	e := start(t)
	if err := e.srv.Store.Close(); err != nil {
		t.Fatal(err)
	}
	resp, body := e.do(t, http.MethodGet, "/api/v1/runs/1a25254af6a003fdb5f", "", nil)
	wantError(t, resp, body, http.StatusServiceUnavailable, wire.CodeUnavailable)
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Errorf("503 of a failed store read without Retry-After (body %s)", body)
	}
}

// TestStoppedOrchestratorSaysRetryAfter: a submission that reaches a server
// whose orchestrator has stopped (a leader stepping down) is a 503 with
// Retry-After: another server takes it shortly.
func TestStoppedOrchestratorSaysRetryAfter(t *testing.T) {
	e := start(t)
	e.srv.Orch.Stop()
	resp, body := e.do(t, "POST", "/api/v1/runs?file=q.yaml", "application/yaml", []byte("name: q\njobs:\n  a:\n    steps: [{run: 'true'}]\n"))
	wantError(t, resp, body, http.StatusServiceUnavailable, wire.CodeUnavailable)
	if ra := resp.Header.Get("Retry-After"); ra == "" {
		t.Errorf("503 of a stopped orchestrator without Retry-After (body %s)", body)
	}
}
