package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/state"
)

// Metrics are the orchestrator's Prometheus metrics.
type Metrics struct {
	RunsSubmitted prometheus.Counter
	RunsFinished  *prometheus.CounterVec
	JobsFinished  *prometheus.CounterVec
	AttemptsLost  prometheus.Counter
	SubmitToStart prometheus.Histogram
	Jobs          *prometheus.GaugeVec
	ActiveRuns    prometheus.Gauge
	QueueDepth    prometheus.Gauge
	Workers       *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RunsSubmitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "hodei_runs_submitted_total", Help: "Runs accepted."}),
		RunsFinished:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_runs_finished_total", Help: "Runs that reached a final state, by state."}, []string{"state"}),
		JobsFinished:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_jobs_finished_total", Help: "Jobs that reached a final state, by state."}, []string{"state"}),
		AttemptsLost:  prometheus.NewCounter(prometheus.CounterOpts{Name: "hodei_attempts_lost_total", Help: "Attempts given up because their worker was lost or restarted."}),
		SubmitToStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hodei_job_submit_to_start_seconds",
			Help:    "Time from a job becoming ready (queued) to its worker starting it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		Jobs:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_jobs", Help: "Jobs of active runs, by state."}, []string{"state"}),
		ActiveRuns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hodei_runs_active", Help: "Runs not yet in a final state."}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hodei_queue_depth", Help: "Jobs ready and waiting for a worker."}),
		Workers:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_workers", Help: "Workers by state."}, []string{"state"}),
	}
	reg.MustRegister(m.RunsSubmitted, m.RunsFinished, m.JobsFinished, m.AttemptsLost, m.SubmitToStart, m.Jobs, m.ActiveRuns, m.QueueDepth, m.Workers)
	return m
}

func (m *Metrics) update(v *View, queue int) {
	for _, s := range state.JobStates {
		if !state.JobFinal(s) {
			m.Jobs.WithLabelValues(s).Set(float64(v.Jobs[s]))
		}
	}
	m.ActiveRuns.Set(float64(v.ActiveRuns))
	m.QueueDepth.Set(float64(queue))
	counts := map[string]int{}
	for _, w := range v.Workers {
		counts[w.State]++
	}
	for _, s := range state.WorkerStates {
		m.Workers.WithLabelValues(s).Set(float64(counts[s]))
	}
}
