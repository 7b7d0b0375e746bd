// Package audit keeps Hodei's audit trail: one record per authorization
// decision (who, what action, which resource, allow or deny, when, from
// where, and the request id), appended to a JSON-lines file and chained by
// SHA-256 hashes so that a changed, removed or reordered record is detected
// by Verify.
//
// File format: one JSON object per line, in the field order of Record. Each
// record's Hash is the SHA-256 (hex) of its canonical encoding, which is the
// line itself without the "hash" member; the canonical encoding includes
// Prev, the Hash of the record before it, so every record commits to the
// whole chain before it. The first record of a new log has Prev
// GenesisHash. After a prune, the first line of the file is an Anchor that
// names the last pruned record (its Seq and Hash): the chain goes on from it.
//
// Concurrency: a Log is safe for concurrent use; appends are serialised by
// one mutex and written with one write(2) each to a file opened O_APPEND.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// GenesisHash is the Prev of the first record of a log.
var GenesisHash = strings.Repeat("0", 64)

// Entry is what a caller records; the log adds Seq, Time (if zero), Prev
// and Hash.
type Entry struct {
	Time          time.Time
	Principal     string // principal id: "user:…", "token:…", "admin:local", "anonymous"
	PrincipalName string
	Tenant        string // the principal's tenant
	Action        string // e.g. "read", "submit", "authenticate"
	Resource      string // Cedar entity uid, e.g. Hodei::Run::"01…"
	Decision      string // Allow or Deny
	Reason        string // determining policies, or why authentication failed
	Remote        string // the client's address (the TCP peer)
	RequestID     string // the API's X-Request-Id: the correlation id
	Method        string
	Path          string
	// Status is the HTTP status of the answer (0: none yet).
	Status int
	// Query is the request's raw query; BodyBytes and BodySHA256 the size
	// and the SHA-256 (hex) of the request body the server read.
	Query      string
	BodyBytes  int64
	BodySHA256 string
}

