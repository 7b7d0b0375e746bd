package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/backoff"
)

// States of a commit status, as Hodei names them; each forge gets its
// own word (StateFor).
const (
	StatePending  = "pending"
	StateRunning  = "running"
	StateSuccess  = "success"
	StateFailure  = "failure"
	StateCanceled = "canceled"
)

// Status is one commit status to post.
type Status struct {
	Kind    Kind
	APIBase string // APIBase, or the repository's own API url
	Repo    string // RepoPath of the repository
	Token   string
	SHA     string
	State   string // State*
	// Context names the check ("hodei/.hodei/ci.yaml"), TargetURL links
	// to the run, Description is a short sentence.
	Context     string
	TargetURL   string
	Description string
	Ref         string // GitLab: the ref the commit was pushed to
}

// StateFor is the word forge k uses for state: GitHub and Gitea have no
// canceled (it becomes error) and no running (pending); GitLab says
// failed and canceled.
func StateFor(k Kind, state string) string {
	switch k {
	case GitLab:
		switch state {
		case StateFailure:
			return "failed"
		case StateCanceled:
			return "canceled"
		}
		return state
	default:
		switch state {
		case StateRunning:
			return StatePending
		case StateCanceled:
			return "error"
		}
		return state
	}
}

// Request builds the HTTP request of a status: GitHub's
// POST /repos/{owner}/{repo}/statuses/{sha} with a bearer token, GitLab's
// POST /projects/:id/statuses/:sha with PRIVATE-TOKEN, Gitea's and
// Forgejo's POST /repos/{owner}/{repo}/statuses/{sha} with "token".
func Request(ctx context.Context, s Status) (*http.Request, error) {
	body := map[string]string{
		"state":       StateFor(s.Kind, s.State),
		"target_url":  s.TargetURL,
		"description": s.Description,
	}
	base := strings.TrimRight(s.APIBase, "/")
	var path string
	switch s.Kind {
	case GitHub, Gitea, Forgejo:
		path = "/repos/" + s.Repo + "/statuses/" + url.PathEscape(s.SHA)
		body["context"] = s.Context
	case GitLab:
		path = "/projects/" + url.PathEscape(s.Repo) + "/statuses/" + url.PathEscape(s.SHA)
		body["name"] = s.Context
		if s.Ref != "" {
			body["ref"] = s.Ref
		}
	default:
		return nil, fmt.Errorf("forge %s has no status API", s.Kind)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("status request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	switch s.Kind {
	case GitHub:
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
		req.Header.Set("Authorization", "Bearer "+s.Token)
	case GitLab:
		req.Header.Set("PRIVATE-TOKEN", s.Token)
	default:
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "token "+s.Token)
	}
	return req, nil
}

// Poster posts statuses, retrying what may pass later.
type Poster struct {
	Client  *http.Client // nil: a client with a 30 s timeout
	Backoff backoff.Backoff
	Tries   int // 0: 5
}

// permanent marks an answer that trying again will not change.
type permanent struct{ error }

// Post posts s, retrying network errors, 429 and 5xx with backoff. It
// returns the last error; its text never holds the token.
func (p *Poster) Post(ctx context.Context, s Status) error {
	tries := p.Tries
	if tries <= 0 {
		tries = 5
	}
	b := p.Backoff
	if b.Base == 0 {
		b = backoff.Backoff{Base: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.2}
	}
	var err error
	for n := 1; n <= tries; n++ {
		var perm permanent
		if err = p.once(ctx, s); err == nil || errors.As(err, &perm) {
			break
		}
		if n < tries {
			if werr := b.Wait(ctx, n); werr != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("post %s status of %s: %w", s.State, s.SHA, err)
	}
	return nil
}

func (p *Poster) once(ctx context.Context, s Status) error {
	req, err := Request(ctx, s)
	if err != nil {
		return permanent{err}
	}
	c := p.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("%s answered %s: %s", req.URL.Host, resp.Status, strings.TrimSpace(string(msg)))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return err
	}
	return permanent{err}
}
