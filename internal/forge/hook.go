package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Event is what a webhook says happened.
type Event struct {
	// Kind is "push", "tag" or "pull_request" (pipeline.Event*).
	Kind string
	// Delivery is the forge's id of this delivery, for the audit trail.
	// GitHub and GitLab send the same one when they deliver it again;
	// Gitea and Forgejo do not (see DeliveryKey).
	Delivery string
	// Name is the forge's own name of the event ("push", "Merge Request
	// Hook"...), for the audit trail.
	Name string
	// Ref is the full ref: refs/heads/B, refs/tags/T, or the pull
	// request's head ref (refs/pull/N/head, refs/merge-requests/N/head).
	Ref    string
	Commit string // the commit to run
	Before string // the commit the branch pointed to before a push ("" if none)
	Branch string // the pushed branch, or the pull request's target branch
	Tag    string
	PR     int
	// Changed are the paths the payload says the push changed; nil when
	// it does not say (the caller asks git).
	Changed []string
}

// Delivery returns the delivery id header of a webhook request.
func Delivery(k Kind, h http.Header) string {
	switch k {
	case GitHub:
		return h.Get("X-GitHub-Delivery")
	case GitLab:
		return firstHeader(h, "X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID")
	case Gitea:
		return h.Get("X-Gitea-Delivery")
	case Forgejo:
		return firstHeader(h, "X-Forgejo-Delivery", "X-Gitea-Delivery")
	}
	return ""
}

// firstHeader returns the first of the headers names that h has. Forgejo
// sends Gitea's headers as well as its own, and older versions only
// Gitea's.
func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// DeliveryKey is what makes two deliveries the same delivery, the key a
// redelivery must not start runs again under. For GitHub and GitLab it is
// their delivery id, which a redelivery keeps. Gitea gives every delivery a
// new X-Gitea-Delivery, a redelivery (its "Replay" of a recent delivery)
// too, with the same body: for Gitea, and for Forgejo, its fork, the key is
// "sha256:" and the hex SHA-256 of the body. It is the body's hash as well
// for a request that carries no delivery id. Two different events have
// different bodies (Gitea's carry the commits and the repository's state at
// the time).
func DeliveryKey(k Kind, h http.Header, body []byte) string {
	if id := Delivery(k, h); id != "" && k != Gitea && k != Forgejo {
		return id
	}
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Verify checks a webhook's signature with the repository's webhook
// secret: GitHub's X-Hub-Signature-256 ("sha256=" and the hex HMAC-SHA256
// of the body), GitLab's X-Gitlab-Token (the secret itself), Gitea's
// X-Gitea-Signature and Forgejo's X-Forgejo-Signature (hex HMAC-SHA256).
// Every comparison takes constant time. An empty secret verifies nothing.
func Verify(k Kind, h http.Header, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("%w: the repository has no webhook secret", ErrSignature)
	}
	var got string
	switch k {
	case GitHub:
		sig, ok := strings.CutPrefix(h.Get("X-Hub-Signature-256"), "sha256=")
		if !ok {
			return fmt.Errorf("%w: no X-Hub-Signature-256 header", ErrSignature)
		}
		got = sig
	case GitLab:
		tok := h.Get("X-Gitlab-Token")
		if tok == "" {
			return fmt.Errorf("%w: no X-Gitlab-Token header", ErrSignature)
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) != 1 {
			return fmt.Errorf("%w: X-Gitlab-Token does not match", ErrSignature)
		}
		return nil
	case Gitea:
		got = h.Get("X-Gitea-Signature")
	case Forgejo:
		got = firstHeader(h, "X-Forgejo-Signature", "X-Gitea-Signature")
	default:
		return ErrNoWebhooks
	}
	if got == "" {
		return fmt.Errorf("%w: no signature header", ErrSignature)
	}
	want := Sign(body, secret)
	if !hmac.Equal([]byte(strings.ToLower(got)), []byte(want)) {
		return fmt.Errorf("%w: the signature does not match the body", ErrSignature)
	}
	return nil
}

// Sign is the hex HMAC-SHA256 of body with secret, as the forges sign.
func Sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// zeroSHA is the commit of a deleted or not yet existing branch.
func zeroSHA(s string) bool { return strings.Trim(s, "0") == "" }

// The shapes of the bodies, as the forges document them (only the fields
// read here).
type (
	ghCommit struct {
		ID       string   `json:"id"`
		Added    []string `json:"added"`
		Removed  []string `json:"removed"`
		Modified []string `json:"modified"`
	}
	// push: GitHub's and Gitea's (and Forgejo's) push event, GitLab's Push
	// Hook and Tag Push Hook (which add object_kind and checkout_sha).
	pushBody struct {
		ObjectKind  string     `json:"object_kind"`
		Ref         *string    `json:"ref"`
		Before      string     `json:"before"`
		After       string     `json:"after"`
		CheckoutSHA *string    `json:"checkout_sha"`
		Deleted     bool       `json:"deleted"`
		Commits     []ghCommit `json:"commits"`
	}
	// prBody: GitHub's and Gitea's pull_request event.
	prBody struct {
		Action      string `json:"action"`
		Number      int    `json:"number"`
		PullRequest *struct {
			Number int `json:"number"`
			Head   struct {
				Ref string `json:"ref"`
				SHA string `json:"sha"`
			} `json:"head"`
			Base struct {
				Ref string `json:"ref"`
				SHA string `json:"sha"`
			} `json:"base"`
		} `json:"pull_request"`
	}
	// mrBody: GitLab's Merge Request Hook.
	mrBody struct {
		ObjectKind string `json:"object_kind"`
		Attrs      *struct {
			IID          int    `json:"iid"`
			Action       string `json:"action"`
			TargetBranch string `json:"target_branch"`
			OldRev       string `json:"oldrev"`
			LastCommit   struct {
				ID string `json:"id"`
			} `json:"last_commit"`
		} `json:"object_attributes"`
	}
)

