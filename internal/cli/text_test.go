package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// hostile are names stored before validation refused control characters:
// a window title, a screen clear, a right-to-left override, a C1 CSI, an
// isolate, invalid UTF-8.
var hostile = []struct{ in, want string }{
	{"deploy\x1b]0;owned\a", `deploy\x1b]0;owned\x07`},
	{"\x1b[2Jclear", `\x1b[2Jclear`},
	{"safe\u202Eexe.txt", `safe\u202eexe.txt`},
	{"c1 \u009b31m", `c1 \x9b31m`},
	{"iso\u2066late\u2069", `iso\u2066late\u2069`},
	{"bad \xff byte", `bad \xff byte`},
	{"tab\tnew\nline", `tab\x09new\x0aline`},
	{"plain (1.22, linux) ✓ ñ", "plain (1.22, linux) ✓ ñ"},
}

func TestTextEscapesControlCharacters(t *testing.T) {
	for _, h := range hostile {
		if got := Text(h.in); got != h.want {
			t.Errorf("Text(%q) = %q, want %q", h.in, got, h.want)
		}
	}
}

// TestTablesEscapeNames: the tables of hodei runs and hodei workers and the
// job prefix of followed logs print stored names inert.
func TestTablesEscapeNames(t *testing.T) {
	for _, h := range hostile[:6] {
		var b bytes.Buffer
		if err := RunsTable(&b, []wire.Run{{ID: "r1", Pipeline: h.in, State: "succeeded"}}); err != nil {
			t.Fatal(err)
		}
		if err := WorkersTable(&b, []wire.Worker{{ID: h.in, Pool: h.in, State: "idle"}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := JobsTable(&b, []wire.Job{{Key: h.in, State: "failed"}}); err != nil {
			t.Fatal(err)
		}
		p := NewPrinter(&b, nil)
		if err := p.Event(wire.Event{Type: wire.EventJob, Job: &wire.JobEvent{JobKey: h.in, State: "failed", Error: h.in}}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if i, r := firstControl(out); i >= 0 {
			t.Errorf("name %q: output holds %U at %d:\n%s", h.in, r, i, out)
		}
		if strings.Count(out, h.want) < 5 {
			t.Errorf("name %q: want it shown as %q in every table:\n%s", h.in, h.want, out)
		}
	}
}

// firstControl finds a control character other than newline in s.
func firstControl(s string) (int, rune) {
	for i, r := range s {
		if r != '\n' && (r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0xfffd) {
			return i, r
		}
	}
	return -1, 0
}

func TestTerminalWriterKeepsColoursOnly(t *testing.T) {
	cases := []struct{ in, want string }{
		{"\x1b[31mred\x1b[0m \x1b[1;38;5;208mbold\x1b[m\n", "\x1b[31mred\x1b[0m \x1b[1;38;5;208mbold\x1b[m\n"},
		{"\x1b[38:2::255:0:0mtrue colour\x1b[0m", "\x1b[38:2::255:0:0mtrue colour\x1b[0m"},
		{"a\x1b]0;owned\a b", `a\x1b]0;owned\x07 b`},
		{"\x1b[2J\x1b[H\x1b[?25l", `\x1b[2J\x1b[H\x1b[?25l`},
		{"\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", `\x1b]8;;http://evil\x1b\link\x1b]8;;\x1b\`},
		{"c1 \u009b2J and \x9b raw", `c1 \x9b2J and \x9b raw`},
		{"progress 10%\rprogress 20%\r\tdone\n", "progress 10%\rprogress 20%\r\tdone\n"},
		{"bell\a del\x7f bs\b", `bell\x07 del\x7f bs\x08`},
		{"utf-8 ✓ ñ 日本 \u0100", "utf-8 ✓ ñ 日本 \u0100"},
		{"\x1b[" + strings.Repeat("1;", 40) + "m", `\x1b[` + strings.Repeat("1;", 40) + "m"},
		{"cut \x1b[3", `cut \x1b[3`},
	}
	for _, c := range cases {
		// Every split of the input into two writes gives the same output.
		for cut := 0; cut <= len(c.in); cut++ {
			var b bytes.Buffer
			tw := NewTerminalWriter(&b)
			for _, part := range []string{c.in[:cut], c.in[cut:]} {
				if n, err := tw.Write([]byte(part)); err != nil || n != len(part) {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != c.want {
				t.Errorf("%q cut at %d: got %q, want %q", c.in, cut, b.String(), c.want)
				break
			}
		}
	}
}

// TestLinesBoundLongLines: a line longer than MaxPartial is written in
// parts as it comes, so Lines holds at most MaxPartial of it, and what one
// stream writes alone comes out exactly; another stream writing in the
// middle of a long line ends it there, and the rest comes on a new line.
func TestLinesBoundLongLines(t *testing.T) {
	var b bytes.Buffer
	l := NewLines(&b, nil)
	line := bytes.Repeat([]byte("0123456789abcdef"), (4*MaxPartial)/16)
	for i := 0; i < len(line); i += 4096 {
		if err := l.Write("a", line[i:min(i+4096, len(line))]); err != nil {
			t.Fatal(err)
		}
		if n := len(l.partial["a"]); n > MaxPartial+4096 {
			t.Fatalf("after %d bytes, Lines holds %d bytes of the line", i+4096, n)
		}
	}
	if err := l.Write("a", []byte("\nshort\n")); err != nil {
		t.Fatal(err)
	}
	want := "[a] " + string(line) + "\n[a] short\n"
	if b.String() != want {
		t.Fatalf("one stream: got %d bytes, want %d exact", b.Len(), len(want))
	}

	b.Reset()
	part := bytes.Repeat([]byte("x"), MaxPartial+1)
	for _, w := range []struct{ key, data string }{
		{"a", string(part)}, {"b", "from b\n"}, {"a", "yy\n"}, {"a", string(part)}, {"a", "zz"},
	} {
		if err := l.Write(w.key, []byte(w.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.FlushAll(); err != nil {
		t.Fatal(err)
	}
	want = "[a] " + string(part) + "\n[b] from b\n[a] yy\n[a] " + string(part) + "zz\n"
	if b.String() != want {
		g := strings.ReplaceAll(b.String(), string(part), "<part>")
		t.Fatalf("interleaved: got\n%q\nwant\n%q", g, strings.ReplaceAll(want, string(part), "<part>"))
	}
}

// TestStepOutputIsExactIntoPipesAndFiles: into a pipe or a file, step
// output is not filtered: what the step wrote, escapes and all.
func TestStepOutputIsExactIntoPipesAndFiles(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, out := range []*os.File{w, f} {
		if got := StepOutput(out); got != io.Writer(out) {
			t.Errorf("StepOutput(%s) = %T, want the file itself", out.Name(), got)
		}
	}
}
