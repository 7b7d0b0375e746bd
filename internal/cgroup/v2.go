package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func newV2(mounts []mount, own map[string]string, o Options, needMemory bool) (*Manager, error) {
	i := slices.IndexFunc(mounts, func(x mount) bool { return x.v2 })
	if i < 0 {
		return nil, errors.New("cgroup v2: not mounted")
	}
	path, ok := own[""]
	if !ok {
		return nil, errors.New("cgroup v2: this process is in no v2 group")
	}
	ownDir := within(mounts[i], path)
	avail, err := readFile(ownDir, "cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	var ctl []string
	for _, c := range v2Wanted {
		if slices.Contains(strings.Fields(avail), c) {
			ctl = append(ctl, c)
		}
	}
	if needMemory && !slices.Contains(ctl, "memory") {
		return nil, fmt.Errorf("cgroup v2 at %s: no memory controller", ownDir)
	}
	m := &Manager{version: V2, v2: filepath.Join(ownDir, o.Parent), v2ctl: ctl, noKill: o.noKillFile}
	if err := os.MkdirAll(m.v2, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	if err := m.enable(ownDir); err != nil {
		return nil, err
	}
	if err := m.enable(m.v2); err != nil {
		return nil, err
	}
	return m, nil
}

// enable turns the Manager's controllers on for the children of dir.
func (m *Manager) enable(dir string) error {
	if len(m.v2ctl) == 0 {
		return nil
	}
	v := "+" + strings.Join(m.v2ctl, " +")
	if err := writeFile(dir, "cgroup.subtree_control", v); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("cgroup v2: enable %s in %s: the group has processes of its own; run the agent in a leaf group of a delegated subtree: %w", v, dir, err)
		}
		return fmt.Errorf("cgroup v2: enable %s in %s: %w", v, dir, err)
	}
	return nil
}

func (g *Group) createV2(l Limits) error {
	// Each level between the parent and the group passes the controllers on.
	parts := strings.Split(g.name, "/")
	dir := g.m.v2
	for _, p := range parts[:len(parts)-1] {
		dir = filepath.Join(dir, p)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := g.m.enable(dir); err != nil {
			return err
		}
	}
	if err := os.Mkdir(g.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	has := func(c string) bool { return slices.Contains(g.m.v2ctl, c) }
	if has("memory") && l.Memory > 0 {
		if err := writeFile(g.dir, "memory.max", strconv.FormatInt(l.Memory, 10)); err != nil {
			return fmt.Errorf("memory limit: %w", err)
		}
		if err := writeFile(g.dir, "memory.swap.max", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("swap limit: %w", err)
		}
	}
	if has("cpu") && l.CPUMilli > 0 {
		if err := writeFile(g.dir, "cpu.max", fmt.Sprintf("%d %d", cpuQuota(l.CPUMilli), cfsPeriod)); err != nil {
			return fmt.Errorf("cpu quota: %w", err)
		}
		if err := writeFile(g.dir, "cpu.weight", strconv.FormatInt(cpuWeight(l.CPUMilli), 10)); err != nil {
			return fmt.Errorf("cpu weight: %w", err)
		}
	}
	if has("pids") && l.Pids > 0 {
		if err := writeFile(g.dir, "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return fmt.Errorf("pids limit: %w", err)
		}
	}
	return nil
}

// cpuWeight maps v1 shares to a v2 weight (1-10000) the way runc does.
func cpuWeight(milli int64) int64 {
	return 1 + (cpuShares(milli)-2)*9999/262142
}

// killV2 writes cgroup.kill where the kernel has it (5.14 and later), which
// kills the whole subtree at once; else it freezes, kills and thaws like v1.
func (g *Group) killV2() error {
	deadline := time.Now().Add(killTimeout)
	if _, err := os.Stat(filepath.Join(g.dir, "cgroup.kill")); err == nil && !g.m.noKill {
		if err := writeFile(g.dir, "cgroup.kill", "1"); err != nil {
			return err
		}
		empty, err := g.waitEmpty(deadline)
		if err != nil || empty {
			return err
		}
		return fmt.Errorf("processes still in the group after %s", killTimeout)
	} else if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(g.dir); err != nil {
			return err
		}
	}
	return g.killFrozen(freezer{
		set: func(frozen bool) error {
			if frozen {
				return writeFile(g.dir, "cgroup.freeze", "1")
			}
			return writeFile(g.dir, "cgroup.freeze", "0")
		},
		// cgroup.events says frozen 1 once every process has stopped.
		frozen: func() bool {
			n, err := readKeyed(g.dir, "cgroup.events", "frozen")
			return err != nil || n == 1
		},
	}, deadline)
}

func (g *Group) statsV2() (Stats, error) {
	var s Stats
	usec, err := readKeyed(g.dir, "cpu.stat", "usage_usec")
	if err != nil {
		return s, err
	}
	s.CPUTime = time.Duration(usec) * time.Microsecond
	if slices.Contains(g.m.v2ctl, "memory") {
		// memory.peak came with Linux 5.19; older kernels leave it zero.
		if n, err := readInt(g.dir, "memory.peak"); err == nil {
			s.PeakMemory = n
		} else if !errors.Is(err, os.ErrNotExist) {
			return s, err
		}
		if s.OOMKills, err = readKeyed(g.dir, "memory.events", "oom_kill"); err != nil {
			return s, err
		}
	}
	return s, nil
}
