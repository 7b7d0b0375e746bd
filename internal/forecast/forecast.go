// Package forecast predicts a time series on fixed buckets with
// double-seasonal Holt-Winters exponential smoothing (Taylor 2003): a level,
// a trend, a daily and a weekly seasonal component, their smoothing
// parameters fitted on the history. The autoscaler forecasts each pool's
// demanded workers with it (internal/autoscale).
//
// The model is additive, optionally on log(1+y) (Config.Log): there the
// seasons are multiplicative (a quiet weekend scales the working day down
// instead of shifting it), and zeros need no special case. Components the
// history cannot support are left out: the weekly season needs a week and a
// day of history, the daily one two days; with less, the model is Holt's
// linear trend (and with fewer than two buckets, a constant).
//
// Everything is deterministic: no clock, no randomness.
package forecast

import (
	"math"
)

// Params are the smoothing parameters, each in [0, 1]: Alpha the level's,
// Beta the trend's, Gamma the daily season's, Delta the weekly season's.
type Params struct {
	Alpha, Beta, Gamma, Delta float64
}

// DefaultParams are common textbook values, used before a fit.
var DefaultParams = Params{Alpha: 0.2, Beta: 0.01, Gamma: 0.1, Delta: 0.1}

// Config describes the series.
type Config struct {
	// Daily and Weekly are the season lengths in buckets (288 and 2016 for
	// 5-minute buckets); 0 leaves the component out.
	Daily, Weekly int
	// Log models log(1+y) instead of y.
	Log bool
	// Horizon is the number of steps ahead whose error the fit minimises
	// (default 1).
	Horizon int
}

// Model is a fitted model and its state after the last observation.
type Model struct {
	cfg          Config // the components in use (those the history allows)
	P            Params
	level, trend float64
	d, w         []float64 // daily and weekly seasonal indices
	t            int       // observations consumed
}

// Kind names the components in use: "double-seasonal", "daily", "holt" or
// "constant".
func (m *Model) Kind() string {
	switch {
	case m.cfg.Weekly > 0:
		return "double-seasonal"
	case m.cfg.Daily > 0:
		return "daily"
	case m.t >= 2:
		return "holt"
	}
	return "constant"
}

// Len returns the number of observations the model has seen.
func (m *Model) Len() int { return m.t }

// effective drops the seasons that n observations cannot initialise.
func effective(c Config, n int) Config {
	if c.Horizon <= 0 {
		c.Horizon = 1
	}
	if c.Daily <= 0 || n < 2*c.Daily {
		c.Daily, c.Weekly = 0, 0
	}
	if c.Weekly <= 0 || n < c.Weekly+c.Daily {
		c.Weekly = 0
	}
	return c
}

func (c Config) in(y float64) float64 {
	y = max(y, 0)
	if c.Log {
		return math.Log1p(y)
	}
	return y
}

func (c Config) out(v float64) float64 {
	if c.Log {
		v = math.Expm1(v)
	}
	return max(v, 0)
}

// New returns a model of y with parameters p, its state initialised from
// the first season(s) of y, then updated with every value of y.
func New(cfg Config, p Params, y []float64) *Model {
	m := initModel(effective(cfg, len(y)), p, y)
	for _, v := range y {
		m.Update(v)
	}
	return m
}

func initModel(c Config, p Params, y []float64) *Model {
	m := &Model{cfg: c, P: p}
	x := make([]float64, len(y))
	for i, v := range y {
		x[i] = c.in(v)
	}
	switch {
	case c.Weekly > 0:
		win := x[:c.Weekly]
		m.level = Mean(win)
		m.d = dailyIndices(win, c.Daily, m.level)
		m.w = make([]float64, c.Weekly)
		for j := range m.w {
			m.w[j] = win[j] - m.level - m.d[j%c.Daily]
		}
	case c.Daily > 0:
		days := min(len(x)/c.Daily, 7)
		win := x[:days*c.Daily]
		m.level = Mean(win)
		m.d = dailyIndices(win, c.Daily, m.level)
	case len(x) > 0:
		m.level = Mean(x[:min(len(x), 4)])
	}
	return m
}

// dailyIndices is the mean profile of the days of win, less level.
func dailyIndices(win []float64, period int, level float64) []float64 {
	d := make([]float64, period)
	days := len(win) / period
	for i := range d {
		var s float64
		for k := range days {
			s += win[k*period+i]
		}
		d[i] = s/float64(days) - level
	}
	return d
}

