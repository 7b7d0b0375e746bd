// Package bustest holds what tests on a real embedded NATS share: starting
// the server (plain, or with mutual TLS and certificates issued by a fresh
// CA), creating Hodei's streams, and waiting for the server to report that
// it denied an operation.
package bustest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pki"
)

// Start starts an embedded NATS server with the options o (StoreDir, when
// empty, is a directory of the test's) and connects to it as name; both are
// closed when the test ends.
func Start(t testing.TB, o bus.EmbeddedOptions, name string) (*bus.Embedded, *nats.Conn) {
	t.Helper()
	if o.StoreDir == "" {
		o.StoreDir = filepath.Join(t.TempDir(), "nats")
	}
	e, err := bus.StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return e, nc
}

// Streams creates Hodei's streams (bus.DefaultSubjects, one replica) over
// nc and returns the JetStream handle it used.
func Streams(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.DefaultSubjects, 1); err != nil {
		t.Fatal(err)
	}
	return js
}

// Certs creates a CA in dir and issues there the certificates of a server
// on loopback ("server") and of each agent of agents (files named after the
// agent); it returns the CA, for more certificates, and the server's mutual
// TLS configuration.
func Certs(t testing.TB, dir string, agents ...string) (*pki.CA, *tls.Config) {
	t.Helper()
	ca, err := pki.Init(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(dir, "server", pki.Request{Kind: pki.KindServer, Name: "server", DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range agents {
		if _, err := ca.IssueFiles(dir, id, pki.Request{Kind: pki.KindAgent, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	scfg, err := pki.ServerTLS(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return ca, scfg
}

// ExpectDenied runs op and waits until the server reports, on errs (a
// connection's async error handler), a permissions violation of kind
// ("Publish", "Subscription") naming subject; then it stops op (a denied
// request would otherwise wait for its timeout) and checks that op did not
// succeed.
func ExpectDenied(t *testing.T, errs <-chan error, kind, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	want := `Permissions Violation for ` + kind + ` to "` + subject + `"`
	for {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), want) {
				continue
			}
			cancel()
			if err := <-done; err == nil {
				t.Errorf("%s %s: the operation succeeded although the server denied it", kind, subject)
			}
			return
		case err := <-done:
			if err == nil {
				t.Fatalf("%s %s: allowed; want a permissions violation", kind, subject)
			}
			// Failed before the violation arrived: wait for the latter.
			done = nil
		case <-ctx.Done():
			t.Fatalf("%s %s: no permissions violation reported", kind, subject)
		}
	}
}
