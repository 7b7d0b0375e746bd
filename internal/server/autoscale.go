package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/atomicfile"
	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/workers"
)

// savedScaler wraps the autoscaler given to the worker manager: it restores
// the demand history a previous run saved in the data directory, saves it
// again after a decision at most once a SaveEvery, and exports the cost
// accounts as metrics. Decide runs in the manager's loop; the lock guards
// the scaler against Forecast and Save from other goroutines.
type savedScaler struct {
	mu    sync.Mutex
	s     *autoscale.Scaler
	path  string
	every time.Duration
	saved time.Time
	log   *slog.Logger

	hours, idle, cost, forecast *prometheus.GaugeVec
}

var (
	_ workers.Scaler     = (*savedScaler)(nil)
	_ workers.Forecaster = (*savedScaler)(nil)
	_ workers.Accountant = (*savedScaler)(nil)
)

const autoscaleStateFile = "autoscale.json"

// newSavedScaler restores s from dir's state file (a missing file is a first
// start; an unreadable one is logged and ignored: the scaler learns again).
func newSavedScaler(s *autoscale.Scaler, dir string, reg prometheus.Registerer, log *slog.Logger) *savedScaler {
	w := &savedScaler{s: s, path: filepath.Join(dir, autoscaleStateFile), every: time.Minute, log: log,
		hours: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_pool_worker_hours",
			Help: "Worker-hours of the pool's workers since the server started."}, []string{"pool"}),
		idle: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_pool_idle_worker_hours",
			Help: "Worker-hours of the pool's workers while they ran no job (starting, idle, draining) since the server started."}, []string{"pool"}),
		cost: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_pool_cost",
			Help: "cost_per_hour times worker-hours of the pool since the server started."}, []string{"pool"}),
		forecast: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_pool_forecast_workers",
			Help: "Workers the predictive autoscaler's forecast asked for in the pool at its last decision (compare with hodei_pool_workers and hodei_pool_demand_jobs)."}, []string{"pool"}),
	}
	if reg != nil {
		reg.MustRegister(w.hours, w.idle, w.cost, w.forecast)
	}
	if err := w.load(); err != nil {
		log.Warn("autoscaler history not restored: forecasting starts afresh", "file", w.path, "err", err)
	}
	return w
}

func (w *savedScaler) load() error {
	b, err := os.ReadFile(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st autoscale.State
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if err := w.s.Restore(st); err != nil {
		return err
	}
	n := 0
	for _, p := range st.Pools {
		n = max(n, len(p.History))
	}
	w.log.Info("autoscaler history restored", "file", w.path, "pools", len(st.Pools), "buckets", n)
	return nil
}

// Decide implements workers.Scaler.
func (w *savedScaler) Decide(snap workers.Snapshot) []workers.Action {
	w.mu.Lock()
	defer w.mu.Unlock()
	acts := w.s.Decide(snap)
	for name, a := range w.s.Accounts() {
		w.hours.WithLabelValues(name).Set(a.WorkerHours)
		w.idle.WithLabelValues(name).Set(a.IdleWorkerHours)
		w.cost.WithLabelValues(name).Set(a.Cost)
		if f, ok := w.s.Forecast(name); ok {
			w.forecast.WithLabelValues(name).Set(float64(f))
		}
	}
	if snap.Now.Sub(w.saved) >= w.every {
		w.saved = snap.Now
		if err := w.saveLocked(); err != nil {
			w.log.Warn("autoscaler history not saved", "file", w.path, "err", err)
		}
	}
	return acts
}

// Forecast implements workers.Forecaster.
func (w *savedScaler) Forecast(pool string) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.s.Forecast(pool)
}

// Account implements workers.Accountant.
func (w *savedScaler) Account(pool string) (workers.CostAccount, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.s.Account(pool)
}

// Save writes the state file now (at shutdown).
func (w *savedScaler) Save() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.saveLocked()
}

// saveLocked writes the state file so that a crash leaves the old or the
// new file, never half of one.
func (w *savedScaler) saveLocked() error {
	b, err := json.Marshal(w.s.State())
	if err != nil {
		return err
	}
	return atomicfile.Write(w.path, b, 0o600)
}
