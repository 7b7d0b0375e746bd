package sim

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// LoadFiles reads a workload from a workers CSV file and a pipelines JSON
// lines file. Every job must fit at least one worker of the fleet.
func LoadFiles(workersPath, pipelinesPath string) (*Workload, error) {
	wf, err := os.Open(workersPath)
	if err != nil {
		return nil, err
	}
	defer wf.Close()
	workers, err := ReadWorkers(wf, workersPath)
	if err != nil {
		return nil, err
	}
	pf, err := os.Open(pipelinesPath)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	w := NewWorkload()
	w.Workers = workers
	w.Source = fmt.Sprintf("%s + %s", workersPath, pipelinesPath)
	if err := ReadPipelines(pf, pipelinesPath, w); err != nil {
		return nil, err
	}
	return w, nil
}

var workerColumns = []string{"id", "cpu_milli", "memory_mib", "gpu", "labels", "cost_per_hour"}

// ReadWorkers reads a workers CSV: a header naming the columns id,
// cpu_milli, memory_mib, gpu, labels (separated by ";") and cost_per_hour,
// in any order (labels, gpu and cost_per_hour may be left out), then one
// worker a line. Errors name the file (name) and line.
func ReadWorkers(r io.Reader, name string) ([]Worker, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file: want a header line %q", name, strings.Join(workerColumns, ","))
	}
	if err != nil {
		return nil, csvErr(name, err)
	}
	col := map[string]int{}
	for i, h := range head {
		h = strings.TrimSpace(strings.ToLower(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range workerColumns {
			known = known || c == h
		}
		if !known {
			return nil, fmt.Errorf("%s:1: unknown column %q (want %s)", name, h, strings.Join(workerColumns, ","))
		}
		if _, dup := col[h]; dup {
			return nil, fmt.Errorf("%s:1: column %q appears twice", name, h)
		}
		col[h] = i
	}
	for _, c := range []string{"id", "cpu_milli", "memory_mib"} {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("%s:1: missing column %q (header: %s)", name, c, strings.Join(workerColumns, ","))
		}
	}
	var out []Worker
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvErr(name, err)
		}
		line, _ := cr.FieldPos(0)
		get := func(c string) string {
			if i, ok := col[c]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		wk := Worker{ID: get("id")}
		if wk.ID == "" {
			return nil, fmt.Errorf("%s:%d: empty id", name, line)
		}
		if prev, dup := seen[wk.ID]; dup {
			return nil, fmt.Errorf("%s:%d: worker %q already defined on line %d", name, line, wk.ID, prev)
		}
		seen[wk.ID] = line
		ints := []struct {
			col      string
			dst      *int64
			optional bool
		}{{"cpu_milli", &wk.CPUMilli, false}, {"memory_mib", &wk.MemoryMiB, false}}
		for _, f := range ints {
			v, err := strconv.ParseInt(get(f.col), 10, 64)
			if err != nil || v <= 0 {
				return nil, fmt.Errorf("%s:%d: worker %q: %s %q: want a positive integer", name, line, wk.ID, f.col, get(f.col))
			}
			*f.dst = v
		}
		if s := get("gpu"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("%s:%d: worker %q: gpu %q: want a non-negative integer", name, line, wk.ID, s)
			}
			wk.GPU = v
		}
		if s := get("cost_per_hour"); s != "" {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, fmt.Errorf("%s:%d: worker %q: cost_per_hour %q: want a non-negative number", name, line, wk.ID, s)
			}
			wk.CostPerHour = v
		}
		for _, l := range strings.Split(get("labels"), ";") {
			if l = strings.TrimSpace(l); l != "" {
				wk.Labels = append(wk.Labels, l)
			}
		}
		out = append(out, wk)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no workers", name)
	}
	return out, nil
}

