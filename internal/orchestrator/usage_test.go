package orchestrator

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
)

// publish sends s on its worker's status subject.
func (w *worker) publish(s bus.Status) {
	w.h.t.Helper()
	w.h.msgN++
	s.WorkerID, s.At = w.id, time.Now()
	data, _ := json.Marshal(s)
	m := nats.NewMsg(w.h.subs.Status(w.id))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, "test-"+strconv.Itoa(w.h.msgN))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.h.js.PublishMsg(ctx, m); err != nil {
		w.h.t.Fatal(err)
	}
}

func TestFinalStatusUsageIsStoredWithItsAttempt(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	run := h.submit(oneJob)
	d := w.next()
	w.publish(bus.Status{JobID: d.JobID, Attempt: 1, State: bus.StatusRunning})
	w.publish(bus.Status{JobID: d.JobID, Attempt: 1, State: bus.StatusFailed, ExitCode: -1,
		Error: "step 1: out of memory", PeakMemory: 64 << 20, CPUTime: 250 * time.Millisecond})
	d2 := w.next()
	w.publish(bus.Status{JobID: d2.JobID, Attempt: 2, State: bus.StatusRunning})
	w.publish(bus.Status{JobID: d2.JobID, Attempt: 2, State: bus.StatusSucceeded, PeakMemory: 10 << 20, CPUTime: 3 * time.Second})
	h.waitFor(func() bool { return h.jobState(run.ID, "a")() == state.JobSucceeded }, "a succeeded")
	atts, err := h.st.ListAttempts(context.Background(), d.JobID)
	if err != nil || len(atts) != 2 {
		t.Fatalf("attempts %+v %v", atts, err)
	}
	if atts[0].PeakMemory != 64<<20 || atts[0].CPUTime != 250*time.Millisecond ||
		atts[1].PeakMemory != 10<<20 || atts[1].CPUTime != 3*time.Second {
		t.Fatalf("usage not stored with its attempt: %+v", atts)
	}
}
