package sim

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// human writes a duration in seconds for people: "42.0s", "12m03s", "3h05m",
// "2d04h".
func human(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", sec)
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		d = d.Round(time.Hour)
		return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// WriteWorkload describes a workload in a few lines.
func WriteWorkload(out io.Writer, w *Workload) {
	s := w.Summarize()
	fmt.Fprintf(out, "workload   %s\n", w.Source)
	gpu := fmt.Sprintf("%d GPUs", s.FleetGPU)
	if w.GPUMilli {
		gpu = fmt.Sprintf("%.1f GPUs (in milli-GPUs)", float64(s.FleetGPU)/1000)
	}
	fmt.Fprintf(out, "fleet      %s workers: %s cores, %s GiB, %s (%d workers with GPUs)\n",
		thousands(int64(s.Workers)), thousands(s.FleetCPUMilli/1000), thousands(s.FleetMemMiB/1024), gpu, s.GPUWorkers)
	fmt.Fprintf(out, "pipelines  %s from %d tenants over %s; %s jobs (%s need a GPU); %.1f%% with priority > 0, %d in concurrency groups\n",
		thousands(int64(s.Pipelines)), s.Tenants, human(s.Span.Seconds()), thousands(int64(s.Jobs)), thousands(int64(s.GPUJobs)),
		100*float64(s.PriorityPipelines)/float64(max(1, s.Pipelines)), s.GroupedPipelines)
	if s.Span > 0 && s.FleetCPUMilli > 0 {
		fmt.Fprintf(out, "offered    %.0f cpu-hours of work; %.2f of the fleet's cpu over the arrival span\n",
			s.WorkCPUSeconds/3600, s.WorkCPUSeconds/(float64(s.FleetCPUMilli)/1000*s.Span.Seconds()))
	}
	for _, m := range []struct {
		title string
		m     map[string]int
	}{{"skipped", w.Skipped}, {"note", w.Notes}} {
		keys := make([]string, 0, len(m.m))
		for k := range m.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "%-10s %s: %s\n", m.title, k, thousands(int64(m.m[k])))
		}
	}
}

// WriteResult writes one run's metrics for people.
func WriteResult(out io.Writer, r *Result) {
	d := r.Detail
	fmt.Fprintf(out, "policy %s: %s pipelines, %s jobs, simulated %s in %.1fs of wall time (peak RSS %.0f MiB)\n",
		r.Policy, thousands(int64(r.Pipelines)), thousands(int64(r.Jobs)), human(r.MakespanS), r.WallS, r.PeakRSSMB)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  pipeline completion\tmean %s, p50 %s, p95 %s (critical path, the bound: mean %s, p95 %s)\n",
		human(r.MeanPipelineS), human(r.P50PipelineS), human(r.P95PipelineS), human(d.MeanCriticalS), human(d.P95CriticalS))
	fmt.Fprintf(tw, "  job wait\tmean %s, p95 %s, p99 %s, max %s\n",
		human(r.MeanWaitS), human(r.P95WaitS), human(d.P99WaitS), human(d.MaxWaitS))
	fmt.Fprintf(tw, "  priority job wait\tp95 %s (%s jobs with priority > 0)\n", human(r.PriorityP95WaitS), thousands(int64(d.PriorityJobs)))
	fmt.Fprintf(tw, "  worst tenant slowdown\t%.2f (%s)\n", r.MaxTenantSlowdown, d.WorstTenant)
	fmt.Fprintf(tw, "  utilization\t%.3f (cpu %.3f, memory %.3f, gpu %.3f); %.3f while pipelines arrive; busiest hour: cpu %.3f, gpu %.3f\n",
		r.Utilization, d.CPUUtil, d.MemUtil, d.GPUUtil, d.ArrivalUtil, d.PeakHourUtil[0], d.PeakHourUtil[2])
	cost := ""
	if d.FleetCost > 0 {
		cost = fmt.Sprintf(", fleet cost $%s", thousands(int64(d.FleetCost)))
	}
	fmt.Fprintf(tw, "  fleet\t%s worker-hours%s\n", thousands(int64(r.WorkerHours)), cost)
	fmt.Fprintf(tw, "  scheduler\t%s decisions, %s/s of Plan time (%s Plan calls, %.1fs in Plan); queue peak %s jobs\n",
		thousands(int64(r.Decisions)), thousands(int64(r.DecisionsPerSec)), thousands(int64(d.PlanCalls)), d.PlanWallS, thousands(int64(d.MaxQueued)))
	if d.WorkerLosses > 0 {
		fmt.Fprintf(tw, "  churn\t%d worker losses, %d jobs requeued\n", d.WorkerLosses, d.Requeued)
	}
	for i, sh := range r.Shards {
		fmt.Fprintf(tw, "  shard %d of %d (by %s)\t%s workers (%s cores), %s jobs, %s decisions, %.1fs in Plan\n",
			i, len(r.Shards), r.ShardBy, thousands(int64(sh.Workers)), thousands(sh.CPUMilli/1000), thousands(int64(sh.Jobs)),
			thousands(int64(sh.Decisions)), sh.PlanWallS)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  tenant\tpipelines\tmean completion\tmean critical path\tslowdown\tp95 wait\t\n")
	for _, t := range d.Tenants {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%.2f\t%s\t\n", t.Tenant, thousands(int64(t.Pipelines)), human(t.MeanPipelineS),
			human(t.MeanCriticalS), t.Slowdown, human(t.P95WaitS))
	}
	tw.Flush()
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  jobs asking for\tjobs\tmean wait\tp95 wait\tp99 wait\t\n")
	for _, p := range d.LabelPools {
		name := p.Labels
		if name == "" {
			name = "(no labels)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t\n", name, thousands(int64(p.Jobs)), human(p.MeanWaitS), human(p.P95WaitS), human(p.P99WaitS))
	}
	tw.Flush()
}

