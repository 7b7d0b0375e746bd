package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Bench runs the store benchmarks, the same for every implementation so
// that they compare (go test -bench Store ./internal/store/...). open is
// called once per benchmark and must return a new, empty store; Bench closes
// it.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	for _, bb := range []struct {
		name string
		fn   func(b *testing.B, s store.Store)
	}{
		{"UpdateBatch", benchUpdateBatch},
		{"AppendLogs", benchAppendLogs},
		{"InsertRun", benchInsertRun},
	} {
		b.Run(bb.name, func(b *testing.B) {
			s := open(b)
			b.Cleanup(func() {
				if err := s.Close(); err != nil {
					b.Error(err)
				}
			})
			bb.fn(b, s)
		})
	}
}

// insertRun stores a run and its jobs in one Update.
func insertRun(ctx context.Context, s store.Store, run store.Run, jobs []store.Job) error {
	return s.Update(ctx, func(tx store.Tx) error {
		if err := tx.InsertRun(run); err != nil {
			return err
		}
		return tx.InsertJobs(jobs)
	})
}

// benchJobs returns n queued jobs of runID.
func benchJobs(runID string, n int) []store.Job {
	jobs := make([]store.Job, n)
	for k := range jobs {
		jobs[k] = BenchJob(runID, k)
	}
	return jobs
}

// benchUpdateBatch measures one batched commit of the orchestrator: 100 job
// updates and 100 attempt upserts in one Update.
func benchUpdateBatch(b *testing.B, s store.Store) {
	ctx := context.Background()
	const n = 100
	run := newRun(runID(1), state.RunRunning, "acme")
	jobs := benchJobs(run.ID, n)
	if err := insertRun(ctx, s, run, jobs); err != nil {
		b.Fatal(err)
	}
	iter := 0
	for b.Loop() {
		iter++
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := range jobs {
				j := &jobs[i]
				j.Attempt = iter%3 + 1
				j.State = state.JobRunning
				j.WorkerID = fmt.Sprintf("w-%d", iter%7)
				if err := tx.UpdateJob(*j); err != nil {
					return err
				}
				a := store.Attempt{JobID: j.ID, N: j.Attempt, WorkerID: j.WorkerID, State: state.AttemptRunning, AssignedAt: at(1)}
				if err := tx.UpsertAttempt(a); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*n), "ns/change")
}

// benchAppendLogs measures storing log output: one Update per batch of 64
// chunks of 4 KiB.
func benchAppendLogs(b *testing.B, s store.Store) {
	ctx := context.Background()
	const chunks, size = 64, 4 << 10
	run := newRun(runID(1), state.RunRunning, "acme")
	job := BenchJob(run.ID, 0)
	if err := insertRun(ctx, s, run, []store.Job{job}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	batch := make([]store.LogChunk, chunks)

	b.SetBytes(chunks * size)
	var seq int64
	for b.Loop() {
		for i := range batch {
			seq++
			batch[i] = store.LogChunk{JobID: job.ID, Attempt: 1, Seq: seq, Step: 0, Data: data, At: at(1)}
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.AppendLogs(batch) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*chunks), "ns/chunk")
}

// benchInsertRun measures submitting a run: one Update inserting a run and
// its 10 jobs.
func benchInsertRun(b *testing.B, s store.Store) {
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		run := newRun(fmt.Sprintf("run-%09d", i), state.RunQueued, "acme")
		if err := insertRun(ctx, s, run, benchJobs(run.ID, 10)); err != nil {
			b.Fatal(err)
		}
	}
}
