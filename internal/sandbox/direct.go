package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/sandbox/initproc"
	"github.com/hodei-ci/hodei/internal/sandbox/staticinit"
)

// The direct start: when the agent is root and the kernel can mount a
// /proc for a PID namespace named by a file descriptor (proc's "pidns"
// option, Linux 6.18), the sandbox is built without starting this binary
// as its init, which costs most of a sandboxed step's CPU (the runtime and
// package initialisation of a large binary, once per step). A goroutine
// locked to a thread of its own builds the sandbox from that thread:
//
//  1. it unshares its mount, IPC and UTS namespaces (and its file system
//     context) and makes the step's mounts there (initproc.Mounts);
//  2. it starts the namespace's init as the step's uid in a new PID
//     namespace: the static init of package staticinit (a few hundred
//     bytes of machine code, executed from a sealed memfd) where there is
//     one for the architecture (linux/amd64), else `/bin/sh` running
//     initScript. Either passes termination signals on to every process
//     of the namespace and otherwise waits; the static init also reaps the
//     step's orphans. Its death kills every process of the namespace;
//  3. it mounts the /proc of that PID namespace, then enters the step's
//     Landlock domain with no_new_privs (initproc.Confine) and joins the
//     PID namespace for its children;
//  4. it starts the step's shell as the step's uid, waits for it, and then
//     kills the init, which takes whatever the step left.
//
// With a Cgroup, the thread enters the group (cgroup.Group.Enter) before
// it starts anything, and leaves it once the step's shell has started: the
// init and the shell are born in the group, so no process of the step can
// fork outside it, and no process has to hold the step until it is moved
// in.
//
// The thread ends with the goroutine (it is never unlocked), and its
// namespaces and domain with it. The init is not in the Landlock domain
// (it is started before /proc can be mounted, which a thread in a domain
// may not do) but runs a fixed program and holds no capability, and the
// step cannot trace it (Landlock forbids tracing a process outside the
// domain). Unlike the static init and the init of this binary, the shell
// init does not reap orphaned processes of the step before the step ends:
// they are gone with the namespace when it does.
//
// The static init is executed as /proc/self/fd/5 of the child, the memfd
// passed as its fd 5: a path on disk would have to be outside every
// directory the sandbox hides and safe from other users, a memfd is
// neither on disk nor in any mount namespace, and the child reaches it
// through its own descriptor table whatever its uid (the thread's /proc is
// still the agent's when the init starts, and Landlock is not yet in
// force). The memfd is sealed, so no process can change it.

// initScript is the shell init of the direct start (where there is no
// static init): it says on fd 4 that its traps are set, then waits on fd 3
// until the caller closes it (or kills it). A trapped signal interrupts
// `read` like an end of file, hence t.
const initScript = `trap 't=1; kill -s TERM -- -1' TERM
trap 't=1; kill -s INT -- -1' INT
trap 't=1; kill -s HUP -- -1' HUP
trap 't=1; kill -s QUIT -- -1' QUIT
echo >&4; exec 4>&-
while t=0; read -r _ <&3 || [ $t = 1 ]; do :; done`

// direct is a step started directly.
type direct struct {
	init int                // the init's pid, as the caller sees it
	done chan directOutcome // how the step ended, once every process is gone
}

type directOutcome struct {
	st  Status
	err error
}

var (
	directOnce sync.Once
	directOK   bool
)

// InitEnv names the environment variable that, set to "reexec", makes the
// agent start every step through the re-executed init even where the
// direct start is supported: the path of agents that are not root, kept
// for a kernel on which the direct start misbehaves, and for the tests
// that check both paths. Set to "shell", it keeps the direct start but
// with the shell init instead of the static one (the direct start of
// architectures without a static init).
const InitEnv = "HODEI_SANDBOX_INIT"

var (
	staticOnce sync.Once
	staticExe  *os.File // the static init in a sealed memfd; nil: the shell init
)

// staticInit returns the memfd of the static init, or nil where the
// direct start uses the shell init: an architecture without a static
// init, InitEnv=shell, or a kernel that refuses an executable memfd
// (vm.memfd_noexec=2), which is logged once.
func staticInit() *os.File {
	staticOnce.Do(func() {
		if os.Getenv(InitEnv) == "shell" || staticinit.Program() == nil {
			return
		}
		f, err := staticinit.Open()
		if err != nil {
			slog.Warn("sandbox: the static init is unavailable, steps start with a shell init", "err", err)
			return
		}
		staticExe = f
	})
	return staticExe
}

// directSupported reports whether steps start directly (see above).
func directSupported() bool {
	directOnce.Do(func() {
		directOK = os.Geteuid() == 0 && os.Getenv(InitEnv) != "reexec" && procPidnsOption()
	})
	return directOK
}

