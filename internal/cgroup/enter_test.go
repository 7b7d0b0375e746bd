package cgroup

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// cgroupLine is the line of /proc/PID/cgroup (or thread-self) of the
// hierarchy a group of m lives in: the freezer's on v1, the unified one on
// v2.
func cgroupLine(t *testing.T, m *Manager, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if m.version == V2 && parts[0] == "0" {
			return parts[2]
		}
		if m.version == V1 && strings.Contains(","+parts[1]+",", ",freezer,") {
			return parts[2]
		}
	}
	t.Fatalf("%s: no line for the hierarchy in use:\n%s", path, b)
	return ""
}

// TestSpawnedProcessIsBornInTheGroup checks that a process started by Spawn
// is in the group from its first instruction (it reads its own cgroup
// before it could have been moved), and that the thread that started it is
// back in its own group afterwards.
func TestSpawnedProcessIsBornInTheGroup(t *testing.T) {
	for _, tc := range versions[:2] {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, false)
			g, err := m.Create("born", Limits{Pids: 64})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// A group that still holds a thread of this process is not
				// killed: the test would freeze and kill itself.
				if pids, _ := g.Procs(); !slices.Contains(pids, os.Getpid()) {
					_ = g.Kill()
				}
				_ = g.Remove()
			})
			// cat reads its own cgroup as its first act; nothing moves it
			// after it has started.
			cmd := exec.Command("cat", "/proc/self/cgroup")
			cmd.SysProcAttr = &syscall.SysProcAttr{}
			var out strings.Builder
			cmd.Stdout = &out
			if err := g.Spawn(cmd.SysProcAttr, cmd.Start); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "/born\n") {
				t.Fatalf("the process started outside the group:\n%s", out.String())
			}
			// Every thread of this process is out of the group again: its
			// listing of processes is empty, so a Kill cannot reach us.
			if pids, err := g.Procs(); err != nil || len(pids) != 0 {
				t.Fatalf("group holds %v (%v) after the start", pids, err)
			}
		})
	}
}

// TestEnterAndLeave checks that a thread in a group comes back to where it
// was, with Leave writing only to files Enter opened.
func TestEnterAndLeave(t *testing.T) {
	for _, tc := range versions[:2] {
		t.Run(tc.name, func(t *testing.T) {
			m := manager(t, tc.v, false)
			g, err := m.Create("enter", Limits{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Remove() })
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			before := cgroupLine(t, m, "/proc/thread-self/cgroup")
			e, err := g.Enter()
			if err != nil {
				t.Fatal(err)
			}
			inside := cgroupLine(t, m, "/proc/thread-self/cgroup")
			if err := e.Leave(); err != nil {
				t.Fatal(err)
			}
			after := cgroupLine(t, m, "/proc/thread-self/cgroup")
			if after != before {
				t.Fatalf("thread in %s after Leave, was in %s", after, before)
			}
			if tc.v == V1 && !strings.HasSuffix(inside, "/enter") {
				t.Fatalf("v1: thread in %s between Enter and Leave", inside)
			}
			if tc.v == V2 && inside != before {
				t.Fatalf("v2: the thread moved (%s): clone3 places its children instead", inside)
			}
		})
	}
}
