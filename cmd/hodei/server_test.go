package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/porttest"
	"github.com/hodei-ci/hodei/internal/server"
)

// TestServerOnBusyPort: "hodei server" on a port in use (its --http, or its
// --nats-listen) exits 1 at once with the listen error, and leaves the
// credential saved for the server already on that address as it was.
func TestServerOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	// A free port, for the API when NATS's is busy.
	freeAddr := porttest.FreeAddr(t)

	for _, c := range []struct{ name, http, nats string }{
		{"http", busy, "none"},
		{"nats", freeAddr, busy},
	} {
		t.Run(c.name, func(t *testing.T) {
			creds := filepath.Join(t.TempDir(), "credentials.json")
			t.Setenv("HODEI_CREDENTIALS", creds)
			_, port, _ := net.SplitHostPort(c.http)
			if err := auth.SaveCredential(creds, "http://127.0.0.1:"+port, auth.Credential{Token: "hodei_the-running-servers-token"}); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(creds)
			if err != nil {
				t.Fatal(err)
			}
			dataDir := t.TempDir()
			began := time.Now()
			code, _, errOut := capture(t, "server", "--data-dir", dataDir, "--http", c.http, "--nats-listen", c.nats, "--workers", "0")
			if took := time.Since(began); took > 15*time.Second {
				t.Errorf("took %s to fail", took)
			}
			want := "listen " + busy + ": address already in use"
			if code != exitFailed || !strings.Contains(errOut, want) {
				t.Errorf("exit %d, stderr %q: want %d and %q", code, errOut, exitFailed, want)
			}
			if strings.Contains(errOut, "panic") || strings.Contains(errOut, "admin token") {
				t.Errorf("stderr: %s", errOut)
			}
			after, err := os.ReadFile(creds)
			if err != nil || string(after) != string(before) {
				t.Errorf("saved credentials changed:\n%s\nwas:\n%s (%v)", after, before, err)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "auth", "admin-token.json")); !os.IsNotExist(err) {
				t.Errorf("admin token file written (stat: %v)", err)
			}
		})
	}
}

// TestTokenCreateRefusesUnknownRoleAndTenant: "hodei token create" with a
// role no policy knows or a tenant that is not a plain name fails with the
// server's explanation.
func TestTokenCreateRefusesUnknownRoleAndTenant(t *testing.T) {
	var admin string
	_, base := startServer(t, server.Options{NATSListen: "none",
		Security: server.SecurityOptions{Enabled: true, OnAdminToken: func(tok string) { admin = tok }}})
	t.Setenv("HODEI_TOKEN", admin)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "superuser", "--tenant", "acme"}, `unknown role "superuser"`},
		{[]string{"--role", "developer", "--tenant", "../x"}, `invalid tenant "../x": a tenant's name matches ^[A-Za-z0-9]`},
	} {
		code, out, errOut := capture(t, append([]string{"token", "create", "bot", "--server", base}, c.args...)...)
		if code != exitFailed || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("token create %v: exit %d, stdout %q, stderr %q; want %d and %q", c.args, code, out, errOut, exitFailed, c.want)
		}
	}
	if code, _, errOut := capture(t, "token", "create", "bot", "--server", base, "--role", "developer", "--tenant", "acme"); code != exitOK {
		t.Errorf("a valid token: exit %d %s", code, errOut)
	}
}

// TestNATSReplicasNeedACluster: --nats-replicas above 1 without --nats (the
// embedded server keeps one copy), or out of 1..5, is a usage error that
// says why; nats-config refuses a node it could not run, naming what is
// missing.
func TestNATSReplicasNeedACluster(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--data-dir", t.TempDir(), "--nats-replicas", "3"}, "--nats-replicas 3 needs --nats"},
		{[]string{"server", "--data-dir", t.TempDir(), "--nats", "nats://127.0.0.1:1", "--nats-replicas", "6"}, "--nats-replicas must be from 1 to 5, got 6"},
		{[]string{"nats-config", "--name", "n1", "--store-dir", "/var/lib/nats", "--tls-cert", "c", "--tls-key", "k", "--ca", "ca", "--server", "ci"}, "no routes"},
		{[]string{"nats-config", "--name", "n1", "--store-dir", "/var/lib/nats", "--routes", "a:6222", "--server", "ci"}, "a certificate, its key and the CA are required"},
	} {
		code, _, errOut := capture(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, exitUsage, c.want)
		}
	}
}