// The new mount API (linux/mount.h).
const (
	sysMoveMount        = 429
	sysFsopen           = 430
	sysFsconfig         = 431
	sysFsmount          = 432
	fsconfigSetFD       = 5
	fsconfigCmdCreate   = 6
	mountAttrNosuid     = 0x2
	mountAttrNodev      = 0x4
	mountAttrNoexec     = 0x8
	moveMountFEmptyPath = 0x4
	fsopenCloexec       = 0x1
	fsmountCloexec      = 0x1
	atFDCWD             = -100
	sysSetns            = 308
)

// procPidnsOption reports whether proc takes the "pidns" option.
func procPidnsOption() bool {
	own, err := syscall.Open("/proc/self/ns/pid", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(own)
	fs, err := fsopenProc()
	if err != nil {
		return false
	}
	defer syscall.Close(fs)
	return fsconfigPidns(fs, own) == nil
}

func cstr(s string) uintptr {
	b, _ := syscall.BytePtrFromString(s)
	return uintptr(unsafe.Pointer(b))
}

func fsopenProc() (int, error) {
	fd, _, e := syscall.Syscall(sysFsopen, cstr("proc"), fsopenCloexec, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func fsconfigPidns(fs, pidns int) error {
	name := cstr("pidns")
	_, _, e := syscall.Syscall6(sysFsconfig, uintptr(fs), fsconfigSetFD, name, 0, uintptr(pidns), 0)
	runtime.KeepAlive(name)
	if e != 0 {
		return e
	}
	return nil
}

// mountProcOf mounts at /proc, in the calling thread's mount namespace, a
// proc of the PID namespace open as ns.
func mountProcOf(ns int) error {
	fs, err := fsopenProc()
	if err != nil {
		return fmt.Errorf("fsopen proc: %w", err)
	}
	defer syscall.Close(fs)
	if err := fsconfigPidns(fs, ns); err != nil {
		return fmt.Errorf("proc pidns: %w", err)
	}
	if _, _, e := syscall.Syscall6(sysFsconfig, uintptr(fs), fsconfigCmdCreate, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("create proc: %w", e)
	}
	m, _, e := syscall.Syscall(sysFsmount, uintptr(fs), fsmountCloexec, mountAttrNosuid|mountAttrNodev|mountAttrNoexec)
	if e != 0 {
		return fmt.Errorf("fsmount proc: %w", e)
	}
	defer syscall.Close(int(m))
	empty, target := cstr(""), cstr("/proc")
	fdcwd := atFDCWD
	_, _, e = syscall.Syscall6(sysMoveMount, m, empty, uintptr(fdcwd), target, moveMountFEmptyPath, 0)
	runtime.KeepAlive(empty)
	runtime.KeepAlive(target)
	if e != 0 {
		return fmt.Errorf("mount /proc: %w", e)
	}
	return nil
}

// startDirect starts the step as described at the top of this file.
func (c *Cmd) startDirect() error {
	d := &direct{done: make(chan directOutcome, 1)}
	started := make(chan error, 1)
	go d.run(c, started)
	if err := <-started; err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	c.direct = d
	return nil
}

// run builds the sandbox and runs the step on a thread of its own: it sends
// nil, or why the step could not be started, on started, then, once the
// step has ended, its outcome on d.done.
func (d *direct) run(c *Cmd, started chan<- error) {
	// Never unlocked: the thread, in the step's namespaces and Landlock
	// domain from here on, ends with this goroutine.
	runtime.LockOSThread()
	if syscall.Gettid() == syscall.Getpid() {
		// The main thread is never ended but parked for good, and /proc
		// shows the process's mounts through it: it holds on, locked,
		// while another thread does the work.
		done := make(chan struct{})
		go func() { defer close(done); d.run(c, started) }()
		<-done
		runtime.UnlockOSThread()
		return
	}
	var entry *cgroup.Entry
	if c.Cgroup != nil {
		var err error
		if entry, err = c.Cgroup.Enter(); err != nil {
			started <- err // Enter took the thread back out, or tried to
			return
		}
	}
	// leave takes the thread out of the group once the step's processes
	// exist; a thread that cannot leave ends with the goroutine anyway.
	leave := func() error {
		if entry == nil {
			return nil
		}
		err := entry.Leave()
		entry = nil
		return err
	}
	// The thread is out of the group before the caller hears how the
	// start went: the caller may then kill the group, which on v1 lists
	// this process while one of its threads is in it.
	send := func(err error) {
		if lerr := leave(); lerr != nil && err == nil {
			err = lerr
		}
		started <- err
	}
	attr := func(a *syscall.SysProcAttr) *syscall.SysProcAttr {
		if entry != nil {
			entry.Attr(a)
		}
		return a
	}
	spec := c.initSpec()
	if err := syscall.Unshare(syscall.CLONE_FS | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS); err != nil {
		send(fmt.Errorf("unshare: %w", err))
		return
	}
	if err := initproc.Mounts(&spec, false); err != nil {
		send(err)
		return
	}
	cred := &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.GID), Groups: []uint32{}}
	holdR, holdW, err := os.Pipe()
	if err != nil {
		send(fmt.Errorf("pipe: %w", err))
		return
	}
	defer holdW.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		holdR.Close()
		send(fmt.Errorf("pipe: %w", err))
		return
	}
	var init *exec.Cmd
	if exe := staticInit(); exe != nil {
		// fd 5 of the child is the memfd (see the top of this file).
		init = exec.Command("/proc/self/fd/5")
		init.ExtraFiles = []*os.File{holdR, readyW, exe} // fds 3, 4 and 5
	} else {
		init = exec.Command("/bin/sh", "-c", initScript)
		init.ExtraFiles = []*os.File{holdR, readyW} // fds 3 and 4
	}
	init.Args[0] = "hodei-sandbox"
	init.Env = []string{}
	init.Dir = "/"
	// Pdeathsig: the init, and with it the namespace, dies with this
	// thread, which lives as long as the step (and dies with the agent).
	init.SysProcAttr = attr(&syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL})
	err = init.Start()
	holdR.Close()
	readyW.Close()
	if err != nil {
		readyR.Close()
		send(fmt.Errorf("start init: %w", err))
		return
	}
	stopInit := func() {
		// From another thread: once this one is in the Landlock domain, it
		// may not signal the init, which is outside it.
		killed := make(chan struct{})
		go func() { _ = init.Process.Kill(); close(killed) }()
		<-killed
		_ = init.Wait()
	}
	fail := func(err error) {
		readyR.Close()
		stopInit()
		send(err)
	}
	// The init's PID namespace, opened while /proc is still the caller's.
	ns, err := syscall.Open(fmt.Sprintf("/proc/%d/ns/pid", init.Process.Pid), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		fail(fmt.Errorf("pid namespace: %w", err))
		return
	}
	defer syscall.Close(ns)
	if err := mountProcOf(ns); err != nil {
		fail(err)
		return
	}
	if err := initproc.Confine(&spec); err != nil {
		fail(err)
		return
	}
	if _, _, e := syscall.RawSyscall(sysSetns, uintptr(ns), syscall.CLONE_NEWPID, 0); e != 0 {
		fail(fmt.Errorf("join the pid namespace: %w", e))
		return
	}
	sh := exec.Command("/bin/sh", "-e", "-c", c.Script)
	sh.Dir = spec.Workspace
	sh.Env = c.Env
	if sh.Env == nil {
		sh.Env = []string{}
	}
	sh.Stdout, sh.Stderr = c.Stdout, c.Stdout
	// In the init's process group (pgid 1 as the child sees it), so that
	// signalling the group reaches both. No Pdeathsig: its parent is
	// outside its PID namespace (os/exec would take that for a dead
	// parent), and the init's death takes it anyway.
	sh.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pgid: 1}
	attr(sh.SysProcAttr)
	err = sh.Start()
	if err != nil {
		readyR.Close()
		stopInit()
		send(fmt.Errorf("start sh: %w", err))
		return
	}
	err = leave()
	if err == nil {
		// The init has its signals in hand once it says so (or it is gone).
		// The step's shell started meanwhile (the two execs overlap), but
		// nothing signals the init before the step is reported started.
		var b [1]byte
		if _, rerr := readyR.Read(b[:]); rerr != nil {
			err = errors.New("the init did not start")
		}
	}
	readyR.Close()
	if err != nil {
		_ = sh.Process.Kill()
		_ = sh.Wait()
		stopInit()
		send(fmt.Errorf("start sh: %w", err))
		return
	}
	d.init = init.Process.Pid
	send(nil)
	werr := sh.Wait()
	stopInit()
	d.done <- outcome(werr)
}

// outcome turns the error of the step shell's Wait into its Status.
func outcome(werr error) directOutcome {
	if werr == nil {
		return directOutcome{}
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Signaled():
				return directOutcome{st: Status{Code: -1, Signal: ws.Signal()}}
			case ws.Exited():
				return directOutcome{st: Status{Code: ws.ExitStatus()}}
			}
		}
	}
	return directOutcome{st: Status{Code: -1}, err: fmt.Errorf("sandbox: wait for the step: %w", werr)}
}
