// Package cgroup puts the processes of one attempt in a control group of
// their own, so that the attempt's CPU and memory requests become limits,
// its peak memory and CPU time can be read, and every process it started,
// daemons that called setsid included, can be killed at once.
//
// It speaks both cgroup versions. New picks v2 when the machine's unified
// hierarchy has the memory controller, else v1 when the freezer, memory and
// cpuacct controllers are mounted (the cpu and pids controllers are used when
// present), else a bare v2 hierarchy (no limits, but kill and CPU time); when
// none is usable it returns an error wrapping ErrUnavailable that says why
// (not root, no controllers...). Groups live under the caller's own cgroup
// in each hierarchy, in a parent directory ("hodei" by default), so that the
// limits of whatever contains the caller still hold for its jobs.
//
// A process is best born in its group (Group.Spawn, or Enter and Leave
// around a start on a thread of the caller's): it cannot fork before it is
// there. Add moves a process that already runs.
//
// A Manager and its Groups are safe for concurrent use as long as one group
// is not created, killed and removed by two goroutines at once, and is not
// killed while a thread of the caller is in it (between Enter and Leave).
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrUnavailable is wrapped by New's error when cgroups cannot be used.
var ErrUnavailable = errors.New("cgroups unavailable")

// Version is a cgroup hierarchy version.
type Version int

// The versions New can pick; 0 in Options means "pick".
const (
	V1 Version = 1
	V2 Version = 2
)

// Options configure New. The zero value picks the version and uses "hodei".
type Options struct {
	// Version forces a version; 0 picks one (see the package doc).
	Version Version
	// Parent is the directory, under the caller's own cgroup, that holds
	// every group of this Manager. Default "hodei".
	Parent string
	// noKillFile makes v2 kill by freeze and SIGKILL even where
	// cgroup.kill exists (tests of the fallback).
	noKillFile bool
}

// Limits are what a group may use. Zero means no limit.
type Limits struct {
	CPUMilli int64 // thousandths of a core: a CFS quota and a weight
	Memory   int64 // bytes; swap is not allowed on top where it can be set
	Pids     int64 // processes and threads
}

// Stats is what a group used.
type Stats struct {
	PeakMemory int64         // highest memory charged at once, in bytes
	CPUTime    time.Duration // user + system CPU time of all its processes
	OOMKills   int64         // processes the kernel killed for the memory limit
}

// Manager creates groups under one parent. Create it with New.
type Manager struct {
	version Version
	// v1: the parent directory in each hierarchy, by controller (two
	// controllers of one hierarchy share a directory).
	v1 map[string]string
	// v2: the parent directory and the controllers enabled below it.
	v2     string
	v2ctl  []string
	noKill bool
}

