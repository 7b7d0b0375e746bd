// Package proctest holds what tests of process supervision share (the
// agent's steps, cgroups, the local provider's agent processes): whether a
// process is still alive, and waiting, on a pidfd rather than by sleeping,
// until one has exited.
package proctest

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Alive reports whether process pid exists and has not exited: a zombie
// (an exited process whose parent has not reaped it yet) has ended all the
// same.
func Alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false // gone since the signal
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// RequireDead fails the test unless pid has exited, waiting at most d for
// it: a killed process dies asynchronously, so it waits on a pidfd (which
// becomes readable when the process exits), not by sleeping.
func RequireDead(t testing.TB, pid int, d time.Duration) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(d)
	for {
		ms := max(int(time.Until(deadline).Milliseconds()), 0)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd: %v", err)
		}
		if n == 0 {
			t.Fatalf("process %d still alive %v later", pid, d)
		}
		break
	}
	if Alive(pid) {
		t.Fatalf("process %d still running although its pidfd says it exited", pid)
	}
}

// CPUTime is the CPU time (user and system) used so far by this process
// and the children it has waited for.
func CPUTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// BenchCPU runs run in b's loop and reports, beside the wall time, the CPU
// time per run of this process and the children it waited for
// ("cpu-ms/op"): what starting a step or a sandbox costs the machine.
func BenchCPU(b *testing.B, run func() error) {
	b.Helper()
	cpu0 := CPUTime()
	for b.Loop() {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((CPUTime()-cpu0).Microseconds())/float64(b.N)/1000, "cpu-ms/op")
}
