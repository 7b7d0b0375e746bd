package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// hideFlags are the flags of the file systems that hide directories.
const hideFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// initSpec is what the caller hands the init on fd 3.
type initSpec struct {
	Spec
	// UserNS says that the init runs in a user namespace as the caller's
	// uid mapped to 0; the shell then gets a nested one (see startShell).
	UserNS bool `json:"userns"`
	// HostUID and HostGID are the caller's ids (used with UserNS).
	HostUID int `json:"host_uid"`
	HostGID int `json:"host_gid"`
}

// runInit is the sandbox's init: fd 3 carries the spec (its EOF is the start
// gate), fd 4 takes the Status, fds 1 and 2 are the step's output.
func runInit() int {
	specR := os.NewFile(3, "spec")
	statW := os.NewFile(4, "status")
	report := func(st Status) int {
		b, _ := json.Marshal(st)
		_, _ = statW.Write(b)
		statW.Close()
		return 0
	}
	b, err := io.ReadAll(specR)
	specR.Close()
	if err != nil {
		return report(Status{Code: -1, Err: "read spec: " + err.Error()})
	}
	if len(b) == 0 {
		// The caller gave up before opening the gate.
		return 1
	}
	var s initSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return report(Status{Code: -1, Err: "bad spec: " + err.Error()})
	}
	if err := setup(&s); err != nil {
		return report(Status{Code: -1, Err: err.Error()})
	}
	st, err := runShell(&s)
	if err != nil {
		return report(Status{Code: -1, Err: err.Error()})
	}
	return report(st)
}

// setup builds the step's view of the file system and restricts what the
// init's children can do.
func setup(s *initSpec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	// Handles on the directories to bind back, taken before anything above
	// them is hidden.
	ws, err := unix.Open(s.Workspace, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", s.Workspace, err)
	}
	defer unix.Close(ws)
	tmp := -1
	if s.Tmp != "" {
		if tmp, err = unix.Open(s.Tmp, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("tmp %s: %w", s.Tmp, err)
		}
		defer unix.Close(tmp)
	}
	self := "/proc/self/fd/"
	// A /proc of this PID namespace: the step sees its own processes only.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	// Private temporary directories.
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if !isDir(d) {
			continue
		}
		if tmp >= 0 {
			err = unix.Mount(self+strconv.Itoa(tmp), d, "", unix.MS_BIND, "")
		} else {
			err = unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
		}
		if err != nil {
			return fmt.Errorf("private %s: %w", d, err)
		}
	}
	if isDir("/dev/shm") {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return fmt.Errorf("private /dev/shm: %w", err)
		}
	}
	// Hidden directories: an empty tmpfs over each, outermost first (what
	// is under a hidden directory or under /tmp is hidden already). A
	// workspace under /tmp gets a tmpfs of its own for the path down to it,
	// so that its parents are not directories of the step's /tmp.
	tmpDirs := []string{"/tmp", "/var/tmp"}
	var hidden []string
	for _, d := range tmpDirs {
		if rel, ok := strings.CutPrefix(s.Workspace, d+"/"); ok && strings.Contains(rel, "/") {
			top := d + "/" + strings.SplitN(rel, "/", 2)[0]
			if err := os.Mkdir(top, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("workspace mount point: %w", err)
			}
			if err := unix.Mount("tmpfs", top, "tmpfs", hideFlags, "size=1m,mode=0755"); err != nil {
				return fmt.Errorf("workspace mount point: %w", err)
			}
			hidden = append(hidden, top)
		}
	}
	hide := slices.Clone(s.Hide)
	slices.Sort(hide)
	for _, h := range hide {
		h = filepath.Clean(h)
		if !filepath.IsAbs(h) || h == "/" || under(h, hidden) || under(h, tmpDirs) || !isDir(h) {
			continue
		}
		if err := unix.Mount("tmpfs", h, "tmpfs", hideFlags, "size=1m,mode=0755"); err != nil {
			return fmt.Errorf("hide %s: %w", h, err)
		}
		hidden = append(hidden, h)
	}
	// The workspace back at its own path.
	if err := os.MkdirAll(s.Workspace, 0o755); err != nil {
		return fmt.Errorf("workspace mount point: %w", err)
	}
	if err := unix.Mount(self+strconv.Itoa(ws), s.Workspace, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind workspace: %w", err)
	}
	// The hiding file systems become read-only: in a user namespace their
	// root belongs to the step's own uid.
	for _, h := range hidden {
		if err := unix.Mount("", h, "", unix.MS_REMOUNT|unix.MS_RDONLY|hideFlags, ""); err != nil {
			return fmt.Errorf("hide %s read-only: %w", h, err)
		}
	}
	return nil
}

