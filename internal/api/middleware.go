package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/store"
)

type ctxKey struct{}

// reqInfo is what handlers tell the access log.
type reqInfo struct {
	id    string
	runID string
	// audit are the request's decisions, recorded with the answer's status
	// once it is sent; body counts and hashes the request body when a
	// decision is kept at audit.LevelRequest.
	audit []pendingAudit
	body  *bodyDigest
	// run is the run authorizeRun read, for the handler.
	run *store.Run
}

// noteRun records the run a request is about, for the access log.
func noteRun(r *http.Request, id string) {
	if ri, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		ri.runID = id
	}
}

// RequestID returns the id of the request being served ("" outside the API).
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok {
		return ri.id
	}
	return ""
}

// recorder remembers the status and size of a response, and calls sent
// once with the status when the answer's header goes out.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	sent   func(status int)
}

func (w *recorder) setStatus(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if w.sent != nil {
		w.sent(code)
	}
}

func (w *recorder) WriteHeader(code int) {
	w.setStatus(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	w.setStatus(http.StatusOK)
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush supports code that asserts http.Flusher.
func (w *recorder) Flush() {
	w.setStatus(http.StatusOK)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// middleware gives every request an id, recovers panics and logs access.
func (a *api) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ri := &reqInfo{id: id}
		// The request's decisions are audited as its answer starts: a
		// stream of logs is not recorded hours later, when it ends.
		rec := &recorder{ResponseWriter: w, sent: func(status int) { a.flushAudit(ri, status) }}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				a.log.Error("panic serving request", "request_id", id, "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeError(rec, wire.CodeInternal, "internal error (request "+id+")")
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			if level := accessLevel(r, status); a.log.Enabled(r.Context(), level) {
				attrs := []slog.Attr{
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Duration("duration", time.Since(start)),
					slog.String("request_id", id),
					slog.Int64("bytes", rec.bytes),
				}
				if ri.runID != "" {
					attrs = append(attrs, slog.String("run_id", ri.runID))
				}
				a.log.LogAttrs(r.Context(), level, "http request", attrs...)
			}
			a.flushAudit(ri, status) // decisions of an answer that never started
			if p == http.ErrAbortHandler {
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = wire.CodeInternal.Status()
		data, _ = json.Marshal(wire.Error{Code: wire.CodeInternal, Message: "encode response: " + err.Error()})
	}
	writeBody(w, status, append(data, '\n'))
}

// writeBody answers with an encoded JSON body.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError answers an error with the HTTP status the catalogue
// (wire.ErrorCodes) gives its code.
func writeError(w http.ResponseWriter, code wire.Code, msg string) {
	writeJSON(w, code.Status(), wire.Error{Code: code, Message: msg})
}

// readJSON decodes the request's JSON body, of at most limit bytes, into
// v. A field v does not have is an error, and so is a larger body
// (*http.MaxBytesError).
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// accessLevel is the level of a request's access log line: warnings for
// the server's errors; debug for probes, metrics and reads that
// succeeded (the audit trail records those, and at thousands of reads a
// second a line each would be most of the log); info for the rest.
func accessLevel(r *http.Request, status int) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelWarn
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics":
		return slog.LevelDebug
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && status < 400:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
