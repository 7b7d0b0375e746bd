// Package sandbox runs a job step walled off from the agent that starts it.
//
// The agent re-executes its own binary (/proc/self/exe) with the
// environment marker HODEI_SANDBOX_INIT=1 in new PID, mount, IPC and UTS
// namespaces (and a new user namespace when the agent is not root). The
// init function of package initproc (imported here) sees the marker and
// turns the process into the sandbox's init instead of running the
// program's main: it reads the step's Spec from a pipe (which is also the
// start gate: nothing of the step runs before the caller has written it),
// makes every mount private, mounts a fresh /proc that shows only the
// sandbox's processes, hides each Spec.Hide directory (the data and work
// directories) under an empty read-only tmpfs, binds the step's own
// workspace back at its path and its private temporary directory at /tmp,
// and starts `/bin/sh -e -c SCRIPT` as its child under Landlock (writes only
// to the workspace, /tmp, /dev/shm and a few devices) and no_new_privs: as
// the unprivileged Spec.UID/GID when the agent is root, else in a nested
// user namespace that leaves the shell no capability over the sandbox's
// mounts. The init reaps every process, and when the shell exits it kills
// whatever is left; its own death (the agent's SIGKILL reaches it through
// Pdeathsig) makes the kernel kill every process of the namespace, setsid
// daemons included.
//
// Because the init is an entry of a package this one imports, any binary
// that links this package (bin/hodei, and test binaries of packages that
// import the agent) can start sandboxes.
//
// As root, on a kernel whose proc takes the "pidns" option, the same
// sandbox is built without that init, which costs most of a step's CPU:
// see direct.go. The PID namespace's init is then the static executable
// of package staticinit (linux/amd64) or a shell.
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/sandbox/initproc"
)

// Spec is one step to run in a sandbox.
type Spec struct {
	// Script runs as `/bin/sh -e -c Script`.
	Script string
	// Workspace is the step's working directory, the only host directory
	// it can write besides Tmp. It stays at the same path inside.
	Workspace string
	// Tmp is a host directory mounted at /tmp (and /var/tmp); "" gives a
	// fresh tmpfs.
	Tmp string
	// Env is the step's whole environment: nothing else is inherited.
	Env []string
	// Hide lists directories that the step sees as empty (the data
	// directory, the agents' work directory); the workspace stays visible
	// even when it is inside one of them.
	Hide []string
	// UID and GID are the step's identity when the caller is root (they
	// must not be 0); when it is not, the step keeps the caller's uid.
	UID int
	GID int
}

// Status is how the step's shell ended.
type Status struct {
	Code   int            // exit code; -1 if killed by a signal
	Signal syscall.Signal // the signal that killed it
	Err    string         // set when the sandbox could not start the step
}

// Cmd is a step in a sandbox, started with Start and waited for with Wait.
type Cmd struct {
	Spec
	// Stdout receives the step's stdout and stderr merged (the file is
	// handed to the init as fds 1 and 2).
	Stdout *os.File
	// Cgroup, if set, holds every process of the step from its start: the
	// direct start's processes are born in it (cgroup.Group.Enter); the
	// re-executed init is moved in before it starts the step. An error
	// placing them stops the sandbox before the step runs.
	Cgroup *cgroup.Group

	cmd    *exec.Cmd
	gate   *os.File // write end: the Spec, then EOF opens the gate
	status *os.File // read end: the init writes the Status there
	direct *direct  // the step started without an init of this binary (direct.go)
}

