package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// unavailable answers errors that say the server cannot take the request
// now; it reports whether err was one.
func unavailable(w http.ResponseWriter, err error) bool {
	switch {
	case errors.Is(err, orchestrator.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeError(w, wire.CodeUnavailable, "the server is busy; retry shortly")
	case errors.Is(err, orchestrator.ErrStopped):
		// A leader stepping down (several servers) or a server
		// stopping: another takes the request shortly.
		w.Header().Set("Retry-After", "2")
		writeError(w, wire.CodeUnavailable, "the orchestrator is not running")
	case errors.Is(err, orchestrator.ErrNotLeader):
		w.Header().Set("Retry-After", "2")
		writeError(w, wire.CodeUnavailable, "no server leads now (a new leader is being elected); retry shortly, on any server")
	case errors.Is(err, store.ErrUnavailable):
		// A database restarting or failing over: nothing was done, or
		// the answer was lost (a key makes the retry safe).
		w.Header().Set("Retry-After", "2")
		writeError(w, wire.CodeUnavailable, "the store cannot be reached now; retry shortly: "+err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeError(w, wire.CodeUnavailable, "request not completed: "+err.Error())
	default:
		return false
	}
	return true
}

// storeError answers an error of a store read.
func (a *api) storeError(w http.ResponseWriter, r *http.Request, err error, what string) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, wire.CodeNotFound, what+" not found")
		return
	}
	if unavailable(w, err) {
		return
	}
	a.log.Error("store read failed", "request_id", RequestID(r.Context()), "what", what, "err", err)
	// A database restarting or failing over: the read is worth trying
	// again shortly.
	w.Header().Set("Retry-After", "2")
	writeError(w, wire.CodeUnavailable, "store: "+err.Error())
}

func bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, wire.CodeTooLarge,
			fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
		return
	}
	writeError(w, wire.CodeBadRequest, "reading the request body: "+err.Error())
}

func validLabel(s string) bool {
	if len(s) > 255 {
		return false
	}
	i, _ := pipeline.ControlChar(s)
	return i < 0
}

func (a *api) submit(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	if a.d.Submit == nil {
		writeError(w, wire.CodeUnavailable, "this server does not accept runs")
		return
	}
	q := r.URL.Query()
	file, tenant := q.Get("file"), q.Get("tenant")
	var data []byte
	var inputs map[string]string
	var includes map[string][]byte
	ct := r.Header.Get("Content-Type")
	mt := ""
	if ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			writeError(w, wire.CodeBadRequest, "bad Content-Type: "+err.Error())
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.submitBodyLimit(mt == "application/json"))
	tooLarge := func(size int64) {
		writeError(w, wire.CodeTooLarge,
			pipeline.SizeError("the pipeline", size, a.maxPipeline()).Msg+" (server flag --max-pipeline-bytes)")
	}
	switch mt {
	case "application/json":
		var req wire.SubmitRequest
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				tooLarge(-1)
				return
			}
			writeError(w, wire.CodeBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			bodyError(w, err)
			return
		}
		if len(req.Pipeline) > a.maxPipeline() {
			tooLarge(int64(len(req.Pipeline)))
			return
		}
		if req.Pipeline == "" {
			writeError(w, wire.CodeBadRequest, `"pipeline" (the pipeline file's YAML text) is required`)
			return
		}
		data = []byte(req.Pipeline)
		inputs = req.Inputs
		for name, text := range req.Includes {
			if len(text) > a.maxPipeline() {
				tooLarge(int64(len(text)))
				return
			}
			if includes == nil {
				includes = make(map[string][]byte, len(req.Includes))
			}
			includes[name] = []byte(text)
		}
		if req.File != "" {
			file = req.File
		}
		if req.Tenant != "" {
			tenant = req.Tenant
		}
	case "", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain", "application/octet-stream":
		var err error
		if data, err = io.ReadAll(r.Body); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				tooLarge(-1)
				return
			}
			bodyError(w, err)
			return
		}
	default:
		writeError(w, wire.CodeUnsupported,
			"send the pipeline as application/yaml (or text/plain), or as application/json {\"file\", \"pipeline\", \"tenant\"}")
		return
	}
	if file == "" {
		file = "pipeline.yaml"
	}
	if !validLabel(file) || !validLabel(tenant) {
		writeError(w, wire.CodeBadRequest, "file and tenant must be at most 255 printable characters (no control or bidirectional formatting characters)")
		return
	}
	if tenant != "" && !auth.ValidTenant(tenant) {
		writeError(w, wire.CodeBadRequest,
			fmt.Sprintf("invalid tenant %q: a tenant's name matches %s", tenant, auth.TenantPattern))
		return
	}
	key, ok := idempotencyKey(w, r)
	if !ok {
		return
	}
	run, err := a.d.Submit(r.Context(), Submission{File: file, Data: data, Tenant: tenant, Inputs: inputs, Includes: includes, Key: key})
	a.submitted(w, r, file, run, err)
	if err == nil {
		traceSubmit(r, run.ID, began)
	}
}

