package hub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/store"
)

// drain reads what is buffered in s without blocking; closed reports whether
// the channel was seen closed.
func drain(s *Sub) (notes []Note, closed bool) {
	for {
		select {
		case n, ok := <-s.C:
			if !ok {
				return notes, true
			}
			notes = append(notes, n)
		default:
			return notes, false
		}
	}
}

// readAll reads until s.C closes, failing the test if that takes too long.
func readAll(t *testing.T, s *Sub) []Note {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Note
	for {
		select {
		case n, ok := <-s.C:
			if !ok {
				return out
			}
			out = append(out, n)
		case <-ctx.Done():
			t.Fatalf("subscription not closed after %d notes", len(out))
		}
	}
}

// subscribe subscribes to run's notes (every run's for "") until the test
// ends.
func subscribe(t *testing.T, h *Hub, run string, buffer int) *Sub {
	s := h.Subscribe(run, buffer)
	t.Cleanup(s.Close)
	return s
}

func note(run string, i int) Note {
	return Note{Kind: KindJob, RunID: run, JobID: fmt.Sprintf("%s-j%d", run, i), Attempt: i}
}

func TestPublishPerRun(t *testing.T) {
	t.Parallel()
	h := New()
	a1 := subscribe(t, h, "r1", 16)
	a2 := subscribe(t, h, "r1", 16)
	b := subscribe(t, h, "r2", 16)

	h.Publish(note("r1", 0), note("r2", 0), note("r3", 0))
	h.Publish(note("r1", 1))
	chunk := &store.LogChunk{}
	h.Publish(Note{Kind: KindLog, RunID: "r1", JobID: "x", Chunk: chunk})

	for _, s := range []*Sub{a1, a2} {
		got, closed := drain(s)
		if closed {
			t.Fatal("r1 subscription closed")
		}
		if len(got) != 3 || got[0].JobID != "r1-j0" || got[1].JobID != "r1-j1" || got[2].Chunk != chunk || got[2].Kind != KindLog {
			t.Fatalf("r1 follower got %+v", got)
		}
		if s.Lagged() {
			t.Fatal("Lagged without lag")
		}
	}
	got, _ := drain(b)
	if len(got) != 1 || got[0].RunID != "r2" {
		t.Fatalf("r2 follower got %+v", got)
	}
}

func TestPublishAllRuns(t *testing.T) {
	t.Parallel()
	h := New()
	all := subscribe(t, h, "", 16)
	one := subscribe(t, h, "r2", 16)

	h.Publish(note("r1", 0), note("r2", 0))
	h.Publish(note("r3", 0), note("r1", 1))
	got, _ := drain(all)
	want := []string{"r1-j0", "r2-j0", "r3-j0", "r1-j1"}
	if len(got) != len(want) {
		t.Fatalf("all-runs follower got %d notes, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].JobID != want[i] {
			t.Fatalf("note %d: got %s, want %s", i, got[i].JobID, want[i])
		}
	}
	// A run follower gets its run's notes exactly once, not also through
	// the all-runs set.
	if got, _ := drain(one); len(got) != 1 {
		t.Fatalf("r2 follower got %+v", got)
	}
}

func TestSubscribeSeesOnlyLaterNotes(t *testing.T) {
	t.Parallel()
	h := New()
	h.Publish(note("r", 0))
	s := subscribe(t, h, "r", 4)
	h.Publish(note("r", 1))
	got, _ := drain(s)
	if len(got) != 1 || got[0].Attempt != 1 {
		t.Fatalf("got %+v", got)
	}
}

