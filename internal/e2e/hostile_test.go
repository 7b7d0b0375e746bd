package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/logtest"
)

// The hostile-job tests run, as real processes, a job of tenant b that tries
// every way out of its sandbox (finding 1 of the security review): walk up
// from its workspace to the data directory and read or open for writing each
// file there, read /proc/$PPID/environ and every /proc/*/environ, read and
// write the workspace of a job of tenant a that runs at the same time,
// signal the server and the agents, leave a setsid daemon behind. Each move
// prints "MOVE name: SUCCEEDED" or "MOVE name: blocked"; the test checks
// them one by one, and checks from outside that the files are unchanged, the
// processes alive, and the daemon gone within 2 s of the job's end.

// hostileSecret is in the environment of the server and the agents: a step
// that finds it read their environment.
const hostileSecret = "hostile-test-aws-secret-5e1f"

// moves are the moves of the hostile job, in the order it makes them.
var moves = []string{
	"walk-up-to-data-dir",
	"list-data-dir",
	"read-kek", "write-kek",
	"read-admin-token", "write-admin-token",
	"read-tokens", "write-tokens",
	"read-db", "write-db",
	"read-audit", "write-audit",
	"read-ppid-environ", "read-any-environ", "read-server-environ",
	"read-other-workspace", "write-other-workspace",
	"signal-server", "signal-agent",
}

// hostileScript is the hostile job's step. $DATA is the data directory
// (the walk-up from the workspace when empty), the file go (written by the
// test) holds the server and agent pids, $MARKER is the argument of the
// daemon it leaves (the step waits until the daemon runs, so that it is
// there when the step ends).
const hostileScript = `
echo "hostile-ready ws=$HODEI_WORKSPACE"
while [ ! -s go ]; do sleep 0.02; done
: "${DATA:=$HODEI_WORKSPACE/../../..}"
PIDS=$(cat go)
move() {
  if (eval "$2") >/dev/null 2>&1; then echo "MOVE $1: SUCCEEDED"; else echo "MOVE $1: blocked"; fi
}
move walk-up-to-data-dir 'cd "$HODEI_WORKSPACE/../../.." && test -e secrets/kek.json'
move list-data-dir 'ls -a "$DATA" | grep -q secrets'
move read-kek 'grep -q . "$DATA/secrets/kek.json"'
move write-kek ': >> "$DATA/secrets/kek.json"'
move read-admin-token 'grep -q . "$DATA/auth/admin-token.json"'
move write-admin-token ': >> "$DATA/auth/admin-token.json"'
move read-tokens 'grep -q . "$DATA/auth/tokens.json"'
move write-tokens ': >> "$DATA/auth/tokens.json"'
move read-db 'head -c 16 "$DATA/hodei.db" | grep -q SQLite'
move write-db ': >> "$DATA/hodei.db"'
move read-audit 'grep -q . "$DATA/audit/audit.jsonl"'
move write-audit ': >> "$DATA/audit/audit.jsonl"'
move read-ppid-environ 'tr "\0" "\n" < /proc/$PPID/environ | grep -q ` + hostileSecret + `'
move read-any-environ 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -q ` + hostileSecret + `'
move read-server-environ 'for p in $PIDS; do tr "\0" "\n" < /proc/$p/environ | grep -q ` + hostileSecret + ` && exit 0; done; exit 1'
move read-other-workspace 'find "$DATA" /tmp -name a-private.txt 2>/dev/null | xargs cat | grep -q tenant-a-private'
move write-other-workspace 'f=$(find "$DATA" /tmp -name a-private.txt 2>/dev/null | head -1); test -n "$f" && : >> "$f"'
move signal-server 'kill -CONT ${PIDS%% *}'
move signal-agent 'for p in ${PIDS#* }; do kill -CONT $p && exit 0; done; exit 1'
setsid sleep $MARKER >/dev/null 2>&1 < /dev/null &
daemon() { for f in /proc/[0-9]*/cmdline; do [ "$(tr '\0' ' ' <"$f" 2>/dev/null)" = "sleep $MARKER " ] && return 0; done; return 1; }
n=0; while [ $n -lt 500 ] && ! daemon; do sleep 0.01; n=$((n+1)); done
echo MOVES-DONE
`

