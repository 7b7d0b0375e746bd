// Package scheduler decides which queued job runs on which worker.
//
// Engine is the scheduler that runs: a stateful, deterministic placement
// engine that owns the fleet as the scheduler sees it (capacity,
// reservations, labels), the queue of ready jobs, the pipelines they belong
// to and the duration predictor. It does no I/O and reads no clock (time
// comes in as an argument), so the orchestrator's loop, `hodei sim` and the
// benchmarks drive the same code, and the same calls give the same
// placements. The orchestrator tells it what happens (AddPipeline, Enqueue,
// UpsertWorker, Finish, Release...) and applies what Plan returns; why it
// keeps state rather than plan over a snapshot is written on Engine.
//
// Admission is the line of runs waiting for a concurrency group.
package scheduler

// Assignment places one job on one worker.
type Assignment struct {
	JobID    string
	WorkerID string
}
