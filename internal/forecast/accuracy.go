package forecast

import (
	"math"
	"slices"
)

// Accuracy measures forecasts against what happened.
//
// MAPE, the mean of |error|/actual, explodes on buckets near zero (a pool
// that needs 0.2 workers at night and is forecast 0.6 is "200 % wrong"), so
// the autoscaler judges its forecasts by WAPE instead: the sum of absolute
// errors over the sum of actuals, a MAPE weighted by the actuals, which
// weighs each bucket by how much it matters for capacity. MAPE is kept too,
// over buckets whose actual is at least MinActual.
type Accuracy struct {
	// MinActual is the smallest actual MAPE counts (default 1).
	MinActual float64

	AbsErr, Actual float64 // sums, for WAPE
	APE            float64 // sum of |error|/actual over counted buckets
	N, NAPE        int
}

// Add records one forecast and the actual value.
func (a *Accuracy) Add(forecast, actual float64) {
	e := math.Abs(forecast - actual)
	a.AbsErr += e
	a.Actual += math.Abs(actual)
	a.N++
	minA := a.MinActual
	if minA <= 0 {
		minA = 1
	}
	if actual >= minA {
		a.APE += e / actual
		a.NAPE++
	}
}

// WAPE returns sum |error| / sum actual (0 with nothing recorded; +Inf if
// every actual was 0 and some forecast was not).
func (a *Accuracy) WAPE() float64 {
	if a.AbsErr == 0 {
		return 0
	}
	if a.Actual == 0 {
		return math.Inf(1)
	}
	return a.AbsErr / a.Actual
}

// MAPE returns the mean absolute percentage error (as a fraction) over the
// buckets with an actual of at least MinActual.
func (a *Accuracy) MAPE() float64 {
	if a.NAPE == 0 {
		return 0
	}
	return a.APE / float64(a.NAPE)
}

// Rolling is the WAPE of the last Size forecasts.
type Rolling struct {
	Size int
	err  []float64
	act  []float64
	next int
	full bool
}

// Add records one forecast and the actual value.
func (r *Rolling) Add(forecast, actual float64) {
	if r.Size <= 0 {
		r.Size = 1
	}
	if r.err == nil {
		r.err = make([]float64, r.Size)
		r.act = make([]float64, r.Size)
	}
	r.err[r.next] = math.Abs(forecast - actual)
	r.act[r.next] = math.Abs(actual)
	r.next++
	if r.next == r.Size {
		r.next, r.full = 0, true
	}
}

// Len returns how many forecasts the window holds.
func (r *Rolling) Len() int {
	if r.full {
		return r.Size
	}
	return r.next
}

// WAPE returns the window's sum |error| / sum actual (0 when empty or
// exact; +Inf if only zeros happened and a forecast was not 0).
func (r *Rolling) WAPE() float64 {
	var e, a float64
	for i := range r.Len() {
		e += r.err[i]
		a += r.act[i]
	}
	if e == 0 {
		return 0
	}
	if a == 0 {
		return math.Inf(1)
	}
	return e / a
}

// Residuals keeps the last Size values of a forecast residual and answers
// quantiles of them: the empirical error distribution that turns a mean
// forecast into a capacity that covers demand with a chosen probability.
type Residuals struct {
	Size   int
	v      []float64
	next   int
	full   bool
	sorted []float64 // the window in order, nil after an Add
}

// Add records one residual.
func (r *Residuals) Add(x float64) {
	if r.Size <= 0 {
		r.Size = 1
	}
	if r.v == nil {
		r.v = make([]float64, r.Size)
	}
	r.v[r.next] = x
	r.sorted = nil
	r.next++
	if r.next == r.Size {
		r.next, r.full = 0, true
	}
}

// Len returns how many residuals the window holds.
func (r *Residuals) Len() int {
	if r.full {
		return r.Size
	}
	return r.next
}

// Quantile returns the p-quantile (0 <= p <= 1) of the window, by linear
// interpolation between order statistics; 0 when empty. The window is
// sorted once per Add, however many quantiles are asked in between.
func (r *Residuals) Quantile(p float64) float64 {
	n := r.Len()
	if n == 0 {
		return 0
	}
	if r.sorted == nil {
		r.sorted = slices.Clone(r.v[:n])
		slices.Sort(r.sorted)
	}
	s := r.sorted
	p = min(max(p, 0), 1)
	x := p * float64(n-1)
	i := int(x)
	if i >= n-1 {
		return s[n-1]
	}
	f := x - float64(i)
	return s[i]*(1-f) + s[i+1]*f
}
