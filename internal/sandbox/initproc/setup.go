package initproc

import (
	"errors"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"syscall"
)

// hideFlags are the flags of the file systems that hide directories.
const hideFlags = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC

const (
	oPath           = 0x200000 // O_PATH
	prSetDumpable   = 4
	prSetNoNewPrivs = 38
)

func prctl(option, arg uintptr) error {
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, option, arg, 0, 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// cutPrefix is strings.CutPrefix (see the package doc for why not strings).
func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// setup builds the step's view of the file system and restricts what the
// init's children can do.
func setup(s *Spec) error { return Mounts(s, true) }

// Mounts builds the step's view of the file system in the calling thread's
// mount namespace, which must be a new one: every mount private, the hidden
// directories under empty read-only file systems, the workspace bound back,
// private /tmp, /var/tmp and /dev/shm, and with proc a /proc of the caller's
// PID namespace (a caller outside the step's PID namespace mounts its /proc
// itself).
func Mounts(s *Spec, proc bool) error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return wrap("make mounts private", err)
	}
	// Handles on the directories to bind back, taken before anything above
	// them is hidden.
	ws, err := syscall.Open(s.Workspace, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return wrap("workspace "+s.Workspace, err)
	}
	defer syscall.Close(ws)
	tmp := -1
	if s.Tmp != "" {
		if tmp, err = syscall.Open(s.Tmp, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err != nil {
			return wrap("tmp "+s.Tmp, err)
		}
		defer syscall.Close(tmp)
	}
	self := "/proc/self/fd/"
	// A /proc of this PID namespace: the step sees its own processes only.
	if proc {
		if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
			return wrap("mount /proc", err)
		}
	}
	// Private temporary directories.
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if !isDir(d) {
			continue
		}
		if tmp >= 0 {
			err = syscall.Mount(self+strconv.Itoa(tmp), d, "", syscall.MS_BIND, "")
		} else {
			err = syscall.Mount("tmpfs", d, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777")
		}
		if err != nil {
			return wrap("private "+d, err)
		}
	}
	if isDir("/dev/shm") {
		if err := syscall.Mount("tmpfs", "/dev/shm", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777"); err != nil {
			return wrap("private /dev/shm", err)
		}
	}
	// Hidden directories: an empty tmpfs over each, outermost first (what
	// is under a hidden directory or under /tmp is hidden already). A
	// workspace under /tmp gets a tmpfs of its own for the path down to it,
	// so that its parents are not directories of the step's /tmp.
	tmpDirs := []string{"/tmp", "/var/tmp"}
	var hidden []string
	for _, d := range tmpDirs {
		if rel, ok := cutPrefix(s.Workspace, d+"/"); ok && slices.Contains([]byte(rel), '/') {
			top := d + "/" + rel[:slices.Index([]byte(rel), '/')]
			if err := os.Mkdir(top, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return wrap("workspace mount point", err)
			}
			if err := syscall.Mount("tmpfs", top, "tmpfs", hideFlags, "size=1m,mode=0755"); err != nil {
				return wrap("workspace mount point", err)
			}
			hidden = append(hidden, top)
		}
	}
	hide := slices.Clone(s.Hide)
	slices.Sort(hide)
	for _, h := range hide {
		// The caller sends clean absolute paths.
		if len(h) < 2 || h[0] != '/' || under(h, hidden) || under(h, tmpDirs) || !isDir(h) {
			continue
		}
		if err := syscall.Mount("tmpfs", h, "tmpfs", hideFlags, "size=1m,mode=0755"); err != nil {
			return wrap("hide "+h, err)
		}
		hidden = append(hidden, h)
	}
	// The workspace back at its own path.
	if err := os.MkdirAll(s.Workspace, 0o755); err != nil {
		return wrap("workspace mount point", err)
	}
	if err := syscall.Mount(self+strconv.Itoa(ws), s.Workspace, "", syscall.MS_BIND, ""); err != nil {
		return wrap("bind workspace", err)
	}
	// The hiding file systems become read-only: in a user namespace their
	// root belongs to the step's own uid.
	for _, h := range hidden {
		if err := syscall.Mount("", h, "", syscall.MS_REMOUNT|syscall.MS_RDONLY|hideFlags, ""); err != nil {
			return wrap("hide "+h+" read-only", err)
		}
	}
	return nil
}

// runShell starts the step's shell, passes termination signals on to every
// process of the namespace, reaps them all, and once the shell has ended
// kills whatever is left. It returns how the shell ended.
func runShell(s *Spec) (Status, error) {
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
	if err := Confine(s); err != nil {
		return Status{}, err
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
		return Status{}, wrap("start sh", err)
	}
	shell := p.Pid
	_ = p.Release()
	os.Stdout.Close()
	os.Stderr.Close()
	// The init keeps capabilities the step must not borrow: nobody may
	// read its memory or open its files through /proc/1. (Not before the
	// shell has started: its uid_map is written through /proc, which a
	// non-dumpable parent could not open.)
	if err := prctl(prSetDumpable, 0); err != nil {
		_ = syscall.Kill(-1, syscall.SIGKILL)
		return Status{}, wrap("prctl dumpable", err)
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

// Confine puts the calling thread, and every process it starts from then
// on, under no_new_privs and in the step's Landlock domain (see
// landlockRuleset). The caller must be locked to its thread.
func Confine(s *Spec) error {
	fd, err := landlockRuleset(s)
	if err != nil {
		return err
	}
	if err := prctl(prSetNoNewPrivs, 1); err != nil {
		return wrap("no_new_privs", err)
	}
	if fd >= 0 {
		err := landlockRestrictSelf(fd)
		syscall.Close(fd)
		if err != nil {
			return wrap("landlock", err)
		}
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// under reports whether p is one of dirs or inside one of them.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if _, ok := cutPrefix(p, d+"/"); p == d || ok {
			return true
		}
	}
	return false
}