// v1Wanted are the v1 controllers a Manager uses; v1Required must be there.
var (
	v1Wanted   = []string{"freezer", "memory", "cpuacct", "cpu", "pids"}
	v1Required = []string{"freezer", "memory", "cpuacct"}
	v2Wanted   = []string{"memory", "cpu", "pids"}
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// New finds the cgroup hierarchies of this machine and prepares the parent
// directory in each. Its error wraps ErrUnavailable and says why.
func New(o Options) (*Manager, error) {
	if o.Parent == "" {
		o.Parent = "hodei"
	}
	if err := validName(o.Parent); err != nil {
		return nil, err
	}
	mounts, err := readMounts("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	own, err := readOwn("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var reasons []string
	tryV2 := func(needMemory bool) (*Manager, error) {
		m, err := newV2(mounts, own, o, needMemory)
		if err != nil {
			reasons = append(reasons, err.Error())
		}
		return m, err
	}
	tryV1 := func() (*Manager, error) {
		m, err := newV1(mounts, own, o)
		if err != nil {
			reasons = append(reasons, err.Error())
		}
		return m, err
	}
	switch o.Version {
	case V2:
		if m, err := tryV2(false); err == nil {
			return m, nil
		}
	case V1:
		if m, err := tryV1(); err == nil {
			return m, nil
		}
	case 0:
		if m, err := tryV2(true); err == nil {
			return m, nil
		}
		if m, err := tryV1(); err == nil {
			return m, nil
		}
		if m, err := tryV2(false); err == nil {
			return m, nil
		}
	default:
		return nil, fmt.Errorf("cgroup version %d: want 1 or 2", o.Version)
	}
	if os.Geteuid() != 0 {
		reasons = append(reasons, "not running as root")
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(reasons, "; "))
}

// Version is the hierarchy version in use.
func (m *Manager) Version() Version { return m.version }

// String says which hierarchy is used, where, and with which controllers.
func (m *Manager) String() string {
	if m.version == V2 {
		ctl := "no controllers: no limits, no peak memory"
		if len(m.v2ctl) > 0 {
			ctl = strings.Join(m.v2ctl, ", ")
		}
		return fmt.Sprintf("cgroup v2 at %s (%s)", m.v2, ctl)
	}
	ctls := make([]string, 0, len(m.v1))
	for c := range m.v1 {
		ctls = append(ctls, c)
	}
	slices.Sort(ctls)
	return fmt.Sprintf("cgroup v1 at %s (%s)", m.v1["freezer"], strings.Join(ctls, ", "))
}

// KillTree kills every process in the group name and in the groups under
// it, and removes them all: what an agent killed with SIGKILL left behind.
// It returns how many processes were in them. A name that does not exist
// holds nothing.
func (m *Manager) KillTree(name string) (int, error) {
	kids, err := m.Children(name)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, k := range kids {
		c, err := m.KillTree(k)
		n += c
		errs = append(errs, err)
	}
	g, err := m.group(name)
	if err != nil {
		return n, err
	}
	pids, _ := g.Procs()
	n += len(pids)
	errs = append(errs, g.Kill(), g.Remove())
	return n, errors.Join(errs...)
}

// Group is one control group.
type Group struct {
	m     *Manager
	name  string
	dirs  map[string]string // v1: by controller
	dir   string            // v2
	noCPU bool              // v1: created without a cpu group (no CPU limit)
}

// Create makes the group name (components separated by '/', each of
// letters, digits, '.', '_' and '-') with limits l. A group that exists is
// reused and gets the new limits.
func (m *Manager) Create(name string, l Limits) (*Group, error) {
	g, err := m.group(name)
	if err != nil {
		return nil, err
	}
	if err := g.create(l); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", name, err)
	}
	return g, nil
}

// Open returns the group name without creating it or touching its limits:
// to kill and remove what a previous process left behind.
func (m *Manager) Open(name string) (*Group, error) { return m.group(name) }

// Children lists the names of the groups directly under name ("" for the
// parent itself).
func (m *Manager) Children(name string) ([]string, error) {
	base := m.v2
	if m.version == V1 {
		base = m.v1["freezer"]
	}
	if name != "" {
		if err := validPath(name); err != nil {
			return nil, err
		}
		base = filepath.Join(base, name)
	}
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup: list %s: %w", base, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, strings.TrimPrefix(name+"/"+e.Name(), "/"))
		}
	}
	return out, nil
}

func (m *Manager) group(name string) (*Group, error) {
	if err := validPath(name); err != nil {
		return nil, err
	}
	g := &Group{m: m, name: name}
	if m.version == V2 {
		g.dir = filepath.Join(m.v2, name)
		return g, nil
	}
	g.dirs = make(map[string]string, len(m.v1))
	for c, d := range m.v1 {
		g.dirs[c] = filepath.Join(d, name)
	}
	return g, nil
}

// Name is the group's name under the Manager's parent.
func (g *Group) Name() string { return g.name }

