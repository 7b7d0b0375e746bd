package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// TestDeposedLeaderIsFenced: two servers on one database. The first takes
// the leader lock (epoch 1) and writes; while it holds the lock the second
// cannot lead. Once the first lets the lock go, the second takes it (epoch
// 2): a batch the first sends with its old epoch is refused with
// store.ErrFenced and none of it is kept, and the second's batches commit.
func TestDeposedLeaderIsFenced(t *testing.T) {
	ctx := context.Background()
	a, b := twoStores(t)

	la, err := a.Campaign(ctx, "replica-a", "127.0.0.1:1", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if la.Epoch != 1 {
		t.Fatalf("first leader's epoch = %d, want 1", la.Epoch)
	}
	ctxA := store.WithEpoch(ctx, la.Epoch)
	if err := a.Update(ctxA, func(tx store.Tx) error { return tx.InsertRun(testRun("run-a1", state.RunQueued)) }); err != nil {
		t.Fatalf("the leader's write: %v", err)
	}
	if l, err := b.Leader(ctx); err != nil || l.ID != "replica-a" || l.Epoch != 1 || l.API != "127.0.0.1:1" {
		t.Fatalf("Leader() = %+v, %v; want replica-a at epoch 1", l, err)
	}

	// While a holds the lock, b campaigns in vain.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := b.Campaign(short, "replica-b", "127.0.0.1:2", 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign while another leads: got %v, want the context's deadline", err)
	}
	cancel()

	la.Release()
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost not closed after Release")
	}
	lb, err := b.Campaign(ctx, "replica-b", "127.0.0.1:2", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release()
	if lb.Epoch != 2 {
		t.Fatalf("second leader's epoch = %d, want 2", lb.Epoch)
	}

	// The deposed leader's batch: refused, nothing kept.
	err = a.Update(ctxA, func(tx store.Tx) error {
		if err := tx.InsertRun(testRun("run-a2", state.RunQueued)); err != nil {
			return err
		}
		r := testRun("run-a1", state.RunCanceled)
		return tx.UpdateRun(r)
	})
	if !errors.Is(err, store.ErrFenced) {
		t.Fatalf("deposed leader's write: got %v, want ErrFenced", err)
	}
	if _, err := a.GetRun(ctx, "run-a2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("run of the fenced batch: got %v, want ErrNotFound", err)
	}
	if r, err := a.GetRun(ctx, "run-a1"); err != nil || r.State != state.RunQueued {
		t.Errorf("run-a1 after the fenced batch = %v, %v; want it queued as before", r.State, err)
	}

	if err := b.Update(store.WithEpoch(ctx, lb.Epoch), func(tx store.Tx) error {
		return tx.InsertRun(testRun("run-b1", state.RunQueued))
	}); err != nil {
		t.Fatalf("the new leader's write: %v", err)
	}
	if l, err := a.Leader(ctx); err != nil || l.ID != "replica-b" || l.Epoch != 2 {
		t.Fatalf("Leader() = %+v, %v; want replica-b at epoch 2", l, err)
	}
}

// TestLeaseLostWithItsConnection: when the leader's connection dies (here
// the database ends its session), Lost closes and another server can take
// the lock.
func TestLeaseLostWithItsConnection(t *testing.T) {
	ctx := context.Background()
	a, b := twoStores(t)
	la, err := a.Campaign(ctx, "replica-a", "", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Release()
	pid := la.conn.PgConn().PID()
	if _, err := b.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("Lost not closed 30s after the leader's session ended")
	}
	if la.Err() == nil {
		t.Fatal("lease lost without the error of its check")
	}
	lb, err := b.Campaign(ctx, "replica-b", "", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release()
	if lb.Epoch != la.Epoch+1 {
		t.Fatalf("epoch after the loss = %d, want %d", lb.Epoch, la.Epoch+1)
	}
}

// TestLeaseSurvivesASlowAnswer: a check of the leader's connection that is
// answered late (3 s here, as on a loaded machine or database) keeps the
// lease: a check that timed out would end the session and the lock with it,
// and the leader stepped down when its check gave up after 2 s. The
// connection goes through a proxy of the test that holds each answer of
// the database 3 s while told to.
func TestLeaseSurvivesASlowAnswer(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.DB(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var slow atomic.Bool
	var held atomic.Int64 // answers held while slow
	target := u.Host
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { _, _ = io.Copy(s, c); s.Close() }()
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && slow.Load() {
						time.Sleep(3 * time.Second) // the late answer is the fault under test
						held.Add(1)
					}
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	u.Host = l.Addr().String()
	a := mustOpen(t, u.String())
	defer a.Close()
	la, err := a.Campaign(ctx, "replica-a", "", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Release()
	slow.Store(true)
	// Two checks answered late: polled, the proxy counts them.
	deadline := time.Now().Add(time.Minute)
	for held.Load() < 2 {
		select {
		case <-la.Lost():
			t.Fatalf("lease lost on a slow answer: %v", la.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no answer held by the proxy in a minute")
		}
	}
	slow.Store(false)
	select {
	case <-la.Lost():
		t.Fatalf("lease lost on a slow answer: %v", la.Err())
	default:
	}
}
