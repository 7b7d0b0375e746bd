package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/orchestrator"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/repos"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// Errors of Rerun; the API answers the first two as conflicts
// (store.ErrConflict), the third as not found (store.ErrNotFound).
var (
	// ErrRunActive: only a run that ended can be re-run with failedOnly.
	ErrRunActive = fmt.Errorf("the run has not ended (%w)", store.ErrConflict)
	// ErrNothingFailed: a re-run with failedOnly of a run none of whose
	// jobs failed or was cancelled would run nothing.
	ErrNothingFailed = fmt.Errorf("no job of the run failed or was cancelled (%w)", store.ErrConflict)
	// ErrRepoGone: the repository a run came from was removed.
	ErrRepoGone = fmt.Errorf("the run's repository was removed (%w)", store.ErrNotFound)
)

// Rerun makes a new run of the same pipeline file (the text the run was
// made with), inputs and trigger as run id: a run from a repository checks
// out the same commit, with the same HODEI_* variables and hodei context.
// With failedOnly, only the jobs that did not succeed and the jobs that
// need them run again; the others are carried over (stored succeeded,
// pointing at the attempt that ran them). The new run records the run it
// re-runs (store.Rerun).
func (s *Server) Rerun(ctx context.Context, id string, failedOnly bool, key string) (store.Run, error) {
	old, err := s.Store.GetRun(ctx, id)
	if err != nil {
		return store.Run{}, err
	}
	if len(old.Source) == 0 {
		return store.Run{}, fmt.Errorf("run %s has no stored pipeline file to run again: %w", id, store.ErrNotFound)
	}
	if failedOnly && !old.State.Final() {
		return store.Run{}, fmt.Errorf("run %s is %s: %w", id, old.State, ErrRunActive)
	}
	trs, err := s.Store.GetTriggers(ctx, []string{id})
	if err != nil {
		return store.Run{}, err
	}
	tr, fromRepo := trs[id]

	rc := pipeline.RunContext{Event: pipeline.EventManual}
	if fromRepo {
		rc = pipeline.RunContext{Event: tr.Event, Ref: tr.Ref, Branch: tr.Branch, Tag: tr.Tag, PR: tr.PR, Commit: tr.Commit, Repo: tr.Repo}
	}
	// The files it included, as they were read for it: the same content
	// again, even if they changed since.
	p, specs, inputs, err := s.expand(old.File, old.Source, old.Includes, old.Inputs, rc)
	if err != nil {
		return store.Run{}, err
	}

	rr := &store.Rerun{Of: id, FailedOnly: failedOnly}
	if failedOnly {
		if rr.Carried, err = s.carried(ctx, old, specs); err != nil {
			return store.Run{}, err
		}
		if len(rr.Carried) == len(specs) {
			return store.Run{}, fmt.Errorf("run %s: %w", id, ErrNothingFailed)
		}
	}
	req := orchestrator.SubmitRequest{Pipeline: p, Jobs: specs, Source: old.Source, Tenant: old.Tenant, Inputs: inputs, Rerun: rr, Key: key}
	var repo store.Repo
	if fromRepo {
		if repo, err = s.Store.GetRepo(ctx, old.Tenant, tr.Repo); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return store.Run{}, fmt.Errorf("run %s: %w: %s", id, ErrRepoGone, tr.Repo)
			}
			return store.Run{}, err
		}
		next := tr
		next.RunID, next.Delivery = "", "rerun:"+id
		repos.Prepare(repo, next, specs)
		req.Trigger = &next
	}
	// With several servers only the leader makes it (a follower answers
	// that there is no leader here: 503, as for webhooks).
	run, err := s.control().Submit(ctx, req)
	if err != nil {
		return run, err
	}
	if fromRepo && s.Repos != nil && s.Repos.Status != nil {
		next := *req.Trigger
		s.Repos.Status.Report(repo, next, run.File, forge.StatePending)
	}
	return run, nil
}

// carried returns the jobs of a re-run of old (its jobs specs) that are
// carried over: those that succeeded in old and whose needs are all
// carried, each pointing at the run and attempt that ran it.
func (s *Server) carried(ctx context.Context, old store.Run, specs []pipeline.JobSpec) ([]store.CarriedJob, error) {
	jobs, err := s.Store.ListJobs(ctx, old.ID)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]store.Job, len(jobs))
	for _, j := range jobs {
		byKey[j.Key] = j
	}
	// A job old carried itself points at the run that ran it.
	origin := map[string]store.CarriedJob{}
	if prev, err := s.Store.GetRerun(ctx, old.ID); err == nil {
		for _, c := range prev.Carried {
			origin[c.JobID] = c
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var out []store.CarriedJob
	carry := map[string]bool{}
	// specs are in the order of their needs: a job's needs come first.
	for _, sp := range specs {
		j, ok := byKey[sp.Key]
		if !ok || j.State != state.JobSucceeded {
			continue
		}
		all := true
		for _, n := range sp.Needs {
			all = all && carry[n]
		}
		if !all {
			continue
		}
		carry[sp.Key] = true
		c := store.CarriedJob{JobKey: sp.Key, FromRun: old.ID, FromJob: j.ID, FromAttempt: j.Attempt}
		if o, ok := origin[j.ID]; ok {
			c.FromRun, c.FromJob, c.FromAttempt = o.FromRun, o.FromJob, o.FromAttempt
		}
		out = append(out, c)
	}
	return out, nil
}