func csvErr(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s:%d: %v", name, pe.Line, pe.Err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

type jsonJob struct {
	ID        string   `json:"id"`
	Needs     []string `json:"needs,omitempty"`
	CPUMilli  int64    `json:"cpu_milli"`
	MemoryMiB int64    `json:"memory_mib"`
	GPU       int64    `json:"gpu,omitempty"`
	Labels    []string `json:"labels,omitempty"`
	DurationS float64  `json:"duration_s"`
	Key       string   `json:"key,omitempty"`
}

type jsonConcurrency struct {
	Group string `json:"group"`
	Limit int    `json:"limit"`
}

type jsonPipeline struct {
	ID          string           `json:"id"`
	Tenant      string           `json:"tenant"`
	Priority    int              `json:"priority"`
	SubmitS     float64          `json:"submit_s"`
	Concurrency *jsonConcurrency `json:"concurrency,omitempty"`
	Jobs        []jsonJob        `json:"jobs"`
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }

// ReadPipelines streams JSON lines, one pipeline each, into w, whose
// workers must already be set: every job must fit one of them. Blank lines
// are skipped. Errors name the file (name) and line.
func ReadPipelines(r io.Reader, name string, w *Workload) error {
	br := bufio.NewReaderSize(r, 1<<20)
	fit := newFitter(w)
	seen := map[string]int{}
	var buf []byte
	for line := 1; ; line++ {
		buf = buf[:0]
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			buf = append(buf, chunk...)
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if t := bytes.TrimSpace(buf); len(t) > 0 {
			if perr := parsePipeline(t, w, fit, seen, line); perr != nil {
				return fmt.Errorf("%s:%d: %w", name, line, perr)
			}
		}
		if err == io.EOF {
			break
		}
	}
	if len(w.Pipelines) == 0 {
		return fmt.Errorf("%s: no pipelines", name)
	}
	return nil
}

func parsePipeline(data []byte, w *Workload, fit *fitter, seen map[string]int, line int) error {
	var jp jsonPipeline
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jp); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, err)
		}
		return fmt.Errorf("invalid pipeline: %v", err)
	}
	if dec.More() {
		return fmt.Errorf("more than one JSON value on the line (want one pipeline a line)")
	}
	if prev, dup := seen[jp.ID]; dup && jp.ID != "" {
		return fmt.Errorf("pipeline %q already defined on line %d", jp.ID, prev)
	}
	for _, v := range []float64{jp.SubmitS} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v > 1e9 {
			return fmt.Errorf("pipeline %q: submit_s %v out of range", jp.ID, v)
		}
	}
	p := PipelineIn{ID: jp.ID, Tenant: jp.Tenant, Priority: jp.Priority, Submit: seconds(jp.SubmitS)}
	if p.Tenant == "" {
		p.Tenant = "default"
	}
	if c := jp.Concurrency; c != nil {
		if c.Group == "" {
			return fmt.Errorf("pipeline %q: concurrency has no group", jp.ID)
		}
		p.Group, p.Limit = c.Group, c.Limit
	}
	p.Jobs = make([]JobIn, len(jp.Jobs))
	for i, j := range jp.Jobs {
		if math.IsNaN(j.DurationS) || j.DurationS > 1e9 {
			return fmt.Errorf("pipeline %q: job %q: duration_s %v out of range", jp.ID, j.ID, j.DurationS)
		}
		p.Jobs[i] = JobIn{ID: j.ID, Needs: j.Needs, CPUMilli: j.CPUMilli, MemMiB: j.MemoryMiB, GPU: j.GPU,
			Labels: j.Labels, Duration: seconds(j.DurationS), Key: j.Key}
	}
	n := len(w.Pipelines)
	if err := w.AddPipeline(p); err != nil {
		return err
	}
	seen[jp.ID] = line
	pl := w.Pipelines[n]
	for j := pl.First; j < pl.First+pl.Jobs; j++ {
		if !fit.fits(int64(w.JobCPU[j]), int64(w.JobMemMiB[j]), int64(w.JobGPU[j]), w.JobLabels[j]) {
			err := fmt.Errorf("pipeline %q: job %q (cpu_milli %d, memory_mib %d, gpu %d, labels %v) fits no worker of the fleet",
				pl.ID, w.Strings[w.JobName[j]], w.JobCPU[j], w.JobMemMiB[j], w.JobGPU[j], w.Labels[w.JobLabels[j]])
			w.truncate(n)
			return err
		}
	}
	return nil
}

// truncate drops pipelines n and after.
func (w *Workload) truncate(n int) {
	if n >= len(w.Pipelines) {
		return
	}
	first := w.Pipelines[n].First
	w.Pipelines = w.Pipelines[:n]
	w.JobName, w.JobKey, w.JobLabels = w.JobName[:first], w.JobKey[:first], w.JobLabels[:first]
	w.JobCPU, w.JobMemMiB, w.JobGPU, w.JobDur = w.JobCPU[:first], w.JobMemMiB[:first], w.JobGPU[:first], w.JobDur[:first]
	w.Needs = w.Needs[:w.NeedStart[first]]
	w.NeedStart = w.NeedStart[:first+1]
}

// WriteWorkers writes the fleet as the CSV ReadWorkers reads.
func (w *Workload) WriteWorkers(out io.Writer) error {
	bw := bufio.NewWriter(out)
	cw := csv.NewWriter(bw)
	if err := cw.Write(workerColumns); err != nil {
		return err
	}
	for _, wk := range w.Workers {
		rec := []string{wk.ID, strconv.FormatInt(wk.CPUMilli, 10), strconv.FormatInt(wk.MemoryMiB, 10),
			strconv.Itoa(wk.GPU), strings.Join(wk.Labels, ";"), strconv.FormatFloat(wk.CostPerHour, 'f', -1, 64)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// WritePipelines writes the pipelines as the JSON lines ReadPipelines reads,
// in the workload's order.
func (w *Workload) WritePipelines(out io.Writer) error {
	bw := bufio.NewWriterSize(out, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, p := range w.Pipelines {
		jp := jsonPipeline{ID: p.ID, Tenant: w.Tenants[p.Tenant], Priority: int(p.Priority), SubmitS: p.Submit.Seconds()}
		if p.Group >= 0 {
			jp.Concurrency = &jsonConcurrency{Group: w.Groups[p.Group], Limit: int(p.Limit)}
		}
		jp.Jobs = make([]jsonJob, p.Jobs)
		for k := range jp.Jobs {
			j := p.First + int32(k)
			jj := jsonJob{ID: w.Strings[w.JobName[j]], CPUMilli: int64(w.JobCPU[j]), MemoryMiB: int64(w.JobMemMiB[j]),
				GPU: int64(w.JobGPU[j]), Labels: w.Labels[w.JobLabels[j]], DurationS: w.JobDur[j].Seconds(), Key: w.Strings[w.JobKey[j]]}
			for _, n := range w.JobNeeds(j) {
				jj.Needs = append(jj.Needs, w.Strings[w.JobName[n]])
			}
			jp.Jobs[k] = jj
		}
		if err := enc.Encode(&jp); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteFiles writes the workload's fleet and pipelines to two files.
func (w *Workload) WriteFiles(workersPath, pipelinesPath string) error {
	write := func(path string, fn func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
		return f.Close()
	}
	if err := write(workersPath, w.WriteWorkers); err != nil {
		return err
	}
	return write(pipelinesPath, w.WritePipelines)
}
