package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/cgroup"
)

// testUID is the unprivileged identity of steps when the tests run as root.
const testUID = 61999

// workspace makes a workspace the step's identity owns.
func workspace(t *testing.T) string {
	t.Helper()
	ws := t.TempDir()
	if os.Geteuid() == 0 {
		if err := os.Chown(ws, testUID, testUID); err != nil {
			t.Fatal(err)
		}
	}
	return ws
}

func spec(ws, script string) Spec {
	return Spec{Script: script, Workspace: ws, Env: []string{"PATH=" + DefaultPath, "ONLY=this"}, UID: testUID, GID: testUID}
}

// startUp starts a step whose script prints "up" once it is ready, and
// returns it once it has, with the rest of its output to read (closed when
// the test ends).
func startUp(t *testing.T, s Spec) (*Cmd, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c := &Cmd{Spec: s, Stdout: w}
	err = c.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 3)
	if _, err := io.ReadFull(r, line); err != nil || string(line) != "up\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	return c, r
}

// run runs c (its Stdout is set here) and returns the status and output.
func run(t *testing.T, c *Cmd) (Status, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c.Stdout = w
	err = c.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	st, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return st, <-out
}

func TestMain(m *testing.M) {
	if err := Check(); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox tests need a machine that can isolate steps:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestStepRunsWithOnlyItsEnvironmentInItsWorkspace checks the step's
// shell, exit code, working directory, environment and identity.
func TestStepRunsWithOnlyItsEnvironmentInItsWorkspace(t *testing.T) {
	t.Setenv("HODEI_AGENT_ONLY", "agent-secret")
	ws := workspace(t)
	st, out := run(t, &Cmd{Spec: spec(ws, `pwd; env | sort; id -u; echo data > made; exit 7`)})
	if st.Code != 7 || st.Signal != 0 {
		t.Fatalf("status %+v, want exit 7\n%s", st, out)
	}
	want := ws + "\nONLY=this\nPATH=" + DefaultPath + "\nPWD=" + ws + "\n"
	if !strings.HasPrefix(out, want) {
		t.Fatalf("output %q, want it to start with %q (only the given environment)", out, want)
	}
	wantUID := os.Geteuid()
	if wantUID == 0 {
		wantUID = testUID
	}
	if !strings.Contains(out, "\n"+strconv.Itoa(wantUID)+"\n") {
		t.Errorf("output %q: want uid %d", out, wantUID)
	}
	if b, err := os.ReadFile(filepath.Join(ws, "made")); err != nil || string(b) != "data\n" {
		t.Errorf("file written in the workspace: %q, %v", b, err)
	}
}

// TestStepSeesNeitherHiddenDirsNorOtherProcesses checks that a hidden
// directory is empty for the step (the workspace inside it stays usable),
// that /proc shows only the sandbox's processes, and that no process
// environment of the host is readable.
func TestStepSeesNeitherHiddenDirsNorOtherProcesses(t *testing.T) {
	t.Setenv("HODEI_AGENT_ONLY", "agent-secret")
	data := hiddenDir(t)
	if err := os.WriteFile(filepath.Join(data, "kek.json"), []byte("key"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(data, "work", "1", "job-1")
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(data, "work", "1", "job-2")
	if err := os.MkdirAll(other, 0o777); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		_ = os.Chown(ws, testUID, testUID)
	}
	s := spec(ws, `
ls -A `+data+`
ls `+other+` 2>/dev/null && echo other-visible
cat `+data+`/kek.json 2>/dev/null && echo kek-readable
touch `+data+`/planted 2>/dev/null && echo wrote-hidden-dir
touch `+filepath.Dir(ws)+`/planted 2>/dev/null && echo wrote-next-to-workspace
n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n
cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep HODEI_AGENT_ONLY && echo environ-leak
echo inside > file; cat file`)
	s.Hide = []string{data}
	st, out := run(t, &Cmd{Spec: s})
	if st.Code != 0 {
		t.Fatalf("status %+v\n%s", st, out)
	}
	// ls of the hidden data dir shows only the path down to the
	// workspace; the processes are the init, the shell and the ls/cat
	// pipeline at most.
	if want := "work\nprocs=2\ninside\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}

// hiddenDir returns a new directory for a test to hide from steps. As root
// it is under /run, outside the temporary directory as a server's data
// directory usually is: a step's /tmp is its own, so a directory under the
// temporary directory would be out of its sight even if hiding failed. As
// another user (the run as nobody) it is t.TempDir().
func hiddenDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("/run", "hodei-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// TestStepWritesOnlyItsWorkspaceAndTmp checks that Landlock (and the
// identity) keep a step from writing a host directory that its uid could
// write, while its workspace, /tmp and /dev/null are writable.
func TestStepWritesOnlyItsWorkspaceAndTmp(t *testing.T) {
	open := os.Getenv("HODEI_SANDBOX_TEST_OPEN")
	if open == "" {
		open = worldWritable(t)
	}
	ws := workspace(t)
	tmp := workspace(t)
	s := spec(ws, `
touch `+open+`/x 2>/dev/null && echo wrote-outside
echo a > in-ws && echo ws-ok
echo b > /tmp/t && echo tmp-ok
echo c > /dev/null && echo null-ok
mkdir a b && echo d > a/f && mv a/f b/f && ln b/f b/g && cat b/g`)
	s.Tmp = tmp
	st, out := run(t, &Cmd{Spec: s})
	if st.Code != 0 {
		t.Fatalf("status %+v\n%s", st, out)
	}
	if want := "ws-ok\ntmp-ok\nnull-ok\nd\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	if _, err := os.Stat(filepath.Join(open, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the step wrote outside its workspace: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(tmp, "t")); err != nil || string(b) != "b\n" {
		t.Fatalf("/tmp is not the given directory: %q, %v", b, err)
	}
}

// worldWritable makes a directory anyone may write, outside /tmp.
func worldWritable(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	open, err := os.MkdirTemp(wd, "world-writable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	return open
}

// hostProcs returns the pids of host processes whose command line
// contains arg as a whole argument.
func hostProcs(arg string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(b, []byte{0}) {
			if string(a) == arg {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestDaemonsDieWithTheStep checks that background and setsid processes a
// step leaves are gone when Wait returns.
func TestDaemonsDieWithTheStep(t *testing.T) {
	marker := fmt.Sprintf("%d.%d", 900+os.Getpid()%97, time.Now().UnixNano()%1000)
	ws := workspace(t)
	st, out := run(t, &Cmd{Spec: spec(ws, `setsid sleep `+marker+` >/dev/null 2>&1 < /dev/null &
sleep `+marker+` >/dev/null 2>&1 &
n=0; while [ $n -lt 2 ]; do n=0; for p in /proc/[0-9]*; do grep -q '[`+marker[:1]+`]`+marker[1:]+`' $p/cmdline 2>/dev/null && n=$((n+1)); done; done
echo started`)})
	if st.Code != 0 || out != "started\n" {
		t.Fatalf("status %+v, output %q", st, out)
	}
	if pids := hostProcs(marker); len(pids) != 0 {
		t.Fatalf("processes %v of the step still run after Wait", pids)
	}
}

// TestKillingTheInitKillsEverything checks what happens when the agent is
// killed: SIGKILL of the init takes every process of the sandbox.
func TestKillingTheInitKillsEverything(t *testing.T) {
	marker := fmt.Sprintf("%d.%d", 800+os.Getpid()%97, time.Now().UnixNano()%1000)
	ws := workspace(t)
	c, _ := startUp(t, spec(ws, `setsid sleep `+marker+` >/dev/null 2>&1 < /dev/null & echo up; wait`))
	// Polls of /proc, here and below: the daemon is found by its marker,
	// not the test's child, and has no event to wait on; the deadlines
	// are failure bounds.
	deadline := time.Now().Add(10 * time.Second)
	for len(hostProcs(marker)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the daemon never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(c.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait()
	if err != nil || st.Signal != syscall.SIGKILL {
		t.Fatalf("Wait: %+v, %v; want killed by SIGKILL", st, err)
	}
	deadline = time.Now().Add(2 * time.Second)
	for {
		pids := hostProcs(marker)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v outlived the sandbox's init by 2s", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStepIsInItsCgroupFromTheStart checks that the step's shell is in
// Cmd.Cgroup when its script begins (it reads its own cgroup first), that
// the caller's threads are all out of it again, and that a group the step
// cannot be placed in stops the sandbox before the step runs.
func TestStepIsInItsCgroupFromTheStart(t *testing.T) {
	m, err := cgroup.New(cgroup.Options{Parent: fmt.Sprintf("hodei-sandbox-test-%d", os.Getpid())})
	if err != nil {
		t.Fatalf("these tests run as root, where the machine has cgroups: %v", err)
	}
	g, err := m.Create("step", cgroup.Limits{Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = g.Kill()
		_ = g.Remove()
		if p, err := m.Open(""); err == nil {
			_ = p.Remove()
		}
	})
	ws := workspace(t)
	c := &Cmd{Spec: spec(ws, `cat /proc/self/cgroup`), Cgroup: g}
	st, out := run(t, c)
	if st.Code != 0 || !strings.Contains(out, "/step\n") {
		t.Fatalf("status %+v: the step's shell is not in its group:\n%s", st, out)
	}
	if pids, err := g.Procs(); err != nil || len(pids) != 0 {
		t.Fatalf("the group still holds %v (%v) after the step", pids, err)
	}

	gone, err := m.Open("never-made")
	if err != nil {
		t.Fatal(err)
	}
	ws2 := workspace(t)
	c = &Cmd{Spec: spec(ws2, `echo ran > ran`), Cgroup: gone}
	r, w, _ := os.Pipe()
	defer r.Close()
	c.Stdout = w
	err = c.Start()
	w.Close()
	if err == nil || !strings.Contains(err.Error(), "never-made") {
		t.Fatalf("Start: %v, want the group's error", err)
	}
	if _, err := os.Stat(filepath.Join(ws2, "ran")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the step ran although it could not be placed in its group: %v", err)
	}
}

// TestTerminationReachesEveryProcess checks that SIGTERM to the init is
// passed on to the step's processes, and a step killed by a signal is
// reported as such.
func TestTerminationReachesEveryProcess(t *testing.T) {
	ws := workspace(t)
	c, r := startUp(t, spec(ws, `trap 'echo got-term; exit 3' TERM; echo up; while :; do sleep 0.05; done`))
	_ = syscall.Kill(c.Pid(), syscall.SIGTERM)
	rest, _ := io.ReadAll(r)
	st, err := c.Wait()
	if err != nil || st.Code != 3 || !strings.HasSuffix(string(rest), "got-term\n") {
		t.Fatalf("status %+v, %v, output %q; want the trap's exit 3", st, err, rest)
	}

	st, out := run(t, &Cmd{Spec: spec(workspace(t), `kill -KILL $$`)})
	if st.Signal != syscall.SIGKILL || st.Code != -1 {
		t.Fatalf("status %+v (%q), want killed by SIGKILL", st, out)
	}
}

// TestUnprivilegedCaller runs this package's tests again as an unprivileged
// user (nobody), where the sandbox uses a user namespace.
func TestUnprivilegedCaller(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the tests as nobody when the tests run as root; this run is already unprivileged")
	}
	if os.Getenv("HODEI_SANDBOX_TEST_NESTED") != "" {
		t.Fatal("nested")
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "sandbox.test")
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// Not the cgroup test: nobody may not make groups (an unprivileged
	// agent runs without them).
	cmd := exec.Command(bin, "-test.skip", nested+"|Cgroup", "-test.v", "-test.count=1")
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=" + DefaultPath, "TMPDIR=" + tmp, "HODEI_SANDBOX_TEST_NESTED=1", "HODEI_SANDBOX_TEST_OPEN=" + worldWritable(t), "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tests as nobody: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "--- PASS"); n < 6 {
		t.Fatalf("only %d tests passed as nobody:\n%s", n, out)
	}
}

// TestReexecutedInitAsRoot runs this package's tests again as root with
// the direct start turned off (HODEI_SANDBOX_INIT=reexec), so that both
// ways of building a sandbox are tested as root: the direct start (where
// the kernel supports it) by the tests themselves, the re-executed init
// here (and as nobody by TestUnprivilegedCaller).
func TestReexecutedInitAsRoot(t *testing.T) {
	nestedTests(t, "reexec", "")
}

// nested leaves out of the nested runs the tests that run nested ones.
const nested = "UnprivilegedCaller|AsRoot"

// nestedTests runs this package's tests again with HODEI_SANDBOX_INIT=init
// and without those matching skip, and fails unless they pass.
func nestedTests(t *testing.T, init, skip string) {
	if os.Getenv("HODEI_SANDBOX_TEST_NESTED") != "" {
		t.Fatal("nested")
	}
	if skip != "" {
		skip = "|" + skip
	}
	cmd := exec.Command("/proc/self/exe", "-test.skip", nested+skip, "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "HODEI_SANDBOX_TEST_NESTED=1", InitEnv+"="+init, "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tests with HODEI_SANDBOX_INIT=%s: %v\n%s", init, err, out)
	}
	if n := strings.Count(string(out), "--- PASS"); n < 6 {
		t.Fatalf("only %d tests passed with HODEI_SANDBOX_INIT=%s:\n%s", n, init, out)
	}
}

// TestCheckCachedRemembersOnlySuccess checks the cache of Check: a success
// is recorded under its key and then answered without running the check
// again; a failure is not recorded; another key (another boot, kernel or
// executable) runs the check again.
func TestCheckCachedRemembersOnlySuccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache", "sandbox-check-0")
	runs := 0
	fails := errors.New("no namespaces")
	failing := func() error { runs++; return fails }
	passing := func() error { runs++; return nil }

	if err := checkCached(path, "k1", failing); !errors.Is(err, fails) {
		t.Fatalf("failing check = %v, want %v", err, fails)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failure was recorded: stat = %v", err)
	}
	if err := checkCached(path, "k1", passing); err != nil || runs != 2 {
		t.Fatalf("passing check = %v after %d runs, want nil after 2", err, runs)
	}
	if err := checkCached(path, "k1", failing); err != nil || runs != 2 {
		t.Fatalf("cached check = %v after %d runs, want nil without running (2)", err, runs)
	}
	if err := checkCached(path, "k2", failing); !errors.Is(err, fails) || runs != 3 {
		t.Fatalf("check under another key = %v after %d runs, want %v after 3", err, runs, fails)
	}
	if err := checkCached("", "k1", passing); err != nil || runs != 4 {
		t.Fatalf("uncached check = %v after %d runs, want nil after 4", err, runs)
	}
	if key := checkKey(); !strings.Contains(key, "boot ") || !strings.Contains(key, "exe ") {
		t.Errorf("checkKey() = %q, want the boot id and the executable", key)
	}
}
