package agent

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/hodei-ci/hodei/internal/mask"
)

type chunk struct {
	step int
	data []byte
}

// recorder collects emitted chunks; emit may be called from timer goroutines.
type recorder struct {
	mu     sync.Mutex
	chunks []chunk
	ch     chan chunk // when not nil, every chunk is also sent here
}

func (r *recorder) emit(step int, data []byte) {
	r.mu.Lock()
	r.chunks = append(r.chunks, chunk{step, bytes.Clone(data)})
	r.mu.Unlock()
	if r.ch != nil {
		r.ch <- chunk{step, bytes.Clone(data)}
	}
}

func (r *recorder) all() []chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chunk(nil), r.chunks...)
}

// text is everything emitted, in order.
func (r *recorder) text() string { return string(joined(r.all())) }

func joined(cs []chunk) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		b.Write(c.data)
	}
	return b.Bytes()
}

// checkChunks verifies the shape of every chunk.
func checkChunks(t *testing.T, cs []chunk, maxChunk int) {
	t.Helper()
	for i, c := range cs {
		if len(c.data) == 0 {
			t.Fatalf("chunk %d is empty", i)
		}
		if len(c.data) > maxChunk {
			t.Fatalf("chunk %d has %d bytes, more than maxChunk %d", i, len(c.data), maxChunk)
		}
		if bytes.IndexByte(c.data, '\n') >= 0 && c.data[len(c.data)-1] != '\n' {
			t.Fatalf("chunk %d contains a newline but ends mid-line: %q", i, c.data)
		}
	}
}

// randomOutput returns random output made of lines of random lengths, some
// longer than maxChunk, some empty, possibly ending without a newline.
func randomOutput(r *rand.Rand, maxChunk int) []byte {
	var b bytes.Buffer
	for range r.IntN(60) {
		n := 0
		switch r.IntN(4) {
		case 0:
			n = r.IntN(3 * maxChunk) // long lines, some longer than maxChunk
		case 1:
			n = 0
		default:
			n = r.IntN(maxChunk/2 + 1)
		}
		for k := range n {
			b.WriteByte(byte('a' + (k+n)%26))
		}
		b.WriteByte('\n')
	}
	for range r.IntN(maxChunk) {
		b.WriteByte('z') // trailing partial line
	}
	return b.Bytes()
}

// writeRandomly writes data in pieces of random sizes (including empty ones
// and ones bigger than maxChunk).
func writeRandomly(t *testing.T, r *rand.Rand, b *batcher, data []byte, maxChunk int) {
	for len(data) > 0 {
		n := r.IntN(2*maxChunk + 2)
		if r.IntN(3) == 0 {
			n = r.IntN(4)
		}
		n = min(n, len(data))
		got, err := b.Write(data[:n])
		if err != nil || got != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, got, err)
		}
		data = data[n:]
	}
}

