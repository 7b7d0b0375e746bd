package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/proctest"
)

// manager returns a Manager of version v under a parent of the test's own,
// or skips the test, saying why, where this machine has no such hierarchy.
func manager(t testing.TB, v Version, noKill bool) *Manager {
	t.Helper()
	parent := fmt.Sprintf("hodei-test-%d", os.Getpid())
	m, err := New(Options{Version: v, Parent: parent, noKillFile: noKill})
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("cgroup v%d not usable here: %v", v, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The parent of the test goes when its last test is done; an
		// error here means a sibling test still has a group.
		if m.version == V2 {
			_ = os.Remove(m.v2)
			return
		}
		for _, d := range m.v1 {
			_ = os.Remove(d)
		}
	})
	return m
}

// versions are the hierarchies tested: both, each where the machine has it.
var versions = []struct {
	name   string
	v      Version
	noKill bool
}{{"v1", V1, false}, {"v2", V2, false}, {"v2-freeze", V2, true}}

// held is a shell that waits for a line on its stdin before running script,
// so that it can be put in a group before it forks.
type held struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startHeld(t *testing.T, script string) *held {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read -r _; "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &held{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// create makes the group name with limits l under m.
func create(t *testing.T, m *Manager, name string, l Limits) *Group {
	t.Helper()
	g, err := m.Create(name, l)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// startInGroup starts script held (startHeld) and puts the shell in g, so
// that everything it forks once released belongs to the group.
func startInGroup(t *testing.T, g *Group, script string) *held {
	t.Helper()
	h := startHeld(t, script)
	if err := g.Add(h.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return h
}

// runInGroup runs script in g to its successful end and returns it with
// the group's stats.
func runInGroup(t *testing.T, g *Group, script string) (*held, Stats) {
	t.Helper()
	h := startInGroup(t, g, script)
	h.release(t)
	if err := h.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return h, s
}

func (h *held) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
}

func (h *held) readPid(t *testing.T) int {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid line %q: %v", line, err)
	}
	return pid
}

func TestKillTakesSetsidDaemons(t *testing.T) {
	for _, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, tc.noKill)
			g := create(t, m, "w/kill", Limits{})
			h := startInGroup(t, g, `setsid sh -c 'while :; do sleep 1; done' >/dev/null 2>&1 </dev/null & echo $!`)
			h.release(t)
			daemon := h.readPid(t)
			if err := h.cmd.Wait(); err != nil {
				t.Fatalf("shell: %v", err)
			}
			pids, err := g.Procs()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(pids, daemon) {
				t.Fatalf("daemon %d not in the group: %v", daemon, pids)
			}
			if err := g.Kill(); err != nil {
				t.Fatal(err)
			}
			proctest.RequireDead(t, daemon, 2*time.Second)
			if pids, _ := g.Procs(); len(pids) != 0 {
				t.Fatalf("group not empty after Kill: %v", pids)
			}
			if err := g.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := g.Procs(); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("group still there after Remove: %v", err)
			}
			if err := g.Kill(); err != nil {
				t.Fatalf("Kill of a removed group: %v", err)
			}
			if err := g.Remove(); err != nil {
				t.Fatalf("Remove of a removed group: %v", err)
			}
			for _, d := range dirsOf(m, "w") {
				if err := os.Remove(d); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestKillTakesAForkLoop(t *testing.T) {
	for _, tc := range versions {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, tc.noKill)
			g := create(t, m, "forks", Limits{})
			defer g.Remove()
			// Every process keeps starting new ones: only a kill that
			// stops forking first (freezer, cgroup.kill) empties the group.
			h := startInGroup(t, g, `f() { while :; do (f) & sleep 0.05; done; }; f`)
			h.release(t)
			if err := waitFor(func() bool { p, _ := g.Procs(); return len(p) > 20 }); err != nil {
				t.Fatal("the fork loop did not grow:", err)
			}
			if err := g.Kill(); err != nil {
				t.Fatal(err)
			}
			if pids, _ := g.Procs(); len(pids) != 0 {
				t.Fatalf("group not empty after Kill: %v", pids)
			}
		})
	}
}

