package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/server"
)

// startFleet starts o.Agents simulated agents against s, StartParallel at a
// time, and waits until every one has joined. The returned stop ends them
// (their jobs handed back) and closes their connections; call it even on an
// error.
// Their directories (work, git cache) are under dir, removed with it.
func startFleet(ctx context.Context, s *server.Server, o Options, dir string) (stop func(), err error) {
	slots := o.AgentSlots
	if slots <= 0 {
		slots = 4
	}
	parallel := o.StartParallel
	if parallel <= 0 {
		parallel = 64
	}
	actx, cancel := context.WithCancel(context.Background())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []*nats.Conn
	)
	stop = func() {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range conns {
			nc.Close()
		}
		conns = nil
	}
	exec := func(ctx context.Context, d bus.Dispatch, _ pipeline.JobSpec) (string, int, string) {
		if o.AgentDelay > 0 {
			t := time.NewTimer(o.AgentDelay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return bus.StatusCanceled, -1, "canceled"
			}
		}
		if o.OnExec != nil {
			o.OnExec(d.RunID, d.JobID, d.Attempt)
		}
		return bus.StatusSucceeded, 0, ""
	}
	sem := make(chan struct{}, parallel)
	errc := make(chan error, 1)
	var started sync.WaitGroup
	for i := 1; i <= o.Agents; i++ {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		started.Add(1)
		go func() {
			defer started.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("sim-%05d", i)
			// A connection may time out on a loaded machine while
			// hundreds connect: a real agent tries again, and so does
			// this one.
			var nc *nats.Conn
			var err error
			for try := 0; try < 10; try++ {
				if nc, err = s.AgentConn(id); err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				select {
				case errc <- fmt.Errorf("bench fleet: agent %s: %w", id, err):
				default:
				}
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			a, err := agent.New(nc, agent.Config{
				ID: id, Pool: "sim", CPUMilli: int64(slots) * 100, Memory: int64(slots) * 64 << 20,
				WorkDir: filepath.Join(dir, "sim", id, "work"), GitCacheDir: filepath.Join(dir, "sim", id, "git"),
				HeartbeatInterval: o.HeartbeatInterval, NoCgroups: true, Exec: exec, Logger: o.Logger,
			})
			if err != nil {
				select {
				case errc <- fmt.Errorf("bench fleet: agent %s: %w", id, err):
				default:
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := a.Run(actx); err != nil && actx.Err() == nil {
					o.Logger.Error("simulated agent stopped", "worker", id, "err", err)
				}
			}()
		}()
	}
	started.Wait()
	select {
	case err := <-errc:
		return stop, err
	default:
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Duration(o.Agents/4+120)*time.Second)
	defer wcancel()
	if err := s.WaitForWorkers(wctx, o.Agents); err != nil {
		return stop, fmt.Errorf("bench fleet: waiting for %d agents to join: %w", o.Agents, err)
	}
	return stop, nil
}
