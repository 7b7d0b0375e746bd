package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyTestCommand(t *testing.T) {
	// One request on the command line, against the embedded policies.
	code, out, errOut := capture(t, "policy", "test", "--request",
		`{"name": "viewer submits", "principal": {"name": "vera", "tenant": "acme", "roles": ["viewer"]},
		  "action": "submit", "resource": {"type": "Pipeline", "id": "ci.yaml", "tenant": "acme"}, "expect": "deny"}`)
	if code != exitOK || !strings.Contains(out, "viewer submits") || !strings.Contains(out, "1 requests, 0 failed") {
		t.Errorf("one request: exit %d\n%s%s", code, out, errOut)
	}

	// A file of requests against policies of one's own, one of which fails.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ops.cedar"), []byte(`
@id("ops")
permit (principal in Hodei::Group::"ops", action in [Hodei::Action::"read", Hodei::Action::"cancel"], resource);
`), 0o644)
	reqs := filepath.Join(dir, "tests.json")
	os.WriteFile(reqs, []byte(`
{"name": "ops cancel anywhere", "principal": {"name": "o", "groups": ["ops"]}, "action": "cancel", "resource": {"type": "Run", "id": "r", "tenant": "x"}, "expect": "allow"}
{"name": "ops cannot submit", "principal": {"name": "o", "groups": ["ops"]}, "action": "submit", "resource": {"type": "Pipeline", "id": "p", "tenant": "x"}, "expect": "deny"}
{"name": "wrong expectation", "principal": {"name": "o", "groups": ["dev"]}, "action": "read", "resource": {"type": "Run", "id": "r", "tenant": "x"}, "expect": "allow"}
`), 0o644)
	code, out, errOut = capture(t, "policy", "test", "--policies", dir, "--requests", reqs)
	if code != exitFailed || !strings.Contains(out, "3 requests, 1 failed") || !strings.Contains(out, "FAIL  wrong expectation") ||
		!strings.Contains(out, "permitted by ops") {
		t.Errorf("file of requests: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = capture(t, "policy", "test", "--policies", dir, "--requests", reqs, "--json")
	var res []struct {
		Name string `json:"name"`
		Pass bool   `json:"pass"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 3 || !res[0].Pass || res[2].Pass || code != exitFailed {
		t.Errorf("--json: exit %d %v %s", code, err, out)
	}

	// Invalid policies are named by file and line.
	os.WriteFile(filepath.Join(dir, "bad.cedar"), []byte("\n\npermit (principal, action, resource) when { principal.age > 3 };\n"), 0o644)
	code, _, errOut = capture(t, "policy", "check", "--policies", dir)
	if code != exitFailed || !strings.Contains(errOut, filepath.Join(dir, "bad.cedar")+":3:1:") || !strings.Contains(errOut, "attribute `age`") {
		t.Errorf("check: exit %d %q", code, errOut)
	}
	if code, _, _ := capture(t, "policy", "test", "--policies", dir, "--requests", reqs); code != exitFailed {
		t.Errorf("test with invalid policies: exit %d", code)
	}
	if code, out, _ := capture(t, "policy", "check"); code != exitOK || !strings.Contains(out, "embedded defaults") {
		t.Errorf("check defaults: exit %d %q", code, out)
	}
	if code, _, _ := capture(t, "policy", "test"); code != exitUsage {
		t.Errorf("no request: exit %d", code)
	}
	if code, out, _ := capture(t, "policy", "schema", "--json"); code != exitOK || !strings.Contains(out, `"Hodei"`) {
		t.Errorf("schema --json: exit %d %.200s", code, out)
	}
}
