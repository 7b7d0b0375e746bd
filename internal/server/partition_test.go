package server

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/partitiontest"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// TestPartitionedLeaderStepsDown: two servers on one PostgreSQL and one
// NATS; the leader's NATS connection goes through a forwarder that the
// test cuts. The leader, which still holds the lock in PostgreSQL, steps
// down once its connection has been away for natsAwayLimit, and the other
// server, which reaches NATS, leads. Mended, the first comes back as a
// follower: it does not take the lock while it was away, nor after.
func TestPartitionedLeaderStepsDown(t *testing.T) {
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	host := emb.ClientURL()[len("nats://"):]
	cut := partitiontest.To(t, host)
	db := pgtest.DB(t)
	a := startReplica(t, db, "nats://"+cut.Addr(), "replica-a", 0)
	waitLeads(t, a, true)
	b := startReplica(t, db, emb.ClientURL(), "replica-b", 0)

	cut.SetCut(true)
	cutAt := time.Now()
	waitLeads(t, b, true)
	took := time.Since(cutAt)
	if a.rep.leads.Load() {
		t.Fatal("both servers lead")
	}
	if took < natsAwayLimit {
		t.Errorf("the other server led %s after the cut; the leader steps down only after %s away", took, natsAwayLimit)
	}
	t.Logf("the other server led %.1fs after the leader's NATS connection was cut", took.Seconds())

	// The connection's return is its client's, in its own time: wait for
	// the client to say it is connected again.
	back := a.nc.StatusChanged(nats.CONNECTED)
	defer a.nc.RemoveStatusListener(back)
	cut.SetCut(false)
	if a.nc.Status() != nats.CONNECTED {
		select {
		case <-back:
		case <-time.After(30 * time.Second):
			t.Fatal("the first server's NATS connection not back 30s after the mend")
		}
	}
	if a.rep.leads.Load() || !b.rep.leads.Load() {
		t.Fatalf("after the mend: a leads %v, b leads %v; want b only", a.rep.leads.Load(), b.rep.leads.Load())
	}
}
