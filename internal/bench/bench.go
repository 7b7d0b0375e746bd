// Package bench measures Hodei end to end on one machine: it starts an
// embedded server (embedded NATS JetStream, SQLite, local agents), submits
// trivial pipelines, and reports throughput and latency percentiles. It also
// measures how fast this machine can start `sh -c true`, the physical ceiling
// of any system that runs each job as a process.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
)

// Options configure a benchmark.
type Options struct {
	// Pipelines to submit.
	Pipelines int
	// Concurrency is the number of submitters; each submits a pipeline and
	// waits for it to end before the next (closed loop).
	Concurrency int
	// Rate, when > 0, submits open-loop at this many pipelines per second
	// instead, whatever the backlog.
	Rate float64
	// DAG uses 10-job diamond pipelines (1 -> 8 -> 1) instead of one job.
	DAG bool
	// Workers is the number of local agents (2 by default).
	Workers int
	// DataDir for the server; a temporary directory when empty.
	DataDir string
	// SpawnSamples is how many `sh -c true` to start for the ceiling (0 = skip).
	SpawnSamples int
	// Unisolated runs the steps without a sandbox (--unsafe-shared-user),
	// to measure what isolation costs.
	Unisolated bool
	Logger     *slog.Logger

	// Agents, when > 0, replaces the local agents by this many simulated
	// ones (hodei bench fleet): each is an agent of this process with its
	// own NATS connection, heartbeats and dispatch consumer, speaking the
	// real protocol, whose executor ends every job at once (or after
	// AgentDelay) without running anything.
	Agents int
	// AgentDelay is how long a simulated agent's job lasts.
	AgentDelay time.Duration
	// AgentSlots is how many jobs a simulated agent runs at once (4 by
	// default).
	AgentSlots int
	// StartParallel is how many simulated agents start at once (64 by
	// default): thousands starting together overflow JetStream's API
	// queue with their consumer creations.
	StartParallel int
	// HeartbeatInterval of the simulated agents (the server's default
	// when zero); the server's worker TTL follows it.
	HeartbeatInterval time.Duration
	// NATSURL runs the server on an external NATS instead of the
	// embedded one.
	NATSURL string
	// Store is the server's database (server.Options.Store): "" for the
	// SQLite file in DataDir, or a postgres:// URL.
	Store string
	// OnExec, if set, is called by the simulated agents with each job they
	// run (tests count attempts with it).
	OnExec func(runID, jobID string, attempt int)
	// Joined, if set, is called once every simulated agent has joined,
	// before the first submission (bench fleet writes its heap profile
	// then).
	Joined func()
}

// Percentiles of a latency, in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Result is what a benchmark measured.
type Result struct {
	Pipelines        int         `json:"pipelines"`
	Jobs             int         `json:"jobs"`
	Concurrency      int         `json:"concurrency"`
	Rate             float64     `json:"offered_rate,omitempty"`
	JobsPerSec       float64     `json:"jobs_per_sec"`
	SubmitToStartMS  Percentiles `json:"submit_to_start_ms"`
	SubmitToFinishMS Percentiles `json:"submit_to_finish_ms"`
	WallS            float64     `json:"wall_s"`
	Failed           int         `json:"failed"`
	SpawnPerSec      float64     `json:"sh_spawn_per_sec,omitempty"`
	CeilingFraction  float64     `json:"fraction_of_spawn_rate,omitempty"`
	// Agents and AgentsStartS: the simulated agents and how long they took
	// to join (hodei bench fleet).
	Agents       int     `json:"agents,omitempty"`
	AgentsStartS float64 `json:"agents_start_s,omitempty"`
	// ServerRSSMiB is this process's resident set at the end (server and
	// simulated agents together), MiB.
	ServerRSSMiB float64 `json:"process_rss_mib,omitempty"`
}

const trivial = `name: bench
jobs:
  one:
    steps: [{run: "true"}]
`

func diamond() string {
	var b strings.Builder
	b.WriteString("name: bench-dag\njobs:\n  root:\n    steps: [{run: \"true\"}]\n")
	var mids []string
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "  mid%d:\n    needs: [root]\n    steps: [{run: \"true\"}]\n", i)
		mids = append(mids, fmt.Sprintf("mid%d", i))
	}
	fmt.Fprintf(&b, "  sink:\n    needs: [%s]\n    steps: [{run: \"true\"}]\n", strings.Join(mids, ", "))
	return b.String()
}

// collector follows every run through the hub and records job times.
type collector struct {
	mu       sync.Mutex
	submit   map[string]time.Time
	started  []float64
	finished []float64
	waiters  map[string]chan state.RunState
	ended    map[string]state.RunState
	failed   int
}

func (c *collector) follow(sub *hub.Sub) error {
	for n := range sub.C {
		switch n.Kind {
		case hub.KindJob:
			if n.JobState != state.JobRunning && !n.JobState.Final() {
				continue
			}
			c.mu.Lock()
			t0, ok := c.submit[n.RunID]
			if ok {
				ms := float64(n.At.Sub(t0).Microseconds()) / 1000
				if n.JobState == state.JobRunning {
					c.started = append(c.started, ms)
				} else {
					c.finished = append(c.finished, ms)
				}
			}
			c.mu.Unlock()
		case hub.KindRun:
			if !n.RunState.Final() {
				continue
			}
			c.mu.Lock()
			if n.RunState != state.RunSucceeded {
				c.failed++
			}
			if ch := c.waiters[n.RunID]; ch != nil {
				ch <- n.RunState
				delete(c.waiters, n.RunID)
			} else {
				c.ended[n.RunID] = n.RunState
			}
			c.mu.Unlock()
		}
	}
	if sub.Lagged() {
		return errors.New("bench: fell behind the hub")
	}
	return nil
}

