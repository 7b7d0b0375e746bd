package server

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

func busySnap(now time.Time, n int) workers.Snapshot {
	cfg := poolsfile.PoolConfig{Name: "p", Provider: "local", Max: 20, IdleTimeout: 10 * time.Minute,
		StartupDelay: 10 * time.Minute, CostPerHour: 2, Shape: poolsfile.Shape{CPUMilli: 1000, Memory: 1 << 30}}
	ws := make([]workers.WorkerSnapshot, n)
	for i := range ws {
		ws[i] = workers.WorkerSnapshot{ID: string(rune('a' + i)), State: workers.WorkerBusy, Jobs: 1, CreatedAt: now}
	}
	return workers.Snapshot{Now: now, Pools: []workers.PoolSnapshot{{Config: cfg, Workers: ws, Healthy: true, CanCreate: -1}}}
}

// TestSavedScalerSurvivesRestart: the demand history a server learned is
// in the data dir after it stops, and the next server's scaler starts from
// it; the cost accounts are metrics.
func TestSavedScalerSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	a := newSavedScaler(autoscale.New(autoscale.Options{Predictive: true}), dir, reg, log)
	a.every = 6 * time.Hour
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	for ; now.Before(t0.Add(2 * 24 * time.Hour)); now = now.Add(time.Minute) {
		n := 1
		if h := now.Hour(); h >= 9 && h < 17 {
			n = 6
		}
		a.Decide(busySnap(now, n))
	}
	if got := gauge(a.hours.WithLabelValues("p")); got < 2*24*1 || got > 2*24*6 {
		t.Errorf("hodei_pool_worker_hours = %v, want between 48 and 288", got)
	}
	if got := gauge(a.cost.WithLabelValues("p")); got != 2*gauge(a.hours.WithLabelValues("p")) {
		t.Errorf("hodei_pool_cost = %v, want 2 x worker-hours", got)
	}
	if err := a.Save(); err != nil {
		t.Fatal(err)
	}
	want := a.s.State()
	b := newSavedScaler(autoscale.New(autoscale.Options{Predictive: true}), dir, prometheus.NewRegistry(), log)
	if got := b.s.State(); !reflect.DeepEqual(got, want) || len(got.Pools["p"].History) != 2*24*12-1 {
		t.Errorf("restored %d buckets, want the %d saved", len(got.Pools["p"].History), len(want.Pools["p"].History))
	}
}

func TestSavedScalerIgnoresABadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, autoscaleStateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newSavedScaler(autoscale.New(autoscale.Options{}), dir, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if st := w.s.State(); len(st.Pools) != 0 {
		t.Errorf("state from a bad file: %+v", st)
	}
	// The next save replaces it with a good one.
	w.Decide(busySnap(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 1))
	if err := w.Save(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, autoscaleStateFile)); len(b) == 0 || b[0] != '{' || string(b) == "{not json" {
		t.Errorf("file after save: %q", b)
	}
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
