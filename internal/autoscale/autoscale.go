// Package autoscale is the predictive autoscaler: a workers.Scaler that
// forecasts each pool's demand with double-seasonal Holt-Winters
// (internal/forecast) and starts workers one startup delay before they are
// needed, on top of the reactive rules of workers.Reactive.
//
// Like the scheduler it is a pure function of what it is given: Decide reads
// no clock and does no I/O. Its memory (the demand history, the fitted
// models, the forecast errors and the cost accounts) lives in the Scaler,
// so the server and `hodei sim` run the same code and the same snapshots
// give the same actions. A Scaler is not safe for concurrent use: one
// goroutine (the Manager's loop, the simulator's) owns it.
//
// The series forecast per pool is the demanded workers, averaged over
// fixed buckets: the workers running jobs plus those the queue waiting for
// the pool needs (as workers.AssignDemand counts them). By Little's law
// that is arrivals × mean job duration / jobs per worker, measured directly,
// so no separate duration model is needed.
package autoscale

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/hodei-ci/hodei/internal/forecast"
	"github.com/hodei-ci/hodei/internal/workers"
)

// Options tune a Scaler; zero values take the defaults.
type Options struct {
	// Predictive enables forecasts; without it the Scaler is
	// workers.Reactive with cost accounts.
	Predictive bool
	// Bucket is the step of the demand series (default 5 minutes).
	Bucket time.Duration
	// Horizon is how many buckets ahead the forecast error is measured
	// (default 3: 15 minutes with 5-minute buckets).
	Horizon int
	// MaxError is the rolling WAPE of the Horizon-step forecasts above
	// which a pool falls back to reactive (default 0.25).
	MaxError float64
	// ErrorWindow is how many buckets the rolling error covers (default a
	// day); MinErrorSamples are needed before trusting it (default 12).
	ErrorWindow     int
	MinErrorSamples int
	// Quantile is the share of buckets whose peak demand the workers kept
	// should cover (default 0.7). The forecast is of a bucket's mean
	// demand; the workers kept idle are those the largest forecast over the
	// pool's idle_timeout asks for, plus the Quantile of the recent
	// residuals of each bucket's peak against its forecast, scaled by the
	// square root of the forecast (demand made of many independent jobs
	// varies like a Poisson count). Workers are created ahead for the mean
	// forecast only.
	Quantile float64
	// Headroom is a fraction of the forecast added on top (default 0).
	// Targets are rounded up, less a tenth of a worker.
	Headroom float64
	// ExcessCooldown is how long a worker beyond the forecast demand may
	// stay idle before it is drained (default 1 minute; never more than
	// the pool's idle_timeout). Workers within the forecast are kept.
	ExcessCooldown time.Duration
	// RefitEvery is how often the model's parameters are fitted again on
	// the history (default 24 hours); in between it is only updated.
	RefitEvery time.Duration
	// History is how much history is kept (default 5 weeks).
	History time.Duration
	// JoinTimeout is passed to workers.Reactive.
	JoinTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Bucket <= 0 {
		o.Bucket = 5 * time.Minute
	}
	if o.Horizon <= 0 {
		o.Horizon = 3
	}
	if o.MaxError <= 0 {
		o.MaxError = 0.25
	}
	if o.ErrorWindow <= 0 {
		o.ErrorWindow = int(24 * time.Hour / o.Bucket)
	}
	if o.MinErrorSamples <= 0 {
		o.MinErrorSamples = 12
	}
	if o.Quantile <= 0 || o.Quantile > 1 {
		o.Quantile = 0.7
	}
	if o.ExcessCooldown <= 0 {
		o.ExcessCooldown = time.Minute
	}
	if o.RefitEvery <= 0 {
		o.RefitEvery = 24 * time.Hour
	}
	if o.History <= 0 {
		o.History = 5 * 7 * 24 * time.Hour
	}
	return o
}

// Account is what a pool's workers cost.
type Account = workers.CostAccount

// PoolStats is one pool's forecasting state.
type PoolStats struct {
	Model      string // forecast.Model.Kind, "" before the first bucket
	Params     forecast.Params
	Buckets    int     // of history
	RecentWAPE float64 // over the rolling window
	// Accuracy of every Horizon-step forecast since the start.
	Accuracy forecast.Accuracy
	// Predictive says the last decision used the forecast (false: it fell
	// back to reactive, or it has no forecast yet).
	Predictive bool
	Target     int // workers the forecast asked for at the last decision
}

