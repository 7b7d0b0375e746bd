package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hodei-ci/hodei/internal/server"
)

// API request kinds of APIOptions.Mix.
const (
	KindRun    = "run"    // GET /api/v1/runs/ID
	KindList   = "list"   // GET /api/v1/runs?limit=20
	KindLogs   = "logs"   // GET /api/v1/runs/ID/logs
	KindSubmit = "submit" // POST /api/v1/runs (a one-step pipeline)
)

// APIOptions configure a load test of the API.
type APIOptions struct {
	// Server is the base URL of a running server ("http://host:port");
	// empty starts an embedded one (security on, default audit policy, 2
	// local workers) in this process.
	Server string
	// Token authenticates every request (required with Server; an API
	// token made for the bench otherwise).
	Token string
	// Connections each keep one HTTP/1.1 connection busy: a request, its
	// answer, the next request (closed loop).
	Connections int
	// Duration of the measurement.
	Duration time.Duration
	// Mix weighs the kinds of requests, e.g. {"run": 8, "list": 1, "logs":
	// 1}; {"run": 1} if empty.
	Mix map[string]int
	// Runs is how many finished runs the embedded server is seeded with
	// (20 by default); against Server, the runs its first list shows.
	Runs int
	// ServerPID, if set, is the process whose CPU time is measured (from
	// /proc/PID/stat); with an embedded server, this process.
	ServerPID int
	// DataDir of the embedded server (a temporary directory if empty).
	DataDir string
	Logger  *slog.Logger
}

// KindResult is what one kind of request measured.
type KindResult struct {
	Requests  int64       `json:"requests"`
	Errors    int64       `json:"errors"` // status not 2xx, or a broken connection
	PerSec    float64     `json:"per_sec"`
	LatencyMS Percentiles `json:"latency_ms"`
	MaxMS     float64     `json:"max_ms"`
}

// APIResult is what a load test of the API measured.
type APIResult struct {
	Connections int                   `json:"connections"`
	DurationS   float64               `json:"duration_s"`
	Requests    int64                 `json:"requests"`
	Errors      int64                 `json:"errors"`
	PerSec      float64               `json:"per_sec"`
	LatencyMS   Percentiles           `json:"latency_ms"`
	MaxMS       float64               `json:"max_ms"`
	Kinds       map[string]KindResult `json:"kinds"`
	// CPUPerRequestUS is the CPU time (user + system) the measured process
	// spent per request, in microseconds: with an embedded server it
	// includes the load generator's own CPU.
	CPUPerRequestUS float64 `json:"cpu_per_request_us,omitempty"`
	CPUProcess      string  `json:"cpu_process,omitempty"`
	// AuditBytesPerRequest is how much the audit trail grew per request
	// (embedded server only).
	AuditBytesPerRequest float64 `json:"audit_bytes_per_request,omitempty"`
	FirstError           string  `json:"first_error,omitempty"`
}

// target is one prepared request.
type target struct {
	kind string
	req  []byte // the whole HTTP/1.1 request
}

