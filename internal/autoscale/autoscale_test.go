package autoscale

import (
	"math"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func poolCfg(min, max int, startup time.Duration) poolsfile.PoolConfig {
	return poolsfile.PoolConfig{Name: "p", Provider: "local", Min: min, Max: max, IdleTimeout: 10 * time.Minute,
		StartupDelay: startup, CostPerHour: 2, Shape: poolsfile.Shape{CPUMilli: 1000, Memory: 1 << 30}}
}

func snap(now time.Time, cfg poolsfile.PoolConfig, ws []workers.WorkerSnapshot, queued int) workers.Snapshot {
	s := workers.Snapshot{Now: now, Pools: []workers.PoolSnapshot{{Config: cfg, Workers: ws, Healthy: true, CanCreate: -1}}}
	if queued > 0 {
		s.Demand = []workers.Demand{{CPUMilli: 1000, Memory: 1 << 20, Jobs: queued}}
	}
	return s
}

func count(acts []workers.Action, k workers.ActionKind) int {
	n := 0
	for _, a := range acts {
		if a.Kind == k {
			n++
		}
	}
	return n
}

func busy(id string, at time.Time) workers.WorkerSnapshot {
	return workers.WorkerSnapshot{ID: id, State: workers.WorkerBusy, Jobs: 1, CreatedAt: at}
}

func idle(id string, since time.Time) workers.WorkerSnapshot {
	return workers.WorkerSnapshot{ID: id, State: workers.WorkerIdle, CreatedAt: since, IdleSince: since}
}

func TestDecideTable(t *testing.T) {
	t.Parallel()
	now := t0.Add(time.Hour)
	cases := []struct {
		name      string
		cfg       poolsfile.PoolConfig
		ws        []workers.WorkerSnapshot
		queued    int
		create    int
		drain     int
		terminate int
	}{
		{"scale up on queue", poolCfg(0, 10, time.Minute), nil, 3, 3, 0, 0},
		{"never above max", poolCfg(0, 2, time.Minute), []workers.WorkerSnapshot{busy("a", t0)}, 5, 1, 0, 0},
		{"min kept", poolCfg(2, 5, time.Minute), nil, 0, 2, 0, 0},
		{"never below min", poolCfg(1, 5, time.Minute), []workers.WorkerSnapshot{idle("a", t0)}, 0, 0, 0, 0},
		{"drain after idle_timeout", poolCfg(0, 5, time.Minute), []workers.WorkerSnapshot{idle("a", t0), idle("b", now.Add(-time.Minute))}, 0, 0, 1, 0},
		{"terminate once drained", poolCfg(0, 5, time.Minute), []workers.WorkerSnapshot{{ID: "a", State: workers.WorkerDraining, DrainRequested: true, CreatedAt: t0}}, 0, 0, 0, 1},
		{"no drain while jobs wait", poolCfg(0, 1, time.Minute), []workers.WorkerSnapshot{idle("a", t0)}, 2, 0, 0, 0},
	}
	for _, predictive := range []bool{false, true} {
		for _, c := range cases {
			s := New(Options{Predictive: predictive})
			acts := s.Decide(snap(now, c.cfg, c.ws, c.queued))
			if got := [3]int{count(acts, workers.ActionCreate), count(acts, workers.ActionDrain), count(acts, workers.ActionTerminate)}; got != [3]int{c.create, c.drain, c.terminate} {
				t.Errorf("predictive %v, %s: create/drain/terminate %v, want %v (%v)", predictive, c.name, got, [3]int{c.create, c.drain, c.terminate}, acts)
			}
		}
	}
}

// train runs a scaler over days of a demand that is 1 worker until 09:00
// and 6 from 09:00 to 17:00, one decision a minute, applying no action:
// the snapshots carry exactly the demanded busy workers.
func train(s *Scaler, cfg poolsfile.PoolConfig, d time.Duration) time.Time {
	now := t0
	for ; now.Before(t0.Add(d)); now = now.Add(time.Minute) {
		s.Decide(snap(now, cfg, busyN(dayDemand(now), now), 0))
	}
	return now
}

func dayDemand(t time.Time) int {
	if h := t.Hour(); h >= 9 && h < 17 {
		return 6
	}
	return 1
}

func busyN(n int, at time.Time) []workers.WorkerSnapshot {
	ws := make([]workers.WorkerSnapshot, n)
	for i := range ws {
		ws[i] = busy(string(rune('a'+i)), at)
	}
	return ws
}

func TestProvisionsAheadByStartupDelay(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 20, 10*time.Minute)
	s := New(Options{Predictive: true, Headroom: 0.01})
	end := train(s, cfg, 3*24*time.Hour)
	// Day 4: at 08:45 nothing more is needed; at 08:50 (09:00 minus the
	// startup delay) the forecast for 09:00 asks for 6 workers.
	for now := end; now.Before(end.Add(8*time.Hour + 50*time.Minute)); now = now.Add(time.Minute) {
		acts := s.Decide(snap(now, cfg, busyN(1, now), 0))
		if n := count(acts, workers.ActionCreate); n > 0 {
			t.Fatalf("at %s: %d creates before the rise is one startup delay away (%v)", now.Format("15:04"), n, acts)
		}
	}
	at := end.Add(8*time.Hour + 50*time.Minute)
	acts := s.Decide(snap(at, cfg, busyN(1, at), 0))
	if n := count(acts, workers.ActionCreate); n != 5 {
		t.Errorf("at 08:50: %d creates, want 5 (6 forecast, 1 running): %v", n, acts)
	}
	if f, ok := s.Forecast("p"); !ok || f != 6 {
		t.Errorf("Forecast = %d, %v; want 6 (6.06 with 1%% headroom), true", f, ok)
	}
	st := s.Stats()["p"]
	if st.Model != "daily" || !st.Predictive || st.RecentWAPE > 0.05 {
		t.Errorf("stats %+v: want a daily model in use with a small error", st)
	}
	// The reactive scaler does not see it coming.
	r := New(Options{})
	train(r, cfg, 3*24*time.Hour)
	if n := count(r.Decide(snap(at, cfg, busyN(1, at), 0)), workers.ActionCreate); n != 0 {
		t.Errorf("reactive created %d at 08:50", n)
	}
}

