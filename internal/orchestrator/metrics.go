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
	// SubmitToStart is the time from a job becoming ready to its worker
	// starting it, by tenant and pipeline.
	SubmitToStart *prometheus.HistogramVec
	// RunDuration is the time from a run's submission to its end, by
	// tenant, pipeline and final state.
	RunDuration *prometheus.HistogramVec
	// Waiting is the queued jobs that the last scheduling pass could not
	// place, by the reason the scheduler gives (scheduler.Reason codes).
	Waiting *prometheus.GaugeVec
	// LogBytes counts the log output stored, by tenant.
	LogBytes *prometheus.CounterVec
	// Batch is the time of a batch's phases: commit (the store
	// transaction) and announce (publishing what it decided on NATS).
	Batch      *prometheus.HistogramVec
	Jobs       *prometheus.GaugeVec
	ActiveRuns prometheus.Gauge
	QueueDepth prometheus.Gauge
	// Workers counts workers by pool and state; Used and Capacity sum their
	// reserved and total resources by pool (cpu in millicores, memory in
	// bytes, gpu), for utilization per pool.
	Workers  *prometheus.GaugeVec
	Used     *prometheus.GaugeVec
	Capacity *prometheus.GaugeVec
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
		SubmitToStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hodei_job_submit_to_start_seconds",
			Help:    "Time from a job becoming ready (queued) to its worker starting it, by tenant and pipeline.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"tenant", "pipeline"}),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hodei_run_duration_seconds",
			Help:    "Time from a run's submission to its end, by tenant, pipeline and final state.",
			Buckets: []float64{.1, .5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400},
		}, []string{"tenant", "pipeline", "state"}),
		Waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_jobs_waiting",
			Help: "Queued jobs the last scheduling pass could not place, by reason."}, []string{"reason"}),
		LogBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_log_bytes_total", Help: "Log output stored, by tenant."}, []string{"tenant"}),
		Batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hodei_batch_seconds",
			Help:    "Time of the orchestrator's batch phases: commit (the store transaction), announce (publishing on NATS).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"phase"}),
		Jobs:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_jobs", Help: "Jobs of active runs, by state."}, []string{"state"}),
		ActiveRuns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hodei_runs_active", Help: "Runs not yet in a final state."}),
		QueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hodei_queue_depth", Help: "Jobs ready and waiting for a worker."}),
		Workers:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_workers", Help: "Workers by pool and state."}, []string{"pool", "state"}),
		Used: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_worker_resources_used",
			Help: "Resources reserved by running jobs on live workers, by pool and resource (cpu_milli, memory_bytes, gpu)."}, []string{"pool", "resource"}),
		Capacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hodei_worker_resources",
			Help: "Resources of live workers, by pool and resource (cpu_milli, memory_bytes, gpu)."}, []string{"pool", "resource"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_worker_messages_total", Help: "Worker messages applied, by kind (report, heartbeat)."}, []string{"kind"}),
		Dropped:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hodei_reports_dropped_total", Help: "Worker reports that changed nothing, by reason."}, []string{"reason"}),
	}
	reg.MustRegister(m.RunsSubmitted, m.RunsFinished, m.JobsFinished, m.AttemptsLost, m.SubmitToStart, m.RunDuration, m.Waiting,
		m.LogBytes, m.Batch, m.Jobs, m.ActiveRuns, m.QueueDepth, m.Workers, m.Used, m.Capacity, m.Messages, m.Dropped)
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
	// Pools come and go: the gauges are rebuilt from the view each time,
	// summed per pool first (a label lookup per pool, not per worker).
	type poolSum struct {
		states                          map[state.WorkerState]int
		cpu, mem, gpu, uCPU, uMem, uGPU int64
	}
	pools := map[string]*poolSum{}
	for _, w := range v.Workers {
		p := pools[w.Pool]
		if p == nil {
			p = &poolSum{states: map[state.WorkerState]int{}}
			pools[w.Pool] = p
		}
		p.states[w.State]++
		if w.State == state.WorkerLost || w.State == state.WorkerGone {
			continue
		}
		p.cpu, p.mem, p.gpu = p.cpu+w.CPUMilli, p.mem+w.MemoryBytes, p.gpu+int64(w.GPU)
		p.uCPU, p.uMem, p.uGPU = p.uCPU+w.UsedCPUMilli, p.uMem+w.UsedMemory, p.uGPU+int64(w.UsedGPU)
	}
	m.Workers.Reset()
	m.Used.Reset()
	m.Capacity.Reset()
	for name, p := range pools {
		for st, n := range p.states {
			m.Workers.WithLabelValues(name, string(st)).Set(float64(n))
		}
		for _, r := range []struct {
			resource    string
			total, used int64
		}{{"cpu_milli", p.cpu, p.uCPU}, {"memory_bytes", p.mem, p.uMem}, {"gpu", p.gpu, p.uGPU}} {
			m.Capacity.WithLabelValues(name, r.resource).Set(float64(r.total))
			m.Used.WithLabelValues(name, r.resource).Set(float64(r.used))
		}
	}
	m.Waiting.Reset()
	for _, d := range v.Demand {
		m.Waiting.WithLabelValues(d.Reason).Add(float64(d.Jobs))
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
