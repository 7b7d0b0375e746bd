package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

// The benchmarks are those of the SQLite store (internal/store/sqlite), so
// that the two compare.

func benchOpen(b *testing.B) *Store {
	b.Helper()
	s := mustOpen(b, pgtest.DB(b))
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkUpdateBatch measures one batched commit of the orchestrator: 100
// job updates and 100 attempt upserts in one Update.
func BenchmarkUpdateBatch(b *testing.B) {
	ctx := context.Background()
	s := benchOpen(b)
	const n = 100
	run := testRun("run-1", state.RunRunning)
	jobs := make([]store.Job, n)
	for i := range jobs {
		jobs[i] = testJob(run.ID, i)
	}
	mustUpdate(b, s, func(tx store.Tx) error {
		if err := tx.InsertRun(run); err != nil {
			return err
		}
		return tx.InsertJobs(jobs)
	})

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
				a := store.Attempt{JobID: j.ID, N: j.Attempt, WorkerID: j.WorkerID, State: state.AttemptRunning, AssignedAt: t0}
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

// BenchmarkAppendLogs measures storing log output: one Update per batch of 64
// chunks of 4 KiB.
func BenchmarkAppendLogs(b *testing.B) {
	ctx := context.Background()
	s := benchOpen(b)
	const chunks, size = 64, 4 << 10
	run := testRun("run-1", state.RunRunning)
	job := testJob(run.ID, 0)
	mustUpdate(b, s, func(tx store.Tx) error {
		if err := tx.InsertRun(run); err != nil {
			return err
		}
		return tx.InsertJobs([]store.Job{job})
	})
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
			batch[i] = store.LogChunk{JobID: job.ID, Attempt: 1, Seq: seq, Step: 0, Data: data, At: t0}
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.AppendLogs(batch) }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*chunks), "ns/chunk")
}

// BenchmarkInsertRun measures submitting a run: one Update inserting a run
// and its 10 jobs.
func BenchmarkInsertRun(b *testing.B) {
	ctx := context.Background()
	s := benchOpen(b)
	const n = 10
	i := 0
	for b.Loop() {
		i++
		run := testRun(fmt.Sprintf("run-%09d", i), state.RunQueued)
		jobs := make([]store.Job, n)
		for k := range jobs {
			jobs[k] = testJob(run.ID, k)
		}
		err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.InsertRun(run); err != nil {
				return err
			}
			return tx.InsertJobs(jobs)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
