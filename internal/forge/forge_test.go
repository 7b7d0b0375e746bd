package forge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/backoff"
)

// GitHub's documented test vector ("Validating webhook deliveries").
func TestVerifyGitHubDocumentedVector(t *testing.T) {
	h := http.Header{}
	h.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	if err := Verify(GitHub, h, []byte("Hello, World!"), "It's a Secret to Everybody"); err != nil {
		t.Fatalf("documented signature refused: %v", err)
	}
	if err := Verify(GitHub, h, []byte("Hello, World?"), "It's a Secret to Everybody"); !errors.Is(err, ErrSignature) {
		t.Fatalf("changed body: err = %v, want ErrSignature", err)
	}
}

func TestVerifyEachForge(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	sig := Sign(body, "s3cret")
	cases := []struct {
		kind   Kind
		header string
		good   string
	}{
		{GitHub, "X-Hub-Signature-256", "sha256=" + sig},
		{GitLab, "X-Gitlab-Token", "s3cret"},
		{Gitea, "X-Gitea-Signature", sig},
		{Forgejo, "X-Forgejo-Signature", sig},
	}
	for _, c := range cases {
		h := http.Header{}
		h.Set(c.header, c.good)
		if err := Verify(c.kind, h, body, "s3cret"); err != nil {
			t.Errorf("%s: good signature refused: %v", c.kind, err)
		}
		if err := Verify(c.kind, h, body, "other"); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: wrong secret: err = %v", c.kind, err)
		}
		if err := Verify(c.kind, http.Header{}, body, "s3cret"); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: no header: err = %v", c.kind, err)
		}
		if err := Verify(c.kind, h, body, ""); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: no secret configured: err = %v", c.kind, err)
		}
	}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const sha1, sha0 = "1111111111111111111111111111111111111111", "0000000000000000000000000000000000000000"