// Scaler implements workers.Scaler and workers.Forecaster.
type Scaler struct {
	o     Options
	pools map[string]*pool
	last  time.Time
}

var (
	_ workers.Scaler     = (*Scaler)(nil)
	_ workers.Forecaster = (*Scaler)(nil)
	_ workers.Accountant = (*Scaler)(nil)
)

// New returns a Scaler.
func New(o Options) *Scaler {
	return &Scaler{o: o.withDefaults(), pools: map[string]*pool{}}
}

type pool struct {
	// demand series
	started bool
	bucket  int64   // index (from the zero time) of the bucket being filled
	sum     float64 // demand × seconds in it
	need    float64 // demand at the last snapshot
	peak    float64 // the largest demand held in the bucket being filled
	history []float64
	first   int64 // bucket index of history[0]
	model   *forecast.Model
	fitAt   int64             // bucket index at the last fit
	pending map[int64]float64 // Horizon-step forecasts, by bucket
	next    map[int64]float64 // one-step forecasts, by bucket
	resid   forecast.Residuals
	rolling forecast.Rolling
	total   forecast.Accuracy

	// cost, from the last snapshot
	nWorkers, nIdle int
	costPerHour     float64
	acct            Account

	predictive bool
	target     int
}

// Accounts returns the cost account of every pool seen.
func (s *Scaler) Accounts() map[string]Account {
	out := make(map[string]Account, len(s.pools))
	for n, p := range s.pools {
		out[n] = p.acct
	}
	return out
}

// Account implements workers.Accountant.
func (s *Scaler) Account(pool string) (Account, bool) {
	p := s.pools[pool]
	if p == nil {
		return Account{}, false
	}
	return p.acct, true
}

// Stats returns the forecasting state of every pool seen.
func (s *Scaler) Stats() map[string]PoolStats {
	out := make(map[string]PoolStats, len(s.pools))
	for n, p := range s.pools {
		st := PoolStats{Buckets: len(p.history), RecentWAPE: p.rolling.WAPE(), Accuracy: p.total,
			Predictive: p.predictive, Target: p.target}
		if p.model != nil {
			st.Model, st.Params = p.model.Kind(), p.model.P
		}
		out[n] = st
	}
	return out
}

// Forecast implements workers.Forecaster: the workers the forecast asked for
// at the last decision, if the pool's forecast is in use.
func (s *Scaler) Forecast(pool string) (int, bool) {
	p := s.pools[pool]
	if p == nil || !p.predictive {
		return 0, false
	}
	return p.target, true
}

func (s *Scaler) cfg() forecast.Config {
	day := int(24 * time.Hour / s.o.Bucket)
	return forecast.Config{Daily: day, Weekly: 7 * day, Log: true, Horizon: s.o.Horizon}
}

// Decide implements workers.Scaler.
func (s *Scaler) Decide(snap workers.Snapshot) []workers.Action {
	if !s.last.IsZero() && snap.Now.Before(s.last) {
		// Time went back (a clock step): keep the state, account nothing.
		s.last = snap.Now
	}
	s.account(snap)
	needs := demanded(snap)
	for _, ps := range snap.Pools {
		s.observe(ps.Config.Name, s.last, snap.Now, needs[ps.Config.Name])
	}
	s.last = snap.Now
	acts := workers.Reactive{JoinTimeout: s.o.JoinTimeout}.Decide(snap)
	if !s.o.Predictive {
		return acts
	}
	assigned := workers.AssignDemand(snap)
	var out []workers.Action
	for _, ps := range sortedPools(snap.Pools) {
		cfg := ps.Config
		p := s.pools[cfg.Name]
		var mine []workers.Action
		for _, a := range acts {
			if a.Pool == cfg.Name {
				mine = append(mine, a)
			}
		}
		p.predictive = false
		up, ok := s.target(p, snap.Now, cfg.StartupDelay, -1)
		if !ok {
			out = append(out, mine...)
			continue
		}
		keep, _ := s.target(p, snap.Now, cfg.IdleTimeout, s.o.Quantile)
		keep = max(keep, up)
		p.predictive, p.target = true, up
		out = append(out, predictive(snap.Now, ps, mine, up, keep, assigned[cfg.Name].Jobs > 0, s.o.ExcessCooldown)...)
	}
	return out
}

