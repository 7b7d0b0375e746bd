// Package staticinit is the init of the PID namespace of a sandbox started
// directly (see package sandbox, direct.go): a static executable of a few
// hundred bytes of machine code, with no loader and no libc, instead of a
// `/bin/sh` running a script (a dynamically linked shell costs about as
// much CPU to start as the step's own shell).
//
// The init does what the script did, and reaps orphans too:
//
//   - it blocks SIGHUP, SIGINT, SIGQUIT, SIGTERM and SIGCHLD and takes them
//     from a signalfd (blocked signals are queued even for a namespace's
//     init, which ignores the signals it has no handler for), then writes
//     one byte on fd 4 and closes it: from then on a signal is passed on,
//     not lost;
//   - it passes each of the four termination signals on to every process
//     of the namespace (kill(-1, sig)), setsid daemons included;
//   - on SIGCHLD it reaps every exited child (the step's orphans, which the
//     kernel hands to the namespace's init), so that none stays a zombie
//     while the step runs;
//   - it waits on fd 3 and exits when fd 3 reaches its end (or fails); the
//     agent normally kills it first. Its death makes the kernel kill every
//     process of the namespace.
//
// It has no other input: no arguments, no environment, nothing read but
// signals and fd 3. Program returns it for the running architecture
// (linux/amd64 only; nil elsewhere, where the sandbox keeps the shell
// init), and Open puts it in a sealed memfd that can be executed as
// /proc/self/fd/N.
//
// The executable is assembled by Build from the instructions in
// program.go; `go generate` writes it (init_linux_amd64) and a listing of
// every instruction (init_linux_amd64.lst), both committed, and the tests
// check that they are what Build makes. Building hodei needs no assembler.
package staticinit

//go:generate go run gen.go

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Program is the init for the running architecture, nil if it has none.
func Program() []byte { return program_ }

// Open writes the init into a new memfd, makes it read-only and
// executable (mode 0555), and seals it (no write, resize, change of the
// execute bits or further seal), so that nothing, not even a process of the same uid as
// the agent, can change the program every sandbox runs. The caller keeps
// the file open and executes /proc/self/fd/N (close-on-exec: the file is
// executable by its descriptor, and no child inherits it by accident).
func Open() (*os.File, error) {
	prog := Program()
	if prog == nil {
		return nil, errors.New("staticinit: no init for this architecture")
	}
	// MFD_EXEC says that the file is meant to be executed (Linux 6.3 logs a
	// warning without it, and vm.memfd_noexec=1 would make it not
	// executable); older kernels refuse the flag, hence the retry.
	fd, err := unix.MemfdCreate("hodei-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("hodei-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("staticinit: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "hodei-sandbox-init")
	fail := func(what string, err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("staticinit: %s: %w", what, err)
	}
	if _, err := f.Write(prog); err != nil {
		return fail("write", err)
	}
	if err := f.Chmod(0o555); err != nil {
		return fail("chmod", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	// F_SEAL_EXEC (Linux 6.3) keeps the execute bits as they are; without
	// it only the file's owner (the agent's uid) could change them.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals|unix.F_SEAL_EXEC); errors.Is(err, unix.EINVAL) {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
		if err != nil {
			return fail("seal", err)
		}
	} else if err != nil {
		return fail("seal", err)
	}
	return f, nil
}
