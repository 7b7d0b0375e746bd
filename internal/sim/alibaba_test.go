package sim

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The trace's node list, and its first 1,000 pods plus the one pod of the
// trace without a valid duration (testdata/alibaba/README.md). The expected
// counts below were computed from the CSV files with a separate script,
// by the rules of ImportAlibaba's documentation.
const (
	traceDir   = "testdata/alibaba/"
	traceNodes = traceDir + "openb_node_list_all_node.csv"
	tracePods  = traceDir + "openb_pod_list_default_first1000.csv"
	tracePodsN = 1000 // pods with a valid duration
)

func TestAlibabaTrace(t *testing.T) {
	w, err := ImportAlibaba(traceNodes, tracePods, AlibabaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := w.Summarize()
	// 1,523 nodes (1,213 with GPUs, 6,212 GPUs); 1,001 pods of which one
	// has no valid duration (deleted when it was created).
	if s.Workers != 1523 || s.GPUWorkers != 1213 || s.FleetGPU != 6212*1000 {
		t.Errorf("%d workers, %d with GPUs, %d milli-GPUs", s.Workers, s.GPUWorkers, s.FleetGPU)
	}
	if s.Pipelines != tracePodsN || s.Jobs != tracePodsN {
		t.Errorf("%d pipelines, %d jobs; want %d", s.Pipelines, s.Jobs, tracePodsN)
	}
	wantSkipped := map[string]int{"no valid duration (deletion_time not after start)": 1}
	if !mapsEqual(w.Skipped, wantSkipped) {
		t.Errorf("skipped %v, want %v", w.Skipped, wantSkipped)
	}
	for k, want := range map[string]int{
		"shared-GPU pods (gpu_milli < 1000)":                                  329,
		"Pending pods (never scheduled in the trace; duration from creation)": 88,
		"Running pods (cut at the trace end)":                                 556,
	} {
		if got := w.Notes[k]; got != want {
			t.Errorf("%s: %d, want %d", k, got, want)
		}
	}
	if s.GPUJobs != 884 {
		t.Errorf("%d pods need a GPU, want 884", s.GPUJobs)
	}
	if !slices.Equal(w.Workers[0].Labels, nil) || w.Workers[0].CPUMilli != 32000 || w.Workers[0].MemoryMiB != 262144 {
		t.Errorf("first node %+v", w.Workers[0])
	}
	var gpuNode Worker
	for _, wk := range w.Workers {
		if wk.GPU > 0 {
			gpuNode = wk
			break
		}
	}
	if !slices.Contains(gpuNode.Labels, "gpu") || !slices.ContainsFunc(gpuNode.Labels, func(l string) bool { return strings.HasPrefix(l, "gpu-model=") }) {
		t.Errorf("gpu node labels %v", gpuNode.Labels)
	}
	// openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061
	p := w.Pipelines[1]
	j := p.First
	if p.ID != "openb-pod-0001" || w.Tenants[p.Tenant] != "LS" || p.Priority != 0 || p.Submit != 427061*time.Second ||
		w.JobCPU[j] != 6000 || w.JobMemMiB[j] != 12288 || w.JobGPU[j] != 460 ||
		w.JobDur[j] != (12902960-427061)*time.Second || !slices.Equal(w.Labels[w.JobLabels[j]], []string{"gpu"}) {
		t.Errorf("pod 1: %+v: cpu %d mem %d gpu %d dur %v labels %v", p, w.JobCPU[j], w.JobMemMiB[j], w.JobGPU[j], w.JobDur[j],
			w.Labels[w.JobLabels[j]])
	}

	// With QoSPriority the LS pod gets its class's priority.
	wq, err := ImportAlibaba(traceNodes, tracePods, AlibabaOptions{QoSPriority: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := wq.Pipelines[1].Priority; got != 2 {
		t.Errorf("pod 1 with QoSPriority: priority %d, want 2 (LS)", got)
	}

	// Whole GPUs, a faster clock, half the nodes.
	w, err = ImportAlibaba(traceNodes, tracePods, AlibabaOptions{GPUShare: GPUShareWhole, TimeScale: 10, NodeFraction: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	p = w.Pipelines[1]
	if w.JobGPU[p.First] != 1 || p.Submit != 42706100*time.Millisecond || w.JobDur[p.First] != (12902960-427061)*time.Second {
		t.Errorf("whole, scale 10: pod 1 gpu %d submit %v duration %v", w.JobGPU[p.First], p.Submit, w.JobDur[p.First])
	}
	if n := len(w.Workers); n != 761 && n != 762 {
		t.Errorf("half of 1523 nodes: %d", n)
	}
	if s := w.Summarize(); s.FleetGPU < 2800 || s.FleetGPU > 3400 {
		t.Errorf("half the nodes have %d GPUs", s.FleetGPU)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The trace replays under every policy with every assignment checked.
func TestAlibabaRun(t *testing.T) {
	w, err := ImportAlibaba(traceNodes, tracePods, AlibabaOptions{TimeScale: 1000, NodeFraction: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		r, _ := run(t, w, p)
		if r.Jobs != tracePodsN-w.Skipped["fits no node (request or gpu_spec)"] {
			t.Errorf("%s: %d jobs", p, r.Jobs)
		}
		t.Logf("%s: mean %.0fs p95 %.0fs wait mean %.0fs p95 %.0fs, priority p95 wait %.0fs", p, r.MeanPipelineS, r.P95PipelineS,
			r.MeanWaitS, r.P95WaitS, r.PriorityP95WaitS)
	}
}

const specNodes = `sn,cpu_milli,memory_mib,gpu,model
n-cpu,64000,262144,0,
n-v16,96000,393216,8,V100M16
n-v32,96000,393216,8,V100M32
n-t4,32000,131072,2,T4
`

const specPods = `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
a,4000,8192,1,500,V100M16|V100M32,LS,Running,100,700,110
b,4000,8192,2,1000,T4,BE,Succeeded,50,150,
c,1000,1024,0,0,,Burstable,Failed,0,30.0,0
d,4000,8192,1,1000,A100,BE,Failed,10,20,10
e,200000,8192,0,0,,BE,Failed,10,20,10
f,1000,1024,0,0,,BE,Failed,10,10,10
`

func TestAlibabaSpecs(t *testing.T) {
	w, err := ReadAlibaba(strings.NewReader(specNodes), "nodes.csv", strings.NewReader(specPods), "pods.csv", AlibabaOptions{QoSPriority: true})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string][]string{}
	for _, wk := range w.Workers {
		labels[wk.ID] = wk.Labels
	}
	for id, want := range map[string][]string{
		"n-cpu": nil,
		"n-v16": {"gpu", "gpu-model=V100M16", "gpu-spec=V100M16|V100M32"},
		"n-v32": {"gpu", "gpu-model=V100M32", "gpu-spec=V100M16|V100M32"},
		"n-t4":  {"gpu", "gpu-model=T4", "gpu-spec=T4"},
	} {
		if !slices.Equal(labels[id], want) {
			t.Errorf("%s labels %v, want %v", id, labels[id], want)
		}
	}
	var ids []string
	for _, p := range w.Pipelines {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("pods loaded %v, want a b c", ids)
	}
	if w.Skipped["fits no node (request or gpu_spec)"] != 2 || w.Skipped["no valid duration (deletion_time not after start)"] != 1 {
		t.Errorf("skipped %v", w.Skipped)
	}
	a, b, c := w.Pipelines[0], w.Pipelines[1], w.Pipelines[2]
	if !slices.Equal(w.Labels[w.JobLabels[a.First]], []string{"gpu", "gpu-spec=V100M16|V100M32"}) || w.JobGPU[a.First] != 500 ||
		w.JobDur[a.First] != 590*time.Second || a.Submit != 100*time.Second || a.Priority != 2 {
		t.Errorf("pod a: %+v labels %v gpu %d dur %v", a, w.Labels[w.JobLabels[a.First]], w.JobGPU[a.First], w.JobDur[a.First])
	}
	if w.JobGPU[b.First] != 2000 || w.JobDur[b.First] != 100*time.Second || b.Priority != 0 || w.Tenants[b.Tenant] != "BE" {
		t.Errorf("pod b: gpu %d dur %v prio %d", w.JobGPU[b.First], w.JobDur[b.First], b.Priority)
	}
	if w.JobDur[c.First] != 30*time.Second || c.Priority != 1 || w.JobLabels[c.First] != 0 {
		t.Errorf("pod c: dur %v prio %d labels %v", w.JobDur[c.First], c.Priority, w.Labels[w.JobLabels[c.First]])
	}
	// And it runs: the spec'd pod goes to a V100 node, b to the T4 node.
	for _, p := range policies {
		_, s := run(t, w, p)
		if id := w.Workers[s.worker[a.First]].ID; id != "n-v16" && id != "n-v32" {
			t.Errorf("%s: pod a ran on %s", p, id)
		}
		if id := w.Workers[s.worker[b.First]].ID; id != "n-t4" {
			t.Errorf("%s: pod b ran on %s", p, id)
		}
	}
}

func TestAlibabaErrors(t *testing.T) {
	head := "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
	for _, tc := range []struct{ nodes, pods, want string }{
		{specNodes, "name,cpu_milli\n", `pods.csv:1: missing column "memory_mib"`},
		{specNodes, head + "a,lots,1,0,0,,BE,Failed,0,1,0\n", `pods.csv:2: cpu_milli "lots": want an integer`},
		{specNodes, head + "a,1,1,0,0,,BE,Failed,0,1,0\nb,1,1,0,0,,BE,Failed,-5,1,0\n", `pods.csv:3: creation_time -5: negative`},
		{specNodes, head + "a,1,1,0,0,,BE,Failed,0,1.5,0\n", `pods.csv:2: deletion_time "1.5": want an integer`},
		{specNodes, head + ",1,1,0,0,,BE,Failed,0,1,0\n", `pods.csv:2: empty name`},
		{specNodes, head, `pods.csv: no pods`},
		{"sn,cpu_milli,memory_mib\n", head + "a,1,1,0,0,,BE,Failed,0,1,0\n", `nodes.csv:1: missing column "gpu"`},
		{"sn,cpu_milli,memory_mib,gpu,model\nn1,1000,1000,0,\nn1,1000,1000,0,\n", head + "a,1,1,0,0,,BE,Failed,0,1,0\n", `nodes.csv:3: node "n1" already listed on line 2`},
		{"sn,cpu_milli,memory_mib,gpu,model\nn1,x,1000,0,\n", head + "a,1,1,0,0,,BE,Failed,0,1,0\n", `nodes.csv:2: cpu_milli "x"`},
	} {
		_, err := ReadAlibaba(strings.NewReader(tc.nodes), "nodes.csv", strings.NewReader(tc.pods), "pods.csv", AlibabaOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	if _, err := ReadAlibaba(strings.NewReader(specNodes), "n", strings.NewReader(specPods), "p", AlibabaOptions{GPUShare: "half"}); err == nil {
		t.Error("no error for an unknown GPU sharing model")
	}
}
