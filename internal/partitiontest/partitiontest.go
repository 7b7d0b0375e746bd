// Package partitiontest is a TCP forwarder that a test can cut, as a
// network partition would: the peers see the connections it carries end,
// and new ones end at once, until the test mends it. Tests put it between
// a server and what it reaches (NATS, PostgreSQL) to cut one server off.
package partitiontest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Forwarder accepts on a listener and copies each connection both ways to
// one that its dial function makes.
type Forwarder struct {
	l    net.Listener
	dial func() (net.Conn, error)

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// New forwards what l accepts to what dial makes, until the test ends.
func New(t testing.TB, l net.Listener, dial func() (net.Conn, error)) *Forwarder {
	f := &Forwarder{l: l, dial: dial, conns: map[net.Conn]struct{}{}}
	go f.serve()
	t.Cleanup(func() {
		l.Close()
		f.SetCut(true)
	})
	return f
}

// To forwards a new loopback port to addr.
func To(t testing.TB, addr string) *Forwarder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return New(t, l, func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) })
}

// Addr is the address the forwarder listens on.
func (f *Forwarder) Addr() string { return f.l.Addr().String() }

func (f *Forwarder) serve() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func (f *Forwarder) handle(c net.Conn) {
	if !f.track(c) {
		return
	}
	u, err := f.dial()
	if err != nil {
		f.untrack(c)
		return
	}
	if !f.track(u) {
		f.untrack(c)
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(u, c)
		f.untrack(c, u)
		close(done)
	}()
	_, _ = io.Copy(c, u)
	f.untrack(c, u)
	<-done
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(f.conns, c)
	}
}

// SetCut cuts the forwarder (closing what it carries) or mends it.
func (f *Forwarder) SetCut(cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	if cut {
		for c := range f.conns {
			c.Close()
			delete(f.conns, c)
		}
	}
}
