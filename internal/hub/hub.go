// Package hub fans out what the orchestrator has just stored (job and run
// state changes, log chunks) to followers inside this process: live log
// streams of the API and `hodei run`. A follower reads what was stored before
// it subscribed from the store, and what comes after from the hub.
//
// Publishing never blocks: a follower that falls behind by more than its
// buffer is dropped (its channel closes and Lagged reports true), and catches
// up from the store.
package hub

import (
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Kinds of notes.
const (
	KindLog = "log"
	KindJob = "job"
	KindRun = "run"
)

// Note is one stored change.
type Note struct {
	Kind  string
	RunID string
	// Job is set for KindJob and KindLog (the job's key and id).
	JobID  string
	JobKey string
	// RunState is set for KindRun, JobState for KindJob.
	RunState state.RunState
	JobState state.JobState
	Attempt  int
	Error    string
	At       time.Time
	// Chunk is set for KindLog.
	Chunk *store.LogChunk
}

// Sub is one follower.
type Sub struct {
	C      <-chan Note
	c      chan Note
	h      *Hub
	run    string
	mu     sync.Mutex
	closed bool
	lagged bool
}

// Lagged reports whether the hub dropped this follower for falling behind.
func (s *Sub) Lagged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lagged
}

// Close unsubscribes.
func (s *Sub) Close() { s.h.remove(s, false) }

// Hub is safe for concurrent use.
//
// Lock order: Hub.mu, then Sub.mu. Publish holds Hub.mu, so that the set
// of followers does not change under it, and takes each follower's Sub.mu
// to hand it a note (offer): a follower closed meanwhile is skipped, never
// sent to. remove takes them one after the other, never nested, and the
// followers a Publish drops are removed after it lets Hub.mu go. Nothing
// takes Hub.mu while holding a Sub.mu.
type Hub struct {
	mu   sync.Mutex
	runs map[string]map[*Sub]struct{}
	all  map[*Sub]struct{}
}

// New returns an empty hub.
func New() *Hub {
	return &Hub{runs: map[string]map[*Sub]struct{}{}, all: map[*Sub]struct{}{}}
}

// Subscribe follows one run, or every run when runID is "".
func (h *Hub) Subscribe(runID string, buffer int) *Sub {
	c := make(chan Note, buffer)
	s := &Sub{C: c, c: c, h: h, run: runID}
	h.mu.Lock()
	defer h.mu.Unlock()
	if runID == "" {
		h.all[s] = struct{}{}
	} else {
		m := h.runs[runID]
		if m == nil {
			m = map[*Sub]struct{}{}
			h.runs[runID] = m
		}
		m[s] = struct{}{}
	}
	return s
}

func (h *Hub) remove(s *Sub, lagged bool) {
	h.mu.Lock()
	if s.run == "" {
		delete(h.all, s)
	} else if m := h.runs[s.run]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(h.runs, s.run)
		}
	}
	h.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.lagged = lagged
		close(s.c)
	}
}

// Publish hands notes to their followers without blocking.
func (h *Hub) Publish(notes ...Note) {
	var drop []*Sub
	h.mu.Lock()
	for _, n := range notes {
		for s := range h.runs[n.RunID] {
			if !offer(s, n) {
				drop = append(drop, s)
			}
		}
		for s := range h.all {
			if !offer(s, n) {
				drop = append(drop, s)
			}
		}
	}
	h.mu.Unlock()
	for _, s := range drop {
		h.remove(s, true)
	}
}

func offer(s *Sub, n Note) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	select {
	case s.c <- n:
		return true
	default:
		// Close at once, so the follower never sees a gap followed by more
		// notes: it sees the end of the channel and catches up.
		s.closed = true
		s.lagged = true
		close(s.c)
		return false
	}
}
