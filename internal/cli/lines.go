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

// MaxPartial bounds the partial line Lines holds for a stream: past it,
// the part is written (the line goes on where it stopped), so a line of
// any length costs a bounded amount of memory.
const MaxPartial = 64 << 10

// Lines writes the output of several streams (jobs), each cut into lines and
// each line prefixed. A stream's last line stays buffered until its newline
// comes or the stream is flushed, so that output interleaved from several
// jobs never mixes within a line, unless it grows past MaxPartial: it is
// then written without its newline, and the stream holds the output line
// until the line ends. If another stream writes first, the held line is
// ended with a newline there, and its rest comes on a new prefixed line.
// What one stream writes alone is written exactly, prefixes aside. It is not
// safe for concurrent use.
type Lines struct {
	w       io.Writer
	prefix  func(key string) string
	partial map[string][]byte
	buf     []byte
	open    string // the stream whose line was written in part, if any
	isOpen  bool
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
	// cont: this stream's line is already on the output, prefix included.
	cont := l.isOpen && l.open == key
	if l.isOpen && !cont {
		out = append(out, '\n')
	}
	l.isOpen = false
	rest := data
	pending := l.partial[key]
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		if !cont {
			out = append(out, p...)
		}
		cont = false
		out = append(out, pending...)
		out = append(out, rest[:i+1]...)
		pending = nil
		rest = rest[i+1:]
	}
	if len(rest) > 0 {
		pending = append(pending, rest...)
	}
	if cont {
		// No newline came: the line is still the stream's, on the output.
		out = append(out, pending...)
		pending = nil
		l.open, l.isOpen = key, true
	} else if len(pending) > MaxPartial {
		if !cont {
			out = append(out, p...)
		}
		out = append(out, pending...)
		pending = nil
		l.open, l.isOpen = key, true
	}
	if len(pending) > 0 {
		l.partial[key] = pending
	} else {
		delete(l.partial, key)
	}
	if cap(out) <= 4*MaxPartial {
		l.buf = out[:0]
	} else {
		l.buf = nil
	}
	if len(out) == 0 {
		return nil
	}
	_, err := l.w.Write(out)
	return err
}

// Pending reports whether a stream has a partial line buffered, or written
// in part.
func (l *Lines) Pending(key string) bool {
	return len(l.partial[key]) > 0 || l.isOpen && l.open == key
}

// Flush writes a stream's partial line, ended with a newline.
func (l *Lines) Flush(key string) error {
	pending, ok := l.partial[key]
	cont := l.isOpen && l.open == key
	if !ok && !cont {
		return nil
	}
	delete(l.partial, key)
	var out []byte
	if l.isOpen && !cont {
		out = append(out, '\n')
	}
	l.isOpen = false
	if !cont {
		out = append(out, l.prefix(key)...)
	}
	out = append(out, pending...)
	_, err := l.w.Write(append(out, '\n'))
	return err
}

// FlushAll flushes every stream, in key order.
func (l *Lines) FlushAll() error {
	keys := make([]string, 0, len(l.partial)+1)
	for k := range l.partial {
		keys = append(keys, k)
	}
	if _, ok := l.partial[l.open]; l.isOpen && !ok {
		keys = append(keys, l.open)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := l.Flush(k); err != nil {
			return err
		}
	}
	return nil
}