// Start starts the sandbox's init, puts it in Cgroup, then hands the init
// the Spec, which lets it start the step.
func (c *Cmd) Start() error {
	if c.Stdout == nil {
		return errors.New("sandbox: Stdout is required")
	}
	DefaultSignals()
	attr, err := sysProcAttr()
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 && (c.UID <= 0 || c.GID <= 0) {
		return fmt.Errorf("sandbox: as root the step needs an unprivileged uid and gid, got %d:%d", c.UID, c.GID)
	}
	if directSupported() {
		return c.startDirect()
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: pipe: %w", err)
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return fmt.Errorf("sandbox: pipe: %w", err)
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{"hodei-sandbox"}
	// Nothing of the caller's environment; GORACE keeps a binary built
	// with -race from sleeping a second at exit.
	cmd.Env = []string{initproc.Marker + "=1", "GORACE=atexit_sleep_ms=0", "GOMAXPROCS=1", "GOGC=off"}
	cmd.Dir = "/"
	cmd.Stdout = c.Stdout
	cmd.Stderr = c.Stdout
	cmd.ExtraFiles = []*os.File{specR, statW} // fds 3 and 4
	cmd.SysProcAttr = attr
	err = cmd.Start()
	specR.Close()
	statW.Close()
	if err != nil {
		specW.Close()
		statR.Close()
		return fmt.Errorf("sandbox: start init: %w", err)
	}
	c.cmd, c.gate, c.status = cmd, specW, statR
	if c.Cgroup != nil {
		if err := c.Cgroup.Add(cmd.Process.Pid); err != nil {
			c.abort()
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	spec := c.initSpec()
	_, err = c.gate.Write(spec.Encode())
	c.gate.Close()
	if err != nil {
		c.abort()
		return fmt.Errorf("sandbox: hand over the step: %w", err)
	}
	return nil
}

// initSpec is the Spec as the code that builds the sandbox takes it.
func (c *Cmd) initSpec() initproc.Spec {
	spec := initproc.Spec{
		Script: c.Script, Workspace: filepath.Clean(c.Workspace), Env: c.Env,
		UID: c.UID, GID: c.GID,
		UserNS: os.Geteuid() != 0, HostUID: os.Geteuid(), HostGID: os.Getegid(),
	}
	if c.Tmp != "" {
		spec.Tmp = filepath.Clean(c.Tmp)
	}
	for _, h := range c.Hide {
		if filepath.IsAbs(h) {
			spec.Hide = append(spec.Hide, filepath.Clean(h))
		}
	}
	return spec
}

func (c *Cmd) abort() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	c.gate.Close()
	c.status.Close()
}

// Pid is the init's pid; signalling it (or its process group) reaches the
// whole sandbox: SIGTERM is passed on to every process of the step, SIGKILL
// kills them all.
func (c *Cmd) Pid() int {
	if c.direct != nil {
		return c.direct.init
	}
	return c.cmd.Process.Pid
}

// Wait waits for the init to exit, that is for the step's shell to end and
// every process it left to be killed. An error means the sandbox failed,
// not the step.
func (c *Cmd) Wait() (Status, error) {
	if c.direct != nil {
		r := <-c.direct.done
		return r.st, r.err
	}
	b, _ := io.ReadAll(c.status)
	c.status.Close()
	werr := c.cmd.Wait()
	if len(b) == 0 {
		// The init died before it could say how the step ended: the agent
		// (or the kernel) killed it, which takes the whole namespace.
		if ee, ok := werr.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return Status{Code: -1, Signal: ws.Signal()}, nil
			}
		}
		return Status{Code: -1}, fmt.Errorf("sandbox: init ended without a status: %v", werr)
	}
	is, err := initproc.DecodeStatus(b)
	if err != nil {
		return Status{Code: -1}, fmt.Errorf("sandbox: %w from init: %q", err, b)
	}
	st := Status{Code: is.Code, Signal: is.Signal, Err: is.Err}
	if st.Err != "" {
		return st, errors.New("sandbox: " + st.Err)
	}
	return st, nil
}

// sysProcAttr is how the init is cloned: new PID, mount, IPC and UTS
// namespaces, plus a user namespace (the caller's uid and gid mapped to 0)
// when the caller is not root. Pdeathsig kills the init, and with it the
// namespace, when the thread that started it dies with the agent.
func sysProcAttr() (*syscall.SysProcAttr, error) {
	a := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	if os.Geteuid() != 0 {
		a.Cloneflags |= syscall.CLONE_NEWUSER
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		a.GidMappingsEnableSetgroups = false
	}
	return a, nil
}

