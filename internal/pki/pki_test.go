package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := Init(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func TestInitWritesPrivateKeys0600AndRefusesOverwrite(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	if !ca.Cert.IsCA || ca.Cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA certificate: IsCA %v, algorithm %v", ca.Cert.IsCA, ca.Cert.PublicKeyAlgorithm)
	}
	st, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := Init(dir, ""); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Error("Load returned another certificate")
	}
	if _, err := ca.IssueFiles(dir, "a1", Request{Kind: KindAgent, Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	st, err = os.Stat(filepath.Join(dir, "a1.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("a1.key mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := ca.IssueFiles(dir, "a1", Request{Kind: KindAgent, Name: "a1"}); !errors.Is(err, ErrExists) {
		t.Errorf("issuing over an existing key: %v, want ErrExists", err)
	}
}

func TestIssueUsagesAndIdentity(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	srv, err := ca.Issue(Request{Kind: KindServer, Name: "ci", DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := ca.Issue(Request{Kind: KindAgent, Name: "builder-1"})
	if err != nil {
		t.Fatal(err)
	}
	if k, n, ok := Identity(ag.Cert); !ok || k != KindAgent || n != "builder-1" {
		t.Errorf("agent identity = %q %q %v", k, n, ok)
	}
	if k, n, ok := Identity(srv.Cert); !ok || k != KindServer || n != "ci" {
		t.Errorf("server identity = %q %q %v", k, n, ok)
	}
	roots := ca.CertPool()
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate as a server: %v", err)
	}
	if _, err := ag.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("agent certificate as a client: %v", err)
	}
	if _, err := ag.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("an agent certificate verifies as a server certificate")
	}
	if _, err := ca.Issue(Request{Kind: KindAgent, Name: "x", DNS: []string{"h"}}); err == nil {
		t.Error("agent certificate with a DNS name accepted")
	}
	if _, err := ca.Issue(Request{Kind: "root", Name: "x"}); !errors.Is(err, ErrBadKind) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := ca.Issue(Request{Kind: KindAgent, Name: "a/b"}); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
}

// TestMutualTLS runs a handshake between configurations built from issued
// files: the server sees the agent's identity, and a client without a
// certificate, or with one from another CA, is refused.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	if _, err := ca.IssueFiles(dir, "server", Request{Kind: KindServer, Name: "server", DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(dir, "agent-1", Request{Kind: KindAgent, Name: "agent-1"}); err != nil {
		t.Fatal(err)
	}
	other, otherDir := newCA(t)
	if _, err := other.IssueFiles(otherDir, "agent-1", Request{Kind: KindAgent, Name: "agent-1"}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	scfg, err := ServerTLS(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), caFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				seen <- "refused"
			} else {
				_, name, _ := Identity(tc.ConnectionState().PeerCertificates[0])
				seen <- name
			}
			c.Close()
		}
	}()
	dial := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = c.Read(make([]byte, 1))
		if err != nil && strings.Contains(err.Error(), "EOF") {
			err = nil
		}
		return err
	}
	good, err := ClientTLS(caFile, filepath.Join(dir, "agent-1.crt"), filepath.Join(dir, "agent-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(good); err != nil {
		t.Fatalf("agent with a certificate of the CA: %v", err)
	}
	if got := <-seen; got != "agent-1" {
		t.Errorf("server saw %q, want agent-1", got)
	}
	noCert, _ := ClientTLS(caFile, "", "")
	_ = dial(noCert)
	if got := <-seen; got != "refused" {
		t.Errorf("client without a certificate: server saw %q", got)
	}
	foreign, err := ClientTLS(caFile, filepath.Join(otherDir, "agent-1.crt"), filepath.Join(otherDir, "agent-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	_ = dial(foreign)
	if got := <-seen; got != "refused" {
		t.Errorf("client with another CA's certificate: server saw %q", got)
	}
}
