package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// testRunKeys: an idempotency key names the run it was stored with, within
// its tenant; a second run with the same key in the tenant is refused with
// nothing of its batch kept; the same key in another tenant is another key.
func testRunKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.RunByKey(ctx, "acme", "k1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RunByKey of an unknown key: got %v, want ErrNotFound", err)
	}
	first := newRun(runID(1), state.RunQueued, "acme")
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(first); err != nil {
			return err
		}
		return tx.InsertRunKey(store.RunKey{Tenant: "acme", Key: "k1", RunID: first.ID, CreatedAt: at(1)})
	})
	got, err := s.RunByKey(ctx, "acme", "k1")
	if err != nil || got != first.ID {
		t.Fatalf("RunByKey(acme, k1) = %q, %v; want %q", got, err, first.ID)
	}

	second := newRun(runID(2), state.RunQueued, "acme")
	err = s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertRun(second); err != nil {
			return err
		}
		return tx.InsertRunKey(store.RunKey{Tenant: "acme", Key: "k1", RunID: second.ID, CreatedAt: at(2)})
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second run with key k1 in tenant acme: got %v, want ErrConflict", err)
	}
	if _, err := s.GetRun(ctx, second.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the run of the refused batch: got %v, want ErrNotFound (nothing of the batch kept)", err)
	}
	if got, _ := s.RunByKey(ctx, "acme", "k1"); got != first.ID {
		t.Errorf("RunByKey(acme, k1) after the refused duplicate = %q, want %q", got, first.ID)
	}

	other := newRun(runID(3), state.RunQueued, "globex")
	Update(t, s, func(tx store.Tx) error {
		if err := tx.InsertRun(other); err != nil {
			return err
		}
		return tx.InsertRunKey(store.RunKey{Tenant: "globex", Key: "k1", RunID: other.ID, CreatedAt: at(3)})
	})
	if got, _ := s.RunByKey(ctx, "globex", "k1"); got != other.ID {
		t.Errorf("RunByKey(globex, k1) = %q, want %q", got, other.ID)
	}
	if got, _ := s.RunByKey(ctx, "acme", "k1"); got != first.ID {
		t.Errorf("RunByKey(acme, k1) after globex took k1 = %q, want %q", got, first.ID)
	}
}

// testEpochOnSingleServer: a store with no leader elected takes the writes
// of a context without an epoch, and of one with epoch 0 (the epoch before
// any leader): a single server (SQLite, or PostgreSQL with one server)
// never fences itself. Fencing by a newer epoch is tested in
// internal/store/postgres (TestDeposedLeaderIsFenced).
func testEpochOnSingleServer(t *testing.T, s store.Store) {
	ctx := context.Background()
	Update(t, s, func(tx store.Tx) error { return tx.InsertRun(newRun(runID(1), state.RunQueued, "acme")) })
	if err := s.Update(store.WithEpoch(ctx, 0), func(tx store.Tx) error {
		return tx.InsertRun(newRun(runID(2), state.RunQueued, "acme"))
	}); err != nil {
		t.Fatalf("Update with epoch 0 before any leader: %v", err)
	}
	if _, err := s.GetRun(ctx, runID(2)); err != nil {
		t.Fatalf("the run written with epoch 0: %v", err)
	}
}