func TestParseEvents(t *testing.T) {
	cases := []struct {
		name string
		kind Kind
		h    http.Header
		body string
		want Event
		err  error
	}{
		{"github push", GitHub, hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d1"),
			`{"ref":"refs/heads/main","before":"2222222222222222222222222222222222222222","after":"` + sha1 + `","created":false,"deleted":false,
			  "commits":[{"id":"` + sha1 + `","added":["a.go"],"removed":[],"modified":["docs/x.md"]}],"repository":{"full_name":"o/r"}}`,
			Event{Kind: "push", Delivery: "d1", Name: "push", Ref: "refs/heads/main", Commit: sha1, Before: "2222222222222222222222222222222222222222", Branch: "main", Changed: []string{"a.go", "docs/x.md"}}, nil},
		{"github tag", GitHub, hdr("X-GitHub-Event", "push", "X-GitHub-Delivery", "d2"),
			`{"ref":"refs/tags/v1.0","before":"` + sha0 + `","after":"` + sha1 + `","commits":[]}`,
			Event{Kind: "tag", Delivery: "d2", Name: "push", Ref: "refs/tags/v1.0", Commit: sha1, Tag: "v1.0"}, nil},
		{"github deleted branch", GitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/x","before":"` + sha1 + `","after":"` + sha0 + `","deleted":true}`, Event{}, ErrIgnored},
		{"github ping", GitHub, hdr("X-GitHub-Event", "ping"), `{"zen":"x"}`, Event{}, ErrIgnored},
		{"github pull request", GitHub, hdr("X-GitHub-Event", "pull_request", "X-GitHub-Delivery", "d3"),
			`{"action":"synchronize","number":7,"pull_request":{"number":7,"head":{"ref":"feature","sha":"` + sha1 + `"},"base":{"ref":"main","sha":"2222"}}}`,
			Event{Kind: "pull_request", Delivery: "d3", Name: "pull_request", Ref: "refs/pull/7/head", Commit: sha1, Branch: "main", PR: 7}, nil},
		{"github closed pull request", GitHub, hdr("X-GitHub-Event", "pull_request"),
			`{"action":"closed","number":7,"pull_request":{"head":{"sha":"` + sha1 + `"},"base":{"ref":"main"}}}`, Event{}, ErrIgnored},
		{"github malformed", GitHub, hdr("X-GitHub-Event", "push"), `{"ref":`, Event{}, ErrMalformed},
		{"github push without after", GitHub, hdr("X-GitHub-Event", "push"), `{"ref":"refs/heads/main"}`, Event{}, ErrMalformed},
		{"gitlab push", GitLab, hdr("X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "u1"),
			`{"object_kind":"push","ref":"refs/heads/main","before":"` + sha0 + `","after":"` + sha1 + `","checkout_sha":"` + sha1 + `",
			  "commits":[{"id":"` + sha1 + `","added":["b"],"modified":[],"removed":[]}],"project":{"path_with_namespace":"g/r"}}`,
			Event{Kind: "push", Delivery: "u1", Name: "Push Hook", Ref: "refs/heads/main", Commit: sha1, Branch: "main", Changed: []string{"b"}}, nil},
		{"gitlab annotated tag", GitLab, hdr("X-Gitlab-Event", "Tag Push Hook", "X-Gitlab-Event-UUID", "u2"),
			`{"object_kind":"tag_push","ref":"refs/tags/v2","before":"` + sha0 + `","after":"3333333333333333333333333333333333333333","checkout_sha":"` + sha1 + `"}`,
			Event{Kind: "tag", Delivery: "u2", Name: "Tag Push Hook", Ref: "refs/tags/v2", Commit: sha1, Tag: "v2"}, nil},
		{"gitlab merge request update with commits", GitLab, hdr("X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Event-UUID", "u3"),
			`{"object_kind":"merge_request","object_attributes":{"iid":3,"action":"update","oldrev":"4444","source_branch":"f","target_branch":"main","last_commit":{"id":"` + sha1 + `"}}}`,
			Event{Kind: "pull_request", Delivery: "u3", Name: "Merge Request Hook", Ref: "refs/merge-requests/3/head", Commit: sha1, Branch: "main", PR: 3}, nil},
		{"gitlab merge request title edit", GitLab, hdr("X-Gitlab-Event", "Merge Request Hook"),
			`{"object_kind":"merge_request","object_attributes":{"iid":3,"action":"update","target_branch":"main","last_commit":{"id":"` + sha1 + `"}}}`, Event{}, ErrIgnored},
		{"gitea pull request synchronized", Gitea, hdr("X-Gitea-Event", "pull_request", "X-Gitea-Delivery", "g1"),
			`{"action":"synchronized","number":2,"pull_request":{"head":{"ref":"f","sha":"` + sha1 + `"},"base":{"ref":"dev"}}}`,
			Event{Kind: "pull_request", Delivery: "g1", Name: "pull_request", Ref: "refs/pull/2/head", Commit: sha1, Branch: "dev", PR: 2}, nil},
		{"forgejo push", Forgejo, hdr("X-Forgejo-Event", "push", "X-Forgejo-Delivery", "f1"),
			`{"ref":"refs/heads/dev","before":"` + sha0 + `","after":"` + sha1 + `","commits":[{"id":"` + sha1 + `","added":[],"removed":["old"],"modified":[]}]}`,
			Event{Kind: "push", Delivery: "f1", Name: "push", Ref: "refs/heads/dev", Commit: sha1, Branch: "dev", Changed: []string{"old"}}, nil},
		{"gitea issue", Gitea, hdr("X-Gitea-Event", "issues"), `{}`, Event{}, ErrIgnored},
	}
	for _, c := range cases {
		got, err := Parse(c.kind, c.h, []byte(c.body))
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.Kind != c.want.Kind || got.Delivery != c.want.Delivery || got.Name != c.want.Name || got.Ref != c.want.Ref ||
			got.Commit != c.want.Commit || got.Before != c.want.Before || got.Branch != c.want.Branch || got.Tag != c.want.Tag ||
			got.PR != c.want.PR || !slices.Equal(got.Changed, c.want.Changed) {
			t.Errorf("%s:\n got  %+v\n want %+v", c.name, got, c.want)
		}
	}
}

// TestDeliveryKey: GitHub and GitLab keep their delivery id when they
// deliver again, so it is the key; Gitea and Forgejo give a redelivery a new
// id and the same body (TestGiteaPushToStatus, internal/e2e, sees it from a
// real Gitea), so theirs is the body's hash, whatever the header says.
func TestDeliveryKey(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main","after":"` + sha1 + `"}`)
	other := []byte(`{"ref":"refs/heads/main","after":"` + sha0 + `"}`)
	// sha256sum of the body, computed apart.
	const bodyKey = "sha256:906b1c6001739b7e51859caea05ff37f5707e7061af80c47d6f8475636cc5388"
	if got := DeliveryKey(GitHub, hdr("X-GitHub-Delivery", "d1"), body); got != "d1" {
		t.Errorf("github: key %q, want its delivery id", got)
	}
	if got := DeliveryKey(GitLab, hdr("X-Gitlab-Event-UUID", "u1"), body); got != "u1" {
		t.Errorf("gitlab: key %q, want its event uuid", got)
	}
	if got := DeliveryKey(GitHub, http.Header{}, body); got != bodyKey {
		t.Errorf("github without a delivery id: key %q, want the body's hash %q", got, bodyKey)
	}
	for _, c := range []struct {
		kind   Kind
		header string
	}{{Gitea, "X-Gitea-Delivery"}, {Forgejo, "X-Forgejo-Delivery"}} {
		first := DeliveryKey(c.kind, hdr(c.header, "6c2bdbb8-6d6e-4a4e-9b9b-0d3c9f1f0a01"), body)
		replay := DeliveryKey(c.kind, hdr(c.header, "0e6f4c39-1b7d-4a55-8f0e-5d7b2b0c9e12"), body)
		if first != bodyKey || replay != first {
			t.Errorf("%s: a delivery and its replay (new id, same body): keys %q and %q, want both %q", c.kind, first, replay, bodyKey)
		}
		if got := DeliveryKey(c.kind, hdr(c.header, "6c2bdbb8-6d6e-4a4e-9b9b-0d3c9f1f0a01"), other); got == first {
			t.Errorf("%s: another body under the same id has the same key %q", c.kind, got)
		}
	}
}

func TestAPIBaseAndRepoPath(t *testing.T) {
	cases := []struct {
		kind      Kind
		url, base string
		path      string
	}{
		{GitHub, "https://github.com/o/r.git", "https://api.github.com", "o/r"},
		{GitHub, "https://ghe.example.com/o/r", "https://ghe.example.com/api/v3", "o/r"},
		{GitLab, "https://gitlab.com/group/sub/r.git", "https://gitlab.com/api/v4", "group/sub/r"},
		{Gitea, "http://127.0.0.1:3000/o/r.git", "http://127.0.0.1:3000/api/v1", "o/r"},
	}
	for _, c := range cases {
		base, err := APIBase(c.kind, c.url)
		if err != nil || base != c.base {
			t.Errorf("APIBase(%s, %s) = %q, %v; want %q", c.kind, c.url, base, err, c.base)
		}
		p, err := RepoPath(c.url)
		if err != nil || p != c.path {
			t.Errorf("RepoPath(%s) = %q, %v; want %q", c.url, p, err, c.path)
		}
	}
}

// TestStatusRequests checks each forge's status call against its
// documented API: method, path, authentication header, body.
func TestStatusRequests(t *testing.T) {
	cases := []struct {
		kind       Kind
		path       string
		authHeader string
		authValue  string
		body       map[string]string
	}{
		{GitHub, "/api/v3/repos/o/r/statuses/" + sha1, "Authorization", "Bearer tok",
			map[string]string{"state": "error", "context": "hodei/.hodei.yaml", "target_url": "https://ci/runs/1", "description": "canceled"}},
		{GitLab, "/api/v4/projects/g%2Fr/statuses/" + sha1, "PRIVATE-TOKEN", "tok",
			map[string]string{"state": "canceled", "name": "hodei/.hodei.yaml", "target_url": "https://ci/runs/1", "description": "canceled", "ref": "main"}},
		{Gitea, "/api/v1/repos/o/r/statuses/" + sha1, "Authorization", "token tok",
			map[string]string{"state": "error", "context": "hodei/.hodei.yaml", "target_url": "https://ci/runs/1", "description": "canceled"}},
	}
	for _, c := range cases {
		var got map[string]string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.EscapedPath() != c.path || r.Header.Get(c.authHeader) != c.authValue ||
				r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: %s %s %s=%q", c.kind, r.Method, r.URL.EscapedPath(), c.authHeader, r.Header.Get(c.authHeader))
			}
			data, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(data, &got); err != nil {
				t.Errorf("%s: body %s: %v", c.kind, data, err)
			}
			w.WriteHeader(http.StatusCreated)
		}))
		repo := "o/r"
		if c.kind == GitLab {
			repo = "g/r"
		}
		base, _ := APIBase(c.kind, srv.URL+"/"+repo+".git")
		p := &Poster{}
		err := p.Post(context.Background(), Status{Kind: c.kind, APIBase: base, Repo: repo, Token: "tok", SHA: sha1, State: StateCanceled,
			Context: "hodei/.hodei.yaml", TargetURL: "https://ci/runs/1", Description: "canceled", Ref: "main"})
		srv.Close()
		if err != nil {
			t.Errorf("%s: %v", c.kind, err)
			continue
		}
		for k, v := range c.body {
			if got[k] != v {
				t.Errorf("%s: body[%s] = %q, want %q (body %v)", c.kind, k, got[k], v, got)
			}
		}
	}
}

func TestPostRetriesServerErrorsNotClientErrors(t *testing.T) {
	var calls atomic.Int32
	code := http.StatusBadGateway
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(code)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	p := &Poster{Backoff: backoff.Backoff{Base: time.Millisecond, Max: time.Millisecond}}
	st := Status{Kind: GitHub, APIBase: srv.URL, Repo: "o/r", Token: "tok", SHA: sha1, State: StatePending}
	if err := p.Post(context.Background(), st); err != nil || calls.Load() != 3 {
		t.Fatalf("after two 502s: err = %v, calls = %d; want success on the third", err, calls.Load())
	}
	calls.Store(0)
	code = http.StatusUnauthorized
	err := p.Post(context.Background(), st)
	if err == nil || calls.Load() != 1 {
		t.Fatalf("401: err = %v, calls = %d; want one call and an error", err, calls.Load())
	}
	if want := "401"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q", err)
	}
}