func TestPredictiveKeepsForecastDrainsExcess(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 20, 10*time.Minute)
	s := New(Options{Predictive: true, Headroom: 0.01})
	end := train(s, cfg, 3*24*time.Hour+10*time.Hour)
	// 10:00 on day 4: 6 forecast; 2 busy and 6 idle, x6 for less than the
	// excess cooldown: keep 6 (the forecast, the busy counted), drain 2.
	now := end
	ws := append(busyN(2, now), idle("x1", now.Add(-2*time.Minute)), idle("x2", now.Add(-2*time.Minute)), idle("x3", now.Add(-3*time.Minute)),
		idle("x4", now.Add(-2*time.Minute)), idle("x5", now.Add(-2*time.Minute)), idle("x6", now.Add(-30*time.Second)))
	acts := s.Decide(snap(now, cfg, ws, 0))
	if len(acts) != 2 || count(acts, workers.ActionDrain) != 2 || acts[0].WorkerID != "x3" || acts[1].WorkerID != "x1" {
		t.Errorf("want x3 then x1 drained (the longest idle beyond the forecast): %v", acts)
	}
}

func TestFallsBackToReactiveWhenErrorHigh(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 20, 10*time.Minute)
	s := New(Options{Predictive: true, MaxError: 0.25, ErrorWindow: 24})
	end := train(s, cfg, 3*24*time.Hour)
	// Day 4 does not follow the pattern: 8 workers, then 1, every 10
	// minutes, all night.
	now := end
	for ; now.Before(end.Add(4 * time.Hour)); now = now.Add(time.Minute) {
		n := 1
		if now.Minute()/10%2 == 0 {
			n = 8
		}
		s.Decide(snap(now, cfg, busyN(n, now), 0))
	}
	if _, ok := s.Forecast("p"); ok {
		t.Errorf("forecast still in use with a recent WAPE of %.2f", s.Stats()["p"].RecentWAPE)
	}
	// Reactive rules only: nothing queued, nothing idle, nothing to do.
	if acts := s.Decide(snap(now, cfg, busyN(8, now), 0)); len(acts) != 0 {
		t.Errorf("fallback acted: %v", acts)
	}
}

