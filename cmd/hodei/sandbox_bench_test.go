package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/hodei-ci/hodei/internal/proctest"
	"github.com/hodei-ci/hodei/internal/sandbox"
)

// The cost of isolation with the whole hodei binary as the sandbox's init
// (the agent package's benchmarks re-execute a much smaller test binary).

// BenchmarkHodeiStepUnisolated is `sh -e -c true`, as an unisolated step.
func BenchmarkHodeiStepUnisolated(b *testing.B) {
	dir := b.TempDir()
	proctest.BenchCPU(b, func() error {
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
	proctest.BenchCPU(b, func() error {
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