// victimScript is tenant a's job: it keeps a private file in its workspace
// until the test lets it go, then shows the file is intact.
const victimScript = `
echo "tenant-a-private-data" > a-private.txt
echo "victim-ready ws=$HODEI_WORKSPACE"
while [ ! -f release ]; do sleep 0.02; done
cat a-private.txt
`

func hostileYAML(env map[string]string) string {
	var b strings.Builder
	b.WriteString("name: hostile\nenv:\n")
	for k, v := range env {
		fmt.Fprintf(&b, "  %s: %q\n", k, v)
	}
	b.WriteString("jobs:\n  escape:\n    steps:\n      - run: |\n")
	for _, l := range strings.Split(strings.TrimSpace(hostileScript), "\n") {
		b.WriteString("          " + l + "\n")
	}
	return b.String()
}

func victimYAML() string {
	var b strings.Builder
	b.WriteString("name: victim\njobs:\n  keep:\n    steps:\n      - run: |\n")
	for _, l := range strings.Split(strings.TrimSpace(victimScript), "\n") {
		b.WriteString("          " + l + "\n")
	}
	return b.String()
}

// moveResults parses the MOVE lines of the hostile job's output.
func moveResults(out string) map[string]string {
	res := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(?:.*\s)?MOVE ([a-z-]+): (SUCCEEDED|blocked)$`).FindAllStringSubmatch(out, -1) {
		res[m[1]] = m[2]
	}
	return res
}

// checkMoves fails the test for every move that is missing or that does not
// have the outcome want says ("blocked" for all when want is nil).
func checkMoves(t *testing.T, out string, want map[string]string) {
	t.Helper()
	got := moveResults(out)
	for _, m := range moves {
		w := "blocked"
		if want != nil {
			w = want[m]
		}
		switch g := got[m]; {
		case g == "":
			t.Errorf("move %s: no outcome in the job's output", m)
		case g != w:
			t.Errorf("move %s: %s, want %s", m, g, w)
		}
	}
	if t.Failed() {
		t.Logf("hostile job output:\n%s", out)
	}
}

// daemonGone waits until no host process has marker as an argument, and
// fails the test if one is still there 2 s after the job's end.
func daemonGone(t *testing.T, marker string, ended time.Time) {
	t.Helper()
	for {
		var alive []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && bytes.Contains(b, []byte("\x00"+marker+"\x00")) {
				pid, _ := strconv.Atoi(e.Name())
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Since(ended) > 2*time.Second {
			for _, p := range alive {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("the setsid daemon of the hostile job (pids %v) outlived the job by 2s", alive)
		}
		// A poll of /proc: the daemon is not the test's child, and no
		// event says that a process found by its marker has exited.
		time.Sleep(20 * time.Millisecond)
	}
}

// hostileEnv is how a hostile test runs hodei processes.
type hostileEnv struct {
	root    string // a directory the processes' user owns
	dataDir string
	cred    *syscall.Credential // nil: as root
	env     []string
}

// newHostileEnv prepares a directory and an environment for hodei processes
// run as root, or as nobody when unprivileged.
func newHostileEnv(t *testing.T, unprivileged bool) *hostileEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the hostile-job tests start servers as root and as nobody: run them as root")
	}
	base := t.TempDir()
	e := &hostileEnv{root: base, dataDir: filepath.Join(base, "data")}
	if unprivileged {
		if err := os.Chmod(filepath.Dir(hodeiBin), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{filepath.Dir(base), base} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(base, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		e.cred = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	}
	e.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + base,
		"TMPDIR=" + base,
		"HODEI_CREDENTIALS=" + filepath.Join(base, "credentials"),
		"AWS_SECRET_ACCESS_KEY=" + hostileSecret,
		"VAULT_TOKEN=" + hostileSecret,
	}
	return e
}

// start starts a hodei process as the environment's user.
func (e *hostileEnv) start(t *testing.T, logName string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(hodeiBin, args...)
	cmd.Env = e.env
	cmd.Dir = e.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
	return startCmd(t, logName, cmd)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the data directory lacks %s: %v", path, err)
	}
	return sha256.Sum256(b)
}

// hostileServer runs the hostile job of tenant b beside a job of tenant a
// on a server with its local workers (agents 0) or on `hodei agent`
// processes, and returns the hostile job's output. unsafe passes
// --unsafe-shared-user to server and agents.
func hostileServer(t *testing.T, unprivileged bool, agents int, unsafe bool) (out string, marker string, ended time.Time) {
	e := newHostileEnv(t, unprivileged)
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	args := []string{"server", "--data-dir", e.dataDir, "--http", httpAddr, "--nats-listen", natsAddr}
	if agents == 0 {
		args = append(args, "--workers", "2")
	} else {
		args = append(args, "--workers", "0")
	}
	if unsafe {
		// Without cgroups too: they would kill the setsid daemon that the
		// control test expects to outlive its job.
		args = append(args, "--unsafe-shared-user", "--no-cgroups")
	}
	srv := e.start(t, "server.log", args...)
	a := api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 10 * time.Second}}
	waitReady(t, a, srv)
	pids := []string{strconv.Itoa(srv.cmd.Process.Pid)}
	if agents == 0 {
		pids = append(pids, strconv.Itoa(srv.cmd.Process.Pid)) // its agents run in it
	}
	for i := 1; i <= agents; i++ {
		id := fmt.Sprintf("hostile-agent-%d", i)
		args := []string{"agent", "--nats", "nats://" + natsAddr, "--id", id, "--docker", "off",
			"--work-dir", filepath.Join(e.dataDir, "agents", id), "--heartbeat", "250ms"}
		if unsafe {
			args = append(args, "--unsafe-shared-user", "--no-cgroups")
		}
		ag := e.start(t, id+".log", args...)
		pids = append(pids, strconv.Itoa(ag.cmd.Process.Pid))
	}

	// The admin token, then a developer token for each tenant.
	var admin string
	eventually(t, 10*time.Second, "the admin token in the server's log", func() (bool, error) {
		b, _ := os.ReadFile(srv.log)
		m := regexp.MustCompile(`local admin token[^\n]*\n\n\s+(\S+)`).FindSubmatch(b)
		if m != nil {
			admin = string(m[1])
		}
		return m != nil, nil
	})
	token := func(tenant string) *client.Client {
		cmd := exec.Command(hodeiBin, "token", "create", "dev-"+tenant, "--role", "developer", "--tenant", tenant, "--server", a.base)
		cmd.Env = []string{"HODEI_TOKEN=" + admin, "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("token create for %s: %v", tenant, err)
		}
		c, err := client.New(a.base, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		return c
	}
	ca, cb := token("a"), token("b")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if agents > 0 {
		eventually(t, 30*time.Second, "the agents joined", func() (bool, error) {
			ws, err := ca.Workers(ctx)
			return len(ws) >= agents, err
		})
	}
	// Let the audit log exist before the moves.
	if _, err := ca.ListRuns(ctx, client.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	// The server's audit writer appends the listing's record after the answer.
	eventually(t, 30*time.Second, "the audit log has a record", func() (bool, error) {
		st, err := os.Stat(filepath.Join(e.dataDir, "audit/audit.jsonl"))
		return err == nil && st.Size() > 0, nil
	})
	sums := map[string][32]byte{}
	for _, f := range []string{"secrets/kek.json", "auth/admin-token.json", "auth/tokens.json", "hodei.db", "audit/audit.jsonl"} {
		sums[f] = fileSum(t, filepath.Join(e.dataDir, f))
	}

	victim, err := ca.Submit(ctx, "victim.yaml", []byte(victimYAML()), "")
	if err != nil {
		t.Fatal(err)
	}
	victimWS := waitLog(t, ctx, ca, victim.ID, "victim-ready ws=")
	marker = fmt.Sprintf("%d.%03d", 700+os.Getpid()%200, time.Now().UnixNano()%1000)
	hostile, err := cb.Submit(ctx, "hostile.yaml", []byte(hostileYAML(map[string]string{
		"DATA": e.dataDir, "MARKER": marker,
	})), "")
	if err != nil {
		t.Fatal(err)
	}
	hostileWS := waitLog(t, ctx, cb, hostile.ID, "hostile-ready ws=")
	// The go file carries the pids of the server and the agents.
	writeFile(t, filepath.Join(hostileWS, "go"), strings.Join(pids, " "))
	var end client.Run
	eventually(t, time.Minute, "the hostile run to end", func() (bool, error) {
		r, err := cb.GetRun(ctx, hostile.ID)
		end = r
		return err == nil && final(r.State), err
	})
	ended = time.Now()
	var buf bytes.Buffer
	if err := cb.Logs(ctx, hostile.ID, "", client.LogsOptions{}, &buf); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	if !strings.Contains(out, "MOVES-DONE") {
		t.Fatalf("the hostile job did not get through its moves (run %s):\n%s", end.State, out)
	}

	// The victim still has its file, and ends well.
	touch(t, filepath.Join(victimWS, "release"))
	eventually(t, time.Minute, "the victim run to end", func() (bool, error) {
		r, err := ca.GetRun(ctx, victim.ID)
		return err == nil && r.State == "succeeded", err
	})
	if got := waitLog(t, ctx, ca, victim.ID, "tenant-a-"); got != "private-data" {
		t.Errorf("tenant a's file after the hostile job: %q", got)
	}
	if !unsafe {
		// Nothing in the data directory changed but the database and the
		// audit log (which the server itself writes).
		for _, f := range []string{"secrets/kek.json", "auth/admin-token.json", "auth/tokens.json"} {
			if fileSum(t, filepath.Join(e.dataDir, f)) != sums[f] {
				t.Errorf("%s changed during the hostile job", f)
			}
		}
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("process %d (server or agent) is gone after the hostile job: %v", pid, err)
		}
	}
	return out, marker, ended
}

// stepHeader reports whether a line of output (prefixed with its job's key
// or not) is the header the agent writes before a step: it shows the
// script's first line, which is not the script's output.
func stepHeader(line string) bool {
	return strings.HasPrefix(line, "==> step ") || strings.Contains(line, "] ==> step ")
}

// waitLog waits for a line of the run's output that contains prefix and
// returns what follows it on the line.
func waitLog(t *testing.T, ctx context.Context, c *client.Client, run, prefix string) string {
	t.Helper()
	var rest string
	eventually(t, time.Minute, "a line "+prefix+" in the output of run "+run, func() (bool, error) {
		var buf bytes.Buffer
		if err := c.Logs(ctx, run, "", client.LogsOptions{}, &buf); err != nil {
			return false, err
		}
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			if i := strings.Index(sc.Text(), prefix); i >= 0 && !stepHeader(sc.Text()) {
				rest = strings.TrimSpace(sc.Text()[i+len(prefix):])
				return true, nil
			}
		}
		return false, nil
	})
	return rest
}

func touch(t *testing.T, path string) { writeFile(t, path, "") }

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestHostileJobEmbeddedWorkersAsRoot(t *testing.T) {
	out, marker, ended := hostileServer(t, false, 0, false)
	checkMoves(t, out, nil)
	daemonGone(t, marker, ended)
}

func TestHostileJobEmbeddedWorkersAsUnprivilegedUser(t *testing.T) {
	out, marker, ended := hostileServer(t, true, 0, false)
	checkMoves(t, out, nil)
	daemonGone(t, marker, ended)
}

func TestHostileJobAgentProcessesAsRoot(t *testing.T) {
	out, marker, ended := hostileServer(t, false, 2, false)
	checkMoves(t, out, nil)
	daemonGone(t, marker, ended)
}

func TestHostileJobAgentProcessesAsUnprivilegedUser(t *testing.T) {
	out, marker, ended := hostileServer(t, true, 2, false)
	checkMoves(t, out, nil)
	daemonGone(t, marker, ended)
}

// TestHostileJobMovesSucceedUnisolated is the control: with
// --unsafe-shared-user and --no-cgroups (how every step ran before
// isolation), the same
// job's moves do succeed, so that a probe that cannot succeed would not
// pass the tests above.
func TestHostileJobMovesSucceedUnisolated(t *testing.T) {
	out, marker, _ := hostileServer(t, false, 0, true)
	want := map[string]string{}
	for _, m := range moves {
		want[m] = "SUCCEEDED"
	}
	checkMoves(t, out, want)
	// The daemon outlived its job.
	var found bool
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte("\x00"+marker+"\x00")) {
			found = true
			pid, _ := strconv.Atoi(e.Name())
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if !found {
		t.Error("the setsid daemon of the unisolated job was not found after the job: the probe does not work")
	}
}

// TestHostileJobInHodeiRun runs the hostile job beside a victim job in
// `hodei run`, as root and as nobody.
func TestHostileJobInHodeiRun(t *testing.T) {
	for _, unprivileged := range []bool{false, true} {
		t.Run(fmt.Sprintf("unprivileged=%v", unprivileged), func(t *testing.T) {
			e := newHostileEnv(t, unprivileged)
			marker := fmt.Sprintf("%d.%03d", 600+os.Getpid()%97, time.Now().UnixNano()%1000)
			yaml := hostileYAML(map[string]string{"MARKER": marker})
			yaml = strings.Replace(yaml, "jobs:\n", "jobs:\n  keep:\n    steps:\n      - run: |\n"+indent(victimScript)+"\n", 1)
			file := filepath.Join(e.root, "hostile.yaml")
			if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(hodeiBin, "run", "--workers", "2", file)
			cmd.Env, cmd.Dir = e.env, e.root
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
			var buf logtest.Buffer
			cmd.Stdout, cmd.Stderr = &buf, &buf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			line := func(prefix string) string {
				var rest string
				eventually(t, time.Minute, "a line "+prefix, func() (bool, error) {
					for _, l := range strings.Split(buf.String(), "\n") {
						if i := strings.Index(l, prefix); i >= 0 && !stepHeader(l) {
							rest = strings.TrimSpace(l[i+len(prefix):])
							return true, nil
						}
					}
					return false, nil
				})
				return rest
			}
			victimWS := line("victim-ready ws=")
			pid := strconv.Itoa(cmd.Process.Pid)
			writeFile(t, filepath.Join(line("hostile-ready ws="), "go"), pid+" "+pid)
			line("MOVES-DONE")
			ended := time.Now()
			touch(t, filepath.Join(victimWS, "release"))
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("hodei run: %v\n%s", err, buf.String())
				}
			case <-time.After(time.Minute):
				t.Fatalf("hodei run did not end:\n%s", buf.String())
			}
			if !strings.Contains(buf.String(), "tenant-a-private-data") {
				t.Errorf("the victim job lost its file:\n%s", buf.String())
			}
			// hodei run has no audit log nor tokens: those moves find
			// nothing either way.
			checkMoves(t, buf.String(), nil)
			daemonGone(t, marker, ended)
		})
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString("          " + l + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// TestNoIsolationRefusedUnlessUnsafe runs hodei inside a user namespace
// without any id mapped, where a sandbox cannot be made (the nested user
// namespace of the step cannot map the agent's uid): `hodei agent`,
// `hodei server` and `hodei run` refuse to start and say how to opt out;
// with --unsafe-shared-user, `hodei run` runs the job.
func TestNoIsolationRefusedUnlessUnsafe(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("the test needs unshare (util-linux)")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	writeFile(t, file, "name: p\njobs:\n  j:\n    steps: [{run: 'echo ran-as-$(id -u)'}]\n")
	run := func(args ...string) (string, error) {
		cmd := exec.Command("unshare", append([]string{"--user", hodeiBin}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, args := range [][]string{
		{"agent", "--nats", "nats://127.0.0.1:1", "--work-dir", filepath.Join(dir, "w")},
		{"server", "--data-dir", filepath.Join(dir, "d"), "--http", freeAddr(t), "--nats-listen", "none"},
		{"run", file},
	} {
		out, err := run(args...)
		if err == nil || !strings.Contains(out, "steps cannot be isolated on this machine") || !strings.Contains(out, "--unsafe-shared-user") {
			t.Errorf("hodei %s without isolation: %v\n%s", args[0], err, out)
		}
	}
	out, err := run("run", "--unsafe-shared-user", file)
	if err != nil || !strings.Contains(out, "ran-as-") {
		t.Errorf("hodei run --unsafe-shared-user: %v\n%s", err, out)
	}
}