func TestBatcherProperty(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{time.Hour, time.Microsecond} {
		t.Run(delay.String(), func(t *testing.T) {
			t.Parallel()
			for seed := range uint64(150) {
				r := rand.New(rand.NewPCG(seed, uint64(delay)))
				maxChunk := 1 + r.IntN(200)
				rec := &recorder{}
				b := newBatcher(maxChunk, delay, rec.emit)
				data := randomOutput(r, maxChunk)
				writeRandomly(t, r, b, data, maxChunk)
				b.Flush(-1)
				cs := rec.all()
				checkChunks(t, cs, maxChunk)
				if got := joined(cs); !bytes.Equal(got, data) {
					t.Fatalf("seed %d maxChunk %d: output differs from input:\n got %d bytes %q\nwant %d bytes %q",
						seed, maxChunk, len(got), trunc(got), len(data), trunc(data))
				}
				for _, c := range cs {
					if c.step != 0 {
						t.Fatalf("seed %d: chunk attributed to step %d, want 0", seed, c.step)
					}
				}
			}
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// TestBatcherLongLines: a line is split only when it is longer than maxChunk,
// and then into maxChunk pieces.
func TestBatcherLongLines(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	b := newBatcher(10, time.Hour, rec.emit)
	b.Write([]byte("short\n" + strings.Repeat("x", 25) + "\nabc\n"))
	b.Flush(1)
	want := []string{"short\n", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx\nabc\n"}
	cs := rec.all()
	if len(cs) != len(want) {
		t.Fatalf("got %d chunks %v, want %q", len(cs), cs, want)
	}
	for i := range want {
		if string(cs[i].data) != want[i] {
			t.Errorf("chunk %d = %q, want %q", i, cs[i].data, want[i])
		}
	}
}

// TestBatcherBatches: many small writes make few chunks, each as full as the
// line boundaries allow, and nothing goes out before maxChunk is reached.
func TestBatcherBatches(t *testing.T) {
	t.Parallel()
	const maxChunk = 4096
	rec := &recorder{}
	b := newBatcher(maxChunk, time.Hour, rec.emit)
	var all bytes.Buffer
	longest := 0
	for i := range 5000 {
		line := fmt.Sprintf("line %d of the output\n", i)
		longest = max(longest, len(line))
		all.WriteString(line)
		b.Write([]byte(line))
		if all.Len() < maxChunk && len(rec.all()) != 0 {
			t.Fatalf("emitted after %d bytes, before maxChunk", all.Len())
		}
	}
	before := rec.all()
	for i, c := range before {
		if len(c.data) < maxChunk-longest {
			t.Errorf("chunk %d of %d bytes: a full chunk holds at least %d", i, len(c.data), maxChunk-longest)
		}
	}
	b.Flush(1)
	cs := rec.all()
	maxChunks := all.Len()/(maxChunk-longest) + 1
	if len(cs) > maxChunks {
		t.Fatalf("%d writes of %d bytes made %d chunks, want at most %d", 5000, all.Len(), len(cs), maxChunks)
	}
	checkChunks(t, cs, maxChunk)
	if !bytes.Equal(joined(cs), all.Bytes()) {
		t.Fatal("output differs from input")
	}
}

// TestBatcherTimerFlush: held output goes out after maxDelay without Flush;
// whole lines first, the partial line one period later. It runs in a
// synctest bubble, whose clock moves only when every goroutine in it
// waits: the times measured are exactly those of the batcher's timer, and
// a chunk that never comes fails the test at once (all goroutines blocked).
func TestBatcherTimerFlush(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const delay = 50 * time.Millisecond
		rec := &recorder{ch: make(chan chunk, 16)}
		b := newBatcher(1<<20, delay, rec.emit)

		start := time.Now()
		b.Write([]byte("one\ntwo\nthr"))
		c := <-rec.ch
		if el := time.Since(start); el != delay {
			t.Errorf("first timed chunk after %v, want maxDelay %v", el, delay)
		}
		if string(c.data) != "one\ntwo\n" || c.step != 0 {
			t.Fatalf("first timed chunk = step %d %q, want whole lines %q", c.step, c.data, "one\ntwo\n")
		}
		c = <-rec.ch
		if el := time.Since(start); el != 2*delay {
			t.Errorf("partial line sent after %v, want after a whole second period (%v)", el, 2*delay)
		}
		if string(c.data) != "thr" {
			t.Fatalf("second timed chunk = %q, want the partial line %q", c.data, "thr")
		}

		// The timer re-arms for later output and uses the current step.
		b.Flush(7)
		start = time.Now()
		b.Write([]byte("progress 10%"))
		c = <-rec.ch
		if el := time.Since(start); el != delay {
			t.Errorf("chunk after %v, want maxDelay %v", el, delay)
		}
		if string(c.data) != "progress 10%" || c.step != 7 {
			t.Fatalf("timed chunk = step %d %q, want step 7 %q", c.step, c.data, "progress 10%")
		}
		b.Flush(8)
		time.Sleep(10 * delay) // on the bubble's clock: any timer left would fire
		select {
		case c := <-rec.ch:
			t.Fatalf("unexpected chunk %q", c.data)
		default:
		}
	})
}

func TestBatcherFlushAttributesSteps(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	b := newBatcher(8, time.Hour, rec.emit)
	b.Write([]byte("s0 a\n"))
	b.Write([]byte("s0 b"))
	b.Flush(1)
	b.Flush(2)                        // step 1 printed nothing
	b.Write([]byte("s2 long line\n")) // 13 bytes: one chunk goes out now
	b.Flush(3)
	b.Write([]byte("s3"))
	b.Flush(-1)
	b.Flush(-1) // nothing left: no chunk

	want := []chunk{
		{0, []byte("s0 a\n")},
		{0, []byte("s0 b")},
		{2, []byte("s2 long ")},
		{2, []byte("line\n")},
		{3, []byte("s3")},
	}
	got := rec.all()
	if len(got) != len(want) {
		t.Fatalf("got %d chunks %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].step != want[i].step || !bytes.Equal(got[i].data, want[i].data) {
			t.Errorf("chunk %d = step %d %q, want step %d %q", i, got[i].step, got[i].data, want[i].step, want[i].data)
		}
	}
}

// TestBatcherStepsProperty interleaves writes and Flushes with a running
// timer: every byte is attributed to the step during which it was written.
func TestBatcherStepsProperty(t *testing.T) {
	t.Parallel()
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 5))
		maxChunk := 1 + r.IntN(64)
		rec := &recorder{}
		b := newBatcher(maxChunk, time.Duration(r.IntN(3))*time.Millisecond+time.Microsecond, rec.emit)
		wantByStep := map[int]*bytes.Buffer{}
		var order []int
		for step := range 1 + r.IntN(6) {
			if step > 0 {
				b.Flush(step)
			}
			buf := &bytes.Buffer{}
			wantByStep[step] = buf
			order = append(order, step)
			for range r.IntN(20) {
				// Each step's bytes are tagged with the step number.
				p := bytes.Repeat([]byte{byte('0' + step)}, r.IntN(2*maxChunk))
				if r.IntN(2) == 0 {
					p = append(p, '\n')
				}
				buf.Write(p)
				b.Write(p)
			}
		}
		b.Flush(-1)
		cs := rec.all()
		checkChunks(t, cs, maxChunk)
		got := map[int]*bytes.Buffer{}
		last := -1
		for _, c := range cs {
			if c.step < last {
				t.Fatalf("seed %d: chunk of step %d after step %d", seed, c.step, last)
			}
			last = c.step
			if got[c.step] == nil {
				got[c.step] = &bytes.Buffer{}
			}
			got[c.step].Write(c.data)
		}
		for _, step := range order {
			g := got[step]
			if g == nil {
				g = &bytes.Buffer{}
			}
			if !bytes.Equal(g.Bytes(), wantByStep[step].Bytes()) {
				t.Fatalf("seed %d step %d: got %q, want %q", seed, step, trunc(g.Bytes()), trunc(wantByStep[step].Bytes()))
			}
		}
	}
}