// Record is one line of the audit file. Its JSON field order is the
// canonical order; do not reorder the fields.
type Record struct {
	Seq           int64     `json:"seq"`
	Time          time.Time `json:"time"`
	Principal     string    `json:"principal"`
	PrincipalName string    `json:"principal_name,omitempty"`
	Tenant        string    `json:"tenant,omitempty"`
	Action        string    `json:"action"`
	Resource      string    `json:"resource"`
	Decision      string    `json:"decision"`
	Status        int       `json:"status,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Remote        string    `json:"remote,omitempty"`
	RequestID     string    `json:"request_id,omitempty"`
	Method        string    `json:"method,omitempty"`
	Path          string    `json:"path,omitempty"`
	Query         string    `json:"query,omitempty"`
	BodyBytes     int64     `json:"body_bytes,omitempty"`
	BodySHA256    string    `json:"body_sha256,omitempty"`
	// Lengths holds the full length, in bytes, of each field above that
	// was longer than MaxField and was cut (by its JSON name).
	Lengths map[string]int `json:"lengths,omitempty"`
	Prev    string         `json:"prev"`
	Hash    string         `json:"hash,omitempty"`
}

// MaxField is the most bytes of a field a record keeps: much of a record
// comes from requests (paths, ids, names), and a client must not be able to
// grow the trail by more than a bounded amount per request.
const MaxField = 256

// clipMark ends a clipped text.
const clipMark = "...(truncated)"

// Clip returns s if it is at most MaxField bytes long, else its first
// MaxField bytes (cut at a UTF-8 boundary) followed by "...(truncated)",
// and true.
func Clip(s string) (string, bool) {
	if len(s) <= MaxField {
		return s, false
	}
	n := MaxField
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + clipMark, true
}

// clip cuts the fields of r longer than MaxField and notes their lengths.
func (r *Record) clip() {
	fields := [...]struct {
		name string
		f    *string
	}{
		{"principal", &r.Principal}, {"principal_name", &r.PrincipalName}, {"tenant", &r.Tenant},
		{"action", &r.Action}, {"resource", &r.Resource}, {"decision", &r.Decision}, {"reason", &r.Reason},
		{"remote", &r.Remote}, {"request_id", &r.RequestID}, {"method", &r.Method}, {"path", &r.Path},
		{"query", &r.Query}, {"body_sha256", &r.BodySHA256},
	}
	for _, fd := range fields {
		if c, cut := Clip(*fd.f); cut {
			if r.Lengths == nil {
				r.Lengths = map[string]int{}
			}
			r.Lengths[fd.name] = len(*fd.f)
			*fd.f = c
		}
	}
}

// Anchor is the first line of a pruned log: the last record removed.
type Anchor struct {
	Anchor struct {
		Seq      int64     `json:"seq"`
		Hash     string    `json:"hash"`
		PrunedAt time.Time `json:"pruned_at"`
		Pruned   int64     `json:"pruned"` // records removed by the prune that wrote it
	} `json:"anchor"`
}

// canonical returns the encoding a record's hash covers: the record as JSON
// without its hash.
func canonical(r Record) []byte {
	r.Hash = ""
	b, _ := json.Marshal(r) // a Record always encodes
	return b
}

// HashOf returns the hash a record must carry.
func HashOf(r Record) string {
	sum := sha256.Sum256(canonical(r))
	return hex.EncodeToString(sum[:])
}

// encode returns a record's line, without the newline.
func encode(r Record) []byte {
	b, _ := json.Marshal(r)
	return b
}

// Options configure a Log.
type Options struct {
	// Sync makes every append wait for fsync. Without it a crash of the
	// machine (not of the process) can lose the last records; the chain
	// stays verifiable.
	Sync bool
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Queue is how many records Enqueue holds for the writer (DefaultQueue
	// if 0). When it is full, Enqueue drops the record and counts it.
	Queue int
	// Logger receives a warning when records are dropped (slog.Default if
	// nil).
	Logger *slog.Logger
}

// DefaultQueue is the default capacity of a Log's queue: a few seconds of
// the API's peak rate.
const DefaultQueue = 8192

// maxBatch is the most records the writer puts in one write(2), and
// lingerFor how long it waits for more after the first.
const (
	maxBatch  = 512
	lingerFor = 2 * time.Millisecond
)

// Drop records: when the queue was full, the writer appends one of these
// before its next batch, so that the trail itself says records are missing.
const (
	DroppedPrincipal = "hodei:audit"
	DroppedAction    = "audit.dropped"
)

// Log is an open audit file.
type Log struct {
	path string
	opts Options

	mu     sync.Mutex // guards everything below; held for each append and prune
	f      *os.File
	seq    int64  // seq of the last record
	last   string // hash of the last record (or the anchor, or GenesisHash)
	closed bool
	err    error // the first failed write: the trail is broken
	buf    []byte

	queue   chan queued
	stop    chan struct{}         // closed by Close: the writer drains the queue and ends
	done    chan struct{}         // closed when the writer has ended
	shut    atomic.Bool           // Close was called: Enqueue refuses
	dropped atomic.Uint64         // records dropped because the queue was full, ever
	noted   uint64                // dropped records already written as a drop record (writer only)
	broken  atomic.Pointer[error] // err, for Enqueue to read without the mutex
}

// queued is an entry for the writer, or (flushed set) a marker that tells
// Flush the entries before it are written.
type queued struct {
	e       Entry
	flushed chan struct{}
}

// Open opens (creating it 0600 if needed) the audit file at path. A partial
// last line, left by a crash in the middle of a write, is cut off; the rest
// of the file is not verified here (see Verify).
func Open(path string, o Options) (*Log, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &Log{path: path, opts: o, f: f, queue: make(chan queued, o.Queue), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.loadTail(); err != nil {
		f.Close()
		return nil, err
	}
	go l.writer()
	return l, nil
}

// Path is the file of the log.
func (l *Log) Path() string { return l.path }

// loadTail finds the seq and hash of the last line, cutting off a partial
// line first.
func (l *Log) loadTail() error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	size := st.Size()
	l.seq, l.last = 0, GenesisHash
	if size == 0 {
		return nil
	}
	// Read backwards in growing windows until two newlines (or the start of
	// the file) frame the last complete line.
	for window := int64(64 << 10); ; window *= 2 {
		off := max(size-window, 0)
		buf := make([]byte, size-off)
		if _, err := l.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("audit: read %s: %w", l.path, err)
		}
		end := len(buf)
		if buf[end-1] != '\n' {
			// A partial line: cut it off.
			cut := bytes.LastIndexByte(buf, '\n')
			if cut < 0 && off > 0 {
				continue // the partial line is longer than the window
			}
			newSize := off + int64(cut+1)
			if err := l.f.Truncate(newSize); err != nil {
				return fmt.Errorf("audit: cut partial last line of %s: %w", l.path, err)
			}
			size = newSize
			if size == 0 {
				return nil
			}
			if cut < 0 {
				return nil
			}
			buf = buf[:cut+1]
			end = len(buf)
		}
		start := bytes.LastIndexByte(buf[:end-1], '\n')
		if start < 0 && off > 0 {
			continue
		}
		line := buf[start+1 : end-1]
		return l.setTail(line)
	}
}

func (l *Log) setTail(line []byte) error {
	if bytes.HasPrefix(line, []byte(`{"anchor"`)) {
		var a Anchor
		if err := json.Unmarshal(line, &a); err != nil {
			return fmt.Errorf("audit: last line of %s: %w", l.path, err)
		}
		l.seq, l.last = a.Anchor.Seq, a.Anchor.Hash
		return nil
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("audit: last line of %s: %w", l.path, err)
	}
	l.seq, l.last = r.Seq, r.Hash
	return nil
}

// ErrClosed is returned by appends to a closed log.
var ErrClosed = errors.New("audit: log closed")

// Append adds a record at once, waiting for its write, and returns it.
// Requests use Enqueue.
func (l *Log) Append(e Entry) (Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Record{}, ErrClosed
	}
	recs, err := l.writeLocked([]Entry{e})
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// record turns an entry into a record, without its place in the chain.
func (l *Log) record(e Entry) Record {
	t := e.Time
	if t.IsZero() {
		t = l.opts.Now()
	}
	r := Record{
		Time: t.UTC().Round(0), Principal: e.Principal, PrincipalName: e.PrincipalName, Tenant: e.Tenant,
		Action: e.Action, Resource: e.Resource, Decision: e.Decision, Status: e.Status, Reason: e.Reason,
		Remote: e.Remote, RequestID: e.RequestID, Method: e.Method, Path: e.Path,
		Query: e.Query, BodyBytes: e.BodyBytes, BodySHA256: e.BodySHA256,
	}
	r.clip()
	return r
}

// writeLocked chains the entries after the last record and writes them
// with one write(2) (and one fsync with Options.Sync).
func (l *Log) writeLocked(es []Entry) ([]Record, error) {
	if l.err != nil {
		return nil, l.err
	}
	recs := make([]Record, len(es))
	l.buf = l.buf[:0]
	seq, last := l.seq, l.last
	for i, e := range es {
		r := l.record(e)
		seq++
		r.Seq, r.Prev = seq, last
		// The line is the canonical encoding with the hash as its last
		// member: what encode writes, without a second encoding.
		start := len(l.buf)
		l.buf = appendCanonical(l.buf, r)
		sum := sha256.Sum256(l.buf[start:])
		r.Hash = hex.EncodeToString(sum[:])
		l.buf = l.buf[:len(l.buf)-1]
		l.buf = append(l.buf, `,"hash":"`...)
		l.buf = append(l.buf, r.Hash...)
		l.buf = append(l.buf, "\"}\n"...)
		last = r.Hash
		recs[i] = r
	}
	if _, err := l.f.Write(l.buf); err != nil {
		return nil, l.fail(fmt.Errorf("audit: append: %w", err))
	}
	if l.opts.Sync {
		if err := l.f.Sync(); err != nil {
			return nil, l.fail(fmt.Errorf("audit: sync: %w", err))
		}
	}
	if cap(l.buf) > 1<<20 {
		l.buf = nil // a burst's buffer is not kept
	}
	l.seq, l.last = seq, last
	return recs, nil
}

