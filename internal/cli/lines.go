// Package cli holds what the hodei command prints and how it reads its
// settings: log lines prefixed by job, job state lines, tables, durations,
// and flags backed by HODEI_* environment variables.
package cli

import (
	"bytes"
	"io"
	"sort"
)

// KeyPrefix prefixes a line with its job's key in brackets: "[build] ".
// The key goes through Text.
func KeyPrefix(key string) string { return "[" + Text(key) + "] " }

// NoPrefix leaves lines as they are.
func NoPrefix(string) string { return "" }

// Lines writes the output of several streams (jobs), each cut into lines and
// each line prefixed. A stream's last line stays buffered until its newline
// comes or the stream is flushed, so that output interleaved from several
// jobs never mixes within a line. It is not safe for concurrent use.
type Lines struct {
	w       io.Writer
	prefix  func(key string) string
	partial map[string][]byte
	buf     []byte
}

// NewLines writes to w, prefixing each line with prefix(key); a nil prefix
// means KeyPrefix.
func NewLines(w io.Writer, prefix func(key string) string) *Lines {
	if prefix == nil {
		prefix = KeyPrefix
	}
	return &Lines{w: w, prefix: prefix, partial: map[string][]byte{}}
}

// Write adds output of one stream and writes the lines it completes.
func (l *Lines) Write(key string, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	p := l.prefix(key)
	out := l.buf[:0]
	rest := data
	pending := l.partial[key]
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		out = append(out, p...)
		out = append(out, pending...)
		out = append(out, rest[:i+1]...)
		pending = nil
		rest = rest[i+1:]
	}
	if len(rest) > 0 {
		pending = append(pending, rest...)
	}
	if len(pending) > 0 {
		l.partial[key] = pending
	} else {
		delete(l.partial, key)
	}
	l.buf = out[:0]
	if len(out) == 0 {
		return nil
	}
	_, err := l.w.Write(out)
	return err
}

// Pending reports whether a stream has a partial line buffered.
func (l *Lines) Pending(key string) bool { return len(l.partial[key]) > 0 }

// Flush writes a stream's partial line, ended with a newline.
func (l *Lines) Flush(key string) error {
	pending, ok := l.partial[key]
	if !ok {
		return nil
	}
	delete(l.partial, key)
	out := append([]byte(l.prefix(key)), pending...)
	_, err := l.w.Write(append(out, '\n'))
	return err
}

// FlushAll flushes every stream, in key order.
func (l *Lines) FlushAll() error {
	keys := make([]string, 0, len(l.partial))
	for k := range l.partial {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := l.Flush(k); err != nil {
			return err
		}
	}
	return nil
}
