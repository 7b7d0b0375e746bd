package orchestrator

import (
	"sync"

	"github.com/hodei-ci/hodei/internal/bus"
)

// maxReportBytes bounds the bytes of worker reports (status messages and
// log chunks) taken from the stream and not yet applied: those waiting in
// the reports channel and those of the batch being applied. A step that
// prints fast, or one long line cut into many chunks, then costs the
// orchestrator this much memory, not the size of its output: the rest
// waits in the stream, on disk.
const maxReportBytes = 2 << 20

// maxReportPrefetch bounds the bytes the client library fetches ahead of
// the consumer callback. A pull whose byte limit is below a message's size
// never delivers it (the consumer would stall on it): the stream refuses
// messages over bus.MaxReportSize, and the limit leaves room for headers.
const maxReportPrefetch = 2 * bus.MaxReportSize

// byteBudget is a counting semaphore of bytes. take blocks while the bytes
// taken and not given back would pass the maximum; one request larger than
// the maximum passes alone. close releases every waiter for good.
type byteBudget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	used   int
	max    int
	closed bool
}

func newByteBudget(max int) *byteBudget {
	b := &byteBudget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *byteBudget) take(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.used > 0 && b.used+n > b.max {
		b.cond.Wait()
	}
	b.used += n
}

func (b *byteBudget) give(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *byteBudget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}
