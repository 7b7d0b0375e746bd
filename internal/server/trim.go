package server

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// TrimMemory gives back what start-up alone needed, once a server is
// ready: the heap left over from it (a collection, and its free pages
// returned to the system), and the pages of the executable that start-up
// touched and an idle server does not use. A Go binary of Hodei's size has
// most of its code and tables touched by the packages' initialisation (the
// kernel maps them 64 KiB around each touched page), and they stay in the
// process's resident set, clean and unused: MADV_PAGEOUT on the
// executable's read-only mappings reclaims those not shared with another
// process; what the server runs afterwards comes back on demand. It
// returns the resident bytes of the executable's mappings before and after.
// Errors (an old kernel without MADV_PAGEOUT) leave the memory as it is.
func TrimMemory() (before, after int64, err error) {
	debug.FreeOSMemory()
	before, _ = exeResident()
	if err := pageOutExecutable(); err != nil {
		return before, before, err
	}
	after, _ = exeResident()
	return before, after, nil
}

// madvPageout is MADV_PAGEOUT (Linux 5.4), which package syscall lacks.
const madvPageout = 21

// pageOutExecutable applies MADV_PAGEOUT to the read-only mappings of this
// process's executable (code and read-only data; never the writable ones).
func pageOutExecutable() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("trim: %w", err)
	}
	maps, err := exeMappings(exe)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.perms != "r-xp" && m.perms != "r--p" {
			continue
		}
		// The range is not Go memory: the raw call, not a slice over it.
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.lo, m.hi-m.lo, madvPageout); e != 0 {
			return fmt.Errorf("trim: madvise %x-%x: %w", m.lo, m.hi, e)
		}
	}
	return nil
}

type mapping struct {
	lo, hi uintptr
	perms  string
}

// exeMappings lists the mappings of file exe in /proc/self/maps.
func exeMappings(exe string) ([]mapping, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("trim: %w", err)
	}
	defer f.Close()
	var out []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe {
			continue
		}
		a, b, _ := strings.Cut(fs[0], "-")
		lo, err1 := strconv.ParseUint(a, 16, 64)
		hi, err2 := strconv.ParseUint(b, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, mapping{lo: uintptr(lo), hi: uintptr(hi), perms: fs[1]})
	}
	return out, sc.Err()
}

// exeResident is the resident size of the executable's mappings, from
// /proc/self/smaps.
func exeResident() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			in = len(fs) >= 6 && fs[5] == exe
			continue
		}
		if in && len(fs) == 3 && fs[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fs[1], 10, 64)
			total += kb << 10
		}
	}
	return total, sc.Err()
}