// wait returns a channel that receives the run's final state.
func (c *collector) wait(runID string) <-chan state.RunState {
	ch := make(chan state.RunState, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.ended[runID]; ok {
		delete(c.ended, runID)
		ch <- st
		return ch
	}
	c.waiters[runID] = ch
	return ch
}

// dataDir returns the server's data directory: dir, or when it is empty a
// new temporary directory named after prefix, which remove removes.
func dataDir(dir, prefix string) (_ string, remove func(), err error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// Run starts a server, runs the benchmark, and stops the server.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Pipelines <= 0 {
		o.Pipelines = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dir, removeDir, err := dataDir(o.DataDir, "hodei-bench-")
	if err != nil {
		return Result{}, err
	}
	defer removeDir()
	res := Result{Pipelines: o.Pipelines, Concurrency: o.Concurrency, Rate: o.Rate}
	if o.SpawnSamples > 0 {
		rate, err := SpawnRate(ctx, o.SpawnSamples, o.Concurrency)
		if err != nil {
			return res, err
		}
		res.SpawnPerSec = rate
	}

	// Each agent may run many trivial jobs at once: give them capacity for
	// far more than the default job request (100m cpu, 64Mi).
	sopts := server.Options{
		DataDir: dir, Store: o.Store, NATSListen: "none", NATSURL: o.NATSURL, LocalWorkers: o.Workers,
		WorkerCPUMilli: 64 * 100, WorkerMemory: 64 * 64 << 20, Logger: o.Logger,
		UnsafeSharedUser: o.Unisolated,
	}
	if o.Agents > 0 {
		sopts.LocalWorkers = 0
		sopts.HeartbeatInterval = o.HeartbeatInterval
		if o.HeartbeatInterval > 0 {
			sopts.WorkerTTL = 5 * o.HeartbeatInterval
		}
	}
	s, err := server.Start(ctx, sopts)
	if err != nil {
		return res, err
	}
	defer s.Close()
	if o.Agents > 0 {
		t0 := time.Now()
		stopAgents, err := startFleet(ctx, s, o, dir)
		defer stopAgents()
		if err != nil {
			return res, err
		}
		res.Agents, res.AgentsStartS = o.Agents, round(time.Since(t0).Seconds())
		if o.Joined != nil {
			o.Joined()
		}
	} else {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.WaitForWorkers(wctx, o.Workers); err != nil {
			return res, err
		}
	}

	src, jobsPer := trivial, 1
	if o.DAG {
		src, jobsPer = diamond(), 10
	}
	res.Jobs = o.Pipelines * jobsPer

	col := &collector{submit: map[string]time.Time{}, waiters: map[string]chan state.RunState{}, ended: map[string]state.RunState{}}
	sub := s.Hub.Subscribe("", 1<<16)
	defer sub.Close()
	followErr := make(chan error, 1)
	go func() { followErr <- col.follow(sub) }()

	submitOne := func() (<-chan state.RunState, error) {
		t0 := time.Now()
		for {
			run, err := s.Submit(ctx, "bench.yaml", []byte(src), "")
			if err == nil {
				col.mu.Lock()
				col.submit[run.ID] = t0
				col.mu.Unlock()
				return col.wait(run.ID), nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			if !strings.Contains(err.Error(), "busy") {
				return nil, err
			}
			time.Sleep(time.Millisecond) // back off like a client told 503
		}
	}

	start := time.Now()
	var firstErr atomic.Value
	var wg sync.WaitGroup
	var done []<-chan state.RunState
	var doneMu sync.Mutex
	if o.Rate > 0 {
		interval := time.Duration(float64(time.Second) / o.Rate)
		next := time.Now()
		for i := 0; i < o.Pipelines; i++ {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, err := submitOne()
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				doneMu.Lock()
				done = append(done, ch)
				doneMu.Unlock()
			}()
		}
		wg.Wait()
		for _, ch := range done {
			select {
			case <-ch:
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
	} else {
		var next atomic.Int64
		for w := 0; w < o.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(o.Pipelines) {
					ch, err := submitOne()
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					select {
					case <-ch:
					case <-ctx.Done():
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	wall := time.Since(start)
	if v := firstErr.Load(); v != nil {
		return res, v.(error)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	sub.Close()
	if err := <-followErr; err != nil {
		return res, err
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	res.WallS = wall.Seconds()
	res.JobsPerSec = float64(res.Jobs) / wall.Seconds()
	res.SubmitToStartMS = percentiles(col.started)
	res.SubmitToFinishMS = percentiles(col.finished)
	res.Failed = col.failed
	res.ServerRSSMiB = round(float64(server.ResidentBytes()) / (1 << 20))
	if res.SpawnPerSec > 0 {
		res.CeilingFraction = res.JobsPerSec / res.SpawnPerSec
	}
	return res, nil
}

func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	sort.Float64s(v)
	q := func(p float64) float64 {
		i := int(p*float64(len(v))+0.5) - 1
		i = max(0, min(i, len(v)-1))
		return round(v[i])
	}
	return Percentiles{P50: q(0.50), P95: q(0.95), P99: q(0.99)}
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

// SpawnRate measures how many `sh -c true` processes this machine starts
// and reaps per second with the given concurrency.
func SpawnRate(ctx context.Context, n, concurrency int) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				if err := exec.Command("sh", "-c", "true").Run(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if v := firstErr.Load(); v != nil {
		return 0, fmt.Errorf("spawn sh: %w", v.(error))
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
