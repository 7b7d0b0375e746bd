package server

import (
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// cutter forwards TCP connections from its listener to addr until it is
// cut: then it closes what it carries and every new connection at once, as
// a partition does.
type cutter struct {
	l    net.Listener
	addr string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
}

func newCutter(t *testing.T, addr string) *cutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, addr: addr, conns: map[net.Conn]bool{}}
	go c.serve()
	t.Cleanup(func() { l.Close(); c.set(true) })
	return c
}

func (c *cutter) url() string { return "nats://" + c.l.Addr().String() }

func (c *cutter) serve() {
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		go func() {
			out, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
			if err != nil || !c.track(in, out) {
				in.Close()
				if out != nil {
					out.Close()
				}
				return
			}
			go func() { _, _ = io.Copy(out, in); in.Close(); out.Close() }()
			_, _ = io.Copy(in, out)
			in.Close()
			out.Close()
		}()
	}
}

func (c *cutter) track(cs ...net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return false
	}
	for _, x := range cs {
		c.conns[x] = true
	}
	return true
}

func (c *cutter) set(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for x := range c.conns {
			x.Close()
		}
		clear(c.conns)
	}
}

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
	cut := newCutter(t, host)
	db := pgtest.DB(t)
	a := startReplica(t, db, cut.url(), "replica-a", 0)
	waitLeads(t, a, true)
	b := startReplica(t, db, emb.ClientURL(), "replica-b", 0)

	cut.set(true)
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

	cut.set(false)
	// A poll: the connection's return is its client's, in its own time.
	deadline := time.Now().Add(30 * time.Second)
	for a.nc.Status() != nats.CONNECTED {
		if time.Now().After(deadline) {
			t.Fatal("the first server's NATS connection not back 30s after the mend")
		}
		time.Sleep(20 * time.Millisecond) // a poll of the client's state
	}
	if a.rep.leads.Load() || !b.rep.leads.Load() {
		t.Fatalf("after the mend: a leads %v, b leads %v; want b only", a.rep.leads.Load(), b.rep.leads.Load())
	}
}