// WriteComparison writes runs of several policies on one workload as a
// table, with each policy's change against fifo when fifo is among them.
func WriteComparison(out io.Writer, rs []*Result) {
	var base *Result
	for _, r := range rs {
		if r.Policy == "fifo" {
			base = r
		}
	}
	vs := func(v, b float64) string {
		if base == nil || b == 0 {
			return ""
		}
		return fmt.Sprintf(" (%+.0f%%)", 100*(v-b)/b)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "policy\tmean pipeline\tp50 pipeline\tp95 pipeline\tmean wait\tp95 wait\tworst slowdown\tpriority p95 wait\tutilization\tdecisions/s\twall\t\n")
	for _, r := range rs {
		var b Result
		if base != nil {
			b = *base
		}
		fmt.Fprintf(tw, "%s\t%.0fs%s\t%.0fs%s\t%.0fs%s\t%.1fs\t%.1fs\t%.2f\t%.1fs\t%.3f\t%s\t%.1fs\t\n",
			r.Policy, r.MeanPipelineS, vs(r.MeanPipelineS, b.MeanPipelineS), r.P50PipelineS, vs(r.P50PipelineS, b.P50PipelineS),
			r.P95PipelineS, vs(r.P95PipelineS, b.P95PipelineS), r.MeanWaitS, r.P95WaitS, r.MaxTenantSlowdown,
			r.PriorityP95WaitS, r.Utilization, thousands(int64(r.DecisionsPerSec)), r.WallS)
	}
	tw.Flush()
	if base == nil {
		return
	}
	// Per-tenant slowdown next to fifo's: no tenant should do worse.
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "tenant slowdown")
	for _, r := range rs {
		fmt.Fprintf(tw, "\t%s", r.Policy)
	}
	fmt.Fprintln(tw, "\t")
	for i, t := range base.Detail.Tenants {
		fmt.Fprint(tw, t.Tenant)
		for _, r := range rs {
			if i < len(r.Detail.Tenants) {
				fmt.Fprintf(tw, "\t%.2f", r.Detail.Tenants[i].Slowdown)
			}
		}
		fmt.Fprintln(tw, "\t")
	}
	tw.Flush()
}

// WriteShards writes runs of one workload split into different numbers of
// shards as a table, with each run's change against the first (one
// engine when the list starts at 1).
func WriteShards(out io.Writer, rs []*Result) {
	if len(rs) == 0 {
		return
	}
	base := rs[0]
	vs := func(v, b float64) string {
		if b == 0 {
			return ""
		}
		return fmt.Sprintf(" (%+.0f%%)", 100*(v-b)/b)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "shards\tby\tmean wait\tp95 wait\tp99 wait\tmean pipeline\tworst slowdown\tutilization\tlargest shard's jobs\t\n")
	for _, r := range rs {
		n, by, largest := 1, "-", r.Jobs
		if len(r.Shards) > 0 {
			n, by, largest = len(r.Shards), r.ShardBy, 0
			for _, sh := range r.Shards {
				largest = max(largest, sh.Jobs)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%.1fs%s\t%.1fs%s\t%.1fs%s\t%.0fs%s\t%.2f\t%.3f\t%.0f%%\t\n", n, by,
			r.MeanWaitS, vs(r.MeanWaitS, base.MeanWaitS), r.P95WaitS, vs(r.P95WaitS, base.P95WaitS),
			r.P99WaitS, vs(r.P99WaitS, base.P99WaitS), r.MeanPipelineS, vs(r.MeanPipelineS, base.MeanPipelineS),
			r.MaxTenantSlowdown, r.Utilization, 100*float64(largest)/float64(max(r.Jobs, 1)))
	}
	tw.Flush()
}
