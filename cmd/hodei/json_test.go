package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/secrets"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
)

// decodeStrict decodes one JSON value of data into v, refusing fields v
// does not have: the output is that type, not a shape of its own.
func decodeStrict(t *testing.T, what string, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, data)
	}
	if dec.More() {
		t.Fatalf("%s: more than one JSON value:\n%s", what, data)
	}
}

// jsonOf runs hodei with args, checks its exit code, and decodes its
// standard output into a T.
func jsonOf[T any](t *testing.T, want int, args ...string) T {
	t.Helper()
	code, out, errOut := capture(t, args...)
	if code != want {
		t.Fatalf("hodei %q: exit %d, want %d\n%s%s", args, code, want, out, errOut)
	}
	var v T
	decodeStrict(t, strings.Join(args, " "), []byte(out), &v)
	return v
}

// logLines decodes JSON lines of log events.
func logLines(t *testing.T, out string) []wire.LogEvent {
	t.Helper()
	var evs []wire.LogEvent
	for _, l := range lines(out) {
		var ev wire.LogEvent
		decodeStrict(t, "log line", []byte(l), &ev)
		evs = append(evs, ev)
	}
	return evs
}

// checkLogLines: the two steps' output, each in its chunk's step, of the
// first attempt, with the time it was stored.
func checkLogLines(t *testing.T, what string, evs []wire.LogEvent, began time.Time) {
	t.Helper()
	text := map[int]string{}
	for _, ev := range evs {
		if ev.JobKey != "build" || ev.JobID == "" || ev.Attempt != 1 {
			t.Errorf("%s: %+v", what, ev)
		}
		if ev.At.Before(began.Add(-time.Minute)) || ev.At.After(time.Now().Add(time.Minute)) {
			t.Errorf("%s: chunk time %s", what, ev.At)
		}
		text[ev.Step] += ev.Data
	}
	if !strings.Contains(text[0], "first-step-output") || !strings.Contains(text[1], "second-step-output") || strings.Contains(text[0], "second-step-output") {
		t.Errorf("%s: output by step %v", what, text)
	}
}