func TestPublishWithoutSubscribers(t *testing.T) {
	t.Parallel()
	h := New()
	h.Publish()
	h.Publish(note("r", 0), Note{})
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	t.Parallel()
	h := New()
	slow := h.Subscribe("r", 2)
	slowAll := h.Subscribe("", 3)
	fast := subscribe(t, h, "r", 100)

	for i := range 5 {
		h.Publish(note("r", i))
	}
	if !slow.Lagged() || !slowAll.Lagged() {
		t.Fatalf("Lagged: run follower %v, all-runs follower %v; want both true", slow.Lagged(), slowAll.Lagged())
	}
	if fast.Lagged() {
		t.Fatal("fast follower lagged")
	}
	// More notes after the drop reach nobody who was dropped.
	h.Publish(note("r", 5))

	for _, c := range []struct {
		s *Sub
		n int
	}{{slow, 2}, {slowAll, 3}} {
		got := readAll(t, c.s)
		if len(got) != c.n {
			t.Fatalf("dropped follower got %d notes, want the %d that fit", len(got), c.n)
		}
		for i, n := range got {
			if n.Attempt != i {
				t.Fatalf("dropped follower: note %d is %d (a gap)", i, n.Attempt)
			}
		}
		// Closing a dropped follower keeps Lagged.
		c.s.Close()
		if !c.s.Lagged() {
			t.Fatal("Close cleared Lagged")
		}
	}
	got, closed := drain(fast)
	if closed || len(got) != 6 {
		t.Fatalf("fast follower: %d notes, closed %v", len(got), closed)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.all) != 0 || len(h.runs["r"]) != 1 {
		t.Fatalf("dropped followers still registered: all %d, run %d", len(h.all), len(h.runs["r"]))
	}
}

// TestLagInOnePublish drops a follower in the middle of a multi-note
// Publish: it must not get any of the notes after the first that did not fit.
func TestLagInOnePublish(t *testing.T) {
	t.Parallel()
	h := New()
	s := h.Subscribe("r", 3)
	ns := make([]Note, 10)
	for i := range ns {
		ns[i] = note("r", i)
	}
	h.Publish(ns...)
	got := readAll(t, s)
	if !s.Lagged() || len(got) != 3 || got[2].Attempt != 2 {
		t.Fatalf("lagged %v, got %+v", s.Lagged(), got)
	}
}

// TestNoGapProperty races a publisher against followers that read at random
// paces with random buffers: each follower sees a prefix of the notes with no
// gap, and sees them all unless it lagged.
func TestNoGapProperty(t *testing.T) {
	t.Parallel()
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 99))
		h := New()
		const total = 300
		nsubs := 1 + r.IntN(4)
		subs := make([]*Sub, nsubs)
		results := make([][]Note, nsubs)
		var wg sync.WaitGroup
		for i := range subs {
			run := "r"
			if r.IntN(2) == 0 {
				run = ""
			}
			buf := 1 + r.IntN(64)
			if r.IntN(3) == 0 {
				buf = 4 * total // never lags: at most two notes per step
			}
			subs[i] = h.Subscribe(run, buf)
			pace := r.IntN(4)
			wg.Go(func() {
				for n := range subs[i].C {
					results[i] = append(results[i], n)
					for range pace {
						runtime.Gosched()
					}
				}
			})
		}
		// A follower that reads nothing until the end lags for sure and keeps
		// exactly what fit in its buffer.
		stalledBuf := 1 + r.IntN(64)
		stalled := h.Subscribe("r", stalledBuf)
		for i := 0; i < total; {
			batch := 1 + r.IntN(5)
			var ns []Note
			for k := 0; k < batch && i < total; k++ {
				ns = append(ns, note("r", i))
				i++
				// Notes of another run go to all-runs followers only.
				if r.IntN(4) == 0 {
					ns = append(ns, Note{Kind: KindRun, RunID: "other", Attempt: -1})
				}
			}
			h.Publish(ns...)
		}
		for _, s := range subs {
			s.Close()
		}
		wg.Wait()
		got := readAll(t, stalled)
		if !stalled.Lagged() || len(got) != stalledBuf {
			t.Fatalf("seed %d: stalled follower: lagged %v, %d notes, buffer %d", seed, stalled.Lagged(), len(got), stalledBuf)
		}
		for i, n := range got {
			if n.Attempt != i {
				t.Fatalf("seed %d: stalled follower got note %d at %d", seed, n.Attempt, i)
			}
		}
		for i, s := range subs {
			next := 0
			for _, n := range results[i] {
				if n.RunID == "other" {
					if s.run != "" {
						t.Fatalf("seed %d: run follower got another run's note", seed)
					}
					continue
				}
				if n.Attempt != next {
					t.Fatalf("seed %d follower %d: got note %d after %d (gap or reorder)", seed, i, n.Attempt, next-1)
				}
				next++
			}
			if !s.Lagged() && next != total {
				t.Fatalf("seed %d follower %d: not lagged but got %d of %d notes", seed, i, next, total)
			}
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	h := New()
	s := h.Subscribe("r", 4)
	h.Publish(note("r", 0))
	s.Close()
	s.Close()
	if s.Lagged() {
		t.Fatal("Lagged after Close")
	}
	// What was buffered before Close is still readable, then the end.
	got := readAll(t, s)
	if len(got) != 1 {
		t.Fatalf("got %+v", got)
	}
	h.Publish(note("r", 1)) // must not panic (send on closed channel)
	s.Close()
	if _, ok := <-s.C; ok {
		t.Fatal("note after Close")
	}

	all := h.Subscribe("", 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(all.Close)
	}
	wg.Wait()
	if _, ok := <-all.C; ok {
		t.Fatal("channel open after concurrent Close")
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.runs) != 0 || len(h.all) != 0 {
		t.Fatalf("closed followers still registered: runs %v, all %d", h.runs, len(h.all))
	}
}

