package orchestrator

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/state"
)

const grouped = `name: deploy
concurrency: {group: prod, limit: 1}
jobs:
  a:
    steps: [{run: "true"}]
`

func TestConcurrencyGroupQueuesRunsInOrder(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	r1, r2, r3 := h.submit(grouped), h.submit(grouped), h.submit(grouped)
	d1 := w.next()
	if d1.RunID != r1.ID {
		t.Fatalf("first dispatch is of run %s, want %s", d1.RunID, r1.ID)
	}
	// Submit returns once its batch, scheduling included, is committed;
	// a heartbeat, applied, makes the loop schedule once more.
	w.heartbeat(bus.JobRef{JobID: d1.JobID, Attempt: 1})
	h.settle()
	for _, r := range []string{r2.ID, r3.ID} {
		if s := h.jobState(r, "a")(); s != state.JobPending {
			t.Fatalf("run %s job a is %s while the group is full, want pending", r, s)
		}
		run, _ := h.st.GetRun(context.Background(), r)
		if run.State != state.RunQueued {
			t.Fatalf("waiting run %s is %s, want queued (not canceled)", r, run.State)
		}
	}
	// Cancel the last waiting run: it leaves the line; the second still
	// waits for the first.
	if err := h.o.Cancel(context.Background(), r3.ID); err != nil {
		t.Fatal(err)
	}
	w.status(w.id, d1.JobID, 1, bus.StatusSucceeded, 0)
	d2 := w.next()
	if d2.RunID != r2.ID {
		t.Fatalf("after run 1, run %s was dispatched, want %s", d2.RunID, r2.ID)
	}
	w.status(w.id, d2.JobID, 1, bus.StatusSucceeded, 0)
	h.waitFor(func() bool {
		r, _ := h.st.GetRun(context.Background(), r2.ID)
		return r.State == state.RunSucceeded
	}, "run 2 succeeded")
	if r, _ := h.st.GetRun(context.Background(), r3.ID); r.State != state.RunCanceled {
		t.Fatalf("run 3 %s, want canceled", r.State)
	}
}

func TestConcurrencyGroupSurvivesRestart(t *testing.T) {
	h := newHarness(t, Config{})
	w := h.worker("w1")
	r1, r2 := h.submit(grouped), h.submit(grouped)
	d1 := w.next()
	// A new orchestrator on the same store and bus takes over.
	h.o.Stop()
	o2, err := New(Config{Store: h.st, NC: h.nc, Hub: h.o.cfg.Hub, Logger: h.o.cfg.Logger, Metrics: h.o.cfg.Metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := o2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o2.Stop)
	h.restarted(o2)
	w.heartbeat(bus.JobRef{JobID: d1.JobID, Attempt: 1})
	h.settle()
	if s := h.jobState(r2.ID, "a")(); s != state.JobPending {
		t.Fatalf("after restart, waiting run's job is %s", s)
	}
	w.status(w.id, d1.JobID, 1, bus.StatusSucceeded, 0)
	d2 := w.next()
	if d2.RunID != r2.ID {
		t.Fatalf("dispatch of run %s, want %s", d2.RunID, r2.ID)
	}
	if r, _ := h.st.GetRun(context.Background(), r1.ID); r.State != state.RunSucceeded {
		t.Fatalf("run 1 %s", r.State)
	}
}

// TestConditionOfRootJobSameWithOrWithoutWait: a job without needs has the
// same fate whether its run started at once or waited in its concurrency
// group: failure() never holds for it (it is skipped), success() and
// always() hold (it runs). The first run of the pair starts at once, the
// second waits for it.
func TestConditionOfRootJobSameWithOrWithoutWait(t *testing.T) {
	for _, tc := range []struct {
		cond string
		want state.JobState
	}{
		{"success()", state.JobSucceeded},
		{"failure()", state.JobSkipped},
		{"always()", state.JobSucceeded},
		{"${{ failure() }}", state.JobSkipped},
	} {
		t.Run(tc.cond, func(t *testing.T) {
			h := newHarness(t, Config{})
			w := h.worker("w1")
			file := `name: notify
concurrency: {group: g, limit: 1}
jobs:
  a:
    steps: [{run: "true"}]
  root:
    if: "` + tc.cond + `"
    steps: [{run: "true"}]
`
			first, waited := h.submit(file), h.submit(file)
			final := func(id string) bool {
				r, err := h.st.GetRun(context.Background(), id)
				return err == nil && r.State.Final()
			}
			// Every dispatched job succeeds, until both runs have ended.
			deadline := time.Now().Add(20 * time.Second)
			for !final(first.ID) || !final(waited.ID) {
				if time.Now().After(deadline) {
					t.Fatal("timed out waiting for both runs to end")
				}
				msgs, err := w.cons.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				for m := range msgs.Messages() {
					var d bus.Dispatch
					if err := json.Unmarshal(m.Data(), &d); err != nil {
						t.Fatal(err)
					}
					_ = m.Ack()
					w.status(w.id, d.JobID, d.Attempt, bus.StatusSucceeded, 0)
				}
			}
			for _, r := range []struct{ name, id string }{{"run that started at once", first.ID}, {"run that waited", waited.ID}} {
				if got := h.jobState(r.id, "root")(); got != tc.want {
					t.Errorf("if: %s on a job without needs, %s: %s, want %s", tc.cond, r.name, got, tc.want)
				}
				if got := h.jobState(r.id, "a")(); got != state.JobSucceeded {
					t.Errorf("%s: job a %s, want succeeded", r.name, got)
				}
			}
		})
	}
}
