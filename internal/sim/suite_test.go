package sim

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// Every generated scenario of the suite makes a valid workload and runs
// under every policy (at a small scale); the table names each scenario and
// policy, and the verdict compares hodei with fifo.
func TestSuiteRunsEveryScenario(t *testing.T) {
	rows, err := RunSuite(SuiteOptions{Scale: 0.03})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 12 {
		t.Fatalf("%d scenarios, want at least 12", len(rows))
	}
	var buf bytes.Buffer
	WriteSuite(&buf, rows, true)
	for _, r := range rows {
		if len(r.Results) != 3 {
			t.Fatalf("%s: %d results", r.Scenario.Name, len(r.Results))
		}
		for _, res := range r.Results {
			if res.Jobs == 0 || res.Decisions < uint64(res.Jobs) {
				t.Errorf("%s/%s: %d jobs, %d decisions", r.Scenario.Name, res.Policy, res.Jobs, res.Decisions)
			}
		}
		if !strings.Contains(buf.String(), "| "+r.Scenario.Name+" | hodei | ") || !strings.Contains(buf.String(), r.Scenario.Name+": hodei ") {
			t.Errorf("table or verdict lacks %s", r.Scenario.Name)
		}
	}
}

// The variant knobs change the workload as documented.
func TestVariantKnobs(t *testing.T) {
	base := GenOptions{Jobs: 3000, Workers: 60, Seed: 3}
	plain, err := Generate(base)
	if err != nil {
		t.Fatal(err)
	}
	o := base
	o.Variant = Variant{Hetero: true, ArmTenant: true, Nightly: 2, NightlyPriority: -5, LargeShare: 1, UnseenKeys: 1}
	w, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string]int{}
	for _, wk := range w.Workers {
		shapes[wk.ID[:strings.LastIndexByte(wk.ID, '-')]]++
		if wk.ID[:5] == "large" && (wk.CPUMilli != 16000 || wk.MemoryMiB != 64*1024) {
			t.Errorf("large worker %+v", wk)
		}
	}
	for _, k := range []string{"small", "large", "gpu", "arm64"} {
		if shapes[k] == 0 {
			t.Errorf("no %s workers: %v", k, shapes)
		}
	}
	// The tenants: those of the base workload, then "nightly".
	nightly, lastTeam := 0, int32(len(plain.Tenants)-1)
	if w.Tenants[lastTeam+1] != "nightly" {
		t.Fatalf("tenants %v", w.Tenants)
	}
	for _, p := range w.Pipelines {
		if w.Tenants[p.Tenant] == "nightly" {
			nightly++
			if p.Priority != -5 || p.Jobs < 2 || w.JobGPU[p.First] != 1 {
				t.Errorf("nightly pipeline %+v", p)
			}
			continue
		}
		for j := p.First; j < p.First+p.Jobs; j++ {
			if p.Tenant == lastTeam && w.JobGPU[j] == 0 && !slices.Contains(w.Labels[w.JobLabels[j]], "arm64") {
				t.Fatalf("job of the arm64 tenant %s asks for %v", w.Tenants[p.Tenant], w.Labels[w.JobLabels[j]])
			}
		}
	}
	if nightly == 0 {
		t.Error("no nightly pipelines")
	}
	keys := map[int32]bool{}
	build := w.intern("build")
	for j := range w.JobDur {
		if keys[w.JobKey[j]] {
			t.Fatalf("with unseen keys 1, key %s repeats", w.Strings[w.JobKey[j]])
		}
		keys[w.JobKey[j]] = true
		if w.JobName[j] == build && slices.Contains(w.Labels[w.JobLabels[j]], "amd64") && w.JobCPU[j] != 16000 {
			t.Fatalf("with large share 1, an amd64 build asks for %d millicores", w.JobCPU[j])
		}
	}
	if _, err := Generate(GenOptions{Jobs: 100, Workers: 10, Variant: Variant{HeavyTail: 0.5}}); err == nil {
		t.Error("heavy tail 0.5 accepted")
	}
}
