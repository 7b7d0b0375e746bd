package agent

import (
	"bytes"
	"sync"
	"time"
)

// batcher gathers a job's output into chunks: it never sends one message per
// line, and it never holds output longer than maxDelay. Chunks are cut at the
// last newline when there is one, so that a line is split across chunks only
// when it is longer than maxChunk. emit is called from one goroutine at a
// time, in order.
//
// Lock order: mu, then emitMu. mu guards the buffer, the timer and the
// step; emitMu is held while chunks are emitted. A writer cuts its chunks
// under mu, takes emitMu before it lets mu go, and emits under emitMu
// alone: chunks leave in the order they were cut, and a slow emit (waiting
// for the stream's acks) holds up the next emit but not the cutting of
// the next chunks. Nothing takes mu while holding emitMu.
type batcher struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	step     int
	maxChunk int
	maxDelay time.Duration
	timer    *time.Timer
	emit     func(step int, data []byte)
	emitMu   sync.Mutex // keeps emits in order
}

func newBatcher(maxChunk int, maxDelay time.Duration, emit func(step int, data []byte)) *batcher {
	return &batcher{maxChunk: maxChunk, maxDelay: maxDelay, emit: emit}
}

// Write adds output of the current step.
func (b *batcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf.Write(p)
	var out [][]byte
	for b.buf.Len() >= b.maxChunk {
		out = append(out, b.cutLocked(b.maxChunk))
	}
	if b.buf.Len() > 0 && b.timer == nil {
		b.timer = time.AfterFunc(b.maxDelay, b.flushTimer)
	}
	step := b.step
	b.emitMu.Lock()
	b.mu.Unlock()
	for _, c := range out {
		b.emit(step, c)
	}
	b.emitMu.Unlock()
	return len(p), nil
}

// cutLocked removes up to n bytes from the buffer, ending at a newline when
// one exists in the first n bytes.
func (b *batcher) cutLocked(n int) []byte {
	data := b.buf.Bytes()
	if n > len(data) {
		n = len(data)
	}
	cut := n
	if i := bytes.LastIndexByte(data[:n], '\n'); i >= 0 {
		cut = i + 1
	}
	c := make([]byte, cut)
	copy(c, data[:cut])
	b.buf.Next(cut)
	return c
}

func (b *batcher) flushTimer() {
	b.mu.Lock()
	b.timer = nil
	if b.buf.Len() == 0 {
		b.mu.Unlock()
		return
	}
	// Only whole lines go out on a timer, unless the partial line has waited
	// a whole period too (a progress bar without newlines).
	data := b.buf.Bytes()
	n := len(data)
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		n = i + 1
	}
	c := b.cutLocked(n)
	if b.buf.Len() > 0 {
		b.timer = time.AfterFunc(b.maxDelay, b.flushTimer)
	}
	step := b.step
	b.emitMu.Lock()
	b.mu.Unlock()
	b.emit(step, c)
	b.emitMu.Unlock()
}

// Flush sends everything buffered and sets the step of what comes next.
func (b *batcher) Flush(nextStep int) {
	b.mu.Lock()
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	var out [][]byte
	for b.buf.Len() > 0 {
		out = append(out, b.cutLocked(b.maxChunk))
	}
	step := b.step
	b.step = nextStep
	b.emitMu.Lock()
	b.mu.Unlock()
	for _, c := range out {
		b.emit(step, c)
	}
	b.emitMu.Unlock()
}