func TestCloseOneKeepsOthers(t *testing.T) {
	t.Parallel()
	h := New()
	a := h.Subscribe("r", 4)
	b := subscribe(t, h, "r", 4)
	a.Close()
	h.Publish(note("r", 0))
	if got, closed := drain(b); closed || len(got) != 1 {
		t.Fatalf("remaining follower: %+v closed %v", got, closed)
	}
}

// TestConcurrentPublishers runs publishers, subscribers and Close at once;
// meant for -race. Each publisher's notes arrive in its order, none lost for
// followers whose buffers are big enough.
func TestConcurrentPublishers(t *testing.T) {
	t.Parallel()
	h := New()
	const pubs, per = 8, 500
	runs := []string{"a", "b", "c"}
	all := h.Subscribe("", 2*pubs*per)
	perRun := map[string]*Sub{}
	for _, r := range runs {
		perRun[r] = h.Subscribe(r, 2*pubs*per)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			<-start
			for i := range per {
				n := Note{Kind: KindLog, RunID: runs[(p+i)%len(runs)], JobID: fmt.Sprint(p), Attempt: i}
				if i%3 == 0 {
					h.Publish(n, Note{Kind: KindRun, RunID: n.RunID, JobID: fmt.Sprint(p), Attempt: -1})
				} else {
					h.Publish(n)
				}
			}
		})
	}
	// Churn: followers come and go while publishing.
	for range 2 {
		wg.Go(func() {
			<-start
			for i := range 200 {
				s := h.Subscribe(runs[i%len(runs)], 1+i%3)
				drain(s)
				s.Close()
				_ = s.Lagged()
			}
		})
	}
	close(start)
	wg.Wait()
	all.Close()
	for _, s := range perRun {
		s.Close()
	}

	check := func(name string, s *Sub, wantRun string) {
		got := readAll(t, s)
		if s.Lagged() {
			t.Fatalf("%s lagged", name)
		}
		last := map[string]int{}
		count := 0
		for _, n := range got {
			if wantRun != "" && n.RunID != wantRun {
				t.Fatalf("%s got a note of run %s", name, n.RunID)
			}
			if n.Attempt < 0 {
				continue
			}
			count++
			if prev, ok := last[n.JobID]; ok && n.Attempt <= prev {
				t.Fatalf("%s: publisher %s note %d after %d", name, n.JobID, n.Attempt, prev)
			}
			last[n.JobID] = n.Attempt
		}
		want := pubs * per
		if wantRun != "" {
			want = 0
			for p := range pubs {
				for i := range per {
					if runs[(p+i)%len(runs)] == wantRun {
						want++
					}
				}
			}
		}
		if count != want {
			t.Fatalf("%s got %d notes, want %d", name, count, want)
		}
	}
	check("all", all, "")
	for r, s := range perRun {
		check("run "+r, s, r)
	}
}
