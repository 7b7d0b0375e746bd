package predict

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func within(t *testing.T, what string, got, want time.Duration, tol float64) {
	t.Helper()
	if r := float64(got) / float64(want); math.Abs(r-1) > tol {
		t.Fatalf("%s = %v, want %v ± %.0f%%", what, got, want, tol*100)
	}
}

// TestConverges checks that the estimate converges on a stable duration
// with run-to-run noise.
func TestConverges(t *testing.T) {
	t.Parallel()
	p := New(Config{})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		p.Observe("k", time.Duration(float64(5*time.Minute)*math.Exp(0.1*rng.NormFloat64())))
	}
	within(t, "Predict", p.Predict("k"), 5*time.Minute, 0.08)
	if _, spread, n := p.Estimate("k"); n != 200 || spread < 1.02 || spread > 1.3 {
		t.Fatalf("Estimate: spread %.2f n %d", spread, n)
	}
}

// TestFirstObservations checks that the first observations are averaged
// (in log space), not dominated by the first.
func TestFirstObservations(t *testing.T) {
	t.Parallel()
	p := New(Config{})
	p.Observe("k", time.Minute)
	within(t, "after one", p.Predict("k"), time.Minute, 0.001)
	p.Observe("k", 4*time.Minute)
	within(t, "after two", p.Predict("k"), 2*time.Minute, 0.01) // geometric mean
}

// TestOutlier checks that one outlier barely moves a stable estimate.
func TestOutlier(t *testing.T) {
	t.Parallel()
	p := New(Config{})
	for i := 0; i < 20; i++ {
		p.Observe("k", 100*time.Second)
	}
	p.Observe("k", 100*100*time.Second) // a hung run
	within(t, "after the outlier", p.Predict("k"), 100*time.Second, 0.1)
	p.Observe("k", 100*time.Second)
	within(t, "after one more normal run", p.Predict("k"), 100*time.Second, 0.1)
}

// TestShift checks that the estimate follows a lasting change in duration.
func TestShift(t *testing.T) {
	t.Parallel()
	p := New(Config{})
	for i := 0; i < 30; i++ {
		p.Observe("k", 100*time.Second)
	}
	for i := 0; i < 15; i++ {
		p.Observe("k", 300*time.Second)
	}
	within(t, "after the shift", p.Predict("k"), 300*time.Second, 0.15)
	for i := 0; i < 15; i++ {
		p.Observe("k", 30*time.Second)
	}
	within(t, "after the shift down", p.Predict("k"), 30*time.Second, 0.15)
}

// TestDefault checks the prediction for unseen keys: the configured
// default, else the median of what was seen, else DefaultUnseen.
func TestDefault(t *testing.T) {
	t.Parallel()
	p := New(Config{})
	if got := p.Predict("never"); got != DefaultUnseen {
		t.Fatalf("empty predictor: %v, want %v", got, DefaultUnseen)
	}
	for i, d := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 10 * time.Minute, time.Hour} {
		p.Observe(fmt.Sprint("k", i), d)
	}
	within(t, "median default", p.Predict("never"), 40*time.Second, 0.1)
	if p.Known("never") {
		t.Fatal("Predict made a key known")
	}
	c := New(Config{Default: 3 * time.Minute})
	c.Observe("k", time.Second)
	if got := c.Predict("other"); got != 3*time.Minute {
		t.Fatalf("configured default: %v", got)
	}
}

// TestBoundedKeys checks that past MaxKeys the least recently observed key
// is forgotten.
func TestBoundedKeys(t *testing.T) {
	t.Parallel()
	p := New(Config{MaxKeys: 3, Default: time.Hour})
	p.Observe("a", time.Second)
	p.Observe("b", time.Second)
	p.Observe("c", time.Second)
	p.Observe("a", time.Second) // a is now the most recent
	p.Observe("d", time.Second) // evicts b
	if p.Len() != 3 || p.Known("b") || !p.Known("a") || !p.Known("c") || !p.Known("d") {
		t.Fatalf("len %d, known a %v b %v c %v d %v", p.Len(), p.Known("a"), p.Known("b"), p.Known("c"), p.Known("d"))
	}
	if got := p.Predict("b"); got != time.Hour {
		t.Fatalf("forgotten key: %v", got)
	}
	for i := 0; i < 1000; i++ {
		p.Observe(fmt.Sprint("x", i), time.Second)
	}
	if p.Len() != 3 || len(p.entries) != 3 {
		t.Fatalf("len %d, %d entries: memory not bounded", p.Len(), len(p.entries))
	}
}

func BenchmarkObserve(b *testing.B) {
	p := New(Config{})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("pipeline/job", i)
	}
	for i := 0; i < b.N; i++ {
		p.Observe(keys[i%len(keys)], time.Duration(i%600)*time.Second)
	}
}