// Mean is the arithmetic mean of x, 0 for an empty x. The simulator
// (internal/sim) reports its mean waits with it too.
func Mean(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// seasons returns the seasonal part at step t (absolute index).
func (m *Model) seasons(t int) (d, w float64) {
	if m.cfg.Daily > 0 {
		d = m.d[t%m.cfg.Daily]
	}
	if m.cfg.Weekly > 0 {
		w = m.w[t%m.cfg.Weekly]
	}
	return d, w
}

// Update feeds the next observation.
func (m *Model) Update(y float64) {
	x := m.cfg.in(y)
	p := m.P
	d, w := m.seasons(m.t)
	prev := m.level
	m.level = p.Alpha*(x-d-w) + (1-p.Alpha)*(m.level+m.trend)
	m.trend = p.Beta*(m.level-prev) + (1-p.Beta)*m.trend
	if m.cfg.Daily > 0 {
		m.d[m.t%m.cfg.Daily] = p.Gamma*(x-m.level-w) + (1-p.Gamma)*d
	}
	if m.cfg.Weekly > 0 {
		m.w[m.t%m.cfg.Weekly] = p.Delta*(x-m.level-d) + (1-p.Delta)*w
	}
	m.t++
}

// Forecast returns the value expected h steps after the last observation
// (h = 1: the next bucket), never negative.
func (m *Model) Forecast(h int) float64 {
	h = max(h, 1)
	t := m.t + h - 1
	d, w := m.seasons(t)
	if m.cfg.Daily > 0 && h > m.cfg.Daily {
		// Beyond a season the index of the last season is the best known.
		d = m.d[t%m.cfg.Daily]
	}
	return m.cfg.out(m.level + float64(h)*m.trend + d + w)
}

// Fit chooses the parameters that minimise the mean absolute error of the
// Horizon-step forecasts over y (a grid, then a coordinate search around
// its best point), and returns the model with them, updated with all of y.
// Parameters of components the history does not allow stay at 0.
func Fit(cfg Config, y []float64) *Model {
	c := effective(cfg, len(y))
	if len(y) < 4 {
		return New(cfg, DefaultParams, y)
	}
	alphas := []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9}
	betas := []float64{0, 0.02, 0.1}
	gammas, deltas := []float64{0}, []float64{0}
	if c.Daily > 0 {
		gammas = []float64{0.02, 0.05, 0.1, 0.2, 0.4}
	}
	if c.Weekly > 0 {
		deltas = []float64{0.02, 0.05, 0.1, 0.2, 0.4}
	}
	best, bestErr := DefaultParams, math.Inf(1)
	for _, a := range alphas {
		for _, b := range betas {
			for _, g := range gammas {
				for _, dl := range deltas {
					p := Params{a, b, g, dl}
					if e := Score(c, p, y); e < bestErr {
						best, bestErr = p, e
					}
				}
			}
		}
	}
	// Coordinate search: halve the step until it is small.
	for step := 0.05; step > 0.004; step /= 2 {
		for improved := true; improved; {
			improved = false
			for k := range 4 {
				if k == 2 && c.Daily == 0 || k == 3 && c.Weekly == 0 {
					continue
				}
				for _, sgn := range []float64{-1, 1} {
					p := best
					v := p.at(k) + sgn*step
					if v < 0 || v > 1 || (k == 0 && v == 0) {
						continue
					}
					p.set(k, v)
					if e := Score(c, p, y); e < bestErr-1e-12 {
						best, bestErr, improved = p, e, true
					}
				}
			}
		}
	}
	if c.Daily == 0 {
		best.Gamma = 0
	}
	if c.Weekly == 0 {
		best.Delta = 0
	}
	return New(cfg, best, y)
}

func (p Params) at(k int) float64 {
	return [4]float64{p.Alpha, p.Beta, p.Gamma, p.Delta}[k]
}

func (p *Params) set(k int, v float64) {
	switch k {
	case 0:
		p.Alpha = v
	case 1:
		p.Beta = v
	case 2:
		p.Gamma = v
	default:
		p.Delta = v
	}
}

// Score returns the mean absolute error of the Horizon-step forecasts of a
// model with parameters p run over y, counted after the buckets used to
// initialise it (after the first quarter of y when it has no season).
func Score(cfg Config, p Params, y []float64) float64 {
	c := effective(cfg, len(y))
	m := initModel(c, p, y)
	h := c.Horizon
	skip := max(c.Weekly, c.Daily, len(y)/4)
	ring := make([]float64, h) // ring[t%h]: the forecast made for step t
	var sum float64
	n := 0
	for t, v := range y {
		if t >= skip+h {
			sum += math.Abs(ring[t%h] - v)
			n++
		}
		m.Update(v)
		// The forecast for step t+h, made now that t is known.
		ring[(t+h)%h] = m.Forecast(h)
	}
	if n == 0 {
		return math.Inf(1)
	}
	return sum / float64(n)
}
