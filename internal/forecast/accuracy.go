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

// ring keeps the last len(v) values added: the window of Rolling and
// Residuals.
type ring[T any] struct {
	v    []T
	next int
	full bool
}

// add records x, over the oldest value once the ring is full; the ring
// has size slots (at least 1), fixed by the first add.
func (r *ring[T]) add(size int, x T) {
	if r.v == nil {
		r.v = make([]T, max(size, 1))
	}
	r.v[r.next] = x
	r.next++
	if r.next == len(r.v) {
		r.next, r.full = 0, true
	}
}

// items returns the values the ring holds, in no particular order.
func (r *ring[T]) items() []T {
	if r.full {
		return r.v
	}
	return r.v[:r.next]
}

// Rolling is the WAPE of the last Size forecasts.
type Rolling struct {
	Size int
	w    ring[absErr]
}

// absErr is one forecast's |error| and |actual|.
type absErr struct{ err, act float64 }

// Add records one forecast and the actual value.
func (r *Rolling) Add(forecast, actual float64) {
	if r.Size <= 0 {
		r.Size = 1
	}
	r.w.add(r.Size, absErr{math.Abs(forecast - actual), math.Abs(actual)})
}

// Len returns how many forecasts the window holds.
func (r *Rolling) Len() int { return len(r.w.items()) }

// WAPE returns the window's sum |error| / sum actual (0 when empty or
// exact; +Inf if only zeros happened and a forecast was not 0).
func (r *Rolling) WAPE() float64 {
	var e, a float64
	for _, x := range r.w.items() {
		e += x.err
		a += x.act
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
	w      ring[float64]
	sorted []float64 // the window in order, nil after an Add
}

// Add records one residual.
func (r *Residuals) Add(x float64) {
	if r.Size <= 0 {
		r.Size = 1
	}
	r.w.add(r.Size, x)
	r.sorted = nil
}

// Len returns how many residuals the window holds.
func (r *Residuals) Len() int { return len(r.w.items()) }

// Quantile returns the p-quantile (0 <= p <= 1) of the window, by linear
// interpolation between order statistics; 0 when empty. The window is
// sorted once per Add, however many quantiles are asked in between.
func (r *Residuals) Quantile(p float64) float64 {
	n := r.Len()
	if n == 0 {
		return 0
	}
	if r.sorted == nil {
		r.sorted = slices.Clone(r.w.items())
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