// Add moves process pid into the group.
func (g *Group) Add(pid int) error {
	s := strconv.Itoa(pid)
	if g.m.version == V2 {
		if err := writeFile(g.dir, "cgroup.procs", s); err != nil {
			return fmt.Errorf("cgroup %s: add %d: %w", g.name, pid, err)
		}
		return nil
	}
	// The freezer first: once there, the process cannot escape a kill.
	for _, c := range v1Wanted {
		if d := g.dirs[c]; g.placesIn(c) {
			if err := writeFile(d, "cgroup.procs", s); err != nil {
				return fmt.Errorf("cgroup %s: add %d to %s: %w", g.name, pid, c, err)
			}
		}
	}
	return nil
}

// Procs lists the processes in the group.
func (g *Group) Procs() ([]int, error) {
	dir := g.dir
	if g.m.version == V1 {
		dir = g.dirs["freezer"]
	}
	return readPids(filepath.Join(dir, "cgroup.procs"))
}

// killTimeout bounds Kill: processes in uninterruptible sleep can take a
// while to act on SIGKILL.
const killTimeout = 10 * time.Second

// Kill kills every process in the group and returns once the group is
// empty. A group that does not exist is empty.
func (g *Group) Kill() error {
	var err error
	if g.m.version == V2 {
		err = g.killV2()
	} else {
		err = g.killV1()
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: kill: %w", g.name, err)
	}
	return nil
}

// waitEmpty polls procs until the group is empty or the deadline passes.
func (g *Group) waitEmpty(deadline time.Time) (bool, error) {
	pause := time.Millisecond
	for {
		pids, err := g.Procs()
		if err != nil {
			return false, err
		}
		if len(pids) == 0 {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(pause)
		pause = min(pause*2, 50*time.Millisecond)
	}
}

// freezer is how a hierarchy freezes a group: v1's freezer controller or
// v2's cgroup.freeze.
type freezer struct {
	set    func(frozen bool) error // freeze or thaw the group
	frozen func() bool             // whether it is frozen (true when unknown)
}

// killFrozen freezes the group so that nothing in it can fork, SIGKILLs
// every process, thaws it so that they act on the signal, and repeats until
// the group is empty; it fails once deadline has passed.
func (g *Group) killFrozen(fz freezer, deadline time.Time) error {
	for {
		pids, err := g.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if err := fz.set(true); err != nil {
			return fmt.Errorf("freeze: %w", err)
		}
		// Freezing is asynchronous; SIGKILL reaches a process whether or
		// not it has stopped yet, and a frozen one cannot fork any more.
		waitFrozen(fz.frozen, deadline)
		if err := g.killAll(); err != nil {
			return err
		}
		if err := fz.set(false); err != nil {
			return fmt.Errorf("thaw: %w", err)
		}
		empty, err := g.waitEmpty(time.Now().Add(500 * time.Millisecond))
		if err != nil || empty {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in the group after %s", killTimeout)
		}
	}
}

// waitFrozen waits (a second at most, and not past deadline) until frozen
// says so. It polls: the freezer's state is a file to read, with no event
// to wait for that both hierarchies have.
func waitFrozen(frozen func() bool, deadline time.Time) {
	d := time.Now().Add(time.Second)
	if deadline.Before(d) {
		d = deadline
	}
	pause := 500 * time.Microsecond
	for time.Now().Before(d) {
		if frozen() {
			return
		}
		time.Sleep(pause)
		pause = min(pause*2, 20*time.Millisecond)
	}
}

// killAll sends SIGKILL to every process listed in the group.
func (g *Group) killAll() error {
	pids, err := g.Procs()
	if err != nil {
		return err
	}
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	return nil
}

// Stats reads what the group used. Counters a hierarchy does not have stay
// zero.
func (g *Group) Stats() (Stats, error) {
	var s Stats
	var err error
	if g.m.version == V2 {
		s, err = g.statsV2()
	} else {
		s, err = g.statsV1()
	}
	if err != nil {
		return s, fmt.Errorf("cgroup %s: stats: %w", g.name, err)
	}
	return s, nil
}

// OOMKills is Stats().OOMKills, read alone: the number of processes the
// kernel killed in the group at its memory limit.
func (g *Group) OOMKills() (int64, error) {
	var n int64
	var err error
	switch {
	case g.m.version == V1 && g.dirs["memory"] != "":
		n, err = readKeyed(g.dirs["memory"], "memory.oom_control", "oom_kill")
	case g.m.version == V2 && slices.Contains(g.m.v2ctl, "memory"):
		n, err = readKeyed(g.dir, "memory.events", "oom_kill")
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: oom kills: %w", g.name, err)
	}
	return n, nil
}

// Remove deletes the group, which must be empty (Kill it first). A group
// that does not exist is removed.
func (g *Group) Remove() error {
	dirs := []string{g.dir}
	if g.m.version == V1 {
		dirs = dirs[:0]
		for _, d := range g.dirs {
			dirs = append(dirs, d)
		}
		slices.Sort(dirs)
		dirs = slices.Compact(dirs)
	}
	for _, d := range dirs {
		if err := rmdir(d); err != nil {
			return fmt.Errorf("cgroup %s: remove: %w", g.name, err)
		}
	}
	return nil
}

// rmdir removes a cgroup directory, retrying for a moment while the kernel
// still counts exiting processes in it (EBUSY).
func rmdir(d string) error {
	deadline := time.Now().Add(2 * time.Second)
	pause := time.Millisecond
	for {
		err := syscall.Rmdir(d)
		switch {
		case err == nil, errors.Is(err, syscall.ENOENT):
			return nil
		case errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline):
			time.Sleep(pause)
			pause = min(pause*2, 50*time.Millisecond)
		default:
			return fmt.Errorf("rmdir %s: %w", d, err)
		}
	}
}

