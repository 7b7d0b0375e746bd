package sim

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hodei-ci/hodei/internal/scheduler"
)

// Variant holds the generator's knobs for workloads the base generator does
// not make: a heterogeneous fleet with scarce pools and tenants that live on
// them, long nightly pipelines, large jobs, heavy-tailed durations and
// durations that predictions get wrong. Generate applies it after the base
// workload is made (same seed, same result); the zero value changes nothing.
type Variant struct {
	// Hetero replaces the fleet by fixed machine shapes: small amd64
	// (4 cores, 8 GiB), large amd64 (16 cores, 64 GiB, half of the x86
	// cores), GPU (8 cores, 32 GiB, 1 GPU) and arm64 (4 cores, 8 GiB).
	// The x86 pool keeps the base fleet's cores times X86Factor; the arm64
	// and GPU pools are sized from their share of the workload's demand
	// times ScarceFactor.
	Hetero       bool
	X86Factor    float64 // default 1; below 1 contends the CPU at the peak
	ScarceFactor float64 // default 1; below 1 overloads the arm64 and GPU pools
	// ArmTenant moves every job of the last team to the arm64 pool: a
	// tenant that lives on a scarce pool.
	ArmTenant bool
	// Nightly adds a tenant "nightly" whose pipelines arrive every night
	// between 01:00 and 02:00: this many a night, each a chain of 2-4 GPU
	// jobs (4 cores, 16 GiB, 1 GPU) of 20 minutes to 2 hours, at
	// NightlyPriority.
	Nightly         int
	NightlyPriority int
	// LargeShare turns this share of the x86 build jobs into large builds
	// (16 cores, 48 GiB), which only large machines hold.
	LargeShare float64
	// HeavyTail multiplies every duration by a Pareto factor of this shape
	// (1 < alpha; smaller is heavier), normalised to a mean of 1 and capped
	// at 50.
	HeavyTail float64
	// Noise multiplies every duration by exp(Noise × N(0,1)): runs of a key
	// that its history predicts badly.
	Noise float64
	// UnseenKeys gives this share of jobs a key of their own, never seen
	// before (the predictor only has its default for them).
	UnseenKeys float64
	// Drift multiplies the durations of half of the keys by a factor that
	// grows linearly from 1 at the first arrival to Drift at the last.
	Drift float64
}

// apply changes w as v says. r is the generator's random source.
func (v Variant) apply(w *Workload, r *rand.Rand) error {
	if v == (Variant{}) {
		return nil
	}
	switch {
	case v.X86Factor < 0 || v.ScarceFactor < 0 || v.Nightly < 0 || v.Noise < 0 || v.Drift < 0:
		return fmt.Errorf("variant: negative knob")
	case v.LargeShare < 0 || v.LargeShare > 1 || v.UnseenKeys < 0 || v.UnseenKeys > 1:
		return fmt.Errorf("variant: large share and unseen keys are shares in [0, 1]")
	case v.HeavyTail != 0 && v.HeavyTail <= 1:
		return fmt.Errorf("variant: heavy tail shape %v: want > 1", v.HeavyTail)
	case v.NightlyPriority < -scheduler.MaxPriority || v.NightlyPriority > scheduler.MaxPriority:
		return fmt.Errorf("variant: nightly priority %d outside -%d..%d", v.NightlyPriority, scheduler.MaxPriority, scheduler.MaxPriority)
	}
	pool := func(j int) int {
		for k, l := range poolLabel {
			if slices.Contains(w.Labels[w.JobLabels[j]], l) {
				return k
			}
		}
		return poolX86
	}
	if v.ArmTenant && len(w.Tenants) > 1 {
		last := int32(len(w.Tenants) - 1)
		arm := w.labelSet(poolLabels[poolARM])
		for _, p := range w.Pipelines {
			if p.Tenant != last {
				continue
			}
			for j := p.First; j < p.First+p.Jobs; j++ {
				if w.JobGPU[j] == 0 {
					w.JobLabels[j] = arm
				}
			}
		}
	}
	if v.LargeShare > 0 {
		build := w.intern("build")
		for j := range w.JobDur {
			if w.JobName[j] == build && pool(j) == poolX86 && r.Float64() < v.LargeShare {
				w.JobCPU[j], w.JobMemMiB[j] = 16000, 48*1024
			}
		}
	}
	if v.Nightly > 0 && len(w.Pipelines) > 0 {
		span := w.Pipelines[len(w.Pipelines)-1].Submit
		for _, p := range w.Pipelines {
			span = max(span, p.Submit)
		}
		for day := 0; time.Duration(day)*24*time.Hour <= span; day++ {
			for i := range v.Nightly {
				t := time.Duration(day)*24*time.Hour + time.Hour + time.Duration(r.IntN(3600))*time.Second
				pin := PipelineIn{ID: fmt.Sprintf("nightly-%03d-%02d", day, i), Tenant: "nightly", Priority: v.NightlyPriority, Submit: t}
				steps := 2 + r.IntN(3)
				for s := range steps {
					d := time.Duration(1200+r.IntN(6000)) * time.Second
					ji := JobIn{ID: fmt.Sprintf("stage-%d", s), CPUMilli: 4000, MemMiB: 16384, GPU: 1, Labels: poolLabels[poolGPU],
						Duration: d, Key: fmt.Sprintf("nightly/%02d/stage-%d", i, s)}
					if s > 0 {
						ji.Needs = []string{fmt.Sprintf("stage-%d", s-1)}
					}
					pin.Jobs = append(pin.Jobs, ji)
				}
				if err := w.AddPipeline(pin); err != nil {
					return fmt.Errorf("variant: %w", err)
				}
			}
		}
	}
	if v.HeavyTail > 0 || v.Noise > 0 || v.Drift > 0 || v.UnseenKeys > 0 {
		var last time.Duration
		for _, p := range w.Pipelines {
			last = max(last, p.Submit)
		}
		drifts := func(key int32) bool {
			h := fnv.New32a()
			h.Write([]byte(w.Strings[key]))
			return h.Sum32()%2 == 0
		}
		a := v.HeavyTail
		for pi, p := range w.Pipelines {
			for j := p.First; j < p.First+p.Jobs; j++ {
				f := 1.0
				if a > 0 {
					f *= math.Min(math.Pow(1-r.Float64(), -1/a)*(a-1)/a, 50)
				}
				if v.Noise > 0 {
					f *= math.Exp(v.Noise * r.NormFloat64())
				}
				if v.Drift > 0 && last > 0 && drifts(w.JobKey[j]) {
					f *= 1 + (v.Drift-1)*float64(p.Submit)/float64(last)
				}
				if f != 1 {
					d := time.Duration(math.Round(float64(w.JobDur[j]) * f / float64(time.Second)))
					w.JobDur[j] = max(time.Second, d*time.Second)
				}
				if v.UnseenKeys > 0 && r.Float64() < v.UnseenKeys {
					w.JobKey[j] = w.intern(fmt.Sprintf("unseen/%d/%d", pi, j))
				}
			}
		}
	}
	if v.Hetero {
		if err := v.heteroFleet(w, pool); err != nil {
			return err
		}
	}
	if p, j, ok := w.Unplaceable(); ok {
		return fmt.Errorf("variant: %s fits no worker", w.DescribeJob(p, j))
	}
	return nil
}