// landlockRuleset makes the step's Landlock ruleset (best effort: a kernel
// without Landlock still has the namespaces): the step reads the file
// system but writes only its workspace, /tmp, /dev/shm and the usual
// devices, and cannot signal or reach abstract sockets of processes outside
// its domain. The network is not restricted. It returns -1 when there is
// nothing to restrict.
func landlockRuleset(s *initSpec) (fd int, flags uint32, err error) {
	writable := []string{s.Workspace, "/tmp", "/var/tmp", "/dev/shm"}
	devices := []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx", "/dev/pts"}
	rules := []landlock.Rule{
		landlock.RODirs("/"),
		landlock.RWDirs(writable...).IgnoreIfMissing(),
		landlock.RWFiles(devices...).IgnoreIfMissing().WithIoctlDev(),
	}
	if s.UserNS {
		// The init's thread that starts the shell writes the uid and gid
		// maps of the shell's namespace under /proc (this namespace's own
		// /proc: its processes only).
		rules = append(rules, landlock.RWFiles("/proc"))
	}
	c := landlock.V6
	c.HandledAccessNet = 0
	fd, flags, err = c.BestEffort().NewRulesetFD(rules...)
	if err != nil {
		return -1, 0, fmt.Errorf("landlock: %w", err)
	}
	return fd, flags, nil
}

// runShell starts the step's shell, passes termination signals on to every
// process of the namespace, reaps them all, and once the shell has ended
// kills whatever is left. It returns how the shell ended.
func runShell(s *initSpec) (Status, error) {
	attr := &syscall.SysProcAttr{}
	if s.UserNS {
		// The init is root of a user namespace and owns the mounts that
		// hide the data directory. The shell gets a nested namespace where
		// it is the caller's uid again, without any capability over them.
		attr.Cloneflags = syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: s.HostUID, HostID: 0, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: s.HostGID, HostID: 0, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	} else {
		attr.Credential = &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.GID), Groups: []uint32{}}
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return Status{}, err
	}
	// The shell is forked, and every signal sent, from this one thread: the
	// one in the shell's Landlock domain (whose signal scope lets it signal
	// only processes of that domain).
	runtime.LockOSThread()
	// Only this thread enters the Landlock domain and sets no_new_privs:
	// the shell inherits both, the init's other threads need neither.
	fd, flags, err := landlockRuleset(s)
	if err != nil {
		return Status{}, err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return Status{}, fmt.Errorf("no_new_privs: %w", err)
	}
	if fd >= 0 {
		err := ll.LandlockRestrictSelf(fd, flags)
		unix.Close(fd)
		if err != nil {
			return Status{}, fmt.Errorf("landlock: %w", err)
		}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-e", "-c", s.Script}, &os.ProcAttr{
		Dir:   s.Workspace,
		Env:   s.Env,
		Files: []*os.File{null, os.Stdout, os.Stderr},
		Sys:   attr,
	})
	null.Close()
	if err != nil {
		return Status{}, fmt.Errorf("start sh: %w", err)
	}
	shell := p.Pid
	_ = p.Release()
	os.Stdout.Close()
	os.Stderr.Close()
	// The init keeps capabilities the step must not borrow: nobody may
	// read its memory or open its files through /proc/1. (Not before the
	// shell has started: its uid_map is written through /proc, which a
	// non-dumpable parent could not open.)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		_ = syscall.Kill(-1, syscall.SIGKILL)
		return Status{}, fmt.Errorf("prctl dumpable: %w", err)
	}
	type exited struct {
		pid int
		ws  syscall.WaitStatus
	}
	reaped := make(chan exited, 16)
	go func() {
		defer close(reaped)
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return // ECHILD: nothing left
			}
			reaped <- exited{pid, ws}
		}
	}()
	var st Status
	shellDone := false
	for {
		select {
		case sig := <-sigs:
			// kill(-1) from the namespace's init reaches every other
			// process of the namespace.
			_ = syscall.Kill(-1, sig.(syscall.Signal))
		case e, ok := <-reaped:
			if !ok {
				return st, nil
			}
			if e.pid == shell {
				shellDone = true
				switch {
				case e.ws.Exited():
					st = Status{Code: e.ws.ExitStatus()}
				case e.ws.Signaled():
					st = Status{Code: -1, Signal: e.ws.Signal()}
				}
			}
			if shellDone {
				// The step is over: what it left (background jobs, setsid
				// daemons) goes with it.
				_ = syscall.Kill(-1, syscall.SIGKILL)
			}
		}
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// under reports whether p is one of dirs or inside one of them.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}
