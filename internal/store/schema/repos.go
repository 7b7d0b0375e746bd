package schema

import "github.com/hodei-ci/hodei/internal/store"

// RepoCols are the columns of repos, in the order of RepoArgs and ScanRepo.
const RepoCols = "tenant, name, url, forge, api_url, token_secret, webhook_secret, default_branch, created_at"

// RepoArgs are the values of r in RepoCols' order.
func RepoArgs(r store.Repo) []any {
	return []any{r.Tenant, r.Name, r.URL, r.Forge, r.APIURL, r.TokenSecret, r.WebhookSecret, r.DefaultBranch, EncTime(r.CreatedAt)}
}

// ScanRepo reads a row of RepoCols.
func ScanRepo(sc Scanner) (store.Repo, error) {
	var r store.Repo
	var created int64
	err := sc.Scan(&r.Tenant, &r.Name, &r.URL, &r.Forge, &r.APIURL, &r.TokenSecret, &r.WebhookSecret, &r.DefaultBranch, &created)
	r.CreatedAt = DecTime(created)
	return r, err
}

// TriggerCols are the columns of run_triggers, in the order of TriggerArgs
// and ScanTrigger.
const TriggerCols = "run_id, repo, commit_sha, ref, event, branch, tag, pr, delivery"

// TriggerArgs are the values of t in TriggerCols' order.
func TriggerArgs(t store.Trigger) []any {
	return []any{t.RunID, t.Repo, t.Commit, t.Ref, t.Event, t.Branch, t.Tag, t.PR, t.Delivery}
}

// ScanTrigger reads a row of TriggerCols.
func ScanTrigger(sc Scanner) (store.Trigger, error) {
	var t store.Trigger
	err := sc.Scan(&t.RunID, &t.Repo, &t.Commit, &t.Ref, &t.Event, &t.Branch, &t.Tag, &t.PR, &t.Delivery)
	return t, err
}

// ScanStatusReport reads a row of run_id, state, error, at of
// status_reports.
func ScanStatusReport(sc Scanner) (store.StatusReport, error) {
	var r store.StatusReport
	var at int64
	err := sc.Scan(&r.RunID, &r.State, &r.Error, &at)
	r.At = DecTime(at)
	return r, err
}
