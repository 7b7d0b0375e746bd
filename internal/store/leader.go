package store

import (
	"context"
	"errors"
	"time"
)

// ErrFenced is returned by Update when the transaction carried an epoch
// (WithEpoch) that is no longer the current one: a newer leader holds the
// store, and the caller must stop writing (see docs/architecture.md,
// "Several servers").
var ErrFenced = errors.New("fenced: a newer leader holds the store")

type epochKey struct{}

// WithEpoch returns a context whose Update transactions commit only while
// epoch is the store's current leadership epoch. A store that serves a
// single server (SQLite) ignores it.
func WithEpoch(ctx context.Context, epoch int64) context.Context {
	return context.WithValue(ctx, epochKey{}, epoch)
}

// EpochOf returns the epoch WithEpoch put in ctx, if any.
func EpochOf(ctx context.Context) (int64, bool) {
	e, ok := ctx.Value(epochKey{}).(int64)
	return e, ok
}

// RunKey is an idempotency key of a submission: within its tenant, the key
// names the run the first submission with it made.
type RunKey struct {
	Tenant    string
	Key       string
	RunID     string
	CreatedAt time.Time
}

// Leader is who leads the servers sharing a store, as the store records it.
type Leader struct {
	ID    string // the replica's id ("" when none has led yet)
	API   string // the replica's API address, as it announced it
	Epoch int64
	Since time.Time
}
