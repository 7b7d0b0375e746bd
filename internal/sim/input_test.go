package sim

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

const goodWorkers = `id,cpu_milli,memory_mib,gpu,labels,cost_per_hour
w1,4000,16384,0,linux;amd64,0.19
w2, 8000 ,32768,1,"linux;gpu",1.15
w3,2000,8192,0,,
`

func TestReadWorkers(t *testing.T) {
	ws, err := ReadWorkers(strings.NewReader(goodWorkers), "w.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 3 {
		t.Fatalf("got %d workers, want 3", len(ws))
	}
	w2 := ws[1]
	if w2.ID != "w2" || w2.CPUMilli != 8000 || w2.MemoryMiB != 32768 || w2.GPU != 1 || w2.CostPerHour != 1.15 ||
		strings.Join(w2.Labels, ",") != "linux,gpu" {
		t.Errorf("w2 = %+v", w2)
	}
	if len(ws[2].Labels) != 0 || ws[2].CostPerHour != 0 {
		t.Errorf("w3 = %+v", ws[2])
	}
	// Columns in another order, optional ones left out.
	ws, err = ReadWorkers(strings.NewReader("memory_mib,id,cpu_milli\n1024,a,500\n"), "w.csv")
	if err != nil || len(ws) != 1 || ws[0].ID != "a" || ws[0].CPUMilli != 500 || ws[0].MemoryMiB != 1024 {
		t.Errorf("reordered columns: %+v, %v", ws, err)
	}
}

func TestReadWorkersErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "w.csv: empty file"},
		{"id,cpu,memory_mib\n", `w.csv:1: unknown column "cpu"`},
		{"id,memory_mib\nw1,10\n", `w.csv:1: missing column "cpu_milli"`},
		{"id,cpu_milli,memory_mib,id\n", `w.csv:1: column "id" appears twice`},
		{"id,cpu_milli,memory_mib\nw1,1000,1024\nw2,lots,1024\n", `w.csv:3: worker "w2": cpu_milli "lots": want a positive integer`},
		{"id,cpu_milli,memory_mib\nw1,1000,0\n", `w.csv:2: worker "w1": memory_mib "0"`},
		{"id,cpu_milli,memory_mib,gpu\nw1,1000,1024,-1\n", `w.csv:2: worker "w1": gpu "-1"`},
		{"id,cpu_milli,memory_mib,cost_per_hour\nw1,1000,1024,cheap\n", `w.csv:2: worker "w1": cost_per_hour "cheap"`},
		{"id,cpu_milli,memory_mib\nw1,1000,1024\n\nw1,1000,1024\n", `w.csv:4: worker "w1" already defined on line 2`},
		{"id,cpu_milli,memory_mib\n,1000,1024\n", "w.csv:2: empty id"},
		{"id,cpu_milli,memory_mib\nw1,1000\n", "w.csv:2: wrong number of fields"},
		{"id,cpu_milli,memory_mib\nw1,\"1000,1024\n", "w.csv:2"},
		{"id,cpu_milli,memory_mib\n", "w.csv: no workers"},
	} {
		_, err := ReadWorkers(strings.NewReader(tc.in), "w.csv")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadWorkers(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func testFleet(t *testing.T) *Workload {
	t.Helper()
	ws, err := ReadWorkers(strings.NewReader(goodWorkers), "w.csv")
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorkload()
	w.Workers = ws
	return w
}

const goodPipelines = `{"id":"p1","tenant":"acme","priority":0,"submit_s":0,"jobs":[{"id":"build","cpu_milli":2000,"memory_mib":4096,"duration_s":300,"key":"acme/app/build"},{"id":"test","needs":["build"],"cpu_milli":1000,"memory_mib":2048,"duration_s":120.5,"labels":["amd64"]}]}

{"id":"p2","tenant":"ml","priority":10,"submit_s":12.25,"concurrency":{"group":"deploy","limit":1},"jobs":[{"id":"train","cpu_milli":4000,"memory_mib":8192,"gpu":1,"labels":["gpu"],"duration_s":600}]}
`

func TestReadPipelines(t *testing.T) {
	w := testFleet(t)
	if err := ReadPipelines(strings.NewReader(goodPipelines), "p.jsonl", w); err != nil {
		t.Fatal(err)
	}
	if len(w.Pipelines) != 2 || w.NumJobs() != 3 {
		t.Fatalf("got %d pipelines, %d jobs", len(w.Pipelines), w.NumJobs())
	}
	p1, p2 := w.Pipelines[0], w.Pipelines[1]
	if w.Tenants[p1.Tenant] != "acme" || p1.Jobs != 2 || p1.Group != -1 {
		t.Errorf("p1 = %+v", p1)
	}
	if w.Tenants[p2.Tenant] != "ml" || p2.Priority != 10 || p2.Submit != 12250*time.Millisecond ||
		w.Groups[p2.Group] != "deploy" || p2.Limit != 1 {
		t.Errorf("p2 = %+v", p2)
	}
	test := p1.First + 1
	if got := w.JobNeeds(test); len(got) != 1 || got[0] != p1.First {
		t.Errorf("needs of test = %v", got)
	}
	if w.JobDur[test] != 120500*time.Millisecond || w.Strings[w.JobKey[test]] != "test" ||
		w.Strings[w.JobKey[p1.First]] != "acme/app/build" {
		t.Errorf("test: duration %v, key %q", w.JobDur[test], w.Strings[w.JobKey[test]])
	}
	if got := w.CriticalPath(0); got != 420500*time.Millisecond {
		t.Errorf("critical path of p1 = %v, want 7m0.5s", got)
	}
	if w.JobGPU[p2.First] != 1 || strings.Join(w.Labels[w.JobLabels[p2.First]], ",") != "gpu" {
		t.Errorf("train: gpu %d labels %v", w.JobGPU[p2.First], w.Labels[w.JobLabels[p2.First]])
	}

	// Writing and reading back gives the same workload.
	var ws, ps bytes.Buffer
	if err := w.WriteWorkers(&ws); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePipelines(&ps); err != nil {
		t.Fatal(err)
	}
	w2 := NewWorkload()
	var err error
	if w2.Workers, err = ReadWorkers(bytes.NewReader(ws.Bytes()), "w2.csv"); err != nil {
		t.Fatal(err)
	}
	if err := ReadPipelines(bytes.NewReader(ps.Bytes()), "p2.jsonl", w2); err != nil {
		t.Fatal(err)
	}
	var ps2 bytes.Buffer
	if err := w2.WritePipelines(&ps2); err != nil {
		t.Fatal(err)
	}
	if ps.String() != ps2.String() {
		t.Errorf("round trip changed the pipelines:\n%s\n%s", ps.String(), ps2.String())
	}
}

func TestReadPipelinesErrors(t *testing.T) {
	ok := `{"id":"p1","submit_s":0,"jobs":[{"id":"a","cpu_milli":1000,"memory_mib":1024,"duration_s":1}]}` + "\n"
	for _, tc := range []struct{ in, want string }{
		{"", "p.jsonl: no pipelines"},
		{ok + `{"id":"p2",`, "p.jsonl:2: invalid pipeline"},
		{ok + "\n" + `{"id":"p2" "jobs":[]}`, "p.jsonl:3: invalid JSON at byte"},
		{ok + ok, `p.jsonl:2: pipeline "p1" already defined on line 1`},
		{`{"id":"p","jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1,"dur":3}]}`, `p.jsonl:1: invalid pipeline: json: unknown field "dur"`},
		{`{"id":"p","jobs":[]}`, `p.jsonl:1: pipeline "p" has no jobs`},
		{`{"jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `p.jsonl:1: pipeline has no "id"`},
		{`{"id":"p","jobs":[{"cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `p.jsonl:1: pipeline "p": job 1 has no "id"`},
		{`{"id":"p","jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1},{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `two jobs have id "a"`},
		{ok + `{"id":"p","jobs":[{"id":"a","needs":["b"],"cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `p.jsonl:2: pipeline "p": job "a" needs "b", which is not a job of the pipeline`},
		{`{"id":"p","jobs":[{"id":"a","needs":["a"],"cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `job "a" needs itself`},
		{`{"id":"p","jobs":[{"id":"a","needs":["b"],"cpu_milli":1,"memory_mib":1,"duration_s":1},{"id":"b","needs":["a"],"cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, "p.jsonl:1: pipeline \"p\": needs form a cycle among jobs a, b"},
		{`{"id":"p","jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":0}]}`, `job "a": duration_s must be positive`},
		{`{"id":"p","jobs":[{"id":"a","cpu_milli":-1,"memory_mib":1,"duration_s":1}]}`, `job "a": negative resource request`},
		{`{"id":"p","priority":101,"jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `priority 101 is outside -100..100`},
		{`{"id":"p","priority":-101,"jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `priority -101 is outside -100..100`},
		{`{"id":"p","submit_s":-1,"jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `negative submit_s`},
		{`{"id":"p","concurrency":{"group":"g"},"jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"duration_s":1}]}`, `concurrency group "g" needs a positive limit`},
		{ok + ok[:len(ok)-1] + ok, "p.jsonl:2: more than one JSON value"},
		{ok + `{"id":"big","jobs":[{"id":"a","cpu_milli":16000,"memory_mib":1,"duration_s":1}]}`, `p.jsonl:2: pipeline "big": job "a" (cpu_milli 16000, memory_mib 1, gpu 0, labels []) fits no worker of the fleet`},
		{`{"id":"arm","jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"labels":["arm64"],"duration_s":1}]}`, `fits no worker`},
		{`{"id":"g","jobs":[{"id":"a","cpu_milli":1,"memory_mib":1,"gpu":2,"duration_s":1}]}`, `fits no worker`},
	} {
		w := testFleet(t)
		err := ReadPipelines(strings.NewReader(tc.in), "p.jsonl", w)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadPipelines(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestReadPipelinesLongLine(t *testing.T) {
	// One pipeline of 20,000 jobs: a line of about 1.5 MB, longer than the
	// reader's buffer.
	var b strings.Builder
	b.WriteString(`{"id":"wide","jobs":[`)
	for i := range 20000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":"j` + strings.Repeat("x", 20) + strconv.Itoa(i) + `","cpu_milli":1000,"memory_mib":1024,"duration_s":1}`)
	}
	b.WriteString("]}\n")
	w := testFleet(t)
	if err := ReadPipelines(strings.NewReader(b.String()), "wide.jsonl", w); err != nil {
		t.Fatal(err)
	}
	if w.NumJobs() != 20000 {
		t.Errorf("got %d jobs", w.NumJobs())
	}
}