// eventName is the forge's name of the event of a request.
func eventName(k Kind, h http.Header) string {
	switch k {
	case GitHub:
		return h.Get("X-GitHub-Event")
	case GitLab:
		return h.Get("X-Gitlab-Event")
	case Gitea:
		return h.Get("X-Gitea-Event")
	case Forgejo:
		return firstHeader(h, "X-Forgejo-Event", "X-Gitea-Event")
	}
	return ""
}

// Parse reads the event of a webhook whose signature was verified. It
// returns ErrIgnored (wrapped) for events that start no run (a ping, an
// issue, a closed pull request, a deleted branch) and ErrMalformed for a
// body that is not what the event carries.
func Parse(k Kind, h http.Header, body []byte) (Event, error) {
	name := eventName(k, h)
	ev := Event{Delivery: Delivery(k, h), Name: name}
	switch {
	case k == GitLab && (name == "Push Hook" || name == "Tag Push Hook"),
		k != GitLab && name == "push":
		return parsePush(ev, body)
	case k == GitLab && name == "Merge Request Hook":
		return parseMR(ev, body)
	case k != GitLab && name == "pull_request":
		return parsePR(k, ev, body)
	}
	if name == "" {
		return ev, fmt.Errorf("%w: no event header", ErrIgnored)
	}
	return ev, fmt.Errorf("%w: %s", ErrIgnored, name)
}

func parsePush(ev Event, body []byte) (Event, error) {
	var b pushBody
	if err := json.Unmarshal(body, &b); err != nil {
		return ev, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if b.Ref == nil || b.After == "" {
		return ev, fmt.Errorf("%w: a push needs ref and after", ErrMalformed)
	}
	ev.Ref, ev.Commit = *b.Ref, b.After
	if b.CheckoutSHA != nil && *b.CheckoutSHA != "" {
		// GitLab: for an annotated tag, after is the tag object and
		// checkout_sha its commit.
		ev.Commit = *b.CheckoutSHA
	}
	if b.Deleted || zeroSHA(b.After) {
		return ev, fmt.Errorf("%w: %s was deleted", ErrIgnored, ev.Ref)
	}
	if !zeroSHA(b.Before) {
		ev.Before = b.Before
	}
	switch {
	case strings.HasPrefix(ev.Ref, "refs/heads/"):
		ev.Kind, ev.Branch = "push", strings.TrimPrefix(ev.Ref, "refs/heads/")
		ev.Changed = changedPaths(b.Commits)
	case strings.HasPrefix(ev.Ref, "refs/tags/"):
		ev.Kind, ev.Tag = "tag", strings.TrimPrefix(ev.Ref, "refs/tags/")
	default:
		return ev, fmt.Errorf("%w: push of %s", ErrIgnored, ev.Ref)
	}
	return ev, nil
}

// maxPayloadCommits is the most commits GitHub lists in a push (it cuts
// the list beyond): with as many, the list may be partial.
const maxPayloadCommits = 20

// changedPaths are the paths the commits of a payload touch, sorted; nil
// when the payload lists no commit or may have cut the list.
func changedPaths(commits []ghCommit) []string {
	if len(commits) == 0 || len(commits) >= maxPayloadCommits {
		return nil
	}
	set := map[string]bool{}
	for _, c := range commits {
		if c.Added == nil && c.Removed == nil && c.Modified == nil {
			return nil // this forge does not list files
		}
		for _, l := range [][]string{c.Added, c.Removed, c.Modified} {
			for _, p := range l {
				set[p] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func parsePR(k Kind, ev Event, body []byte) (Event, error) {
	var b prBody
	if err := json.Unmarshal(body, &b); err != nil {
		return ev, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if b.PullRequest == nil || b.PullRequest.Head.SHA == "" || b.PullRequest.Base.Ref == "" {
		return ev, fmt.Errorf("%w: a pull_request event needs pull_request.head.sha and pull_request.base.ref", ErrMalformed)
	}
	switch b.Action {
	case "opened", "reopened", "synchronize", "synchronized":
	default:
		return ev, fmt.Errorf("%w: pull request %s", ErrIgnored, b.Action)
	}
	n := b.Number
	if n == 0 {
		n = b.PullRequest.Number
	}
	ev.Kind, ev.PR, ev.Commit, ev.Branch = "pull_request", n, b.PullRequest.Head.SHA, b.PullRequest.Base.Ref
	ev.Ref = fmt.Sprintf("refs/pull/%d/head", n)
	return ev, nil
}

func parseMR(ev Event, body []byte) (Event, error) {
	var b mrBody
	if err := json.Unmarshal(body, &b); err != nil {
		return ev, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	a := b.Attrs
	if a == nil || a.LastCommit.ID == "" || a.TargetBranch == "" {
		return ev, fmt.Errorf("%w: a merge request needs object_attributes.last_commit.id and target_branch", ErrMalformed)
	}
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && a.OldRev != "":
		// An update with oldrev brought new commits; others changed
		// the title, labels...
	default:
		return ev, fmt.Errorf("%w: merge request %s", ErrIgnored, a.Action)
	}
	ev.Kind, ev.PR, ev.Commit, ev.Branch = "pull_request", a.IID, a.LastCommit.ID, a.TargetBranch
	ev.Ref = fmt.Sprintf("refs/merge-requests/%d/head", a.IID)
	return ev, nil
}