var (
	checkOnce sync.Once
	checkErr  error
)

// Check starts one sandbox with a trivial step and reports why steps cannot
// be isolated on this machine (nil when they can). The answer is computed
// once per process, and a success is remembered across processes in the
// user's cache directory (see checkKey): a one-shot command such as `hodei
// run` does not start a trial sandbox (two processes) each time. A cached
// success only lets the server start: every step still runs in its
// sandbox, and fails if the sandbox cannot be made.
func Check() error {
	checkOnce.Do(func() {
		path, key := "", checkKey()
		if dir, err := os.UserCacheDir(); err == nil && key != "" {
			path = filepath.Join(dir, "hodei", fmt.Sprintf("sandbox-check-%d", os.Geteuid()))
		}
		checkErr = checkCached(path, key, check)
	})
	return checkErr
}

// checkCached returns nil at once when the file at path holds key (a
// success recorded for the same key), else runs run and records its
// success under key. path "" caches nothing. The cache is a convenience: a
// file that cannot be read or written only means run runs.
func checkCached(path, key string, run func() error) error {
	if path != "" {
		if b, err := os.ReadFile(path); err == nil && string(b) == key {
			return nil
		}
	}
	if err := run(); err != nil {
		return err
	}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
			if err := os.WriteFile(tmp, []byte(key), 0o600); err == nil {
				if os.Rename(tmp, path) != nil {
					_ = os.Remove(tmp)
				}
			}
		}
	}
	return nil
}

// checkKey names what the check's answer depends on: this boot of this
// kernel (namespaces and Landlock are the kernel's, sysctls reset at boot),
// the user namespace, and this executable (its path, size and modification time: a new build
// checks again). "" when one of them cannot be read: no cache then.
func checkKey() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return ""
	}
	// The user namespace too: the same user inside `unshare --user` (or a
	// container) may not be allowed what it is allowed outside.
	userns, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return ""
	}
	return fmt.Sprintf("boot %s\nkernel %s\nuserns %s\nexe %s %d %d\n", strings.TrimSpace(string(boot)), strings.TrimSpace(string(release)),
		userns, exe, fi.Size(), fi.ModTime().UnixNano())
}

func check() error {
	dir, err := os.MkdirTemp("", "hodei-sandbox-check-")
	if err != nil {
		return fmt.Errorf("sandbox check: %w", err)
	}
	defer os.RemoveAll(dir)
	spec := Spec{Script: "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; test $n = 2", Workspace: dir, Env: []string{"PATH=" + DefaultPath}, UID: 1, GID: 1}
	if os.Geteuid() == 0 {
		// nobody-like ids: the check writes nothing
		spec.UID, spec.GID = 65534, 65534
		if err := os.Chown(dir, spec.UID, spec.GID); err != nil {
			return fmt.Errorf("sandbox check: %w", err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox check: %w", err)
	}
	defer r.Close()
	c := &Cmd{Spec: spec, Stdout: w}
	err = c.Start()
	w.Close()
	if err != nil {
		return explain(err)
	}
	outc := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(io.LimitReader(r, 4096)); outc <- b }()
	st, err := c.Wait()
	if err != nil {
		return explain(err)
	}
	var out []byte
	select {
	case out = <-outc:
	case <-time.After(5 * time.Second):
	}
	if st.Code != 0 {
		return fmt.Errorf("sandbox check: the test step failed (exit %d, signal %v): %s", st.Code, st.Signal, strings.TrimSpace(string(out)))
	}
	return nil
}

// explain adds what to do to an error of the check.
func explain(err error) error {
	hint := "the kernel must allow PID, mount, IPC and UTS namespaces"
	if os.Geteuid() != 0 {
		hint += " and unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, no AppArmor restriction), or run the agent as root"
	}
	return fmt.Errorf("%w (%s)", err, hint)
}

// DefaultPath is the PATH a step gets unless its pipeline sets one.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
