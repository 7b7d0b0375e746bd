package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/schema"
)

// leaderLockKey is the key of the session advisory lock that the leader of
// the servers sharing a database holds ("hodei-leader").
const leaderLockKey = 0x686f6465692d6c

// fenceSQL begins every batch sent with an epoch (see Update).
const fenceSQL = "SELECT hodei_fence($1)"

// fencedCode is the SQLSTATE that hodei_fence raises.
const fencedCode = "HF001"

// Lease is the leadership of one replica: the advisory lock held on a
// connection of its own, and the epoch the replica bumped when it took it.
// The lock lasts as long as that connection: Lost is closed once the
// connection fails a check (the database restarted, the network broke),
// after which another replica can take the lock and bump the epoch.
type Lease struct {
	Epoch int64
	conn  *pgx.Conn
	lost  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	err   error // the failed check that closed lost; read after lost
}

// Lost is closed when the lease is no longer held.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Err is the failed check of the connection that ended the lease, once
// Lost is closed (nil if it was released).
func (l *Lease) Err() error {
	select {
	case <-l.lost:
		return l.err
	default:
		return nil
	}
}

// Release gives the lock back (the epoch stays: the next leader bumps it).
func (l *Lease) Release() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// Campaign waits until this replica holds the leader lock, then bumps the
// epoch and records id and api as the leader. It tries again every retry
// (1s when zero) until ctx ends. The lease checks its connection every
// retry as well.
func (s *Store) Campaign(ctx context.Context, id, api string, retry time.Duration) (*Lease, error) {
	if retry <= 0 {
		retry = time.Second
	}
	for {
		// An error (the database away) is tried again like a lock held.
		if l, err := s.tryLead(ctx, id, api); err == nil && l != nil {
			go l.watch(retry)
			return l, nil
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// tryLead takes the lock if it is free: nil, nil when another holds it.
func (s *Store) tryLead(ctx context.Context, id, api string) (*Lease, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("postgres: leader connection: %w", storeErr(err))
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(leaderLockKey)).Scan(&got); err != nil || !got {
		_ = conn.Close(context.Background())
		if err != nil {
			return nil, fmt.Errorf("postgres: leader lock: %w", storeErr(err))
		}
		return nil, nil
	}
	var epoch int64
	err = conn.QueryRow(ctx, "UPDATE leadership SET epoch = epoch + 1, leader = $1, api = $2, since = $3 WHERE id = 1 RETURNING epoch",
		id, api, schema.EncTime(time.Now())).Scan(&epoch)
	if err != nil {
		_ = conn.Close(context.Background()) // the lock goes with the session
		return nil, fmt.Errorf("postgres: bump epoch: %w", storeErr(err))
	}
	return &Lease{Epoch: epoch, conn: conn, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// leaseCheckTimeout is how long a check of the lease's connection may take.
const leaseCheckTimeout = 10 * time.Second

// watch checks the lease's connection every period until Release, and
// closes lost at the first failure.
func (l *Lease) watch(period time.Duration) {
	defer close(l.done)
	defer func() { _ = l.conn.Close(context.Background()) }()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			close(l.lost)
			return
		case <-t.C:
		}
		// A slow answer is no lost lock: a timeout ends the session (and
		// with it the lock), so it is long enough for a loaded database
		// or machine (a leader that stepped down on a 2 s ping flapped
		// under load, TestChaosHA); a dead connection fails at once.
		ctx, cancel := context.WithTimeout(context.Background(), max(period, leaseCheckTimeout))
		start := time.Now()
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			l.err = fmt.Errorf("check of the leader connection after %s: %w", time.Since(start).Round(time.Millisecond), err)
			close(l.lost)
			return
		}
	}
}

// Leader returns who leads, as the leadership table says.
func (s *Store) Leader(ctx context.Context) (store.Leader, error) {
	var l store.Leader
	var since int64
	err := s.pool.QueryRow(ctx, "SELECT leader, api, epoch, since FROM leadership WHERE id = 1").Scan(&l.ID, &l.API, &l.Epoch, &since)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Leader{}, nil
	}
	if err != nil {
		return store.Leader{}, fmt.Errorf("postgres: leader: %w", storeErr(err))
	}
	l.Since = schema.DecTime(since)
	return l, nil
}
