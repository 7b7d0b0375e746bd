// Package mask hides secret values in a job's output before it leaves the
// agent.
//
// A Set is built from secret values. For each value it masks the value
// itself, its base64 forms (standard and URL alphabets, with and without
// padding), its hex forms (lower and upper case), its URL-encoded forms
// (query escape and path escape), and, for a multi-line value, each of its
// lines. Every occurrence becomes "***".
//
// Values shorter than MinLen bytes are not masked at all: masking "1" or
// "ok" would mangle every line of output and tell a reader which short
// strings are secret. Lines of a multi-line value shorter than MinLen are
// skipped for the same reason.
//
// A Writer masks a stream that arrives in arbitrary pieces: a secret split
// across two writes is still masked, because the Writer holds back the tail
// of a write that could be the start of a secret (at most the longest
// pattern minus one byte) until the next write or Flush tells.
//
// What is not caught: a secret encoded together with other bytes (the
// base64 of "user:secret" does not contain the base64 of "secret" unless
// the offsets align), encodings other than those above, and secrets
// transformed by the job (reversed, compressed, split by other output).
package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// MinLen is the shortest value (and line of a multi-line value) masked.
const MinLen = 4

// Replacement is what a masked value becomes.
const Replacement = "***"

// Set is an immutable set of byte patterns to mask. The zero value and nil
// mask nothing. A Set is safe for concurrent use.
type Set struct {
	patterns [][]byte
	// byFirst lists, for each first byte, the patterns starting with it,
	// longest first.
	byFirst [256][]int
	maxLen  int
}

// New returns the set of every form (see Forms) of every value.
func New(values ...string) *Set {
	s := &Set{}
	seen := map[string]bool{}
	for _, v := range values {
		for _, f := range Forms(v) {
			if !seen[f] {
				seen[f] = true
				s.patterns = append(s.patterns, []byte(f))
			}
		}
	}
	// Longest first, so that the first full match at a position is the
	// longest one.
	sort.SliceStable(s.patterns, func(i, k int) bool { return len(s.patterns[i]) > len(s.patterns[k]) })
	for i, p := range s.patterns {
		s.byFirst[p[0]] = append(s.byFirst[p[0]], i)
		s.maxLen = max(s.maxLen, len(p))
	}
	return s
}

// Forms returns the strings masked for one secret value: the value, its
// base64, hex and URL-encoded forms, and each line of a multi-line value.
// It returns nil for a value shorter than MinLen.
func Forms(v string) []string {
	if len(v) < MinLen {
		return nil
	}
	b := []byte(v)
	out := []string{
		v,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		url.QueryEscape(v),
		url.PathEscape(v),
	}
	if strings.ContainsAny(v, "\r\n") {
		for _, line := range strings.Split(v, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if len(line) >= MinLen {
				out = append(out, line)
			}
		}
	}
	return out
}

// Empty reports whether the set masks nothing.
func (s *Set) Empty() bool { return s == nil || len(s.patterns) == 0 }

// MaxLen is the length of the longest pattern.
func (s *Set) MaxLen() int {
	if s == nil {
		return 0
	}
	return s.maxLen
}

// String masks a complete string (an error message, say).
func (s *Set) String(in string) string {
	if s.Empty() {
		return in
	}
	out, _ := s.scan(nil, []byte(in), true)
	return string(out)
}

// Bytes masks a complete byte slice; it returns a new slice.
func (s *Set) Bytes(in []byte) []byte {
	if s.Empty() {
		return append([]byte(nil), in...)
	}
	out, _ := s.scan(nil, in, true)
	return out
}

// scan appends buf to out with every match replaced. Unless final, it stops
// at the first position where buf's remaining bytes are a proper prefix of
// a pattern (a secret that may go on in the next write) and returns those
// bytes as rest, not copied to out.
func (s *Set) scan(out, buf []byte, final bool) (_, rest []byte) {
	start := 0
	for i := 0; i < len(buf); {
		cands := s.byFirst[buf[i]]
		if len(cands) == 0 {
			i++
			continue
		}
		matched, partial := 0, false
		tail := buf[i:]
		for _, k := range cands {
			p := s.patterns[k]
			if len(tail) >= len(p) {
				if matched == 0 && bytes.Equal(tail[:len(p)], p) {
					matched = len(p)
				}
			} else if !final && bytes.HasPrefix(p, tail) {
				// A longer secret may be completed by the next write:
				// decide once it comes.
				partial = true
				break
			}
		}
		if partial {
			return append(out, buf[start:i]...), tail
		}
		if matched > 0 {
			out = append(out, buf[start:i]...)
			out = append(out, Replacement...)
			i += matched
			start = i
			continue
		}
		i++
	}
	return append(out, buf[start:]...), nil
}

// Writer masks what is written to it and writes the result to an underlying
// writer. It is safe for concurrent use, but writes from several goroutines
// interleave at write boundaries as they would without it.
type Writer struct {
	mu      sync.Mutex
	set     *Set
	w       io.Writer
	pending []byte // tail that may be the start of a secret
}

// NewWriter returns a Writer masking set's patterns on their way to w.
func NewWriter(w io.Writer, set *Set) *Writer {
	return &Writer{set: set, w: w}
}

// Write masks p, writes what is certain to the underlying writer, and holds
// back a tail that may be the start of a secret. It reports len(p) unless
// the underlying writer fails.
func (m *Writer) Write(p []byte) (int, error) {
	if m.set.Empty() {
		return m.w.Write(p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	buf := p
	if len(m.pending) > 0 {
		buf = append(m.pending, p...)
	}
	out, rest := m.set.scan(make([]byte, 0, len(buf)+8), buf, false)
	m.pending = append(m.pending[:0:0], rest...)
	if len(out) > 0 {
		if _, err := m.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what is held back, masked: call it when the stream ends (a
// step's output is drained), since no later write can complete a secret.
func (m *Writer) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.pending) == 0 {
		return nil
	}
	out, _ := m.set.scan(nil, m.pending, true)
	m.pending = nil
	_, err := m.w.Write(out)
	return err
}

// Pending is the number of bytes held back.
func (m *Writer) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}
