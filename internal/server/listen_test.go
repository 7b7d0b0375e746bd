package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// holdPort listens on a loopback port for the test's duration.
func holdPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestStartOnBusyPorts: a port another process holds (the API's or the
// embedded NATS's) fails Start at once with the listen error, Close is safe
// on what was started, and no credential is made before the server
// listens.
func TestStartOnBusyPorts(t *testing.T) {
	busy := holdPort(t)
	for _, c := range []struct {
		name string
		opts func(*Options)
	}{
		{"http", func(o *Options) { o.HTTPAddr = busy; o.NATSListen = "none" }},
		{"nats", func(o *Options) { o.HTTPAddr = "127.0.0.1:0"; o.NATSListen = busy }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			announced := ""
			o := Options{
				DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Security: SecurityOptions{Enabled: true, OnAdminToken: func(tok string) { announced = tok }},
			}
			c.opts(&o)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			began := time.Now()
			s, err := Start(ctx, o)
			took := time.Since(began)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded on a busy port")
			}
			want := "listen " + busy + ": address already in use"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			// The embedded NATS used to be waited for 30 s.
			if took > 15*time.Second {
				t.Errorf("Start took %s to fail", took)
			}
			if announced != "" {
				t.Error("a local admin token was handed out by a server that did not start")
			}
			if _, err := os.Stat(filepath.Join(dir, authDir, adminTokenFile)); !os.IsNotExist(err) {
				t.Errorf("admin token file written by a server that did not start (stat: %v)", err)
			}
		})
	}
}

// TestCloseAfterFailedStart: Close is safe on a server that stopped at any
// point of its start, and twice.
func TestCloseAfterFailedStart(t *testing.T) {
	(&Server{}).Close()
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.Close()
	s.Close()
}
