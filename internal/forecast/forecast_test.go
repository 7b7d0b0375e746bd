package forecast

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Hourly buckets: a day is 24, a week 168.
var hourly = Config{Daily: 24, Weekly: 168, Horizon: 1}

// signal is a working day (a sinusoid peaking at 15:00) scaled down to a
// quarter on weekends, plus noise of relative size sd.
func signal(n int, sd float64, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	y := make([]float64, n)
	for t := range y {
		h := float64(t % 24)
		v := 2 + 18*(1-math.Cos(2*math.Pi*(h-3)/24))/2
		if (t/24)%7 >= 5 {
			v *= 0.25
		}
		y[t] = max(0, v*(1+sd*r.NormFloat64()))
	}
	return y
}

func TestRecoversSeasonalSignal(t *testing.T) {
	t.Parallel()
	for _, log := range []bool{false, true} {
		cfg := hourly
		cfg.Log = log
		y := signal(3*168+200, 0, 1)
		train, test := y[:3*168], y[3*168:]
		m := Fit(cfg, train)
		if m.Kind() != "double-seasonal" {
			t.Fatalf("log %v: kind %s, want double-seasonal", log, m.Kind())
		}
		// A whole day ahead, including the weekend drop, from the fit alone.
		var acc Accuracy
		for h := 1; h <= 24; h++ {
			acc.Add(m.Forecast(h), test[h-1])
		}
		if w := acc.WAPE(); w > 0.02 {
			t.Errorf("log %v: WAPE of the next day %.4f, want < 0.02 on a clean signal", log, w)
		}
	}
}

func TestForecastErrorSmallOnCleanData(t *testing.T) {
	t.Parallel()
	y := signal(4*168, 0.05, 2)
	cfg := hourly
	cfg.Log = true
	m := Fit(cfg, y[:2*168])
	var acc Accuracy
	for _, v := range y[2*168:] {
		acc.Add(m.Forecast(1), v)
		m.Update(v)
	}
	// 5 % noise: a one-step forecast cannot do much better than the noise.
	if w := acc.WAPE(); w > 0.08 {
		t.Errorf("one-step WAPE %.3f on 5%% noise, want < 0.08", w)
	}
	if mp := acc.MAPE(); mp > 0.10 {
		t.Errorf("one-step MAPE %.3f, want < 0.10", mp)
	}
}

func TestFittedBeatsDefaults(t *testing.T) {
	t.Parallel()
	y := signal(3*168, 0.1, 3)
	for _, h := range []int{1, 3} {
		cfg := hourly
		cfg.Horizon = h
		m := Fit(cfg, y)
		fitted, def := Score(cfg, m.P, y), Score(cfg, DefaultParams, y)
		if !(fitted < def) {
			t.Errorf("h=%d: fitted %+v scores %.4f, defaults %.4f: want lower", h, m.P, fitted, def)
		}
	}
}

func TestHandlesZeros(t *testing.T) {
	t.Parallel()
	zeros := make([]float64, 2*168)
	for _, log := range []bool{false, true} {
		cfg := hourly
		cfg.Log = log
		m := Fit(cfg, zeros)
		for h := 1; h <= 30; h++ {
			if f := m.Forecast(h); f != 0 {
				t.Fatalf("log %v: forecast %v of an all-zero series, want 0", log, f)
			}
		}
		// Nights at zero: forecasts stay finite and not negative.
		y := signal(2*168, 0, 4)
		for i := range y {
			if i%24 < 8 {
				y[i] = 0
			}
		}
		m = Fit(cfg, y)
		for h := 1; h <= 48; h++ {
			if f := m.Forecast(h); math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
				t.Fatalf("log %v: forecast %v at h=%d", log, f, h)
			}
		}
	}
	var acc Accuracy
	acc.Add(0, 0)
	if acc.WAPE() != 0 || acc.MAPE() != 0 {
		t.Errorf("exact zero forecasts: WAPE %v MAPE %v, want 0", acc.WAPE(), acc.MAPE())
	}
}

func TestShortHistoryFallsBack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		n    int
		kind string
	}{{0, "constant"}, {1, "constant"}, {10, "holt"}, {47, "holt"}, {48, "daily"}, {191, "daily"}, {192, "double-seasonal"}}
	y := signal(200, 0, 5)
	for _, c := range cases {
		m := Fit(hourly, y[:c.n])
		if m.Kind() != c.kind {
			t.Errorf("%d buckets: kind %s, want %s", c.n, m.Kind(), c.kind)
		}
		f := m.Forecast(1)
		if math.IsNaN(f) || f < 0 || f > 40 {
			t.Errorf("%d buckets: forecast %v", c.n, f)
		}
	}
	// A constant series is forecast as itself without a season.
	m := Fit(hourly, []float64{5, 5, 5, 5, 5, 5, 5, 5})
	if f := m.Forecast(3); math.Abs(f-5) > 1e-9 {
		t.Errorf("constant 5: forecast %v", f)
	}
}

func TestAccuracy(t *testing.T) {
	t.Parallel()
	var a Accuracy
	a.Add(12, 10) // APE 0.2
	a.Add(15, 20) // APE 0.25
	a.Add(0.5, 0) // not in MAPE: actual below 1
	if got, want := a.WAPE(), 7.5/30; math.Abs(got-want) > 1e-12 {
		t.Errorf("WAPE %v, want %v", got, want)
	}
	if got, want := a.MAPE(), 0.225; math.Abs(got-want) > 1e-12 {
		t.Errorf("MAPE %v, want %v", got, want)
	}
	r := Rolling{Size: 2}
	r.Add(100, 1) // pushed out
	r.Add(11, 10)
	r.Add(9, 10)
	if got := r.WAPE(); math.Abs(got-0.1) > 1e-12 || r.Len() != 2 {
		t.Errorf("rolling WAPE %v over %d, want 0.1 over 2", got, r.Len())
	}
}

func TestResidualsQuantile(t *testing.T) {
	t.Parallel()
	var r Residuals
	if q := r.Quantile(0.5); q != 0 {
		t.Errorf("empty: %v", q)
	}
	r.Size = 5
	for _, x := range []float64{4, 0, 2, 1, 3} {
		r.Add(x)
	}
	for _, c := range []struct{ p, want float64 }{{0, 0}, {0.5, 2}, {1, 4}, {0.875, 3.5}, {-1, 0}, {2, 4}} {
		if q := r.Quantile(c.p); math.Abs(q-c.want) > 1e-12 {
			t.Errorf("Quantile(%v) = %v, want %v", c.p, q, c.want)
		}
	}
	// The window rolls: 10 and 20 replace the two oldest (4 and 0).
	r.Add(10)
	r.Add(20)
	if r.Len() != 5 || r.Quantile(0) != 1 || r.Quantile(1) != 20 || r.Quantile(0.5) != 3 {
		t.Errorf("after rolling: len %d, min %v, median %v, max %v", r.Len(), r.Quantile(0), r.Quantile(0.5), r.Quantile(1))
	}
}
