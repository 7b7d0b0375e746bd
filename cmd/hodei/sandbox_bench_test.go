package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/sandbox"
)

// The cost of isolation with the whole hodei binary as the sandbox's init
// (the agent package's benchmarks re-execute a much smaller test binary).

func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

func benchCPU(b *testing.B, run func() error) {
	cpu0 := cpuTime()
	for b.Loop() {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N)/1000, "cpu-ms/op")
}

// BenchmarkHodeiStepUnisolated is `sh -e -c true`, as an unisolated step.
func BenchmarkHodeiStepUnisolated(b *testing.B) {
	dir := b.TempDir()
	benchCPU(b, func() error {
		cmd := exec.Command("/bin/sh", "-e", "-c", "true")
		cmd.Dir, cmd.Env = dir, []string{"PATH=" + sandbox.DefaultPath}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd.Run()
	})
}

// BenchmarkHodeiStepSandboxed is the same step in a sandbox whose init is
// this (hodei-sized) binary.
func BenchmarkHodeiStepSandboxed(b *testing.B) {
	ws, tmp := b.TempDir(), b.TempDir()
	const uid = 0x70000000
	if os.Geteuid() == 0 {
		for _, d := range []string{ws, tmp} {
			if err := os.Chown(d, uid, uid); err != nil {
				b.Fatal(err)
			}
		}
	}
	benchCPU(b, func() error {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		c := &sandbox.Cmd{Spec: sandbox.Spec{Script: "true", Workspace: ws, Tmp: tmp, Hide: []string{b.TempDir()},
			Env: []string{"PATH=" + sandbox.DefaultPath}, UID: uid, GID: uid}, Stdout: w}
		err = c.Start()
		w.Close()
		if err != nil {
			return err
		}
		_, err = c.Wait()
		return err
	})
}