func TestCapErrorKeepsStatusesSmall(t *testing.T) {
	if got := capError("step 1: exit status 1"); got != "step 1: exit status 1" {
		t.Errorf("short error changed: %q", got)
	}
	long := strings.Repeat("é", maxStatusError) // 2 bytes each
	got := capError(long)
	if len(got) > maxStatusError+64 || !utf8.ValidString(got) || !strings.HasSuffix(got, "… (cut: 8192 bytes in all)") {
		t.Errorf("capError of %d bytes: %d bytes, valid %v, ends %q", len(long), len(got), utf8.ValidString(got), got[len(got)-40:])
	}
}

// TestSecretSplitAcrossChunksIsMasked: a step's output goes through the
// mask before the batcher cuts it, so a secret that would straddle the cut
// between two chunks, written in pieces, is masked all the same, and no
// chunk is longer than maxChunk, however long the line.
func TestSecretSplitAcrossChunksIsMasked(t *testing.T) {
	t.Parallel()
	const maxChunk = 16
	secret := "s3cr3t-value"
	rec := &recorder{}
	b := newBatcher(maxChunk, time.Hour, rec.emit)
	w := mask.NewWriter(b, mask.New(secret))
	// One line; the secret starts 5 bytes before the first chunk's end.
	line := strings.Repeat("a", maxChunk-5) + secret + strings.Repeat("b", 3*maxChunk)
	for i := 0; i < len(line); i += 3 { // pieces that split the secret too
		if _, err := w.Write([]byte(line[i:min(i+3, len(line))])); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	b.Flush(1)
	var got strings.Builder
	for _, c := range rec.all() {
		if len(c.data) > maxChunk {
			t.Errorf("a chunk of %d bytes: want at most %d", len(c.data), maxChunk)
		}
		got.Write(c.data)
	}
	want := strings.Repeat("a", maxChunk-5) + mask.Replacement + strings.Repeat("b", 3*maxChunk)
	if got.String() != want {
		t.Errorf("output %q, want %q", got.String(), want)
	}
}
