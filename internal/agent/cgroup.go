package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/cgroup"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// attemptPids bounds the processes and threads of one attempt: a fork bomb
// stops there instead of taking the machine.
const attemptPids = 4096

// initCgroups finds the machine's cgroups, or says once why the agent runs
// without them (then steps are stopped by process group only, as before).
func (a *Agent) initCgroups() {
	if a.cfg.NoCgroups {
		a.log.Info("cgroups off: steps are stopped by process group only, without limits or usage")
		return
	}
	m, err := cgroup.New(cgroup.Options{})
	if err != nil {
		a.log.Warn("cgroups unavailable: steps are stopped by process group only, without limits or usage", "reason", err)
		return
	}
	a.cg = m
	a.cgName = CgroupName(a.cfg.ID, a.cfg.WorkDir)
	a.log.Info("every attempt in its own cgroup", "cgroup", m.String(), "group", a.cgName)
}

// CgroupName is the group, under the cgroup parent, that holds the groups
// of the attempts of agent id with work dir workDir. The work dir is in the
// name so that agents of one id with different work dirs on one machine
// (the local workers of two servers) never touch each other's groups,
// while an agent started again with the same id and work dir finds its
// leftovers.
func CgroupName(id, workDir string) string {
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	sum := sha256.Sum256([]byte(workDir))
	return id + "-" + hex.EncodeToString(sum[:4])
}

// attemptCgroup is the cgroup of one attempt; a nil one does nothing.
type attemptCgroup struct {
	g      *cgroup.Group
	memory int64
	ooms   int64 // OOM kills already seen
	log    *slog.Logger
}

// newAttemptCgroup creates the group of an attempt, with the cpu and memory
// the job stated as limits. It returns nil (no group) when the agent has no
// cgroups or the group cannot be made; the attempt then runs as before.
func (a *Agent) newAttemptCgroup(d bus.Dispatch, spec pipeline.JobSpec, log *slog.Logger) *attemptCgroup {
	if a.cg == nil || spec.Image != "" {
		return nil // a container is in the engine's own cgroup
	}
	// What the job stated is its limit; a default only reserves (a job
	// that says nothing is not throttled to the default's tenth of a core).
	lim := cgroup.Limits{Pids: attemptPids}
	if spec.LimitCPU {
		lim.CPUMilli = spec.CPUMilli
	}
	if spec.LimitMemory {
		lim.Memory = spec.Memory
	}
	g, err := a.cg.Create(a.attemptCgroupName(d.JobID, d.Attempt), lim)
	if err != nil {
		log.Warn("attempt runs without a cgroup", "err", err)
		return nil
	}
	return &attemptCgroup{g: g, memory: lim.Memory, log: log}
}

func (a *Agent) attemptCgroupName(jobID string, attempt int) string {
	return a.cgName + "/" + jobID + "-" + strconv.Itoa(attempt)
}

// group is the attempt's group, nil when it has none: the steps' processes
// are born in it.
func (c *attemptCgroup) group() *cgroup.Group {
	if c == nil {
		return nil
	}
	return c.g
}

// newOOMKills reports whether the kernel has killed a process of the
// attempt at its memory limit since the last call.
func (c *attemptCgroup) newOOMKills() bool {
	if c == nil {
		return false
	}
	n, err := c.g.OOMKills()
	if err != nil || n <= c.ooms {
		return false
	}
	c.ooms = n
	return true
}

// outOfMemory is the error of a step killed at the job's memory limit.
func (c *attemptCgroup) outOfMemory(err error) error {
	if c.memory == 0 {
		return fmt.Errorf("out of memory: killed by the kernel (the job states no memory limit: the machine or the agent's own group ran out): %w", err)
	}
	return fmt.Errorf("out of memory: killed at the job's memory limit of %d MiB (raise runs-on.memory): %w", c.memory>>20, err)
}

// end kills every process left in the group (setsid daemons included),
// reads what the attempt used, and removes the group.
func (c *attemptCgroup) end() cgroup.Stats {
	if c == nil {
		return cgroup.Stats{}
	}
	if err := c.g.Kill(); err != nil {
		c.log.Error("kill the attempt's processes", "err", err)
	}
	s, err := c.g.Stats()
	if err != nil {
		c.log.Warn("attempt usage", "err", err)
	}
	if err := c.g.Remove(); err != nil {
		c.log.Warn("remove the attempt's cgroup", "err", err)
	}
	return s
}

// removeWorkerCgroup removes the agent's own directory of groups once it
// holds none: an agent that stops leaves nothing behind.
func (a *Agent) removeWorkerCgroup() {
	if a.cg == nil {
		return
	}
	if kids, err := a.cg.Children(a.cgName); err != nil || len(kids) > 0 {
		return
	}
	g, err := a.cg.Open(a.cgName)
	if err == nil {
		err = g.Remove()
	}
	if err != nil {
		a.log.Warn("remove the agent's cgroup", "err", err)
	}
}

// cleanLeftoverCgroups kills what a previous run of this agent left in the
// groups of its attempts, and removes them.
func (a *Agent) cleanLeftoverCgroups() {
	if a.cg == nil {
		return
	}
	n, err := a.cg.KillTree(a.cgName)
	if err != nil {
		a.log.Warn("leftover cgroups", "err", err)
	}
	if n > 0 {
		a.log.Warn("killed processes left by a previous run", "processes", n)
	}
}
