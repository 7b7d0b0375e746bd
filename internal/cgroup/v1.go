package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// cfsPeriod is the CFS period of the CPU quota, in microseconds.
const cfsPeriod = 100_000

func newV1(mounts []mount, own map[string]string, o Options) (*Manager, error) {
	m := &Manager{version: V1, v1: map[string]string{}}
	for _, c := range v1Wanted {
		i := slices.IndexFunc(mounts, func(x mount) bool { return !x.v2 && slices.Contains(x.options, c) })
		if i < 0 {
			continue
		}
		path, ok := own[c]
		if !ok {
			continue
		}
		m.v1[c] = filepath.Join(within(mounts[i], path), o.Parent)
	}
	for _, c := range v1Required {
		if _, ok := m.v1[c]; !ok {
			return nil, fmt.Errorf("cgroup v1: no %s controller mounted", c)
		}
	}
	for c, d := range m.v1 {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cgroup v1: %s: %w", c, err)
		}
	}
	return m, nil
}

func (g *Group) create(l Limits) error {
	if g.m.version == V2 {
		return g.createV2(l)
	}
	// Without a CPU limit the cpu hierarchy has nothing to enforce: the
	// attempt's processes stay in the caller's cpu group, and the attempt
	// pays one mkdir, rmdir and write fewer (cpuacct still counts its CPU
	// time). Where cpu and cpuacct share a hierarchy, the group is made.
	g.noCPU = l.CPUMilli == 0 && g.dirs["cpu"] != g.dirs["cpuacct"]
	for c, d := range g.dirs {
		if !g.placesIn(c) {
			continue
		}
		if err := mkdir(d); err != nil {
			return err
		}
	}
	if d, ok := g.dirs["memory"]; ok && l.Memory > 0 {
		if err := writeFile(d, "memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10)); err != nil {
			return fmt.Errorf("memory limit: %w", err)
		}
		// Memory plus swap at the same value: no swap on top. The file
		// is missing when the kernel does not account swap.
		if err := writeFile(d, "memory.memsw.limit_in_bytes", strconv.FormatInt(l.Memory, 10)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("memory+swap limit: %w", err)
		}
	}
	if d, ok := g.dirs["cpu"]; ok && l.CPUMilli > 0 {
		// A new group's period is the kernel's default, cfsPeriod.
		if err := writeFile(d, "cpu.cfs_quota_us", strconv.FormatInt(cpuQuota(l.CPUMilli), 10)); err != nil {
			return fmt.Errorf("cpu quota: %w", err)
		}
		if err := writeFile(d, "cpu.shares", strconv.FormatInt(cpuShares(l.CPUMilli), 10)); err != nil {
			return fmt.Errorf("cpu shares: %w", err)
		}
	}
	if d, ok := g.dirs["pids"]; ok && l.Pids > 0 {
		if err := writeFile(d, "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return fmt.Errorf("pids limit: %w", err)
		}
	}
	return nil
}

// placesIn reports whether the group's processes go in controller c's
// hierarchy (v1).
func (g *Group) placesIn(c string) bool {
	_, ok := g.dirs[c]
	return ok && !(c == "cpu" && g.noCPU)
}

// cpuQuota is the CFS quota, per cfsPeriod, of milli thousandths of a core
// (the kernel's minimum is 1 ms).
func cpuQuota(milli int64) int64 { return max(milli*cfsPeriod/1000, 1000) }

// cpuShares is the v1 weight of milli: 1024 per core, as Docker and the
// kubelet do.
func cpuShares(milli int64) int64 { return max(milli*1024/1000, 2) }

// killV1 kills through the freezer controller's freezer.state.
func (g *Group) killV1() error {
	fz := g.dirs["freezer"]
	return g.killFrozen(freezer{
		set: func(frozen bool) error {
			if frozen {
				return writeFile(fz, "freezer.state", "FROZEN")
			}
			return writeFile(fz, "freezer.state", "THAWED")
		},
		// Freezing is asynchronous: FREEZING until every process stopped.
		frozen: func() bool {
			s, err := readFile(fz, "freezer.state")
			return err != nil || s == "FROZEN"
		},
	}, time.Now().Add(killTimeout))
}

// mkdir makes a group's directory, and its parents only when missing
// (the common case, one mkdir, is what every attempt pays).
func mkdir(d string) error {
	err := os.Mkdir(d, 0o755)
	if errors.Is(err, os.ErrNotExist) {
		err = os.MkdirAll(d, 0o755)
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func (g *Group) statsV1() (Stats, error) {
	var s Stats
	if d, ok := g.dirs["memory"]; ok {
		n, err := readInt(d, "memory.max_usage_in_bytes")
		if err != nil {
			return s, err
		}
		s.PeakMemory = n
		if s.OOMKills, err = readKeyed(d, "memory.oom_control", "oom_kill"); err != nil {
			return s, err
		}
	}
	if d, ok := g.dirs["cpuacct"]; ok {
		n, err := readInt(d, "cpuacct.usage")
		if err != nil {
			return s, err
		}
		s.CPUTime = time.Duration(n)
	}
	return s, nil
}