func validName(s string) error {
	if !nameRE.MatchString(s) || s == "." || s == ".." {
		return fmt.Errorf("cgroup name %q: use letters, digits, '.', '_' and '-'", s)
	}
	return nil
}

func validPath(name string) error {
	if name == "" {
		return errors.New("cgroup name is empty")
	}
	for _, part := range strings.Split(name, "/") {
		if err := validName(part); err != nil {
			return err
		}
	}
	return nil
}

// writeFile and readFile use the system calls directly: a cgroup file is
// opened, written or read once, and closed, several times per attempt, and
// os.File's poller registration and stat double the calls each costs.
func writeFile(dir, file, v string) error {
	path := filepath.Join(dir, file)
	fd, err := openFile(path, syscall.O_WRONLY)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if _, err := syscall.Write(fd, []byte(v)); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func readFile(dir, file string) (string, error) {
	b, err := readAll(filepath.Join(dir, file))
	return strings.TrimSpace(string(b)), err
}

func openFile(path string, mode int) (int, error) {
	for {
		fd, err := syscall.Open(path, mode|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// readAll reads a cgroup file whole.
func readAll(path string) ([]byte, error) {
	fd, err := openFile(path, syscall.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

func readInt(dir, file string) (int64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	return n, nil
}

// readKeyed returns key's value in a "key value" per line file.
func readKeyed(dir, file, key string) (int64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

func readPids(path string) ([]int, error) {
	b, err := readAll(path)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// mount is one cgroup mount of /proc/self/mountinfo.
type mount struct {
	point   string
	root    string   // the mount's root within the hierarchy
	v2      bool     // cgroup2
	options []string // v1: its controllers among the super options
}

func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		m := mount{point: unescape(fields[4]), root: unescape(fields[3]), v2: fstype == "cgroup2"}
		if !m.v2 {
			m.options = strings.Split(fields[sep+3], ",")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readOwn reads /proc/self/cgroup: the caller's path by controller, and ""
// for the unified hierarchy.
func readOwn(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// within joins a mount point and a cgroup path seen from the mount's root.
func within(m mount, path string) string {
	rel := path
	if m.root != "/" {
		rel = strings.TrimPrefix(path, m.root)
	}
	return filepath.Join(m.point, rel)
}
