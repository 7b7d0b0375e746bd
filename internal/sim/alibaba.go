package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// GPU sharing models of the Alibaba import.
const (
	// GPUShareMilli counts GPUs in thousandths: a node with 8 GPUs has 8000,
	// a pod asking for 460 milli-GPUs of one device takes 460, a pod asking
	// for 2 whole GPUs takes 2000. Shared pods pack onto GPUs as the trace
	// intends; the engine sees GPU as one number per node, so it does not
	// know that a fraction must come from a single device (it may place a
	// 600 on a node whose two devices have 300 free each): an optimistic
	// bound on sharing.
	GPUShareMilli = "milli"
	// GPUShareWhole gives every GPU pod whole devices (a shared pod takes one
	// GPU): no sharing, a pessimistic bound.
	GPUShareWhole = "whole"
)

// AlibabaOptions tunes the import of the Alibaba GPU trace.
type AlibabaOptions struct {
	// TimeScale divides the gaps between arrivals (creation times): 10 makes
	// the trace arrive ten times faster. Durations are kept. 0 means 1.
	TimeScale float64
	// GPUShare is GPUShareMilli (default) or GPUShareWhole.
	GPUShare string
	// NodeFraction keeps this share of the nodes (0 or 1: all), evenly
	// spaced in the node list (which is grouped by machine type, so the mix
	// is kept): the same pods on a smaller cluster. Pods that then fit no
	// node are skipped and counted.
	NodeFraction float64
	// QoSPriority gives pods the priority of their QoS class
	// (AlibabaPriority) instead of 0.
	QoSPriority bool
}

var (
	alibabaNodeColumns = []string{"sn", "cpu_milli", "memory_mib", "gpu", "model"}
	alibabaPodColumns  = []string{"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos",
		"pod_phase", "creation_time", "deletion_time", "scheduled_time"}
)

// AlibabaPriority maps a pod's QoS class to a pipeline priority (latency
// sensitive and guaranteed services first, best effort last) when
// AlibabaOptions.QoSPriority asks for it. By default every pod has priority
// 0: a QoS class decides co-location and eviction on a node, not the order in
// which pods are admitted, and the trace's own simulator replays pods in
// creation order. Mapping classes to priorities sends more than half of the
// pods first and makes best-effort pods pay for it, which is a different
// workload from the one the trace records.
var AlibabaPriority = map[string]int{"Guaranteed": 3, "LS": 2, "Burstable": 1, "BE": 0}

// ImportAlibaba reads the node list and a pod list of the Alibaba GPU
// cluster trace of 2023 (cluster-trace-gpu-v2023, "openb"): nodes become
// workers, pods single-job pipelines. See docs/scheduling.md for the model.
func ImportAlibaba(nodesPath, podsPath string, o AlibabaOptions) (*Workload, error) {
	nf, err := os.Open(nodesPath)
	if err != nil {
		return nil, err
	}
	defer nf.Close()
	pf, err := os.Open(podsPath)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	w, err := ReadAlibaba(nf, nodesPath, pf, podsPath, o)
	if err != nil {
		return nil, err
	}
	w.Source = fmt.Sprintf("Alibaba GPU trace 2023: %s + %s", nodesPath, podsPath)
	return w, nil
}

type csvTable struct {
	name string
	cr   *csv.Reader
	col  map[string]int
	rec  []string
	line int
}

func openTable(r io.Reader, name string, want []string) (*csvTable, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want a header %q", name, strings.Join(want, ","))
	}
	if err != nil {
		return nil, csvErr(name, err)
	}
	t := &csvTable{name: name, cr: cr, col: map[string]int{}}
	for i, h := range head {
		t.col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, c := range want {
		if _, ok := t.col[c]; !ok {
			return nil, fmt.Errorf("%s:1: missing column %q (want %s)", name, c, strings.Join(want, ","))
		}
	}
	return t, nil
}

func (t *csvTable) next() (bool, error) {
	rec, err := t.cr.Read()
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, csvErr(t.name, err)
	}
	t.rec = rec
	t.line, _ = t.cr.FieldPos(0)
	return true, nil
}

func (t *csvTable) str(c string) string {
	i := t.col[c]
	if i >= len(t.rec) {
		return ""
	}
	return strings.TrimSpace(t.rec[i])
}

