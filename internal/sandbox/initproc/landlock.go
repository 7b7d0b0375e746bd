package initproc

import (
	"syscall"
	"unsafe"
)

// Landlock, by its system calls (the ABI is stable; see
// Documentation/userspace-api/landlock.rst of the kernel).
const (
	sysLandlockCreateRuleset = 444
	sysLandlockAddRule       = 445
	sysLandlockRestrictSelf  = 446

	createRulesetVersion = 1 << 0
	rulePathBeneath      = 1

	accessExecute    = 1 << 0
	accessWriteFile  = 1 << 1
	accessReadFile   = 1 << 2
	accessReadDir    = 1 << 3
	accessRefer      = 1 << 13 // ABI 2
	accessTruncate   = 1 << 14 // ABI 3
	accessIoctlDev   = 1 << 15 // ABI 5
	scopeAbstractUDS = 1 << 0  // ABI 6
	scopeSignal      = 1 << 1  // ABI 6
)

type rulesetAttr struct {
	handledFS, handledNet, scoped uint64
}

// pathBeneath is struct landlock_path_beneath_attr (packed: 12 bytes, which
// are the first 12 of this struct).
type pathBeneath struct {
	allowed uint64
	fd      int32
}

// landlockRuleset makes the step's Landlock ruleset, as much of it as the
// kernel's ABI supports (a kernel without Landlock still has the
// namespaces): the step reads the file system but writes only its
// workspace, /tmp, /var/tmp, /dev/shm and the usual devices, and cannot
// signal or reach abstract sockets of processes outside its domain. The
// network is not restricted. It returns -1 when Landlock is not available.
func landlockRuleset(s *Spec) (int, error) {
	abi, _, e := syscall.Syscall(sysLandlockCreateRuleset, 0, 0, createRulesetVersion)
	if e != 0 || int(abi) < 1 {
		return -1, nil
	}
	handled := uint64(1<<13 - 1) // ABI 1: execute .. make_sym
	if abi >= 2 {
		handled |= accessRefer
	}
	if abi >= 3 {
		handled |= accessTruncate
	}
	if abi >= 5 {
		handled |= accessIoctlDev
	}
	attr := rulesetAttr{handledFS: handled}
	size := unsafe.Sizeof(attr.handledFS)
	if abi >= 4 {
		size += unsafe.Sizeof(attr.handledNet) // handled_access_net stays 0
	}
	if abi >= 6 {
		attr.scoped = scopeAbstractUDS | scopeSignal
		size += unsafe.Sizeof(attr.scoped)
	}
	fd, _, e := syscall.Syscall(sysLandlockCreateRuleset, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		return -1, wrap("landlock_create_ruleset", e)
	}
	read := uint64(accessExecute | accessReadFile | accessReadDir)
	file := uint64(accessReadFile|accessWriteFile|accessTruncate|accessIoctlDev) & handled
	rules := []struct {
		access uint64
		paths  []string
	}{
		{read, []string{"/"}},
		// Everything in the writable directories, renames and links
		// between them included; no ioctl on devices.
		{handled &^ accessIoctlDev, []string{s.Workspace, "/tmp", "/var/tmp", "/dev/shm"}},
		{file, []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx", "/dev/pts"}},
	}
	if s.UserNS {
		// The thread that starts the shell writes the uid and gid maps of
		// the shell's namespace under /proc (this namespace's own /proc:
		// its processes only).
		rules = append(rules, struct {
			access uint64
			paths  []string
		}{(accessReadFile | accessWriteFile | accessTruncate) & handled, []string{"/proc"}})
	}
	for _, r := range rules {
		for _, p := range r.paths {
			pfd, err := syscall.Open(p, oPath|syscall.O_CLOEXEC, 0)
			if err != nil {
				continue // a path this machine does not have
			}
			var st syscall.Stat_t
			access := r.access
			if syscall.Fstat(pfd, &st) == nil && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				// A rule on a file may only carry file rights.
				access &= accessExecute | accessReadFile | accessWriteFile | accessTruncate | accessIoctlDev
			}
			pb := pathBeneath{allowed: access, fd: int32(pfd)}
			_, _, e := syscall.Syscall6(sysLandlockAddRule, fd, rulePathBeneath, uintptr(unsafe.Pointer(&pb)), 0, 0, 0)
			syscall.Close(pfd)
			if e != 0 {
				syscall.Close(int(fd))
				return -1, wrap("landlock_add_rule "+p, e)
			}
		}
	}
	return int(fd), nil
}

// landlockRestrictSelf puts the calling thread (and what it starts) in the
// ruleset's domain. no_new_privs must be set.
func landlockRestrictSelf(fd int) error {
	if _, _, e := syscall.Syscall(sysLandlockRestrictSelf, uintptr(fd), 0, 0); e != 0 {
		return e
	}
	return nil
}
