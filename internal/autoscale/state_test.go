package autoscale

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/workers"
)

// TestRestoreKeepsTheForecast: a scaler restarted from the State of one
// that learned three days forecasts the 09:00 rise of day 4 like the
// first, although it was down from 00:00 to 01:00 (the gap is filled from
// the day before); a scaler that starts afresh does not.
func TestRestoreKeepsTheForecast(t *testing.T) {
	t.Parallel()
	cfg := poolCfg(0, 20, 10*time.Minute)
	a := New(Options{Predictive: true})
	end := train(a, cfg, 3*24*time.Hour)
	b, err := json.Marshal(a.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	restored, fresh := New(Options{Predictive: true}), New(Options{Predictive: true})
	if err := restored.Restore(st); err != nil {
		t.Fatal(err)
	}
	at := end.Add(8*time.Hour + 50*time.Minute)
	for now := end.Add(time.Hour); now.Before(at); now = now.Add(time.Minute) {
		for _, s := range []*Scaler{restored, fresh} {
			if n := count(s.Decide(snap(now, cfg, busyN(1, now), 0)), workers.ActionCreate); n > 0 {
				t.Fatalf("at %s: %d creates before the rise", now.Format("15:04"), n)
			}
		}
	}
	if n := count(restored.Decide(snap(at, cfg, busyN(1, at), 0)), workers.ActionCreate); n != 5 {
		t.Errorf("restored scaler at 08:50: %d creates, want 5", n)
	}
	if n := count(fresh.Decide(snap(at, cfg, busyN(1, at), 0)), workers.ActionCreate); n != 0 {
		t.Errorf("fresh scaler at 08:50: %d creates, want 0 (no history)", n)
	}
	h := restored.State().Pools["p"]
	day := int(24 * time.Hour / (5 * time.Minute))
	if want := 3*day + int(8*time.Hour+50*time.Minute)/int(5*time.Minute); len(h.History) != want {
		t.Errorf("restored history: %d buckets, want %d (three days, the gap and today)", len(h.History), want)
	}
	// The gap (00:00-01:00 of day 4) holds the night value of day 3.
	for i := 3 * day; i < 3*day+12; i++ {
		if h.History[i] != h.History[i-day] {
			t.Errorf("gap bucket %d = %v, want the day before's %v", i, h.History[i], h.History[i-day])
		}
	}
}

func TestRestoreRefusesOtherBuckets(t *testing.T) {
	t.Parallel()
	s := New(Options{Bucket: time.Minute})
	err := s.Restore(State{Bucket: 5 * time.Minute, Pools: map[string]PoolState{"p": {History: []float64{1}}}})
	if err == nil || !strings.Contains(err.Error(), "5m0s") {
		t.Errorf("err = %v, want one naming the other bucket", err)
	}
	s.Decide(snap(t0, poolCfg(0, 1, 0), nil, 0))
	if err := s.Restore(State{Bucket: time.Minute}); err == nil {
		t.Error("restore after a decision accepted")
	}
}

// TestRestoreDropsStaleHistory: a series that ended longer ago than the
// history kept is not continued.
func TestRestoreDropsStaleHistory(t *testing.T) {
	t.Parallel()
	s := New(Options{History: 24 * time.Hour})
	first := t0.UnixNano() / int64(5*time.Minute)
	if err := s.Restore(State{Bucket: 5 * time.Minute, Pools: map[string]PoolState{"p": {First: first, History: []float64{3, 3, 3}}}}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(3 * 24 * time.Hour)
	s.Decide(snap(now, poolCfg(0, 5, 0), nil, 0))
	s.Decide(snap(now.Add(5*time.Minute), poolCfg(0, 5, 0), nil, 0))
	h := s.State().Pools["p"]
	if len(h.History) != 1 || h.History[0] != 0 || h.First != now.UnixNano()/int64(5*time.Minute) {
		t.Errorf("history %+v, want only the bucket since the restart", h)
	}
}