// predictive turns the reactive actions of one pool into the predictive
// ones: create up to target as well (the larger of the two wins), keep idle
// workers up to keep, drain those beyond it after cooldown (instead of the
// reactive idle_timeout).
func predictive(now time.Time, ps workers.PoolSnapshot, reactive []workers.Action, target, keep int, waiting bool, cooldown time.Duration) []workers.Action {
	cfg := ps.Config
	target = min(max(target, cfg.Min), cfg.Max)
	keep = min(max(keep, cfg.Min), cfg.Max)
	active, total := 0, len(ps.Workers)
	gone := map[string]bool{} // terminated by the reactive rules
	for _, a := range reactive {
		if a.Kind == workers.ActionTerminate {
			gone[a.WorkerID] = true
		}
	}
	for _, w := range ps.Workers {
		if (w.State == workers.WorkerPending || w.State == workers.WorkerIdle || w.State == workers.WorkerBusy) && !w.DrainRequested && !gone[w.ID] {
			active++
		}
	}
	var out []workers.Action
	creates := 0
	for _, a := range reactive {
		switch a.Kind {
		case workers.ActionTerminate:
			out = append(out, a)
		case workers.ActionCreate:
			creates++
			out = append(out, a)
		}
	}
	room := cfg.Max - total - creates
	if ps.CanCreate >= 0 {
		room = min(room, ps.CanCreate-creates)
	}
	if n := min(target-active-creates, room); n > 0 && ps.Healthy {
		for range n {
			out = append(out, workers.Action{Kind: workers.ActionCreate, Pool: cfg.Name,
				Reason: fmt.Sprintf("forecast: %d workers needed in %s", target, cfg.StartupDelay)})
		}
	}
	active += creates + max(0, min(target-active-creates, room))
	if waiting {
		return out
	}
	// Scale down: beyond the forecast after cooldown, longest idle first.
	cool := min(cooldown, cfg.IdleTimeout)
	var idle []workers.WorkerSnapshot
	for _, w := range ps.Workers {
		if w.State == workers.WorkerIdle && w.Jobs == 0 && !w.DrainRequested && !w.IdleSince.IsZero() && now.Sub(w.IdleSince) >= cool {
			idle = append(idle, w)
		}
	}
	sort.SliceStable(idle, func(i, k int) bool { return idle[i].IdleSince.Before(idle[k].IdleSince) })
	for _, w := range idle {
		if active <= keep {
			break
		}
		out = append(out, workers.Action{Kind: workers.ActionDrain, Pool: cfg.Name, WorkerID: w.ID,
			Reason: fmt.Sprintf("idle for %s, beyond the %d workers the forecast keeps", now.Sub(w.IdleSince).Round(time.Second), keep)})
		active--
	}
	return out
}

// target returns the workers pool p needs from now to ahead later, by the
// largest forecast of the buckets in between, plus the q-quantile of the
// peak residuals (none if q < 0), and whether the forecast may be used.
func (s *Scaler) target(p *pool, now time.Time, ahead time.Duration, q float64) (int, bool) {
	if p.model == nil || p.rolling.Len() < s.o.MinErrorSamples || p.rolling.WAPE() > s.o.MaxError {
		return 0, false
	}
	last := p.first + int64(len(p.history)) - 1 // the last closed bucket
	f := 0.0
	for b := s.bucketOf(now); b <= s.bucketOf(now.Add(ahead)); b++ {
		f = max(f, p.model.Forecast(int(max(b-last, 1))))
	}
	f = f * (1 + s.o.Headroom)
	if q >= 0 {
		f += p.resid.Quantile(q) * math.Sqrt(max(f, 1))
	}
	// A tenth of a worker is noise, not a worker to start.
	return max(0, int(math.Ceil(f-0.1))), true
}

func (s *Scaler) bucketOf(t time.Time) int64 {
	return t.UnixNano() / int64(s.o.Bucket)
}

