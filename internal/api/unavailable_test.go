package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/store"
)

// TestUnavailableSaysRetryAfter: each error that says the server cannot
// take a request now, however wrapped (a follower's forward, a store
// behind a failing database), is a 503 with Retry-After, which clients and
// load balancers take as "try again shortly"; any other error is left to
// the caller.
func TestUnavailableSaysRetryAfter(t *testing.T) {
	for _, e := range []error{
		orchestrator.ErrBusy, orchestrator.ErrStopped, orchestrator.ErrNotLeader,
		store.ErrUnavailable, context.DeadlineExceeded,
	} {
		w := httptest.NewRecorder()
		if !unavailable(w, fmt.Errorf("submit: %w", e)) {
			t.Errorf("%v: not taken for unavailable", e)
			continue
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Errorf("%v: %d, Retry-After %q; want 503 with Retry-After", e, w.Code, w.Header().Get("Retry-After"))
		}
	}
	if w := httptest.NewRecorder(); unavailable(w, fmt.Errorf("submit: %w", store.ErrConflict)) {
		t.Errorf("a conflict taken for unavailable: %d", w.Code)
	}
}
