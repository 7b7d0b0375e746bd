package orchestrator

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
)

// Stop cuts short the seals of secrets under way and returns only once
// their goroutines have ended: none outlives the orchestrator.
func TestStopWaitsForSecretSeals(t *testing.T) {
	sealing := make(chan struct{})
	var ended atomic.Bool
	h := newHarness(t, Config{Seal: func(ctx context.Context, _, _ string, _ []string, d bus.Dispatch) bus.Dispatch {
		close(sealing)
		<-ctx.Done() // a secrets backend that does not answer
		ended.Store(true)
		d.SecretsError = ctx.Err().Error()
		return d
	}})
	h.worker("w1")
	h.submit(`name: sealed
jobs:
  a:
    secrets: [TOKEN]
    steps: [{run: "true"}]
`)
	select {
	case <-sealing:
	case <-time.After(10 * time.Second):
		t.Fatal("the assignment was never sealed")
	}
	h.o.Stop()
	if !ended.Load() {
		t.Fatal("Stop returned while a seal was under way")
	}
}

// The first answer given to a request stands: a refusal given by its
// handler is not replaced by the failure of its batch's commit.
func TestFirstAnswerStands(t *testing.T) {
	refused, failed := errors.New("refused"), errors.New("store: failed")
	a := newAnswer()
	a.give(refused)
	a.give(failed)
	select {
	case <-a.done:
	default:
		t.Fatal("an answer given, and done not closed")
	}
	if a.err != refused {
		t.Fatalf("answer %v, want %v", a.err, refused)
	}
}
