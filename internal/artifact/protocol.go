package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
)

// The operations of the protocol: the last token of the subject
// <prefix>.art.<worker>.<op>. Each is one request and one reply.
const (
	opList   = "list"   // ListRequest -> ListReply
	opCache  = "cache"  // CacheRequest -> CacheReply
	opOpen   = "open"   // OpenRequest -> OpenReply
	opRead   = "read"   // header session -> the next bytes (HdrEOF at the end)
	opUpload = "upload" // UploadRequest -> UploadReply
	opPut    = "put"    // header session, the next bytes -> empty
	opCommit = "commit" // CommitRequest -> CommitReply
)

// Headers of the protocol's messages.
const (
	HdrError   = "Hodei-Error"
	HdrCode    = "Hodei-Code"
	HdrSession = "Hodei-Session"
	HdrEOF     = "Hodei-EOF"
)

// Subject is the subject of an operation of worker's.
func Subject(s bus.Subjects, worker, op string) string {
	return s.Prefix + ".art." + worker + "." + op
}

// AttemptRef names the attempt a request is made for: the worker must be
// running it.
type AttemptRef struct {
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
}

// Entry is an artifact or cache entry a job may download.
type Entry struct {
	ID     string `json:"id"`
	JobKey string `json:"job_key,omitempty"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Files  []File `json:"files"`
}

// ListRequest asks for the artifacts of the jobs an attempt needs.
type ListRequest struct {
	AttemptRef
}

// ListReply lists them, one per needed job and name (its latest attempt).
type ListReply struct {
	Entries []Entry `json:"entries"`
}

// CacheRequest looks a cache key up in the attempt's scope.
type CacheRequest struct {
	AttemptRef
	Key         string   `json:"key"`
	RestoreKeys []string `json:"restore_keys,omitempty"`
}

// CacheReply is the entry found (nil: a miss) and whether its key is the
// one asked for.
type CacheReply struct {
	Entry *Entry `json:"entry,omitempty"`
	Exact bool   `json:"exact,omitempty"`
}

// OpenRequest opens an entry for reading.
type OpenRequest struct {
	AttemptRef
	ID string `json:"id"`
}

// OpenReply is the session to read it through.
type OpenReply struct {
	Session string `json:"session"`
}

// UploadRequest starts an upload: the artifact Name of the attempt's job,
// or (Kind store.KindCache) the cache entry of key Name.
type UploadRequest struct {
	AttemptRef
	Kind     string        `json:"kind"`
	Name     string        `json:"name"`
	ExpireIn time.Duration `json:"expire_in,omitempty"`
}

// UploadReply is the session to send the archive through.
type UploadReply struct {
	Session string `json:"session"`
}

// CommitRequest ends an upload with the files of the archive.
type CommitRequest struct {
	Session string `json:"session"`
	Files   []File `json:"files"`
}

// CommitReply says what was stored; Exists: a cache entry of that key was
// saved meanwhile by another job, and this one was dropped.
type CommitReply struct {
	Size   int64 `json:"size"`
	Exists bool  `json:"exists,omitempty"`
}

// Codes of refused requests (HdrCode).
const (
	CodeForbidden = "forbidden" // the worker does not run that attempt, or may not read that entry
	CodeTooLarge  = "too_large" // over the limit per job or per tenant
	CodeExists    = "exists"    // a cache entry of that key exists
	CodeInvalid   = "invalid"   // a malformed request
	CodeFailed    = "failed"    // the store or the blob store failed
)

// Error is a refusal by the Service.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ErrForbidden, ErrTooLarge and ErrExists match Errors by code.
var (
	ErrForbidden = &Error{Code: CodeForbidden}
	ErrTooLarge  = &Error{Code: CodeTooLarge}
	ErrExists    = &Error{Code: CodeExists}
)

// Is matches Errors of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func refuse(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// request sends one request and turns a refusal into an *Error.
func request(ctx context.Context, nc *nats.Conn, subject string, hdr nats.Header, data []byte) (*nats.Msg, error) {
	m := nats.NewMsg(subject)
	m.Header = hdr
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Data = data
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	reply, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) {
			return nil, fmt.Errorf("artifacts: the server's artifact service does not answer: %w: %w", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("artifacts: %w", err)
	}
	if msg := reply.Header.Get(HdrError); msg != "" {
		return nil, &Error{Code: reply.Header.Get(HdrCode), Msg: msg}
	}
	return reply, nil
}

// call sends req as JSON and decodes the reply into out.
func call(ctx context.Context, nc *nats.Conn, subject string, req, out any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	reply, err := request(ctx, nc, subject, nil, data)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(reply.Data, out); err != nil {
		return fmt.Errorf("artifacts: bad reply: %w", err)
	}
	return nil
}

// requestTimeout bounds one request (a chunk, a commit): a request sent
// to a server that died is not answered by the one that restarts.
const requestTimeout = 30 * time.Second

// ErrUnavailable is wrapped by the errors of requests that the artifact
// service did not answer (no server, a server restarting, a connection
// lost): the caller may try again; it says nothing of the job.
var ErrUnavailable = errors.New("artifact service unavailable")

// chunkSize is the size of the chunks of an upload or download: under the
// connection's maximum payload (1 MiB by default on a NATS server).
func chunkSize(nc *nats.Conn) int {
	n := 1 << 20
	if max := int(nc.MaxPayload()) - 4096; max > 0 && max < n {
		n = max
	}
	return n
}

// readAhead is how many chunks a reader fetches ahead of what it was asked:
// the network, the blob store and the extraction then overlap.
const readAhead = 4

// chunk is a piece of a stream, or its end (eof), or its error.
type chunk struct {
	data []byte
	eof  bool
	err  error
}

// readChunks cuts r into chunks of size bytes, read up to readAhead chunks
// ahead of the consumer in a goroutine, and returns them. The last is the
// end (eof) or an error; the channel is then closed. The goroutine ends
// only when r does: to abandon the stream, close r (a pipe) and drain the
// channel.
func readChunks(r io.Reader, size int) <-chan chunk {
	ch := make(chan chunk, readAhead)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, size)
			n, err := io.ReadFull(r, buf)
			end := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
			if end {
				err = nil
			}
			ch <- chunk{data: buf[:n], eof: end, err: err}
			if end || err != nil {
				return
			}
		}
	}()
	return ch
}

// sessionReader reads a download session, fetching up to readAhead chunks
// ahead in a goroutine that ends with the session or with ctx.
type sessionReader struct {
	chunks <-chan chunk
	buf    []byte
	done   bool
	err    error
}

func newSessionReader(ctx context.Context, nc *nats.Conn, subject, session string) *sessionReader {
	ch := make(chan chunk, readAhead)
	go func() {
		defer close(ch)
		hdr := nats.Header{HdrSession: []string{session}}
		for {
			reply, err := request(ctx, nc, subject, hdr, nil)
			c := chunk{err: err}
			if err == nil {
				c.data, c.eof = reply.Data, reply.Header.Get(HdrEOF) != ""
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
			if c.eof || c.err != nil {
				return
			}
		}
	}()
	return &sessionReader{chunks: ch}
}

func (r *sessionReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		c, ok := <-r.chunks
		if !ok {
			r.err = errors.New("artifacts: download ended early")
			continue
		}
		r.buf, r.done, r.err = c.data, c.eof, c.err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// workerOf returns the worker and operation of a protocol subject.
func workerOf(s bus.Subjects, subject string) (worker, op string, ok bool) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".art.")
	if !ok {
		return "", "", false
	}
	worker, op, ok = strings.Cut(rest, ".")
	return worker, op, ok && bus.ValidToken(worker)
}
