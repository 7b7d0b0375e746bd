// Package predict estimates how long a job will run from how long jobs with
// the same key ran before.
//
// Per key, a Predictor keeps an exponentially weighted mean of the logarithm
// of the observed durations and an exponentially weighted mean absolute
// deviation around it. CI durations are roughly lognormal, so the mean of the
// logs estimates the median, and working in logs makes a 2x change the same
// size at 10 s and at 1 h. After the first few runs, each observation's pull
// on the mean is clipped to a few deviations (a Huber-style update), so one
// outlier (a cold cache, a hung test) moves the estimate a little, while a
// lasting shift widens the deviation within a few observations and the
// estimate follows it.
//
// Keys never seen get a default: Config.Default if set, else the median of
// every duration observed so far (from a log-scale histogram), else
// DefaultUnseen. Memory is bounded: past Config.MaxKeys the least recently
// observed key is forgotten.
//
// A Predictor is not safe for concurrent use: it belongs to one goroutine
// (the orchestrator loop, or the simulator loop), like the scheduler engine.
package predict

import (
	"math"
	"time"
)

// warmup is the number of observations of a key averaged without clipping.
const warmup = 3

// DefaultUnseen is the prediction for an unseen key when nothing has been
// observed yet and Config.Default is zero.
const DefaultUnseen = time.Minute

// Config tunes a Predictor. The zero value is usable.
type Config struct {
	// Alpha is the weight of a new observation once a key has at least
	// 1/Alpha of them (before that, observations are averaged equally, so
	// the first few converge fast). Default 0.2.
	Alpha float64
	// Clip bounds how far one observation can pull the estimate, in
	// deviations. Default 3.
	Clip float64
	// MinDev is the smallest deviation assumed, in natural-log units, so a
	// perfectly stable key still accepts a modest change at full weight.
	// Default 0.1 (about 10%).
	MinDev float64
	// Default is the prediction for unseen keys; zero means the median of
	// everything observed so far.
	Default time.Duration
	// MaxKeys caps the keys remembered (least recently observed first out).
	// Default 100000.
	MaxKeys int
}

type entry struct {
	key        string
	mu, dev    float64 // log-seconds
	n          uint32
	prev, next int32 // LRU list (indices into entries); -1 = none
}

// Predictor estimates durations per key. The zero value is not usable; use
// New.
type Predictor struct {
	cfg     Config
	index   map[string]int32
	entries []entry
	free    []int32
	head    int32 // most recently observed
	tail    int32 // least recently observed
	version uint64

	hist    [histBuckets]uint64
	histN   uint64
	median  time.Duration
	medianV uint64 // version at which median was computed
}

// Log-scale histogram for the global median: 8 buckets per octave from
// 1 ms to 2^40 ms (about 35 years).
const (
	histPerOctave = 8
	histBuckets   = 40 * histPerOctave
)

// New returns a Predictor.
func New(cfg Config) *Predictor {
	if cfg.Alpha <= 0 || cfg.Alpha > 1 {
		cfg.Alpha = 0.2
	}
	if cfg.Clip <= 0 {
		cfg.Clip = 3
	}
	if cfg.MinDev <= 0 {
		cfg.MinDev = 0.1
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100000
	}
	return &Predictor{cfg: cfg, index: map[string]int32{}, head: -1, tail: -1}
}

// Version changes every time an observation changes a prediction; callers
// that cache predictions compare it to know when to refresh.
func (p *Predictor) Version() uint64 { return p.version }

// Len returns the number of keys remembered.
func (p *Predictor) Len() int { return len(p.index) }

func logSeconds(d time.Duration) float64 {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return math.Log(d.Seconds())
}

func fromLog(x float64) time.Duration {
	s := math.Exp(x)
	if s > 1e9 {
		s = 1e9
	}
	return time.Duration(s * float64(time.Second))
}

