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
	// Messages counts the worker messages applied (in a committed batch),
	// by kind: report (status or log chunk) or heartbeat.
	Messages *prometheus.CounterVec
	// Dropped counts the reports applied as no change, by reason (see the
	// Drop constants).
	Dropped *prometheus.CounterVec
}

// Reasons a worker report changes nothing: the values of the reason label of
// hodei_reports_dropped_total.
const (
	DropBadMessage   = "bad_message"   // not a status or log chunk
	DropWrongSubject = "wrong_subject" // a status naming another worker than its subject
	DropStaleStatus  = "stale_status"  // unknown job, another attempt or worker, or a job no longer active
	DropRepeated     = "repeated"      // a state the job has already passed
	DropStaleLog     = "stale_log"     // a log chunk of an unknown job, a future attempt or another worker
)

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
		Messages:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_worker_messages_total", Help: "Worker messages applied, by kind (report, heartbeat)."}, []string{"kind"}),
		Dropped:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_reports_dropped_total", Help: "Worker reports that changed nothing, by reason."}, []string{"reason"}),
	}
	reg.MustRegister(m.RunsSubmitted, m.RunsFinished, m.JobsFinished, m.AttemptsLost, m.SubmitToStart, m.Jobs, m.ActiveRuns, m.QueueDepth, m.Workers, m.Messages, m.Dropped)
	return m
}

func (m *Metrics) update(v *View, queue int) {
	for _, s := range state.JobStates {
		if !s.Final() {
			m.Jobs.WithLabelValues(string(s)).Set(float64(v.Jobs[s]))
		}
	}
	m.ActiveRuns.Set(float64(v.ActiveRuns))
	m.QueueDepth.Set(float64(queue))
	counts := map[state.WorkerState]int{}
	for _, w := range v.Workers {
		counts[w.State]++
	}
	for _, s := range state.WorkerStates {
		m.Workers.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// drop counts a report that changed nothing, once its batch is committed.
func (o *Orchestrator) drop(c *change, reason string) {
	if o.cfg.Metrics != nil {
		c.observe = append(c.observe, func() { o.cfg.Metrics.Dropped.WithLabelValues(reason).Inc() })
	}
}

// Processed counts the worker messages applied in committed batches since
// Start.
type Processed struct {
	Reports    uint64 // statuses and log chunks, dropped ones included
	Heartbeats uint64
}

// Processed returns how many worker messages the loop has applied. A
// message counted here has had all its effects (or none, if it was dropped)
// committed to the store, published and counted in the metrics: a test that
// published n messages waits for the count to reach n before it checks that
// they changed nothing.
func (o *Orchestrator) Processed() Processed {
	return Processed{Reports: o.reportsDone.Load(), Heartbeats: o.beatsDone.Load()}
}

// processed counts a committed batch's worker messages. It runs last, after
// everything else the batch announces.
func (o *Orchestrator) processed(b *batch) {
	if o.cfg.Metrics != nil {
		o.cfg.Metrics.Messages.WithLabelValues("report").Add(float64(len(b.reports)))
		o.cfg.Metrics.Messages.WithLabelValues("heartbeat").Add(float64(len(b.beats)))
	}
	o.reportsDone.Add(uint64(len(b.reports)))
	o.beatsDone.Add(uint64(len(b.beats)))
}