func TestCostAccountExact(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 10, time.Minute) // 2 an hour
	s := New(Options{})
	// 00:00-00:30 one busy, one starting; 00:30-02:00 one busy, one idle,
	// one draining; after 02:00 nothing.
	s.Decide(snap(t0, cfg, []workers.WorkerSnapshot{busy("a", t0), {ID: "b", State: workers.WorkerPending, CreatedAt: t0}}, 0))
	at := t0.Add(30 * time.Minute)
	s.Decide(snap(at, cfg, []workers.WorkerSnapshot{busy("a", t0), idle("b", at), {ID: "c", State: workers.WorkerDraining, DrainRequested: true}}, 0))
	s.Decide(snap(t0.Add(2*time.Hour), cfg, nil, 0))
	s.Decide(snap(t0.Add(3*time.Hour), cfg, nil, 0))
	a := s.Accounts()["p"]
	want := Account{WorkerHours: 2*0.5 + 3*1.5, IdleWorkerHours: 0.5 + 2*1.5, Cost: 2 * (2*0.5 + 3*1.5)}
	if math.Abs(a.WorkerHours-want.WorkerHours) > 1e-9 || math.Abs(a.IdleWorkerHours-want.IdleWorkerHours) > 1e-9 || math.Abs(a.Cost-want.Cost) > 1e-9 {
		t.Errorf("account %+v, want %+v", a, want)
	}
}

// TestKeepCoversPeaks: demand that swings between 4 and 8 workers every
// minute from 09:00 to 17:00 averages 6 a bucket; the workers kept idle
// cover the peaks (8), while the workers created ahead follow the mean.
func TestKeepCoversPeaks(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 20, 10*time.Minute)
	s := New(Options{Predictive: true})
	now := t0
	swing := func(t time.Time) int {
		if d := dayDemand(t); d == 6 {
			return 4 + 4*(t.Minute()%2)
		}
		return 1
	}
	for ; now.Before(t0.Add(3*24*time.Hour + 10*time.Hour)); now = now.Add(time.Minute) {
		s.Decide(snap(now, cfg, busyN(swing(now), now), 0))
	}
	ws := busyN(4, now)
	for _, id := range []string{"x1", "x2", "x3", "x4", "x5", "x6"} {
		ws = append(ws, idle(id, now.Add(-5*time.Minute)))
	}
	acts := s.Decide(snap(now, cfg, ws, 0))
	if n := count(acts, workers.ActionDrain); n != 2 {
		t.Errorf("10 workers, peaks of 8: %d drained, want 2 (%v)", n, acts)
	}
	if f, _ := s.Forecast("p"); f < 6 || f >= 8 {
		t.Errorf("created-ahead target %d, want the mean (6, or 7 when rounded up), below the peaks", f)
	}
}

// TestKeepsWhatTheForecastNeedsWithinIdleTimeout: at 08:52 a worker idle
// for 12 minutes is past the idle_timeout, so the reactive scaler drains
// it; the forecast sees the 09:00 rise within the idle timeout and keeps
// it.
func TestKeepsWhatTheForecastNeedsWithinIdleTimeout(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 20, time.Minute)
	p, r := New(Options{Predictive: true}), New(Options{})
	end := train(p, cfg, 3*24*time.Hour+8*time.Hour+52*time.Minute)
	train(r, cfg, 3*24*time.Hour+8*time.Hour+52*time.Minute)
	ws := append(busyN(1, end), idle("x", end.Add(-12*time.Minute)))
	if n := count(r.Decide(snap(end, cfg, ws, 0)), workers.ActionDrain); n != 1 {
		t.Fatalf("reactive drained %d, want 1", n)
	}
	if acts := p.Decide(snap(end, cfg, ws, 0)); count(acts, workers.ActionDrain) != 0 {
		t.Errorf("predictive drained a worker the 09:00 forecast needs: %v", acts)
	}
}
