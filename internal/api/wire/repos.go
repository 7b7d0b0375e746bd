package wire

import "time"

// Repo is a repository of a tenant (GET /api/v1/repos/{name}). Secrets
// are named, never given.
type Repo struct {
	Name          string    `json:"name"`
	Tenant        string    `json:"tenant"`
	URL           string    `json:"url"`
	Forge         string    `json:"forge"`
	APIURL        string    `json:"api_url,omitempty"`
	TokenSecret   string    `json:"token_secret,omitempty"`
	WebhookSecret string    `json:"webhook_secret,omitempty"`
	DefaultBranch string    `json:"default_branch"`
	CreatedAt     time.Time `json:"created_at"`
	// HookPath is where the forge delivers this repository's webhooks.
	HookPath string `json:"hook_path,omitempty"`
}

// RepoList is the answer of GET /api/v1/repos.
type RepoList struct {
	Repos []Repo `json:"repos"`
}

// Trigger is what started a run from a repository.
type Trigger struct {
	Repo     string `json:"repo"`
	Commit   string `json:"commit"`
	Ref      string `json:"ref"`
	Event    string `json:"event"`
	Branch   string `json:"branch,omitempty"`
	Tag      string `json:"tag,omitempty"`
	PR       int    `json:"pr,omitempty"`
	Delivery string `json:"delivery,omitempty"`
}

// StatusReport is one commit status posted for a run; Error says why the
// forge did not take it.
type StatusReport struct {
	State string    `json:"state"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// HookResult is the answer to a webhook: the runs it started (or, for a
// redelivery, started the first time), the pipeline files of the commit,
// those whose on: matched, and the files that did not parse.
type HookResult struct {
	Delivery  string   `json:"delivery"`
	Event     string   `json:"event,omitempty"`
	Commit    string   `json:"commit,omitempty"`
	Duplicate bool     `json:"duplicate,omitempty"`
	Ignored   string   `json:"ignored,omitempty"`
	RunIDs    []string `json:"run_ids"`
	Files     []string `json:"files,omitempty"`
	Matched   []string `json:"matched,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}