// heteroFleet replaces w's fleet (see Variant.Hetero).
func (v Variant) heteroFleet(w *Workload, pool func(int) int) error {
	x86f, scf := v.X86Factor, v.ScarceFactor
	if x86f == 0 {
		x86f = 1
	}
	if scf == 0 {
		scf = 1
	}
	var x86Cores float64
	for _, wk := range w.Workers {
		if slices.Contains(wk.Labels, poolLabel[poolX86]) {
			x86Cores += float64(wk.CPUMilli) / 1000
		}
	}
	// Demand: cpu-seconds per pool, gpu-seconds for the GPU pool.
	var demand [numPools]float64
	for j, d := range w.JobDur {
		k := pool(j)
		if k == poolGPU {
			demand[k] += float64(w.JobGPU[j]) * d.Seconds()
		} else {
			demand[k] += float64(w.JobCPU[j]) / 1000 * d.Seconds()
		}
	}
	if demand[poolX86] == 0 {
		return fmt.Errorf("variant: no x86 work to size the fleet by")
	}
	x86Cores *= x86f
	armCores := x86Cores * demand[poolARM] / demand[poolX86] * scf
	gpus := x86Cores * demand[poolGPU] / demand[poolX86] * scf
	w.Workers = w.Workers[:0]
	add := func(prefix string, n, cores, memGiB, gpu int, labels []string, cost float64) {
		for i := range n {
			w.Workers = append(w.Workers, Worker{ID: fmt.Sprintf("%s-%05d", prefix, i+1), CPUMilli: int64(cores) * 1000,
				MemoryMiB: int64(memGiB) * 1024, GPU: gpu, Labels: labels, CostPerHour: cost})
		}
	}
	large := max(1, int(math.Round(x86Cores/2/16)))
	small := max(1, int(math.Round((x86Cores-float64(large*16))/4)))
	add("small", small, 4, 8, 0, []string{"linux", "amd64"}, 0.192)
	add("large", large, 16, 64, 0, []string{"linux", "amd64"}, 0.768)
	if demand[poolGPU] > 0 {
		add("gpu", max(1, int(math.Round(gpus))), 8, 32, 1, []string{"linux", "gpu"}, 1.15)
	}
	if demand[poolARM] > 0 {
		add("arm64", max(1, int(math.Round(armCores/4))), 4, 8, 0, []string{"linux", "arm64"}, 0.136)
	}
	return nil
}