// TestJSONOutput runs every command that prints data with --json against
// a real server, and decodes each output into the API's type for it.
func TestJSONOutput(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HODEI_TOKEN", "")
	var admin string
	srv, base := startServer(t, server.Options{NATSListen: "none", LocalWorkers: 1,
		Security: server.SecurityOptions{Enabled: true, OnAdminToken: func(tok string) { admin = tok }}})
	t.Setenv("HODEI_SERVER", base)
	if code, _, errOut := capture(t, "login", "--save-token", admin); code != exitOK {
		t.Fatalf("login: %s", errOut)
	}
	began := time.Now()

	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	sleepy := filepath.Join(dir, "sleepy.yaml")
	gated := filepath.Join(dir, "gated.yaml")
	for file, yaml := range map[string]string{
		gated:  "name: gated\njobs:\n  deploy:\n    environment: production\n    steps:\n      - run: echo deployed\n",
		good:   "name: two-steps\njobs:\n  build:\n    steps:\n      - run: echo first-step-output\n      - run: echo second-step-output\n",
		bad:    "name: bad\njobs:\n  a:\n    steps:\n      - name: no run\n",
		sleepy: "name: sleepy\njobs:\n  wait:\n    steps:\n      - run: sleep 60\n",
	} {
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("validate", func(t *testing.T) {
		v := jsonOf[validation](t, exitUsage, "validate", "--json", good, bad)
		if len(v.Files) != 2 || !v.Files[0].Valid || v.Files[0].Jobs != 1 || len(v.Files[0].Errors) != 0 {
			t.Fatalf("%+v", v)
		}
		b := v.Files[1]
		if b.Valid || len(b.Errors) == 0 || b.Errors[0].File != bad || b.Errors[0].Line != 5 || b.Errors[0].Column == 0 || b.Errors[0].Message == "" {
			t.Errorf("invalid file: %+v", b)
		}
	})

	run := jsonOf[wire.Run](t, exitOK, "submit", good, "--json")
	if run.ID == "" || run.Pipeline != "two-steps" || run.State != state.RunQueued {
		t.Fatalf("submit: %+v", run)
	}
	t.Run("logs --follow", func(t *testing.T) {
		code, out, errOut := capture(t, "logs", run.ID, "--follow", "--json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		checkLogLines(t, "followed", logLines(t, out), began)
	})
	t.Run("logs", func(t *testing.T) {
		code, out, errOut := capture(t, "logs", run.ID, "--json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		checkLogLines(t, "stored", logLines(t, out), began)
		code, out, _ = capture(t, "logs", run.ID, "build", "--json")
		if code != exitOK {
			t.Fatalf("one job: exit %d", code)
		}
		checkLogLines(t, "stored, one job", logLines(t, out), began)
	})
	t.Run("runs", func(t *testing.T) {
		one := jsonOf[wire.Run](t, exitOK, "runs", run.ID, "--json")
		if one.ID != run.ID || one.State != state.RunSucceeded || len(one.Jobs) != 1 || one.Jobs[0].Key != "build" || len(one.Jobs[0].Attempts) != 1 {
			t.Errorf("runs RUN: %+v", one)
		}
		l := jsonOf[wire.RunList](t, exitOK, "runs", "--json")
		if len(l.Runs) != 1 || l.Runs[0].ID != run.ID {
			t.Errorf("runs: %+v", l)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		r := jsonOf[wire.Run](t, exitOK, "submit", sleepy, "--json")
		c := jsonOf[wire.Run](t, exitOK, "cancel", r.ID, "--json")
		if c.ID != r.ID || c.Pipeline != "sleepy" {
			t.Errorf("cancel: %+v", c)
		}
	})
	t.Run("approve and reject", func(t *testing.T) {
		for _, verb := range []string{"approve", "reject"} {
			r := jsonOf[wire.Run](t, exitOK, "submit", gated, "--json")
			if j := jsonOf[wire.Run](t, exitOK, "runs", r.ID, "--json").Jobs[0]; j.State != state.JobWaitingApproval {
				t.Fatalf("gated job %s, want waiting_approval", j.State)
			}
			code, out, _ := capture(t, "runs", r.ID)
			if code != exitOK || !strings.Contains(out, "waiting_approval") || !strings.Contains(out, "production: hodei approve or reject before ") {
				t.Errorf("runs RUN does not show the wait: %s", out)
			}
			j := jsonOf[wire.Job](t, exitOK, verb, r.ID, "deploy", "--comment", "by the book", "--json")
			want := map[string]string{"approve": "approved", "reject": "rejected"}[verb]
			if j.Approval == nil || j.Approval.Decision != want || j.Approval.Comment != "by the book" {
				t.Errorf("%s: %+v", verb, j)
			}
			if verb == "reject" {
				code, out, _ := capture(t, "runs", r.ID)
				if code != exitOK || !strings.Contains(out, "rejected by ") || !strings.Contains(out, "by the book") {
					t.Errorf("runs RUN after the rejection:\n%s", out)
				}
			}
			code, _, errOut := capture(t, verb, r.ID, "deploy")
			// Queued or already run: not waiting, or its run has ended.
			if code == exitOK || !strings.Contains(errOut, "not waiting for an approval") && !strings.Contains(errOut, "has already ended") {
				t.Errorf("%s twice: exit %d %s", verb, code, errOut)
			}
		}
	})
	t.Run("workers", func(t *testing.T) {
		l := jsonOf[wire.WorkerList](t, exitOK, "workers", "--json")
		if len(l.Workers) != 1 || l.Workers[0].ID == "" || l.Workers[0].CPUMilli == 0 {
			t.Errorf("workers: %+v", l)
		}
	})
	t.Run("pools", func(t *testing.T) {
		jsonOf[wire.PoolList](t, exitOK, "pools", "--json")
	})
	t.Run("secrets", func(t *testing.T) {
		restore := setStdin(t, "s3cret-value")
		info := jsonOf[secrets.Info](t, exitOK, "secret", "set", "API_KEY", "--json")
		restore()
		if info.Name != "API_KEY" || info.Version == "" {
			t.Errorf("secret set: %+v", info)
		}
		l := jsonOf[secrets.List](t, exitOK, "secret", "list", "--json")
		if len(l.Secrets) != 1 || l.Secrets[0].Name != "API_KEY" {
			t.Errorf("secret list: %+v", l)
		}
	})
	t.Run("tokens", func(t *testing.T) {
		nt := jsonOf[auth.NewToken](t, exitOK, "token", "create", "bot", "--role", "viewer", "--tenant", "acme", "--json")
		if nt.Secret == "" || nt.Token.Name != "bot" {
			t.Errorf("token create: %+v", nt)
		}
		l := jsonOf[auth.TokenList](t, exitOK, "token", "list", "--json")
		if len(l.Tokens) != 1 || l.Tokens[0].Name != "bot" || l.Tokens[0].Roles[0] != "viewer" {
			t.Errorf("token list: %+v", l)
		}
		rv := jsonOf[auth.Token](t, exitOK, "token", "revoke", "bot", "--json")
		if rv.Name != "bot" || rv.ID != nt.Token.ID {
			t.Errorf("token revoke: %+v", rv)
		}
	})
	t.Run("audit", func(t *testing.T) {
		v := jsonOf[auditVerification](t, exitOK, "audit", "verify", "--file", srv.Audit().Path(), "--json")
		if !v.OK || v.Records == 0 || v.LastSeq != v.FirstSeq+v.Records-1 || len(v.LastHash) != 64 || v.Error != "" {
			t.Errorf("audit verify: %+v", v)
		}
	})
}

// TestAuditVerifyJSONReportsTampering: a changed record is a failed
// verification, exit 1, with the error and tampered set.
func TestAuditVerifyJSONReportsTampering(t *testing.T) {
	dataDir := t.TempDir()
	writeAudit(t, dataDir, 3).Close()
	path := server.AuditPath(dataDir)
	if v := jsonOf[auditVerification](t, exitOK, "audit", "verify", "--data-dir", dataDir, "--json"); !v.OK || v.Records != 3 {
		t.Fatalf("before: %+v", v)
	}
	editLines(t, path, func(l []string) []string {
		l[1] = strings.Replace(l[1], "user:bob", "user:eve", 1)
		return l
	})
	v := jsonOf[auditVerification](t, exitFailed, "audit", "verify", "--data-dir", dataDir, "--json")
	if v.OK || !v.Tampered || !strings.Contains(v.Error, "seq 2") || v.File != path {
		t.Errorf("after: %+v", v)
	}
}

// setStdin makes s the standard input until restore is called.
func setStdin(t *testing.T, s string) (restore func()) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = in
	return func() { os.Stdin = old; in.Close() }
}

// TestPolicyCheckJSON: valid policies list their ids and source; invalid
// ones are a failure, exit 1, with the problem.
func TestPolicyCheckJSON(t *testing.T) {
	ok := jsonOf[policyCheckResult](t, exitOK, "policy", "check", "--json")
	if !ok.Valid || ok.Source != "embedded defaults" || !slices.Contains(ok.Policies, "admin") || ok.Error != "" {
		t.Errorf("defaults: %+v", ok)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.cedar"), []byte(`permit(principal, action == Hodei::Action::"nope", resource);`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := jsonOf[policyCheckResult](t, exitFailed, "policy", "check", "--policies", dir, "--json")
	if bad.Valid || !strings.Contains(bad.Error, "a.cedar:1:1") || len(bad.Policies) != 0 {
		t.Errorf("invalid: %+v", bad)
	}
}