// waitFor polls cond for up to 10 s (a failure bound, not a delay). It
// polls because what it waits on (a process that is not the test's child
// leaving a group, a cgroup file's value) has no event to wait on.
func waitFor(cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func TestCPUTime(t *testing.T) {
	for _, tc := range versions[:2] {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, false)
			g := create(t, m, "cpu", Limits{})
			defer g.Remove()
			h, s := runInGroup(t, g, `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`)
			own := h.cmd.ProcessState.UserTime() + h.cmd.ProcessState.SystemTime()
			// The group counts what the shell used after it joined, that
			// is nearly all of it (it joined while blocked on read).
			if s.CPUTime <= 0 || s.CPUTime < own/2 || s.CPUTime > 2*own+20*time.Millisecond {
				t.Fatalf("group CPU time %v; the process's own rusage says %v", s.CPUTime, own)
			}
		})
	}
}

func TestLimitsAreWritten(t *testing.T) {
	m := manager(t, V1, false)
	g := create(t, m, "limits", Limits{CPUMilli: 1500, Memory: 96 << 20, Pids: 77})
	defer g.Remove()
	for _, c := range []struct{ ctl, file, want string }{
		{"memory", "memory.limit_in_bytes", strconv.Itoa(96 << 20)},
		{"cpu", "cpu.cfs_quota_us", "150000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpu", "cpu.shares", "1536"},
		{"pids", "pids.max", "77"},
	} {
		d, ok := g.dirs[c.ctl]
		if !ok {
			t.Errorf("no %s controller", c.ctl)
			continue
		}
		got, err := readFile(d, c.file)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s = %s, want %s", c.file, got, c.want)
		}
	}
}

func TestMemoryLimitOOMKills(t *testing.T) {
	m := manager(t, V1, false)
	const limit = 32 << 20
	g := create(t, m, "oom", Limits{Memory: limit})
	defer g.Remove()
	// Command substitution keeps all 200 MB in the shell's memory.
	h := startInGroup(t, g, `x=$(head -c 200000000 /dev/zero | tr '\0' a); echo ${#x}`)
	h.release(t)
	err := h.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the shell was not SIGKILLed: %v", err)
	}
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.OOMKills < 1 {
		t.Fatalf("no OOM kill counted: %+v", s)
	}
	if n, err := g.OOMKills(); err != nil || n != s.OOMKills {
		t.Fatalf("OOMKills() = %d, %v; Stats says %d", n, err, s.OOMKills)
	}
	if s.PeakMemory < limit/2 || s.PeakMemory > limit {
		t.Fatalf("peak memory %d, limit %d", s.PeakMemory, limit)
	}
}

func TestPeakMemory(t *testing.T) {
	m := manager(t, V1, false)
	g := create(t, m, "peak", Limits{Memory: 256 << 20})
	defer g.Remove()
	_, s := runInGroup(t, g, `x=$(head -c 40000000 /dev/zero | tr '\0' a); echo ${#x}`)
	if s.PeakMemory < 40_000_000 || s.PeakMemory > 256<<20 || s.OOMKills != 0 {
		t.Fatalf("stats %+v after holding 40 MB", s)
	}
}

func TestCPUQuotaThrottles(t *testing.T) {
	m := manager(t, V1, false)
	g := create(t, m, "quota", Limits{CPUMilli: 100})
	defer g.Remove()
	h := startInGroup(t, g, `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`)
	start := time.Now()
	h.release(t)
	if err := h.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	s, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// A tenth of a core: the kernel never lets it use half of the wall
	// time, whatever the machine's load.
	if s.CPUTime <= 0 || s.CPUTime > wall/2 {
		t.Fatalf("CPU time %v in %v of wall time under a 100m quota", s.CPUTime, wall)
	}
}

func TestPidsLimit(t *testing.T) {
	m := manager(t, V1, false)
	g := create(t, m, "pids", Limits{Pids: 5})
	defer func() { _ = g.Kill(); _ = g.Remove() }()
	h := startInGroup(t, g, `n=0; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 & n=$((n+1)); done; echo $n`)
	h.release(t)
	err := h.cmd.Wait()
	if err == nil {
		t.Fatal("ten processes started under a limit of five")
	}
	if pids, _ := g.Procs(); len(pids) > 5 {
		t.Fatalf("%d processes in a group limited to 5", len(pids))
	}
}

