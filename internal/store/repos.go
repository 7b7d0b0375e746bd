package store

import (
	"context"
	"time"
)

// Repo is a repository of a tenant that runs come from.
type Repo struct {
	Tenant string
	Name   string
	URL    string // what git fetches
	Forge  string // github, gitlab, gitea, forgejo, git
	// APIURL is the root of the forge's API when it is not the one the
	// URL implies ("" for that one).
	APIURL string
	// TokenSecret and WebhookSecret name secrets of the tenant: the token
	// that reads the repository and posts statuses, the secret webhooks
	// are signed with ("" for none).
	TokenSecret   string
	WebhookSecret string
	DefaultBranch string
	CreatedAt     time.Time
}

// Trigger is what started a run from a repository.
type Trigger struct {
	RunID  string
	Repo   string // the repository's name in the run's tenant
	Commit string
	Ref    string // full ref (refs/heads/main, refs/tags/v1, refs/pull/7/head)
	Event  string // push, tag, pull_request, manual
	Branch string // the branch pushed, or a pull request's target branch
	Tag    string
	PR     int
	// Delivery is the webhook delivery that started the run ("" for a
	// manual run).
	Delivery string
}

// Delivery is a webhook delivery a repository received: the forge's id,
// kept so that a redelivery starts nothing, and the runs it started.
type Delivery struct {
	Tenant string
	Repo   string
	ID     string
	RunIDs []string
	At     time.Time
}

// StatusReport is one commit status posted (or not) for a run.
type StatusReport struct {
	RunID string
	State string // pending, success, failure, canceled
	// Error says why the forge did not take it ("" when it did).
	Error string
	At    time.Time
}

// Repos is the part of the store that keeps repositories, the webhook
// deliveries they received, the triggers of their runs and the commit
// statuses posted for them. Like the rest of Store, safe for concurrent
// use; these writes do not go through Update (the orchestrator does not
// make them), except InsertTrigger, which is part of a run's insert.
type Repos interface {
	// CreateRepo stores r (ErrConflict if the tenant has a repository of
	// that name).
	CreateRepo(ctx context.Context, r Repo) error
	GetRepo(ctx context.Context, tenant, name string) (Repo, error)
	// ListRepos returns the repositories of a tenant sorted by name.
	ListRepos(ctx context.Context, tenant string) ([]Repo, error)
	// ListAllRepos returns the repositories of every tenant sorted by
	// tenant and name.
	ListAllRepos(ctx context.Context) ([]Repo, error)
	// DeleteRepo removes a repository, the deliveries it received and
	// the firings of its schedules (ErrNotFound if there is none); runs
	// keep their triggers.
	DeleteRepo(ctx context.Context, tenant, name string) error

	// ClaimDelivery records a delivery; if its (tenant, repo, id) was
	// recorded before, it returns that record and false, and records
	// nothing.
	ClaimDelivery(ctx context.Context, d Delivery) (Delivery, bool, error)
	// SetDeliveryRuns records the runs a claimed delivery started.
	SetDeliveryRuns(ctx context.Context, tenant, repo, id string, runIDs []string) error

	// GetTriggers returns the triggers of the runs of ids that have one.
	GetTriggers(ctx context.Context, runIDs []string) (map[string]Trigger, error)

	// AddStatusReport appends a report of a run's commit status.
	AddStatusReport(ctx context.Context, r StatusReport) error
	// ListStatusReports returns a run's reports, oldest first.
	ListStatusReports(ctx context.Context, runID string) ([]StatusReport, error)
}
