package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/server"
)

// runHodei runs hodei with args, stdin as its standard input, and returns
// its exit code and standard output.
func runHodei(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "stdin")
	if err := os.WriteFile(in, []byte(stdin), 0o600); err != nil {
		t.Fatal(err)
	}
	inF, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer inF.Close()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	oldIn, oldOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = inF, outF
	code := mainArgs(args)
	os.Stdin, os.Stdout = oldIn, oldOut
	out, _ := os.ReadFile(outF.Name())
	return code, string(out)
}

func TestCAAndSecretCommandsOverTLS(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	if code, _ := runHodei(t, "", "ca", "init", "--pki-dir", pkiDir); code != exitOK {
		t.Fatalf("ca init: exit %d", code)
	}
	if code, _ := runHodei(t, "", "ca", "init", "--pki-dir", pkiDir); code != exitFailed {
		t.Errorf("second ca init: exit %d, want %d", code, exitFailed)
	}
	if code, _ := runHodei(t, "", "ca", "issue", "server", "api", "--ip", "127.0.0.1", "--pki-dir", pkiDir); code != exitOK {
		t.Fatalf("ca issue server: exit %d", code)
	}
	if code, _ := runHodei(t, "", "ca", "issue", "agent", "a.b", "--pki-dir", pkiDir); code != exitUsage {
		t.Errorf("agent id with a dot: exit %d, want %d", code, exitUsage)
	}
	if code, _ := runHodei(t, "", "ca", "issue", "agent", "builder-1", "--pki-dir", pkiDir); code != exitOK {
		t.Errorf("ca issue agent: exit %d", code)
	}
	if kind, name, err := certIdentity(filepath.Join(pkiDir, "builder-1.crt")); err != nil || kind != "agent" || name != "builder-1" {
		t.Errorf("agent certificate identity: %s %s %v", kind, name, err)
	}

	httpTLS, err := pki.ServerTLS(filepath.Join(pkiDir, "api.crt"), filepath.Join(pkiDir, "api.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := startServer(t, server.Options{NATSListen: "none", HTTPTLS: httpTLS})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, port, _ := net.SplitHostPort(srv.HTTPAddr())
	url := "https://127.0.0.1:" + port
	ca := filepath.Join(pkiDir, "ca.crt")

	if code, _ := runHodei(t, "", "secret", "list", "--server", url); code != exitFailed {
		t.Errorf("https without --ca: exit %d, want %d (unknown authority)", code, exitFailed)
	}
	code, out := runHodei(t, "v3ry-s3cret-value\n", "secret", "set", "DEPLOY_TOKEN", "--rotate-every", "720h", "--server", url, "--ca", ca)
	if code != exitOK || !strings.Contains(out, "version 1") {
		t.Fatalf("secret set: exit %d, %q", code, out)
	}
	if got, err := srv.Secrets.Provider.Get(ctx, "DEPLOY_TOKEN"); err != nil || got.Value != "v3ry-s3cret-value" {
		t.Fatalf("stored %q, %v (the trailing newline must go)", got.Value, err)
	}
	code, out = runHodei(t, "", "secret", "list", "--server", url, "--ca", ca)
	if code != exitOK || !strings.Contains(out, "DEPLOY_TOKEN") || !strings.Contains(out, "every 720h0m0s") || strings.Contains(out, "v3ry") {
		t.Errorf("secret list: exit %d, %q", code, out)
	}
	code, out = runHodei(t, "", "secret", "get", "DEPLOY_TOKEN", "--server", url, "--ca", ca)
	if code != exitOK || !strings.Contains(out, "version:  1") || strings.Contains(out, "v3ry") {
		t.Errorf("secret get: exit %d, %q", code, out)
	}
	if code, out := runHodei(t, "", "secret", "get", "DEPLOY_TOKEN", "--reveal", "--server", url, "--ca", ca); code != exitFailed || strings.Contains(out, "v3ry") {
		t.Errorf("secret get --reveal on a server that does not allow it: exit %d, %q", code, out)
	}
	if code, out := runHodei(t, "", "secret", "rotate", "DEPLOY_TOKEN", "--server", url, "--ca", ca); code != exitOK || !strings.Contains(out, "version 2") {
		t.Errorf("secret rotate: exit %d, %q", code, out)
	}
	if code, _ := runHodei(t, "", "secret", "delete", "DEPLOY_TOKEN", "--server", url, "--ca", ca); code != exitOK {
		t.Errorf("secret delete: exit %d", code)
	}
	if code, _ := runHodei(t, "", "secret", "get", "DEPLOY_TOKEN", "--server", url, "--ca", ca); code != exitFailed {
		t.Errorf("secret get after delete: exit %d", code)
	}
	if code, _ := runHodei(t, "", "secret", "set", "9BAD", "--server", url, "--ca", ca); code != exitUsage {
		t.Errorf("bad name: exit %d", code)
	}
}

// TestRunWithSecretsFile runs a pipeline locally with a dotenv file of
// secrets: the job gets the value, the output shows ***.
func TestRunWithSecretsFile(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, "secrets.env")
	if err := os.WriteFile(env, []byte("API_KEY=\"local-s3cret-key\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "p.yaml")
	yaml := "name: local\njobs:\n  j:\n    secrets: [API_KEY]\n    steps:\n      - run: 'echo \"key=$API_KEY\"; test \"$API_KEY\" = local-s3cret-key'\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runHodei(t, "", "run", file, "--workers", "1", "--secrets-file", env)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "key=***") || strings.Contains(out, "local-s3cret-key") {
		t.Errorf("output:\n%s", out)
	}
	if code, _ := runHodei(t, "", "run", file, "--secrets-file", filepath.Join(dir, "missing.env")); code != exitUsage {
		t.Errorf("missing secrets file: exit %d", code)
	}
}
