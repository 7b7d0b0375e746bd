package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/sandbox"
)

// runJob runs steps through runStepList as an unisolated agent does, in a
// fresh workspace, and returns how the job ended and its log.
func runJob(t *testing.T, spec pipeline.JobSpec) (state string, errMsg string, log string, ws string) {
	return runJobIn(t, spec, false)
}

// runJobIn is runJob, in a sandbox when isolated (as an unprivileged uid
// when the test runs as root), as an agent without --unsafe-shared-user.
func runJobIn(t *testing.T, spec pipeline.JobSpec, isolated bool) (state string, errMsg string, log string, ws string) {
	t.Helper()
	return runJobOut(t, spec, isolated, nil)
}

// runJobOut is runJobIn that puts what the steps write to $HODEI_OUTPUT in
// outputs.
func runJobOut(t *testing.T, spec pipeline.JobSpec, isolated bool, outputs map[string]string) (state string, errMsg string, log string, ws string) {
	t.Helper()
	ws = t.TempDir()
	tmp := t.TempDir()
	files := stepFiles{host: tmp, step: tmp, uid: -1}
	uid := -1
	if isolated {
		files.step = "/tmp"
		if os.Geteuid() == 0 {
			uid = DefaultStepUIDs.First
			files.uid = uid
			for _, d := range []string{ws, tmp} {
				if err := os.Chown(d, uid, uid); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	rec := &recorder{}
	b := newBatcher(1<<20, 0, rec.emit)
	env := jobEnv{
		start:   map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "HODEI_WORKSPACE": ws},
		secrets: map[string]string{"TOKEN": "s3cret-value"},
		outputs: outputs,
	}
	state, _, errMsg = (&Agent{}).runStepList(context.Background(), spec, files, env, b, mask.New("s3cret-value"), func(ctx context.Context, i int, st pipeline.StepSpec, script string, env []string, w io.Writer) stepResult {
		if isolated {
			return runSandboxed(ctx, sandbox.Spec{Script: script, Workspace: ws, Tmp: tmp, Env: env,
				Hide: []string{t.TempDir()}, UID: uid, GID: uid}, st.Timeout, w, nil, nil)
		}
		return runStep(ctx, script, ws, env, st.Timeout, w)
	})
	b.Flush(-1)
	return state, errMsg, rec.text(), ws
}

func TestStepOptions(t *testing.T) {
	t.Parallel()
	for _, isolated := range []bool{false, true} {
		t.Run(map[bool]string{false: "unisolated", true: "sandboxed"}[isolated], func(t *testing.T) {
			t.Parallel()
			testStepOptions(t, isolated)
		})
	}
}

func testStepOptions(t *testing.T, isolated bool) {
	spec := pipeline.JobSpec{
		Env: map[string]string{"PATH": "/usr/local/tools/bin:$PATH", "PRICE": "$$5", "WS": "${HODEI_WORKSPACE}/out"},
		Steps: []pipeline.StepSpec{
			{Name: "set", Run: "mkdir -p sub/dir\n" +
				"echo FOO=bar >> \"$HODEI_ENV\"\n" +
				"printf 'MULTI<<EOF\\nline 1\\nline 2\\nEOF\\n' >> \"$HODEI_ENV\"\n"},
			{Name: "read", Env: map[string]string{"DERIVED": "$FOO-x", "KEEP": "$NOT_SET"}, Run: "" +
				"test \"$FOO\" = bar\n" +
				"test \"$MULTI\" = \"$(printf 'line 1\\nline 2')\"\n" +
				"test \"$DERIVED\" = bar-x\n" +
				"test \"$KEEP\" = '$NOT_SET'\n" +
				"test \"$PRICE\" = '$5'\n" +
				"test \"$WS\" = \"$HODEI_WORKSPACE/out\"\n" +
				"case \"$PATH\" in /usr/local/tools/bin:/usr/local/bin:*) ;; *) echo \"PATH=$PATH\"; exit 1;; esac\n"},
			{Name: "dir", WorkingDirectory: "sub/dir", Run: "pwd > ../../pwd.txt"},
			{Name: "bash", Shell: "bash", Run: "[[ 1 == 1 ]]\nif false | true; then exit 9; fi\necho bash ok > bash.txt"},
			{Name: "python", Shell: "python3", Run: "open('py.txt', 'w').write('py ok')"},
			{Name: "template", Shell: "sh -eu {0}", Run: "echo ${UNSET_VAR:-tmpl ok} > tmpl.txt"},
			{Name: "tolerated", ContinueOnError: true, Run: "exit 3"},
			{Name: "after tolerated", Run: "touch tolerated-ok"},
		},
	}
	state, errMsg, log, ws := runJobIn(t, spec, isolated)
	if state != bus.StatusSucceeded {
		t.Fatalf("state %s (%s), log:\n%s", state, errMsg, log)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(ws, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return strings.TrimSpace(string(data))
	}
	if got := read("pwd.txt"); got != filepath.Join(ws, "sub/dir") {
		t.Errorf("working directory = %q", got)
	}
	if read("bash.txt") != "bash ok" || read("py.txt") != "py ok" || read("tmpl.txt") != "tmpl ok" {
		t.Errorf("shells: log:\n%s", log)
	}
	read("tolerated-ok")
	if !strings.Contains(log, "continue-on-error") {
		t.Errorf("log does not say the failure was tolerated:\n%s", log)
	}
}

// TestStepConditions: after a failure, default steps are skipped and
// always() and failure() steps run; the job fails as its first failed step.
func TestStepConditions(t *testing.T) {
	t.Parallel()
	spec := pipeline.JobSpec{Steps: []pipeline.StepSpec{
		{Name: "ok", Run: "true"},
		{Name: "only on success", If: "success()", Run: "touch success-ran"},
		{Name: "only on failure early", If: "failure()", Run: "touch failure-early"},
		{Name: "breaks", Run: "exit 4"},
		{Name: "skipped", Run: "touch skipped-ran"},
		{Name: "cleanup", If: "always()", Run: "touch cleanup-ran; exit 5"},
		{Name: "report", If: "failure()", Run: "touch report-ran"},
	}}
	state, errMsg, log, ws := runJob(t, spec)
	if state != bus.StatusFailed || errMsg != "breaks: exit status 4" {
		t.Errorf("job ended %s %q, want failed \"breaks: exit status 4\"", state, errMsg)
	}
	for name, want := range map[string]bool{"success-ran": true, "failure-early": false, "skipped-ran": false, "cleanup-ran": true, "report-ran": true} {
		_, err := os.Stat(filepath.Join(ws, name))
		if (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", name, err == nil, want)
		}
	}
	if !strings.Contains(log, "<== step 5/7 skipped (if success() is false)") {
		t.Errorf("log does not show the skipped step:\n%s", log)
	}
}

func TestStepEnvFileRefusesWhatAStepCannotRead(t *testing.T) {
	t.Parallel()
	outside := filepath.Join(t.TempDir(), "private")
	if err := os.WriteFile(outside, []byte("STOLEN=yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := pipeline.JobSpec{Steps: []pipeline.StepSpec{
		{Name: "link", Run: "rm -f \"$HODEI_ENV\"; ln -s " + outside + " \"$HODEI_ENV\""},
		{Name: "next", Run: "echo STOLEN=$STOLEN"},
	}}
	state, errMsg, log, _ := runJob(t, spec)
	if state != bus.StatusFailed || !strings.Contains(errMsg, "$HODEI_ENV") {
		t.Errorf("job ended %s %q, want a failure about $HODEI_ENV; log:\n%s", state, errMsg, log)
	}
	if strings.Contains(log, "STOLEN=yes") {
		t.Errorf("the linked file was read:\n%s", log)
	}
}

func TestParseEnvFile(t *testing.T) {
	t.Parallel()
	got, err := parseEnvFile([]byte("A=1\n\nB=x=y\nC<<END\nl1\n\nl3\nEND\nD=\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "x=y", "C": "l1\n\nl3", "D": ""}
	if len(got) != len(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, bad := range []string{"no equals\n", "1A=x\n", "HODEI_RUN_ID=x\n", "A<<END\nno end\n", "A<<\n"} {
		if _, err := parseEnvFile([]byte(bad)); err == nil {
			t.Errorf("parseEnvFile(%q) accepted", bad)
		}
	}
}

func TestExpandVars(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "1", "PATH": "/bin", "A_B": "x"}
	for in, want := range map[string]string{
		"$A":          "1",
		"${A}b":       "1b",
		"$A_B/$PATH":  "x//bin",
		"$$A":         "$A",
		"$":           "$",
		"a$":          "a$",
		"$NOPE $A":    "$NOPE 1",
		"${NOPE}":     "${NOPE}",
		"${A":         "${A",
		"cost: $5":    "cost: $5",
		"/opt:$PATH:": "/opt:/bin:",
	} {
		if got := expandVars(in, env); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