// int reads an integer column; empty reads as 0 when optional.
func (t *csvTable) int(c string, optional bool) (int64, error) {
	s := t.str(c)
	if s == "" && optional {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Some exports write integers as floats ("12.0").
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, fmt.Errorf("%s:%d: %s %q: want an integer", t.name, t.line, c, s)
		}
		v = int64(f)
	}
	if v < 0 {
		return 0, fmt.Errorf("%s:%d: %s %d: negative", t.name, t.line, c, v)
	}
	return v, nil
}

type alibabaPod struct {
	name, spec, qos, phase    string
	cpu, mem, gpu, gpuMilli   int64
	create, delete, scheduled int64
	line                      int
}

// ReadAlibaba is ImportAlibaba on readers (names are for messages).
func ReadAlibaba(nodes io.Reader, nodesName string, pods io.Reader, podsName string, o AlibabaOptions) (*Workload, error) {
	if o.TimeScale == 0 {
		o.TimeScale = 1
	}
	if o.TimeScale < 0 || math.IsNaN(o.TimeScale) || math.IsInf(o.TimeScale, 0) {
		return nil, fmt.Errorf("time scale %v: want a positive number", o.TimeScale)
	}
	switch o.GPUShare {
	case "":
		o.GPUShare = GPUShareMilli
	case GPUShareMilli, GPUShareWhole:
	default:
		return nil, fmt.Errorf("GPU sharing model %q: want %s or %s", o.GPUShare, GPUShareMilli, GPUShareWhole)
	}
	if o.NodeFraction == 0 {
		o.NodeFraction = 1
	}
	if o.NodeFraction < 0 || o.NodeFraction > 1 || math.IsNaN(o.NodeFraction) {
		return nil, fmt.Errorf("node fraction %v: want a number in (0, 1]", o.NodeFraction)
	}
	gpuUnit := int64(1)
	if o.GPUShare == GPUShareMilli {
		gpuUnit = 1000
	}

	// Pods first: their GPU specs become node labels.
	pt, err := openTable(pods, podsName, alibabaPodColumns)
	if err != nil {
		return nil, err
	}
	var list []alibabaPod
	specs := map[string][]string{} // gpu_spec -> allowed models
	for {
		ok, err := pt.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		p := alibabaPod{name: pt.str("name"), spec: pt.str("gpu_spec"), qos: pt.str("qos"), phase: pt.str("pod_phase"), line: pt.line}
		if p.name == "" {
			return nil, fmt.Errorf("%s:%d: empty name", podsName, pt.line)
		}
		for _, f := range []struct {
			c        string
			dst      *int64
			optional bool
		}{
			{"cpu_milli", &p.cpu, false}, {"memory_mib", &p.mem, false}, {"num_gpu", &p.gpu, true},
			{"gpu_milli", &p.gpuMilli, true}, {"creation_time", &p.create, false},
			{"deletion_time", &p.delete, true}, {"scheduled_time", &p.scheduled, true},
		} {
			if *f.dst, err = pt.int(f.c, f.optional); err != nil {
				return nil, err
			}
		}
		if p.spec != "" {
			if _, ok := specs[p.spec]; !ok {
				var models []string
				for _, m := range strings.Split(p.spec, "|") {
					if m = strings.TrimSpace(m); m != "" {
						models = append(models, m)
					}
				}
				specs[p.spec] = models
			}
		}
		list = append(list, p)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%s: no pods", podsName)
	}
	specNames := make([]string, 0, len(specs))
	for s := range specs {
		specNames = append(specNames, s)
	}
	sort.Strings(specNames)

	nt, err := openTable(nodes, nodesName, alibabaNodeColumns)
	if err != nil {
		return nil, err
	}
	w := NewWorkload()
	w.GPUMilli = o.GPUShare == GPUShareMilli
	w.Skipped = map[string]int{}
	w.Notes = map[string]int{}
	seen := map[string]int{}
	for row := 0; ; row++ {
		ok, err := nt.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		wk := Worker{ID: nt.str("sn")}
		if wk.ID == "" {
			return nil, fmt.Errorf("%s:%d: empty sn", nodesName, nt.line)
		}
		if prev, dup := seen[wk.ID]; dup {
			return nil, fmt.Errorf("%s:%d: node %q already listed on line %d", nodesName, nt.line, wk.ID, prev)
		}
		seen[wk.ID] = nt.line
		if wk.CPUMilli, err = nt.int("cpu_milli", false); err != nil {
			return nil, err
		}
		if wk.MemoryMiB, err = nt.int("memory_mib", false); err != nil {
			return nil, err
		}
		g, err := nt.int("gpu", true)
		if err != nil {
			return nil, err
		}
		wk.GPU = int(g * gpuUnit)
		// Node row keeps when floor((row+1)f) > floor(row f): evenly spaced.
		if math.Floor(float64(row+1)*o.NodeFraction) == math.Floor(float64(row)*o.NodeFraction) {
			w.Notes["nodes left out by the node fraction"]++
			continue
		}
		if g > 0 {
			model := nt.str("model")
			wk.Labels = append(wk.Labels, "gpu")
			if model != "" {
				wk.Labels = append(wk.Labels, "gpu-model="+model)
			}
			for _, s := range specNames {
				if slices.Contains(specs[s], model) {
					wk.Labels = append(wk.Labels, "gpu-spec="+s)
				}
			}
		}
		w.Workers = append(w.Workers, wk)
	}
	if len(w.Workers) == 0 {
		return nil, fmt.Errorf("%s: no nodes", nodesName)
	}

	// Arrivals from the first creation time, compressed by TimeScale.
	t0 := list[0].create
	for _, p := range list {
		t0 = min(t0, p.create)
	}
	fit := newFitter(w)
	pod := make([]JobIn, 1)
	for _, p := range list {
		start := p.scheduled
		if start <= 0 {
			start = p.create
		}
		if p.delete <= start {
			w.Skipped["no valid duration (deletion_time not after start)"]++
			continue
		}
		var gpu int64
		switch {
		case p.gpu == 0:
		case p.gpu == 1 && p.gpuMilli > 0 && p.gpuMilli < 1000:
			w.Notes["shared-GPU pods (gpu_milli < 1000)"]++
			gpu = 1
			if gpuUnit == 1000 {
				gpu = p.gpuMilli
			}
		default:
			gpu = p.gpu * gpuUnit
		}
		var labels []string
		if p.gpu > 0 {
			labels = append(labels, "gpu")
			if p.spec != "" {
				labels = append(labels, "gpu-spec="+p.spec)
			}
		}
		qos := p.qos
		if qos == "" {
			qos = "unknown"
		}
		pod[0] = JobIn{
			ID: p.name, CPUMilli: p.cpu, MemMiB: p.mem, GPU: gpu, Labels: labels,
			Duration: time.Duration(p.delete-start) * time.Second,
			// Pod names are unique; pods of one shape and class are most
			// often replicas of one workload, so the shape is the key.
			Key: fmt.Sprintf("%s/cpu=%d/mem=%d/gpu=%d/%s", qos, p.cpu, p.mem, gpu, p.spec),
		}
		prio := 0
		if o.QoSPriority {
			prio = AlibabaPriority[qos]
		}
		n := len(w.Pipelines)
		err := w.AddPipeline(PipelineIn{
			ID: p.name, Tenant: qos, Priority: prio,
			Submit: time.Duration(float64(time.Duration(p.create-t0)*time.Second) / o.TimeScale),
			Jobs:   pod,
		})
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", podsName, p.line, err)
		}
		if !fit.fits(p.cpu, p.mem, gpu, w.JobLabels[w.Pipelines[n].First]) {
			w.truncate(n)
			w.Skipped["fits no node (request or gpu_spec)"]++
			continue
		}
		switch {
		case p.scheduled <= 0 && p.phase == "Pending":
			w.Notes["Pending pods (never scheduled in the trace; duration from creation)"]++
		case p.scheduled <= 0:
			w.Notes["pods without scheduled_time (duration from creation)"]++
		}
		if p.phase == "Running" {
			w.Notes["Running pods (cut at the trace end)"]++
		}
	}
	if err := w.CheckIDs(); err != nil {
		return nil, fmt.Errorf("%s: %w", podsName, err)
	}
	return w, nil
}
