package agent

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// DefaultMaxLogBytes is the most output of one attempt of a job that is
// kept: 100 MiB.
const DefaultMaxLogBytes = 100 << 20

// maxUnacked bounds the bytes of log chunks published and not yet
// acknowledged by the stream: past it, the sink waits for the acks before
// it takes more output, so a step printing fast (or one endless line)
// costs the agent at most this much, not the size of its output.
const maxUnacked = 1 << 20

// logSink publishes the output chunks of one attempt, in order, keeping
// at most maxUnacked bytes unacknowledged, and at most limit bytes of
// output: past the limit it publishes a marker line saying where and why
// the log was cut, then drops the rest (the steps go on). emit is called
// by the batcher, one chunk at a time.
type logSink struct {
	a       *Agent
	d       bus.Dispatch
	subject string
	log     *slog.Logger
	limit   int64

	mu       sync.Mutex
	seq      int64
	pending  []pending
	unacked  int
	kept     int64 // bytes of output published
	lastByte byte
	cut      bool
}

func newLogSink(a *Agent, d bus.Dispatch, limit int64, log *slog.Logger) *logSink {
	if limit <= 0 {
		limit = DefaultMaxLogBytes
	}
	return &logSink{a: a, d: d, subject: a.cfg.Subjects.Logs(a.cfg.ID, d.JobID), log: log, limit: limit}
}

// emit publishes a chunk of output of step (0-based), or what fits under
// the limit of it followed by the marker.
func (s *logSink) emit(step int, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut || len(data) == 0 {
		return
	}
	if room := s.limit - s.kept; int64(len(data)) > room {
		if room > 0 {
			s.publish(step, data[:room])
		}
		s.cut = true
		marker := fmt.Sprintf("[hodei] log cut here, after %d bytes, in step %d: the job's output reached the limit of %s per attempt (server flag --max-log-bytes); the steps go on, the rest of their output is not kept\n",
			s.kept, step+1, pipeline.FormatBytes(s.limit))
		if s.kept > 0 && s.lastByte != '\n' {
			marker = "\n" + marker
		}
		s.publish(step, []byte(marker))
		return
	}
	s.publish(step, data)
}

func (s *logSink) publish(step int, data []byte) {
	s.seq++
	msg := bus.LogChunk{RunID: s.d.RunID, JobID: s.d.JobID, Attempt: s.d.Attempt, Seq: s.seq, Step: step, Data: data}.Msg(s.subject)
	f, err := s.a.js.PublishMsgAsync(msg)
	s.pending = append(s.pending, pending{msg: msg, f: f, err: err})
	if !s.cut {
		s.kept += int64(len(data))
		s.lastByte = data[len(data)-1]
	}
	s.unacked += len(data)
	if s.unacked > maxUnacked {
		s.confirmLocked()
	}
}

func (s *logSink) confirmLocked() {
	s.a.confirm(s.pending, s.log)
	clear(s.pending)
	s.pending = s.pending[:0]
	s.unacked = 0
}

// close waits until every chunk is stored in the stream: the final status
// must come after the last chunk.
func (s *logSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.confirmLocked()
}

// maxStatusError bounds the error a status carries (it names a step, whose
// name may be long): a status must fit in bus.MaxReportSize.
const maxStatusError = 4 << 10

// capError cuts an error message longer than maxStatusError, at a
// character boundary, saying so.
func capError(s string) string {
	if len(s) <= maxStatusError {
		return s
	}
	cut := maxStatusError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "") + fmt.Sprintf("… (cut: %d bytes in all)", len(s))
}
