package cli

import (
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hodei-ci/hodei/internal/pipeline"
)

// Text makes a name or message from the server safe to print in a
// terminal: every character a pipeline name may not hold
// (pipeline.IsControl: C0 and C1 controls, DEL, bidirectional formatting
// characters) and every byte of invalid UTF-8 is written as a Go escape
// ("\x1b", "\u202e"). Names are validated when a pipeline is submitted;
// Text is for what was stored before that, or sent by a server that does
// not check. Every table and every line that shows a name goes through it.
func Text(s string) string {
	if i, _ := pipeline.ControlChar(s); i < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && w == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case pipeline.IsControl(r):
			b.WriteString(escapeRune(r))
		default:
			b.WriteString(s[i : i+w])
		}
		i += w
	}
	return b.String()
}

// escapeRune writes r as \xNN below 0x100, else as \uNNNN.
func escapeRune(r rune) string {
	if r < 0x100 {
		return `\x` + hex2(byte(r))
	}
	s := strconv.FormatInt(int64(r), 16)
	return `\u` + strings.Repeat("0", 4-len(s)) + s
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}

// IsTerminal reports whether f is a terminal (a character device).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// StepOutput is where step output goes for f: f itself when f is not a
// terminal (a file or a pipe gets the bytes the step wrote, exactly), else
// a TerminalWriter over f.
func StepOutput(f *os.File) io.Writer {
	if IsTerminal(f) {
		return NewTerminalWriter(f)
	}
	return f
}

// maxEscape bounds an escape sequence held back across writes: longer
// ones are not colours, and are written escaped.
const maxEscape = 64

// TerminalWriter passes step output to a terminal keeping its colours and
// nothing else a terminal would obey: SGR sequences (ESC [ digits ; : m:
// colours, bold, underline, reset), tab, newline and carriage return are
// written as they are; every other escape sequence (cursor moves, screen
// clears, OSC window titles, hyperlinks and clipboard writes, device
// queries), every other C0 control, DEL, the C1 controls and bytes that
// are not UTF-8 are written escaped ("\x1b[2J"), visible and inert. A
// sequence split across writes is held back until it is complete. Flush
// writes what is held back at the end of the output. It is not safe for
// concurrent use.
type TerminalWriter struct {
	w    io.Writer
	held []byte // an incomplete escape sequence or UTF-8 character
	out  []byte
}

// NewTerminalWriter filters output to w.
func NewTerminalWriter(w io.Writer) *TerminalWriter { return &TerminalWriter{w: w} }

// Write filters p and writes the result; it reports len(p) on success.
func (t *TerminalWriter) Write(p []byte) (int, error) {
	data := p
	if len(t.held) > 0 {
		data = append(t.held, p...)
		t.held = nil
	}
	out := t.out[:0]
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == 0x1b:
			n, complete := sgrLen(data[i:])
			if !complete {
				t.held = append([]byte(nil), data[i:]...)
				i = len(data)
				continue
			}
			if n > 0 {
				out = append(out, data[i:i+n]...)
				i += n
				continue
			}
			out = append(out, `\x1b`...)
			i++
		case c == '\t' || c == '\n' || c == '\r':
			out = append(out, c)
			i++
		case c < 0x20 || c == 0x7f:
			out = append(out, `\x`...)
			out = append(out, hex2(c)...)
			i++
		case c >= 0x80:
			if !utf8.FullRune(data[i:]) {
				t.held = append([]byte(nil), data[i:]...)
				i = len(data)
				continue
			}
			r, w := utf8.DecodeRune(data[i:])
			switch {
			case r == utf8.RuneError && w == 1:
				out = append(out, `\x`...)
				out = append(out, hex2(c)...)
			case r >= 0x80 && r <= 0x9f:
				out = append(out, escapeRune(r)...)
			default:
				out = append(out, data[i:i+w]...)
			}
			i += w
			continue
		default:
			out = append(out, c)
			i++
		}
	}
	t.out = out[:0]
	if len(out) > 0 {
		if _, err := t.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes, escaped, what is held back: an escape sequence the output
// never completed.
func (t *TerminalWriter) Flush() error {
	if len(t.held) == 0 {
		return nil
	}
	var out []byte
	for _, c := range t.held {
		if c < 0x20 || c >= 0x7f {
			out = append(out, `\x`...)
			out = append(out, hex2(c)...)
		} else {
			out = append(out, c)
		}
	}
	t.held = nil
	_, err := t.w.Write(out)
	return err
}

// sgrLen looks at an escape sequence at the start of b (b[0] is ESC). It
// returns the length of an SGR sequence (ESC [ params m), 0 if the
// sequence is anything else, and complete=false if b ends before it can
// tell.
func sgrLen(b []byte) (n int, complete bool) {
	if len(b) < 2 {
		return 0, false
	}
	if b[1] != '[' {
		return 0, true
	}
	for i := 2; i < len(b); i++ {
		switch c := b[i]; {
		case c >= '0' && c <= '9' || c == ';' || c == ':':
			if i >= maxEscape {
				return 0, true
			}
		case c == 'm':
			return i + 1, true
		default:
			return 0, true
		}
	}
	return 0, len(b) >= maxEscape
}