// submitted answers a submission of file: the new run (201), or why there
// is none.
func (a *api) submitted(w http.ResponseWriter, r *http.Request, file string, run store.Run, err error) {
	if err != nil {
		var bad pipeline.InputErrors
		if errors.As(err, &bad) {
			body := wire.Error{Code: wire.CodeInvalidInputs, Message: bad.Error(), Details: make([]wire.ErrorDetail, len(bad))}
			for i, e := range bad {
				body.Details[i] = wire.ErrorDetail{File: file, Field: "inputs." + e.Input, Message: e.Msg}
			}
			writeJSON(w, wire.CodeInvalidInputs.Status(), body)
			return
		}
		if details, ok := cli.ErrorDetails(err); ok {
			list, _ := yamlpos.AsErrorList(err)
			body := wire.Error{Code: wire.CodeInvalidPipeline, Details: details}
			msgs := make([]string, len(list))
			for i, e := range list {
				msgs[i] = e.Error()
			}
			body.Message = strings.Join(msgs, "\n")
			writeJSON(w, wire.CodeInvalidPipeline.Status(), body)
			return
		}
		if errors.Is(err, orchestrator.ErrTooManyRuns) {
			w.Header().Set("Retry-After", "30")
			writeError(w, wire.CodeTooManyRequests, err.Error())
			return
		}
		if unavailable(w, err) {
			return
		}
		a.log.Error("submit failed", "request_id", RequestID(r.Context()), "err", err)
		writeError(w, wire.CodeInternal, "submit: "+err.Error())
		return
	}
	noteRun(r, run.ID)
	w.Header().Set("Location", "/api/v1/runs/"+run.ID)
	writeJSON(w, http.StatusCreated, RunJSON(run, nil, time.Now()))
}