// RunAPI loads a server's API with authenticated requests and reports the
// throughput and latency of each kind. Its client speaks plain HTTP/1.1 on
// kept-alive connections and prepares every request beforehand, so that
// on a shared machine it takes as little CPU from the server as it can.
func RunAPI(ctx context.Context, o APIOptions) (APIResult, error) {
	if o.Connections <= 0 {
		o.Connections = 16
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if len(o.Mix) == 0 {
		o.Mix = map[string]int{KindRun: 1}
	}
	if o.Runs <= 0 {
		o.Runs = 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for k, w := range o.Mix {
		switch k {
		case KindRun, KindList, KindLogs, KindSubmit:
		default:
			return APIResult{}, fmt.Errorf("bench api: unknown request kind %q (want run, list, logs or submit)", k)
		}
		if w < 0 {
			return APIResult{}, fmt.Errorf("bench api: weight of %s is negative", k)
		}
	}
	var auditPath string
	var srv *server.Server
	if o.Server == "" {
		dir, removeDir, err := dataDir(o.DataDir, "hodei-bench-api-")
		if err != nil {
			return APIResult{}, err
		}
		defer removeDir()
		var admin string
		s, err := server.Start(ctx, server.Options{
			DataDir: dir, NATSListen: "none", HTTPAddr: "127.0.0.1:0", LocalWorkers: 2, Logger: o.Logger,
			Security: server.SecurityOptions{Enabled: true, OnAdminToken: func(t string) { admin = t }},
		})
		if err != nil {
			return APIResult{}, err
		}
		defer s.Close()
		srv = s
		o.Server = "http://" + s.HTTPAddr()
		auditPath = server.AuditPath(dir)
		if o.Token, err = makeToken(ctx, o.Server, admin); err != nil {
			return APIResult{}, err
		}
		if err := seed(ctx, o.Server, o.Token, o.Runs); err != nil {
			return APIResult{}, err
		}
		if o.ServerPID == 0 {
			o.ServerPID = os.Getpid()
		}
	}
	if o.Token == "" {
		return APIResult{}, errors.New("bench api: a token is needed to load a running server")
	}
	u, err := url.Parse(o.Server)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return APIResult{}, fmt.Errorf("bench api: server %q: want http://host:port (plain HTTP: the load generator does not speak TLS)", o.Server)
	}
	ids, err := runIDs(ctx, o.Server, o.Token, o.Runs)
	if err != nil {
		return APIResult{}, err
	}
	targets := prepare(u.Host, o.Token, ids, o.Mix)

	var audit0 int64
	if auditPath != "" {
		srv.Audit().Flush()
		audit0 = fileSize(auditPath)
	}
	cpu0, _ := processCPU(o.ServerPID)
	lctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	type sample struct {
		kind int
		d    time.Duration
		err  bool
	}
	var (
		mu       sync.Mutex
		all      [][]sample
		firstErr string
		wg       sync.WaitGroup
	)
	kinds := []string{KindRun, KindList, KindLogs, KindSubmit}
	kindIndex := map[string]int{}
	for i, k := range kinds {
		kindIndex[k] = i
	}
	start := time.Now()
	for c := range o.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []sample
			defer func() {
				mu.Lock()
				all = append(all, mine)
				mu.Unlock()
			}()
			var conn *client
			for i := c; lctx.Err() == nil; i++ {
				t := targets[i%len(targets)]
				if conn == nil {
					nc, err := (&net.Dialer{}).DialContext(lctx, "tcp", u.Host)
					if err != nil {
						if lctx.Err() == nil {
							mine = append(mine, sample{kind: kindIndex[t.kind], err: true})
							noteErr(&mu, &firstErr, err)
						}
						continue
					}
					conn = newClient(nc)
				}
				t0 := time.Now()
				status, err := conn.do(t.req)
				d := time.Since(t0)
				if err != nil {
					conn.close()
					conn = nil
					if lctx.Err() != nil {
						break // cut by the end of the run
					}
					noteErr(&mu, &firstErr, err)
				} else if status/100 != 2 {
					noteErr(&mu, &firstErr, fmt.Errorf("%s: status %d", t.kind, status))
				}
				mine = append(mine, sample{kind: kindIndex[t.kind], d: d, err: err != nil || status/100 != 2})
			}
			if conn != nil {
				conn.close()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	cpu1, cpuErr := processCPU(o.ServerPID)

	res := APIResult{Connections: o.Connections, DurationS: round(wall.Seconds()), Kinds: map[string]KindResult{}, FirstError: firstErr}
	var lat []float64
	perKind := make([][]float64, len(kinds))
	errs := make([]int64, len(kinds))
	for _, ss := range all {
		for _, s := range ss {
			res.Requests++
			if s.err {
				res.Errors++
				errs[s.kind]++
			}
			ms := float64(s.d) / float64(time.Millisecond)
			lat = append(lat, ms)
			perKind[s.kind] = append(perKind[s.kind], ms)
		}
	}
	res.PerSec = round(float64(res.Requests) / wall.Seconds())
	res.LatencyMS, res.MaxMS = percentiles(lat), maxOf(lat)
	for i, k := range kinds {
		if len(perKind[i]) == 0 {
			continue
		}
		res.Kinds[k] = KindResult{
			Requests: int64(len(perKind[i])), Errors: errs[i], PerSec: round(float64(len(perKind[i])) / wall.Seconds()),
			LatencyMS: percentiles(perKind[i]), MaxMS: maxOf(perKind[i]),
		}
	}
	if o.ServerPID > 0 && cpuErr == nil && res.Requests > 0 {
		res.CPUPerRequestUS = round(float64(cpu1-cpu0) / float64(time.Microsecond) / float64(res.Requests))
		res.CPUProcess = "pid " + strconv.Itoa(o.ServerPID)
		if srv != nil {
			res.CPUProcess += " (server and load generator)"
		}
	}
	if auditPath != "" && res.Requests > 0 {
		srv.Audit().Flush()
		res.AuditBytesPerRequest = round(float64(fileSize(auditPath)-audit0) / float64(res.Requests))
	}
	return res, nil
}

func noteErr(mu *sync.Mutex, first *string, err error) {
	mu.Lock()
	if *first == "" {
		*first = err.Error()
	}
	mu.Unlock()
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return round(m)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// processCPU is the user + system CPU time of a process so far.
func processCPU(pid int) (time.Duration, error) {
	if pid == os.Getpid() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	if pid <= 0 {
		return 0, errors.New("no process")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces), from its ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// prepare builds the requests of the mix, in an order that interleaves the
// kinds by weight.
func prepare(host, token string, ids []string, mix map[string]int) []target {
	build := func(method, path, ctype string, body []byte) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nUser-Agent: hodei-bench\r\n", method, path, host, token)
		if body != nil {
			fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n", ctype, len(body))
		}
		b.WriteString("\r\n")
		b.Write(body)
		return b.Bytes()
	}
	var out []target
	for i, id := range ids {
		for _, k := range []string{KindRun, KindList, KindLogs, KindSubmit} {
			for range mix[k] {
				var req []byte
				switch k {
				case KindRun:
					req = build("GET", "/api/v1/runs/"+id, "", nil)
				case KindList:
					req = build("GET", "/api/v1/runs?limit=20", "", nil)
				case KindLogs:
					req = build("GET", "/api/v1/runs/"+id+"/logs", "", nil)
				case KindSubmit:
					req = build("POST", "/api/v1/runs?file=bench.yaml", "application/yaml", []byte(trivial))
				}
				out = append(out, target{kind: k, req: req})
			}
		}
		_ = i
	}
	return out
}

// client is one kept-alive HTTP/1.1 connection.
type client struct {
	c net.Conn
	r *bufio.Reader
}

func newClient(c net.Conn) *client { return &client{c: c, r: bufio.NewReaderSize(c, 32<<10)} }

func (c *client) close() { c.c.Close() }

// do sends a request and reads its whole answer, returning the status.
func (c *client) do(req []byte) (int, error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closing := int64(-1), false, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, _ = strconv.ParseInt(string(v), 10, 64)
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	switch {
	case chunked:
		for {
			l, err := c.r.ReadSlice('\n')
			if err != nil {
				return 0, err
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(string(l), ";", 2)[0]), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("bad chunk size %q", l)
			}
			if _, err := c.r.Discard(int(size) + 2); err != nil {
				return 0, err
			}
			if size == 0 {
				break
			}
		}
	case length >= 0:
		if _, err := c.r.Discard(int(length)); err != nil {
			return 0, err
		}
	default:
		return 0, errors.New("an answer without a length")
	}
	if closing {
		return status, io.ErrUnexpectedEOF // reconnect for the next request
	}
	return status, nil
}

// makeToken creates an API token (role developer, tenant default) with the
// admin token: the bench then goes through the token lookup, as clients do.
func makeToken(ctx context.Context, base, admin string) (string, error) {
	body, _ := json.Marshal(map[string]any{"name": "bench-api", "tenant": "default", "roles": []string{"developer"}})
	var nt struct {
		Secret string `json:"secret"`
	}
	if err := call(ctx, base, admin, "POST", "/api/v1/tokens", "application/json", body, http.StatusCreated, &nt); err != nil {
		return "", fmt.Errorf("bench api: make a token: %w", err)
	}
	return nt.Secret, nil
}

// seed submits n one-step runs and waits until they have ended.
func seed(ctx context.Context, base, token string, n int) error {
	var ids []string
	for range n {
		var run struct {
			ID string `json:"id"`
		}
		if err := call(ctx, base, token, "POST", "/api/v1/runs?file=bench.yaml", "application/yaml", []byte(trivial), http.StatusCreated, &run); err != nil {
			return fmt.Errorf("bench api: seed: %w", err)
		}
		ids = append(ids, run.ID)
	}
	deadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		for {
			var run struct {
				State string `json:"state"`
			}
			if err := call(ctx, base, token, "GET", "/api/v1/runs/"+id, "", nil, http.StatusOK, &run); err != nil {
				return fmt.Errorf("bench api: seed: %w", err)
			}
			if run.State == "succeeded" {
				break
			}
			if run.State == "failed" || run.State == "canceled" {
				return fmt.Errorf("bench api: seed run %s %s", id, run.State)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench api: seed run %s still %s after a minute", id, run.State)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond): // polling another component's progress
			}
		}
	}
	return nil
}

// runIDs lists up to n runs of the server.
func runIDs(ctx context.Context, base, token string, n int) ([]string, error) {
	var list struct {
		Runs []struct {
			ID string `json:"id"`
		} `json:"runs"`
	}
	if err := call(ctx, base, token, "GET", "/api/v1/runs?limit="+strconv.Itoa(n), "", nil, http.StatusOK, &list); err != nil {
		return nil, fmt.Errorf("bench api: list runs: %w", err)
	}
	if len(list.Runs) == 0 {
		return nil, errors.New("bench api: the server has no runs to read")
	}
	ids := make([]string, len(list.Runs))
	for i, r := range list.Runs {
		ids[i] = r.ID
	}
	sort.Strings(ids)
	return ids, nil
}

func call(ctx context.Context, base, token, method, path, ctype string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}