// observe adds the demand held since the previous snapshot (at prev) to
// pool name's series, closing the buckets that ended, and records need, the
// demand at now.
func (s *Scaler) observe(name string, prev, now time.Time, need float64) {
	p := s.pools[name]
	bucket := int64(s.o.Bucket)
	b := s.bucketOf(now)
	t := now.UnixNano()
	if !p.started {
		s.resume(p, b)
		p.started, p.bucket, p.need = true, b, need
		p.pending, p.next = map[int64]float64{}, map[int64]float64{}
		p.rolling.Size, p.resid.Size = s.o.ErrorWindow, s.o.ErrorWindow
		p.peak = need
		// The bucket's time before the first snapshot counts as this demand.
		p.sum = need * float64(t-b*bucket) / 1e9
		return
	}
	from := max(prev.UnixNano(), p.bucket*bucket)
	for p.bucket < b {
		end := (p.bucket + 1) * bucket
		if end > from {
			p.sum += p.need * float64(end-from) / 1e9
		}
		s.close(p, p.sum/s.o.Bucket.Seconds())
		p.bucket++
		p.sum, p.peak = 0, p.need
		from = end
	}
	if t > from {
		p.sum += p.need * float64(t-from) / 1e9
	}
	p.need = need
	p.peak = max(p.peak, need)
}

// close ends the bucket being filled with value v.
func (s *Scaler) close(p *pool, v float64) {
	if f, ok := p.pending[p.bucket]; ok {
		p.rolling.Add(f, v)
		p.total.Add(f, v)
		delete(p.pending, p.bucket)
	}
	if f, ok := p.next[p.bucket]; ok {
		// How far the bucket's peak went above (or stayed below) the
		// mean forecast for it, in units of its Poisson deviation.
		p.resid.Add((p.peak - f) / math.Sqrt(max(f, 1)))
		delete(p.next, p.bucket)
	}
	p.history = append(p.history, v)
	if keep := int(s.o.History / s.o.Bucket); len(p.history) > keep {
		drop := len(p.history) - keep
		p.history = slices.Clone(p.history[drop:])
		p.first += int64(drop)
	}
	cfg := s.cfg()
	n := len(p.history)
	refit := p.model == nil || p.bucket-p.fitAt >= int64(s.o.RefitEvery/s.o.Bucket) ||
		n == 2*cfg.Daily || n == cfg.Weekly+cfg.Daily || n == 12 && p.model.Kind() == "constant"
	if refit {
		p.model = forecast.Fit(cfg, p.history)
		p.fitAt = p.bucket
	} else {
		p.model.Update(v)
	}
	p.pending[p.bucket+int64(s.o.Horizon)] = p.model.Forecast(s.o.Horizon)
	p.next[p.bucket+1] = p.model.Forecast(1)
}

// account charges the workers of the previous snapshot for the time since.
func (s *Scaler) account(snap workers.Snapshot) {
	if !s.last.IsZero() && snap.Now.After(s.last) {
		h := snap.Now.Sub(s.last).Hours()
		for _, p := range s.pools {
			p.acct.WorkerHours += float64(p.nWorkers) * h
			p.acct.IdleWorkerHours += float64(p.nIdle) * h
			p.acct.Cost += float64(p.nWorkers) * h * p.costPerHour
		}
	}
	for _, ps := range snap.Pools {
		p := s.pools[ps.Config.Name]
		if p == nil {
			p = &pool{}
			s.pools[ps.Config.Name] = p
		}
		p.nWorkers, p.nIdle, p.costPerHour = 0, 0, ps.Config.CostPerHour
		for _, w := range ps.Workers {
			if w.State == workers.WorkerExited {
				continue
			}
			p.nWorkers++
			if w.Jobs == 0 {
				p.nIdle++
			}
		}
	}
}

// demanded returns, per pool, the workers running jobs plus those the
// queued demand needs (as if no worker were idle or starting).
func demanded(snap workers.Snapshot) map[string]float64 {
	out := map[string]float64{}
	busy := workers.Snapshot{Now: snap.Now, Demand: snap.Demand}
	for _, ps := range snap.Pools {
		n := 0
		var ws []workers.WorkerSnapshot
		for _, w := range ps.Workers {
			if w.Jobs > 0 && w.State != workers.WorkerExited && w.State != workers.WorkerLost {
				n++
				ws = append(ws, w)
			}
		}
		out[ps.Config.Name] = float64(n)
		c := ps.Config
		c.Min, c.Max = 0, 1<<20
		busy.Pools = append(busy.Pools, workers.PoolSnapshot{Config: c, Labels: ps.Labels, Workers: ws, Healthy: true, CanCreate: -1})
	}
	for name, d := range workers.AssignDemand(busy) {
		out[name] += float64(d.Create)
	}
	return out
}

func sortedPools(ps []workers.PoolSnapshot) []workers.PoolSnapshot {
	out := slices.Clone(ps)
	sort.SliceStable(out, func(i, k int) bool { return out[i].Config.Name < out[k].Config.Name })
	return out
}