// fail marks the trail broken: a partial write would leave the chain
// unverifiable past it, so nothing more is written (the next start cuts a
// partial line off).
func (l *Log) fail(err error) error {
	l.err = err
	l.broken.Store(&err)
	return err
}

// Enqueue hands an entry to the writer and returns at once: it never waits
// for the disk. When the queue is full the entry is dropped and counted
// (Dropped); the writer then logs the drop and records it in the trail.
// The error is for a trail that can no longer be written (closed, or a
// write failed): the caller must not act without its record.
func (l *Log) Enqueue(e Entry) error {
	if err := l.Err(); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = l.opts.Now()
	}
	select {
	case l.queue <- queued{e: e}:
	default:
		l.dropped.Add(1)
	}
	return nil
}

// Err is why the trail can no longer be written (ErrClosed, or a failed
// write), or nil.
func (l *Log) Err() error {
	if l.shut.Load() {
		return ErrClosed
	}
	if err := l.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// Dropped is how many entries Enqueue dropped because the queue was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Queued is how many entries wait for the writer.
func (l *Log) Queued() int { return len(l.queue) }

// Flush waits until the entries enqueued before it are written (or the log
// is closed). Unlike Enqueue it may wait for room in the queue.
func (l *Log) Flush() {
	ch := make(chan struct{})
	select {
	case l.queue <- queued{flushed: ch}:
	case <-l.done:
		return
	}
	select {
	case <-ch:
	case <-l.done:
	}
}

// writer writes queued entries in batches until Close.
func (l *Log) writer() {
	defer close(l.done)
	batch := make([]Entry, 0, maxBatch)
	var flushed []chan struct{}
	linger := time.NewTimer(lingerFor)
	linger.Stop()
	for {
		var q queued
		select {
		case q = <-l.queue:
		case <-l.stop:
			// Drain what was queued before Close.
			for {
				select {
				case q = <-l.queue:
					batch, flushed = add(batch, flushed, q)
					if len(batch) == maxBatch {
						l.writeBatch(batch)
						batch = batch[:0]
					}
					continue
				default:
				}
				break
			}
			l.writeBatch(batch)
			for _, ch := range flushed {
				close(ch)
			}
			return
		}
		batch, flushed = add(batch, flushed, q)
		// Gather what comes within a short linger: under load, one write
		// carries many records; alone, a record waits at most the linger.
		linger.Reset(lingerFor)
	more:
		for len(batch) < maxBatch && len(flushed) == 0 {
			select {
			case q = <-l.queue:
				batch, flushed = add(batch, flushed, q)
			case <-linger.C:
				break more
			case <-l.stop:
				break more
			}
		}
		linger.Stop()
		l.writeBatch(batch)
		batch = batch[:0]
		for _, ch := range flushed {
			close(ch)
		}
		flushed = flushed[:0]
	}
}

func add(batch []Entry, flushed []chan struct{}, q queued) ([]Entry, []chan struct{}) {
	if q.flushed != nil {
		return batch, append(flushed, q.flushed)
	}
	return append(batch, q.e), flushed
}

// writeBatch writes a batch, headed by a drop record when entries were
// dropped since the last one.
func (l *Log) writeBatch(batch []Entry) {
	if d := l.dropped.Load(); d > l.noted {
		n := d - l.noted
		l.noted = d
		l.opts.Logger.Warn("audit records dropped: the queue was full", "dropped", n, "dropped_total", d, "queue", cap(l.queue))
		batch = append([]Entry{{
			Principal: DroppedPrincipal, Action: DroppedAction,
			Reason: fmt.Sprintf("%d records dropped: the audit queue (%d) was full", n, cap(l.queue)),
		}}, batch...)
	}
	if len(batch) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if _, err := l.writeLocked(batch); err != nil {
		l.opts.Logger.Error("audit trail write failed: requests are refused from now on", "err", err)
	}
}

// Head returns the seq and hash of the last record: keep them elsewhere to
// detect a truncated tail later (Verify with VerifyOptions.Head).
func (l *Log) Head() (int64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.last
}

// Close writes what is queued and closes the file.
func (l *Log) Close() error {
	if !l.shut.Swap(true) {
		close(l.stop)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.f.Close()
}

// Filter selects records. Zero fields do not filter.
type Filter struct {
	// Principal matches the principal's id or name.
	Principal string
	Action    string
	// Resource matches the full entity uid (Hodei::Run::"01…"), the uid
	// without its namespace (Run::"01…"), or the bare id (01…).
	Resource string
	Decision string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	// Limit keeps the last Limit matching records (100 if 0).
	Limit int
}

// Match reports whether r passes the filter.
func (f Filter) Match(r Record) bool {
	if f.Principal != "" && r.Principal != f.Principal && r.PrincipalName != f.Principal {
		return false
	}
	if f.Action != "" && r.Action != f.Action {
		return false
	}
	if f.Resource != "" && !matchResource(r.Resource, f.Resource) {
		return false
	}
	if f.Decision != "" && r.Decision != f.Decision {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	return true
}

func matchResource(have, want string) bool {
	if have == want || strings.TrimPrefix(have, "Hodei::") == want {
		return true
	}
	return strings.HasSuffix(have, `::"`+want+`"`)
}

// Query returns the matching records, oldest first; with more than
// f.Limit matches, the most recent f.Limit. It scans the file: the audit
// trail is for investigations, not a hot path.
func (l *Log) Query(f Filter) ([]Record, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	rf, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rf.Close()
	var out []Record
	sc := bufio.NewScanner(rf)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"anchor"`)) {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			continue // Verify reports it; a query shows what it can read
		}
		if !f.Match(r) {
			continue
		}
		out = append(out, r)
		if len(out) > 2*f.Limit {
			out = append(out[:0], out[len(out)-f.Limit:]...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("audit: read %s: %w", l.path, err)
	}
	if len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

// Prune removes the records older than before and returns how many it
// removed. The file is rewritten (to a temporary file, then renamed over
// it): its first line becomes an Anchor naming the last removed record, so
// Verify goes on checking the chain from there. Records are removed only
// from the start: a record is kept if any record before it is kept.
func (l *Log) Prune(before time.Time) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	rf, err := os.Open(l.path)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer rf.Close()
	tmp := l.path + ".prune"
	wf, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	w := bufio.NewWriter(wf)
	var (
		pruned     int64
		anchorSeq  int64
		anchorHash = GenesisHash
		keeping    bool
	)
	sc := bufio.NewScanner(rf)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !keeping {
			if bytes.HasPrefix(line, []byte(`{"anchor"`)) {
				var a Anchor
				if err := json.Unmarshal(line, &a); err != nil {
					wf.Close()
					return 0, fmt.Errorf("audit: prune: bad anchor: %w", err)
				}
				anchorSeq, anchorHash = a.Anchor.Seq, a.Anchor.Hash
				continue
			}
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				wf.Close()
				return 0, fmt.Errorf("audit: prune: unreadable record after seq %d: %w", anchorSeq, err)
			}
			if r.Time.Before(before) {
				anchorSeq, anchorHash = r.Seq, r.Hash
				pruned++
				continue
			}
			keeping = true
			if pruned > 0 || anchorSeq > 0 {
				var a Anchor
				a.Anchor.Seq, a.Anchor.Hash, a.Anchor.PrunedAt = anchorSeq, anchorHash, l.opts.Now().UTC().Round(0)
				a.Anchor.Pruned = pruned
				b, _ := json.Marshal(a)
				w.Write(append(b, '\n'))
			}
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		wf.Close()
		return 0, fmt.Errorf("audit: prune: read: %w", err)
	}
	if pruned == 0 {
		wf.Close()
		return 0, nil
	}
	if !keeping {
		// Everything was pruned: the file is the anchor alone.
		var a Anchor
		a.Anchor.Seq, a.Anchor.Hash, a.Anchor.PrunedAt, a.Anchor.Pruned = anchorSeq, anchorHash, l.opts.Now().UTC().Round(0), pruned
		b, _ := json.Marshal(a)
		w.Write(append(b, '\n'))
	}
	if err := w.Flush(); err != nil {
		wf.Close()
		return 0, fmt.Errorf("audit: prune: write: %w", err)
	}
	if err := wf.Sync(); err != nil {
		wf.Close()
		return 0, fmt.Errorf("audit: prune: sync: %w", err)
	}
	if err := wf.Close(); err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	syncDir(filepath.Dir(l.path))
	// Appends go on in the new file.
	nf, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		l.closed = true
		return pruned, fmt.Errorf("audit: reopen after prune: %w", err)
	}
	l.f.Close()
	l.f = nf
	return pruned, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