// Observe records that a job with this key ran for d. Only finished,
// successful runs should be observed: a failure's duration says little about
// the next run.
func (p *Predictor) Observe(key string, d time.Duration) {
	x := logSeconds(d)
	p.version++
	p.observeGlobal(d)
	i, ok := p.index[key]
	if !ok {
		i = p.alloc(key)
		e := &p.entries[i]
		e.mu, e.dev, e.n = x, 0, 1
		return
	}
	p.touch(i)
	e := &p.entries[i]
	if e.n < math.MaxUint32 {
		e.n++
	}
	a := p.cfg.Alpha
	if w := 1 / float64(e.n); w > a {
		a = w
	}
	r := x - e.mu
	limit := p.cfg.Clip * math.Max(e.dev, p.cfg.MinDev)
	if e.n <= warmup {
		// Too few runs to tell an outlier from the norm: a plain mean.
		limit = math.Inf(1)
	}
	rc := math.Max(-limit, math.Min(limit, r))
	e.mu += a * rc
	// The deviation sees the unclipped residual (bounded at twice the
	// limit), so a lasting shift widens the clip and the mean follows.
	ar := math.Min(math.Abs(r), 2*limit)
	if e.n == 2 {
		e.dev = ar
	} else {
		e.dev += a * (ar - e.dev)
	}
}

// Predict returns the predicted duration of a job with this key.
func (p *Predictor) Predict(key string) time.Duration {
	if i, ok := p.index[key]; ok {
		return fromLog(p.entries[i].mu)
	}
	return p.Default()
}

// Known reports whether the key has been observed (and not forgotten).
func (p *Predictor) Known(key string) bool {
	_, ok := p.index[key]
	return ok
}

// Estimate returns the prediction for a key, its typical deviation as a
// factor (1.0 = perfectly stable; 2.0 = typically off by 2x) and the number
// of observations; n == 0 for an unseen key.
func (p *Predictor) Estimate(key string) (d time.Duration, spread float64, n int) {
	i, ok := p.index[key]
	if !ok {
		return p.Default(), 1, 0
	}
	e := &p.entries[i]
	return fromLog(e.mu), math.Exp(e.dev), int(e.n)
}

// Default returns the prediction for unseen keys.
func (p *Predictor) Default() time.Duration {
	if p.cfg.Default > 0 {
		return p.cfg.Default
	}
	if p.histN == 0 {
		return DefaultUnseen
	}
	if p.medianV != p.version {
		p.median = p.histMedian()
		p.medianV = p.version
	}
	return p.median
}

func (p *Predictor) observeGlobal(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	b := 0
	if ms > 1 {
		b = int(math.Log2(ms) * histPerOctave)
	}
	b = min(max(b, 0), histBuckets-1)
	p.hist[b]++
	p.histN++
}

func (p *Predictor) histMedian() time.Duration {
	half := (p.histN + 1) / 2
	var c uint64
	for b, n := range p.hist {
		c += n
		if c >= half {
			// The geometric middle of the bucket.
			ms := math.Exp2((float64(b) + 0.5) / histPerOctave)
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	return DefaultUnseen
}

// alloc adds a key at the head of the LRU list, evicting the tail if full.
func (p *Predictor) alloc(key string) int32 {
	if len(p.index) >= p.cfg.MaxKeys && p.tail >= 0 {
		old := p.tail
		p.unlink(old)
		delete(p.index, p.entries[old].key)
		p.entries[old] = entry{}
		p.free = append(p.free, old)
	}
	var i int32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		i = int32(len(p.entries))
		p.entries = append(p.entries, entry{})
	}
	p.entries[i] = entry{key: key, prev: -1, next: -1}
	p.index[key] = i
	p.pushFront(i)
	return i
}

func (p *Predictor) touch(i int32) {
	if p.head == i {
		return
	}
	p.unlink(i)
	p.pushFront(i)
}

func (p *Predictor) unlink(i int32) {
	e := &p.entries[i]
	if e.prev >= 0 {
		p.entries[e.prev].next = e.next
	} else {
		p.head = e.next
	}
	if e.next >= 0 {
		p.entries[e.next].prev = e.prev
	} else {
		p.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (p *Predictor) pushFront(i int32) {
	e := &p.entries[i]
	e.prev, e.next = -1, p.head
	if p.head >= 0 {
		p.entries[p.head].prev = i
	}
	p.head = i
	if p.tail < 0 {
		p.tail = i
	}
}