func (a *api) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.RunFilter{State: state.RunState(q.Get("state")), Tenant: q.Get("tenant"), Before: q.Get("before"), Limit: 50}
	if f.State != "" && !f.State.Valid() {
		writeError(w, wire.CodeBadRequest,
			fmt.Sprintf("unknown state %q (one of %s)", f.State, strings.Join(state.Names(state.RunStates), ", ")))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, wire.CodeBadRequest, "limit must be a number from 1 to 1000")
			return
		}
		f.Limit = n
	}
	runs, err := a.d.Store.ListRuns(r.Context(), f)
	if err != nil {
		a.storeError(w, r, err, "runs")
		return
	}
	now := time.Now()
	out := wire.RunList{Runs: make([]wire.Run, len(runs))}
	for i, run := range runs {
		out.Runs[i] = RunJSON(run, nil, now)
	}
	a.addTriggers(r, out.Runs, false)
	if len(runs) == f.Limit {
		out.Next = runs[len(runs)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// loadRun reads the run of the path and its jobs, answering errors itself.
// loadJob loads the run of the path's id, as loadRun does, and its job of
// the path's job (an id or a key): a run without it is not found.
func (a *api) loadJob(w http.ResponseWriter, r *http.Request) (store.Run, store.Job, bool) {
	run, jobs, ok := a.loadRun(w, r)
	if !ok {
		return store.Run{}, store.Job{}, false
	}
	name := r.PathValue("job")
	j, found := findJob(jobs, name)
	if !found {
		writeError(w, wire.CodeNotFound, fmt.Sprintf("run %s has no job %q", run.ID, name))
		return store.Run{}, store.Job{}, false
	}
	return run, j, true
}

func (a *api) loadRun(w http.ResponseWriter, r *http.Request) (store.Run, []store.Job, bool) {
	id := r.PathValue("id")
	noteRun(r, id)
	run, jobs, err := a.runWithJobs(r, id)
	if err != nil {
		a.storeError(w, r, err, "run "+id)
		return store.Run{}, nil, false
	}
	return run, jobs, true
}

func (a *api) getRun(w http.ResponseWriter, r *http.Request) {
	run, jobs, ok := a.loadRun(w, r)
	if !ok {
		return
	}
	if body, ok := a.runs.answer(run.ID); ok {
		writeBody(w, http.StatusOK, body)
		return
	}
	if jobs == nil {
		jobs = []store.Job{}
	}
	out := RunJSON(run, jobs, time.Now())
	one := []wire.Run{out}
	a.addTriggers(r, one, true)
	out = one[0]
	a.predict(r.Context(), out.Jobs)
	body, err := json.Marshal(out)
	if err != nil {
		writeJSON(w, http.StatusOK, out) // answers the encoding error
		return
	}
	body = append(body, '\n')
	a.runs.keepAnswer(run.ID, body) // only a finished run is in the cache
	writeBody(w, http.StatusOK, body)
}

// predict adds the scheduler's predicted duration and ETA to the jobs that
// have not ended, and to queued jobs why they wait. It is best effort: a
// busy orchestrator leaves them out.
func (a *api) predict(ctx context.Context, jobs []wire.Job) {
	var ids []string
	for _, j := range jobs {
		if !j.State.Final() {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 || a.d.Orch == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	outlooks, err := a.d.Orch.Outlook(ctx, ids)
	if err != nil {
		return
	}
	now := time.Now()
	for i := range jobs {
		ol, ok := outlooks[jobs[i].ID]
		if !ok {
			continue
		}
		if jobs[i].State == state.JobQueued || jobs[i].State == state.JobPending {
			jobs[i].Reason, jobs[i].ReasonDetail = string(ol.Waiting.Code), ol.Waiting.Detail
		}
		d := ol.Predicted
		jobs[i].PredictedSeconds = d.Seconds()
		eta := now.Add(d)
		if jobs[i].State == state.JobRunning && jobs[i].StartedAt != nil {
			eta = jobs[i].StartedAt.Add(d)
			if eta.Before(now) {
				eta = now // running past its prediction: any moment now
			}
		}
		eta = eta.UTC().Truncate(time.Millisecond)
		jobs[i].ETA = &eta
	}
}

func (a *api) jobWithAttempts(ctx context.Context, j store.Job, now time.Time) (wire.Job, error) {
	out := JobJSON(j, now)
	atts, err := a.d.Store.ListAttempts(ctx, j.ID)
	if err != nil {
		return out, err
	}
	out.Attempts = make([]wire.Attempt, len(atts))
	for i, at := range atts {
		out.Attempts[i] = AttemptJSON(at)
	}
	return out, nil
}

func (a *api) listJobs(w http.ResponseWriter, r *http.Request) {
	_, jobs, ok := a.loadRun(w, r)
	if !ok {
		return
	}
	now := time.Now()
	out := wire.JobList{Jobs: make([]wire.Job, len(jobs))}
	for i, j := range jobs {
		var err error
		if out.Jobs[i], err = a.jobWithAttempts(r.Context(), j, now); err != nil {
			a.storeError(w, r, err, "attempts of job "+j.ID)
			return
		}
	}
	a.predict(r.Context(), out.Jobs)
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getJob(w http.ResponseWriter, r *http.Request) {
	_, j, ok := a.loadJob(w, r)
	if !ok {
		return
	}
	out, err := a.jobWithAttempts(r.Context(), j, time.Now())
	if err != nil {
		a.storeError(w, r, err, "attempts of job "+j.ID)
		return
	}
	one := []wire.Job{out}
	a.predict(r.Context(), one)
	writeJSON(w, http.StatusOK, one[0])
}

// queryFlag reads a yes/no query parameter: set is false when it is absent
// or says neither.
func queryFlag(r *http.Request, name string) (on, set bool) {
	switch strings.ToLower(r.URL.Query().Get(name)) {
	case "1", "true", "yes":
		return true, true
	case "0", "false", "no":
		return false, true
	}
	return false, false
}

// queryBool is a yes/no query parameter, no when absent.
func queryBool(r *http.Request, name string) bool {
	on, _ := queryFlag(r, name)
	return on
}

func wantsFollow(r *http.Request) bool {
	if on, set := queryFlag(r, "follow"); set {
		return on
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

func (a *api) logs(w http.ResponseWriter, r *http.Request) {
	run, jobs, ok := a.loadRun(w, r)
	if !ok {
		return
	}
	name := r.URL.Query().Get("job")
	if name != "" {
		j, found := findJob(jobs, name)
		if !found {
			writeError(w, wire.CodeNotFound, fmt.Sprintf("run %s has no job %q", run.ID, name))
			return
		}
		jobs = []store.Job{j}
	}
	if wantsFollow(r) {
		a.streamLogs(w, r, run.ID, name)
		return
	}
	if r.URL.Query().Get("format") == "jsonl" {
		a.jsonLogs(w, r, jobs)
		return
	}
	a.plainLogs(w, r, jobs, name == "")
}

// jsonLogs writes the stored output of jobs as JSON lines, one
// wire.LogEvent (with its job, attempt, step and time) a chunk, job after
// job.
func (a *api) jsonLogs(w http.ResponseWriter, r *http.Request, jobs []store.Job) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	beforeWrite := a.longResponse(w)
	enc := json.NewEncoder(w)
	for _, j := range jobs {
		ok := a.eachLogChunk(w, r, j, j.ID == jobs[0].ID, beforeWrite, func(c store.LogChunk) error {
			return enc.Encode(wire.LogEvent{JobID: j.ID, JobKey: j.Key, Attempt: c.Attempt, Step: c.Step, Seq: c.Seq, Data: string(c.Data), At: c.At})
		})
		if !ok {
			return
		}
	}
}

// eachLogChunk calls fn with each stored chunk of j's output, in order,
// reading a page at a time (beforePage is called before each). It returns
// false when fn failed (the client went away) or the store did: that is
// logged and, if first (nothing written yet), answered.
func (a *api) eachLogChunk(w http.ResponseWriter, r *http.Request, j store.Job, first bool, beforePage func(), fn func(store.LogChunk) error) bool {
	var attempt int
	var seq int64
	for {
		beforePage()
		chunks, err := a.d.Store.ReadLogs(r.Context(), j.ID, attempt, seq, logPage)
		if err != nil {
			a.log.Warn("read logs", "request_id", RequestID(r.Context()), "job", j.ID, "err", err)
			if first && attempt == 0 && seq == 0 {
				a.storeError(w, r, err, "logs of job "+j.ID)
			}
			return false
		}
		for _, c := range chunks {
			if err := fn(c); err != nil {
				return false
			}
			attempt, seq = c.Attempt, c.Seq
		}
		if len(chunks) < logPage {
			return true
		}
	}
}

// plainLogs writes the stored output of jobs, each line prefixed with its
// job's key when prefix is set, as it is otherwise. With ?timestamps=1, each
// line starts with the time its chunk was stored (see stampLines). The
// output of a job that ran more than once is cut by a line
// "--- attempt N ---" before each attempt's output.
func (a *api) plainLogs(w http.ResponseWriter, r *http.Request, jobs []store.Job, prefix bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	timestamps := queryBool(r, "timestamps")
	beforeWrite := a.longResponse(w)
	var lines *cli.Lines
	if prefix {
		lines = cli.NewLines(w, cli.KeyPrefix)
	}
	for _, j := range jobs {
		var attempt int
		open := false // the job's last line has no newline yet
		stamps := stampLines{}
		write := func(data []byte) error {
			if len(data) == 0 {
				return nil
			}
			open = data[len(data)-1] != '\n'
			if lines != nil {
				return lines.Write(j.Key, data)
			}
			_, err := w.Write(data)
			return err
		}
		ok := a.eachLogChunk(w, r, j, j.ID == jobs[0].ID, beforeWrite, func(c store.LogChunk) error {
			if c.Attempt != attempt && j.Attempt > 1 {
				sep := fmt.Sprintf("--- attempt %d ---\n", c.Attempt)
				if open {
					sep = "\n" + sep
				}
				stamps.lineOpen = false
				if err := write([]byte(sep)); err != nil {
					return err
				}
			}
			data := c.Data
			if timestamps {
				data = stamps.stamp(c.At, data)
			}
			attempt = c.Attempt
			return write(data)
		})
		if !ok {
			return
		}
		if lines != nil {
			if err := lines.Flush(j.Key); err != nil {
				return
			}
		}
	}
}

// stampTime is how a log line's time is written: RFC 3339 in UTC, with
// milliseconds.
const stampTime = "2006-01-02T15:04:05.000Z07:00"

// stampLines prefixes each line of one job's output with the time of the
// chunk the line starts in.
type stampLines struct {
	lineOpen bool // the last chunk ended inside a line
}

func (s *stampLines) stamp(at time.Time, data []byte) []byte {
	ts := at.UTC().Format(stampTime) + " "
	out := make([]byte, 0, len(data)+len(ts)*(1+bytes.Count(data, []byte("\n"))))
	for len(data) > 0 {
		if !s.lineOpen {
			out = append(out, ts...)
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data...)
			s.lineOpen = true
			break
		}
		out = append(out, data[:i+1]...)
		data = data[i+1:]
		s.lineOpen = false
	}
	return out
}

// streamLogs follows a run as Server-Sent Events.
func (a *api) streamLogs(w http.ResponseWriter, r *http.Request, runID, job string) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	beforeWrite := a.longResponse(w)
	beforeWrite()
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	ctx, cancel := a.streamContext(r)
	defer cancel()
	err := Follow(ctx, a.d.Store, a.hub, FollowOptions{RunID: runID, Job: job, Heartbeat: a.heartbeat, Resync: a.d.FollowResync,
		OnLag: func() { a.log.Debug("log follower lagged; catching up", "run_id", runID) },
	}, func(ev wire.Event) error {
		beforeWrite()
		if err := writeEvent(w, ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("log stream ended early", "request_id", RequestID(r.Context()), "run_id", runID, "err", err)
	}
}

// writeEvent writes one SSE event.
func writeEvent(w io.Writer, ev wire.Event) error {
	var v any
	switch ev.Type {
	case wire.EventPing:
		_, err := io.WriteString(w, ": ping\n\n")
		return err
	case wire.EventLog:
		v = ev.Log
	case wire.EventJob:
		v = ev.Job
	case wire.EventRun:
		v = ev.Run
	case wire.EventEnd:
		v = ev.End
	default:
		return fmt.Errorf("unknown event type %q", ev.Type)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, data)
	return err
}

func (a *api) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	noteRun(r, id)
	err := a.d.Orch.Cancel(r.Context(), id)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		writeError(w, wire.CodeNotFound, "run "+id+" not found")
		return
	case errors.Is(err, orchestrator.ErrRunFinal):
		msg := "run " + id + " has already ended"
		if run, gerr := a.d.Store.GetRun(r.Context(), id); gerr == nil {
			msg += " (" + string(run.State) + ")"
		}
		writeError(w, wire.CodeRunFinal, msg)
		return
	default:
		if unavailable(w, err) {
			return
		}
		a.log.Error("cancel failed", "request_id", RequestID(r.Context()), "run_id", id, "err", err)
		writeError(w, wire.CodeUnavailable, "cancel: "+err.Error())
		return
	}
	forgetRun(r) // the run as authorized is the run before the cancel
	run, jobs, ok := a.loadRun(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusAccepted, RunJSON(run, jobs, time.Now()))
}

// LostWorkerAge is how long a lost worker stays in GET /workers after its
// last heartbeat; past it, only ?all=true lists it.
const LostWorkerAge = 10 * time.Minute

// workers lists the workers. They are shared by every tenant, so everyone
// who may read them sees them all, with their capacity and use; but the
// ids of the jobs on them are listed only to whom may read every tenant's
// runs, or else only the jobs of the principal's tenant (see jobFilter).
func (a *api) workers(w http.ResponseWriter, r *http.Request) {
	all := false
	if s := r.URL.Query().Get("all"); s != "" {
		var err error
		if all, err = strconv.ParseBool(s); err != nil {
			writeError(w, wire.CodeBadRequest, fmt.Sprintf("all=%q: want true or false", s))
			return
		}
	}
	out := wire.WorkerList{Workers: []wire.Worker{}}
	now := time.Now()
	keep := a.jobFilter(r)
	if v := a.d.Orch.View(); v != nil {
		for _, x := range v.Workers {
			if !all && (x.State == state.WorkerLost || x.State == state.WorkerGone) && now.Sub(x.LastSeen) > LostWorkerAge {
				continue
			}
			if keep != nil {
				// x is a copy: the view's list of jobs stays whole.
				jobs := []string{}
				for _, id := range x.Jobs {
					if keep(id) {
						jobs = append(jobs, id)
					}
				}
				x.Jobs = jobs
			}
			out.Workers = append(out.Workers, x)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// jobFilter returns nil when the request may see every job (an open API,
// or a principal who may read the runs of every tenant), else a function
// that keeps the jobs of the principal's tenant. A job it cannot look up is
// not kept.
func (a *api) jobFilter(r *http.Request) func(jobID string) bool {
	p, ok := auth.FromContext(r.Context())
	if a.d.Auth == nil || !ok {
		return nil
	}
	if d, err := a.d.Authz.Authorize(r.Context(), authz.Request{Principal: p, Action: authz.ActRead, Resource: authz.Cluster()}); err == nil && d.Allow {
		return nil
	}
	tenants := map[string]string{} // run id -> tenant
	return func(id string) bool {
		j, err := a.d.Store.GetJob(r.Context(), id)
		if err != nil {
			return false
		}
		t, seen := tenants[j.RunID]
		if !seen {
			if run, err := a.d.Store.GetRun(r.Context(), j.RunID); err == nil {
				t = run.Tenant
			}
			tenants[j.RunID] = t
		}
		return t != "" && t == p.Tenant
	}
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// readyz answers 200 when the orchestrator's loop answers and the store
// answers a read.
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	// Ping goes through the orchestrator's loop and one store transaction.
	switch err := a.d.Orch.Ping(ctx); {
	case err == nil, errors.Is(err, orchestrator.ErrBusy):
	case errors.Is(err, orchestrator.ErrStopped):
		problems = append(problems, "orchestrator: not running")
	default:
		problems = append(problems, fmt.Sprintf("orchestrator: %v", err))
	}
	if _, err := a.d.Store.ListRuns(ctx, store.RunFilter{Limit: 1}); err != nil {
		problems = append(problems, "store: "+err.Error())
	}
	if len(problems) > 0 {
		writeError(w, wire.CodeUnavailable, strings.Join(problems, "; "))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