func TestLeftoversFoundByANewManager(t *testing.T) {
	for _, tc := range versions[:2] {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, false)
			g := create(t, m, "agent-1/job-7-1", Limits{})
			h := startInGroup(t, g, `setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $!`)
			h.release(t)
			daemon := h.readPid(t)
			// A new Manager, as an agent started again would make.
			m2, err := New(Options{Version: tc.v, Parent: filepath.Base(parentOf(m))})
			if err != nil {
				t.Fatal(err)
			}
			kids, err := m2.Children("agent-1")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(kids, []string{"agent-1/job-7-1"}) {
				t.Fatalf("children %v", kids)
			}
			left, err := m2.Open(kids[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := left.Kill(); err != nil {
				t.Fatal(err)
			}
			proctest.RequireDead(t, daemon, 2*time.Second)
			if err := left.Remove(); err != nil {
				t.Fatal(err)
			}
			if err := g.Remove(); err != nil {
				t.Fatal(err)
			}
			for _, d := range dirsOf(m, "agent-1") {
				if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestKillTree(t *testing.T) {
	for _, tc := range versions[:2] {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, false)
			var daemons []int
			for _, name := range []string{"agent-9/a-1", "agent-9/b-1"} {
				g := create(t, m, name, Limits{})
				h := startInGroup(t, g, `setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $!`)
				h.release(t)
				daemons = append(daemons, h.readPid(t))
				if err := h.cmd.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			n, err := m.KillTree("agent-9")
			if err != nil || n != 2 {
				t.Fatalf("KillTree = %d, %v; want 2 processes", n, err)
			}
			for _, p := range daemons {
				proctest.RequireDead(t, p, 2*time.Second)
			}
			for _, d := range dirsOf(m, "agent-9") {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s still there: %v", d, err)
				}
			}
			if n, err := m.KillTree("agent-9"); err != nil || n != 0 {
				t.Fatalf("KillTree of nothing = %d, %v", n, err)
			}
		})
	}
}

func parentOf(m *Manager) string {
	if m.version == V2 {
		return m.v2
	}
	return m.v1["freezer"]
}

// dirsOf lists the directories of the group name that exist: on v1 a
// group without a CPU limit has none in the cpu hierarchy (when that is
// not cpuacct's).
func dirsOf(m *Manager, name string) []string {
	if m.version == V2 {
		return []string{filepath.Join(m.v2, name)}
	}
	var out []string
	for _, d := range m.v1 {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			out = append(out, filepath.Join(d, name))
		}
	}
	return out
}

func TestBadNames(t *testing.T) {
	if _, err := New(Options{Parent: "../etc"}); err == nil {
		t.Fatal("parent ../etc accepted")
	}
	m := &Manager{version: V2, v2: t.TempDir()}
	for _, n := range []string{"", "..", "a/../b", "a//b", "/a", "a b"} {
		if _, err := m.Create(n, Limits{}); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

func TestMountinfoParsing(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mountinfo")
	data := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/un\040ified rw,relatime - cgroup2 cgroup2 rw
`
	if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := readMounts(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || !slices.Equal(ms[0].options, []string{"rw", "cpu", "cpuacct"}) || ms[2].point != "/sys/fs/cgroup/un ified" || !ms[2].v2 {
		t.Fatalf("mounts %+v", ms)
	}
	if got := within(ms[1], "/docker/abc/x"); got != "/sys/fs/cgroup/memory/x" {
		t.Fatalf("within = %s", got)
	}
}

func TestUnavailableSaysWhy(t *testing.T) {
	// A v2 group without a memory controller is refused when memory is
	// required; the reason names the hierarchy.
	mounts := []mount{{point: t.TempDir(), root: "/", v2: true}}
	if err := os.WriteFile(filepath.Join(mounts[0].point, "cgroup.controllers"), []byte("cpu pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newV2(mounts, map[string]string{"": "/"}, Options{Parent: "hodei"}, true)
	if err == nil || !strings.Contains(err.Error(), "no memory controller") {
		t.Fatalf("err = %v", err)
	}
	_, err = newV1(nil, map[string]string{}, Options{Parent: "hodei"})
	if err == nil || !strings.Contains(err.Error(), "no freezer controller") {
		t.Fatalf("err = %v", err)
	}
}

func BenchmarkCreateRemove(b *testing.B) {
	for _, tc := range versions[:2] {
		b.Run(tc.name, func(b *testing.B) {
			m := manager(b, tc.v, false)
			lim := Limits{CPUMilli: 1000, Memory: 256 << 20, Pids: 1024}
			for i := 0; b.Loop(); i++ {
				g, err := m.Create("bench-"+strconv.Itoa(i), lim)
				if err != nil {
					b.Fatal(err)
				}
				if err := g.Kill(); err != nil {
					b.Fatal(err)
				}
				if _, err := g.Stats(); err != nil {
					b.Fatal(err)
				}
				if err := g.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
