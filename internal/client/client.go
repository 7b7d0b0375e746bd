// Package client is a typed client of Hodei's REST API.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// Types of the API, as the client returns them.
type (
	Run         = wire.Run
	Job         = wire.Job
	Attempt     = wire.Attempt
	Worker      = wire.Worker
	RunList     = wire.RunList
	ErrorDetail = wire.ErrorDetail
	Event       = wire.Event
	LogEvent    = wire.LogEvent
	JobEvent    = wire.JobEvent
	RunEvent    = wire.RunEvent
	PoolList    = wire.PoolList
	Pool        = wire.Pool
	Demand      = wire.Demand
)

// Error is an error answered by the API.
type Error struct {
	Status  int // HTTP status
	Code    wire.Code
	Message string
	Details []ErrorDetail
	// RetryAfter is the Retry-After header, if any.
	RetryAfter string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("hodei api: %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("hodei api: %s (%d %s)", e.Message, e.Status, e.Code)
}

// Client talks to one Hodei server.
type Client struct {
	base  string
	hc    *http.Client
	token string
	// SubmitRetry is how long Submit and SubmitRun send a submission
	// again while the server is unavailable (DefaultSubmitRetry when
	// zero; negative: never).
	SubmitRetry time.Duration
}

// SetToken makes the client send "Authorization: Bearer token" with every
// request (an API token, the local admin token, or an OIDC token); "" sends
// none. Call it before the client is used.
func (c *Client) SetToken(token string) { c.token = token }

// JSON calls an endpoint that answers JSON: in, if not nil, is sent as the
// JSON body, and the answer is decoded into out, if not nil.
func (c *Client) JSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	if out == nil {
		resp, err := c.do(ctx, method, path, q, body, ctype, "application/json")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	return c.getJSON(ctx, method, path, q, body, ctype, out)
}

// New returns a client of the server at base ("http://127.0.0.1:8080").
// A nil hc means a client without a timeout: use contexts to bound calls.
func New(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server address %q: want http://HOST:PORT", base)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(base, "/"), hc: hc}, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string, accept string) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if key, ok := ctx.Value(idemKey{}).(string); ok {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

func readError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	var body wire.Error
	if json.Unmarshal(data, &body) == nil && body.Code != "" {
		e.Code, e.Message, e.Details = body.Code, body.Message, body.Details
	} else {
		// Not an answer of the API (a proxy's, say): a code made of the
		// status text.
		e.Code = wire.Code(strings.ToLower(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_")))
		e.Message = strings.TrimSpace(string(data))
	}
	return e
}

func (c *Client) getJSON(ctx context.Context, method, path string, q url.Values, body io.Reader, ctype string, out any) error {
	resp, err := c.do(ctx, method, path, q, body, ctype, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("hodei api: decode %s %s: %w", method, path, err)
	}
	return nil
}

func runPath(id string, rest ...string) string {
	p := "/api/v1/runs/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// Submit submits a pipeline file (its YAML text) as a new run. file names
// it in error messages. An invalid file comes back as an *Error with Code
// "invalid_pipeline" and Details.
//
// The submission carries an Idempotency-Key (WithIdempotencyKey's, else a
// new one) and is sent again while the server answers 502, 503 or 504 or
// the connection fails, for up to SubmitRetry (2 minutes): with several
// servers, a failover makes no second run.
func (c *Client) Submit(ctx context.Context, file string, yaml []byte, tenant string) (Run, error) {
	ctx = ensureKey(ctx)
	var r Run
	err := c.retrySubmit(ctx, func() error {
		var err error
		r, err = c.submitOnce(ctx, file, yaml, tenant)
		return err
	})
	return r, err
}

func (c *Client) submitOnce(ctx context.Context, file string, yaml []byte, tenant string) (Run, error) {
	q := url.Values{}
	if file != "" {
		q.Set("file", file)
	}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	var r Run
	err := c.getJSON(ctx, http.MethodPost, "/api/v1/runs", q, bytes.NewReader(yaml), "application/yaml", &r)
	return r, err
}

// SubmitRun is Submit with values for the pipeline's inputs; the file is
// sent as JSON when there are some.
func (c *Client) SubmitRun(ctx context.Context, file string, yaml []byte, tenant string, inputs map[string]string) (Run, error) {
	return c.SubmitFiles(ctx, file, yaml, tenant, inputs, nil)
}

// SubmitFiles is SubmitRun with the files the pipeline includes, by name
// (pipeline.Pipeline.Includes); the file is sent as JSON when there are
// inputs or includes.
func (c *Client) SubmitFiles(ctx context.Context, file string, yaml []byte, tenant string, inputs map[string]string, includes map[string][]byte) (Run, error) {
	if len(inputs) == 0 && len(includes) == 0 {
		return c.Submit(ctx, file, yaml, tenant)
	}
	req := wire.SubmitRequest{File: file, Pipeline: string(yaml), Tenant: tenant, Inputs: inputs}
	for name, data := range includes {
		if req.Includes == nil {
			req.Includes = make(map[string]string, len(includes))
		}
		req.Includes[name] = string(data)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Run{}, err
	}
	ctx = ensureKey(ctx)
	var r Run
	err = c.retrySubmit(ctx, func() error {
		return c.getJSON(ctx, http.MethodPost, "/api/v1/runs", nil, bytes.NewReader(body), "application/json", &r)
	})
	return r, err
}

type idemKey struct{}

// WithIdempotencyKey returns a context whose submissions carry key as
// their Idempotency-Key: the server makes one run per key and tenant.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

// ensureKey gives ctx a new idempotency key unless it has one.
func ensureKey(ctx context.Context) context.Context {
	if _, ok := ctx.Value(idemKey{}).(string); ok {
		return ctx
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return WithIdempotencyKey(ctx, hex.EncodeToString(b))
}

// DefaultSubmitRetry is how long a submission is tried again by default.
const DefaultSubmitRetry = 2 * time.Minute

// retrySubmit calls send until it succeeds, fails with an answer that is
// not 502, 503 or 504 (nor a failed connection), or SubmitRetry has passed.
func (c *Client) retrySubmit(ctx context.Context, send func() error) error {
	limit := c.SubmitRetry
	if limit == 0 {
		limit = DefaultSubmitRetry
	}
	deadline := time.Now().Add(limit)
	wait := 250 * time.Millisecond
	for {
		err := send()
		if err == nil || limit < 0 || !retriable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		pause := wait
		var ae *Error
		if errors.As(err, &ae) {
			if s, perr := strconv.Atoi(ae.RetryAfter); perr == nil && s > 0 {
				pause = time.Duration(s) * time.Second
			}
		}
		pause = min(pause, time.Until(deadline))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		wait = min(wait*2, 4*time.Second)
	}
}

// retriable reports whether a submission that failed with err may be sent
// again: the server was unavailable or the connection failed.
func retriable(err error) bool {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status == http.StatusBadGateway || ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusGatewayTimeout
	}
	var ue *url.Error
	return errors.As(err, &ue) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// ListOptions filter ListRuns. Zero fields do not filter.
type ListOptions struct {
	State  string
	Tenant string
	Limit  int
	Before string // the Next of the previous page
}

// ListRuns lists runs, newest first.
func (c *Client) ListRuns(ctx context.Context, o ListOptions) (RunList, error) {
	q := url.Values{}
	if o.State != "" {
		q.Set("state", o.State)
	}
	if o.Tenant != "" {
		q.Set("tenant", o.Tenant)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Before != "" {
		q.Set("before", o.Before)
	}
	var l RunList
	err := c.getJSON(ctx, http.MethodGet, "/api/v1/runs", q, nil, "", &l)
	return l, err
}

// GetRun returns a run with its jobs.
func (c *Client) GetRun(ctx context.Context, id string) (Run, error) {
	var r Run
	err := c.getJSON(ctx, http.MethodGet, runPath(id), nil, nil, "", &r)
	return r, err
}

// Jobs returns the jobs of a run with their attempts.
func (c *Client) Jobs(ctx context.Context, run string) ([]Job, error) {
	var l wire.JobList
	err := c.getJSON(ctx, http.MethodGet, runPath(run, "jobs"), nil, nil, "", &l)
	return l.Jobs, err
}

// Job returns one job of a run, named by its id or its key, with its
// attempts.
func (c *Client) Job(ctx context.Context, run, job string) (Job, error) {
	var j Job
	err := c.getJSON(ctx, http.MethodGet, runPath(run, "jobs", url.PathEscape(job)), nil, nil, "", &j)
	return j, err
}

// Cancel cancels a run and returns it. A run already ended comes back as an
// *Error with Code "run_final".
func (c *Client) Cancel(ctx context.Context, id string) (Run, error) {
	var r Run
	err := c.getJSON(ctx, http.MethodPost, runPath(id, "cancel"), nil, nil, "", &r)
	return r, err
}

// Approve approves a job (its id or key) of a run that waits for an
// approval; Reject rejects it. Both return the job as decided.
func (c *Client) Approve(ctx context.Context, runID, job, comment string) (Job, error) {
	return c.decide(ctx, runID, job, "approve", comment)
}

// Reject rejects a job that waits for an approval: it fails.
func (c *Client) Reject(ctx context.Context, runID, job, comment string) (Job, error) {
	return c.decide(ctx, runID, job, "reject", comment)
}

func (c *Client) decide(ctx context.Context, runID, job, verb, comment string) (Job, error) {
	body, err := json.Marshal(wire.Decision{Comment: comment})
	if err != nil {
		return Job{}, err
	}
	var j Job
	err = c.getJSON(ctx, http.MethodPost, runPath(runID, "jobs", url.PathEscape(job), verb), nil, bytes.NewReader(body), "application/json", &j)
	return j, err
}

// Rerun makes a new run of a run's pipeline file, inputs and trigger;
// with failedOnly, only its failed and cancelled jobs and the jobs that
// need them run again, the others are carried over.
func (c *Client) Rerun(ctx context.Context, id string, failedOnly bool) (Run, error) {
	body, err := json.Marshal(wire.RerunRequest{FailedOnly: failedOnly})
	if err != nil {
		return Run{}, err
	}
	var r Run
	err = c.getJSON(ctx, http.MethodPost, runPath(id, "rerun"), nil, bytes.NewReader(body), "application/json", &r)
	return r, err
}

// Workers lists the workers the server knows, but those lost long ago.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	return c.workers(ctx, nil)
}

// AllWorkers lists the workers the server knows, those lost long ago too.
func (c *Client) AllWorkers(ctx context.Context) ([]Worker, error) {
	return c.workers(ctx, url.Values{"all": {"true"}})
}

func (c *Client) workers(ctx context.Context, q url.Values) ([]Worker, error) {
	var l wire.WorkerList
	err := c.getJSON(ctx, http.MethodGet, "/api/v1/workers", q, nil, "", &l)
	return l.Workers, err
}

// Pools lists the pools of the server's worker manager and the queued
// demand that fits none (no pools on a server without a pools file).
func (c *Client) Pools(ctx context.Context) (PoolList, error) {
	var l PoolList
	err := c.getJSON(ctx, http.MethodGet, "/api/v1/pools", nil, nil, "", &l)
	return l, err
}

// LogsOptions are the choices of Logs.
type LogsOptions struct {
	// Timestamps starts each line with the time its chunk was stored
	// (RFC 3339, UTC, with milliseconds).
	Timestamps bool
	// JSONLines asks for one wire.LogEvent (job, attempt, step, time and
	// data of a chunk) a line instead of text.
	JSONLines bool
}

// Logs copies the stored output of a run to w: of every job, each line
// prefixed with "[key] ", or of one job (by id or key) as it is. A job that
// ran more than once has a line "--- attempt N ---" before each attempt's
// output. With opts.JSONLines, it copies JSON lines instead.
func (c *Client) Logs(ctx context.Context, run, job string, opts LogsOptions, w io.Writer) error {
	q := url.Values{}
	if job != "" {
		q.Set("job", job)
	}
	if opts.Timestamps {
		q.Set("timestamps", "1")
	}
	accept := "text/plain"
	if opts.JSONLines {
		q.Set("format", "jsonl")
		accept = "application/x-ndjson"
	}
	resp, err := c.do(ctx, http.MethodGet, runPath(run, "logs"), q, nil, "", accept)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// ErrStreamEnded is returned by FollowLogs when the stream ends before the
// run does (the server went away).
var ErrStreamEnded = errors.New("hodei api: log stream ended before the run ended")

// FollowLogs follows a run (or one of its jobs) live: onEvent gets every
// event, ending with the "end" event that carries the final run, after which
// FollowLogs returns nil. An error of onEvent stops the stream and is
// returned. Heartbeats are not passed on.
func (c *Client) FollowLogs(ctx context.Context, run, job string, onEvent func(Event) error) error {
	q := url.Values{"follow": {"1"}}
	if job != "" {
		q.Set("job", job)
	}
	resp, err := c.do(ctx, http.MethodGet, runPath(run, "logs"), q, nil, "", "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("hodei api: log stream has content type %q", ct)
	}
	err = ReadSSE(resp.Body, func(typ string, data []byte) error {
		ev, err := DecodeEvent(typ, data)
		if err != nil {
			return err
		}
		if ev.Type == "" {
			return nil // an event this client does not know
		}
		if err := onEvent(ev); err != nil {
			return err
		}
		if ev.Type == wire.EventEnd {
			return errEnd
		}
		return nil
	})
	switch {
	case errors.Is(err, errEnd):
		return nil
	case err == nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return ErrStreamEnded
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return err
}

var errEnd = errors.New("end")

// DecodeEvent decodes the data of an SSE event of the log stream. An
// unknown event type gives an Event with an empty Type.
func DecodeEvent(typ string, data []byte) (Event, error) {
	ev := Event{Type: typ}
	var err error
	switch typ {
	case wire.EventLog:
		ev.Log = &LogEvent{}
		err = json.Unmarshal(data, ev.Log)
	case wire.EventJob:
		ev.Job = &JobEvent{}
		err = json.Unmarshal(data, ev.Job)
	case wire.EventRun:
		ev.Run = &RunEvent{}
		err = json.Unmarshal(data, ev.Run)
	case wire.EventEnd:
		ev.End = &Run{}
		err = json.Unmarshal(data, ev.End)
	default:
		return Event{}, nil
	}
	if err != nil {
		return Event{}, fmt.Errorf("hodei api: bad %s event: %w", typ, err)
	}
	return ev, nil
}

// ReadSSE reads a stream of Server-Sent Events and calls fn with the type
// ("message" when the event names none) and the data of each. Comments
// (heartbeats) are skipped. It returns fn's error, the reader's, or nil at
// the end of the stream.
func ReadSSE(r io.Reader, fn func(typ string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var typ string
	var data []byte
	hasData := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if hasData {
				if typ == "" {
					typ = "message"
				}
				if err := fn(typ, data); err != nil {
					return err
				}
			}
			typ, data, hasData = "", data[:0], false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		}
	}
	return sc.Err()
}

// Artifacts lists the artifacts of a run (the latest attempt of each job
// and name).
func (c *Client) Artifacts(ctx context.Context, run string) ([]wire.Artifact, error) {
	var out wire.Artifacts
	if err := c.getJSON(ctx, http.MethodGet, runPath(run, "artifacts"), nil, nil, "", &out); err != nil {
		return nil, err
	}
	return out.Artifacts, nil
}

// ArtifactContent opens the archive of one artifact: a tar compressed with
// zstd, whose files Artifacts lists with their sha256.
func (c *Client) ArtifactContent(ctx context.Context, run, job, name string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, runPath(run, "artifacts", job, name), nil, nil, "", "application/zstd")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
