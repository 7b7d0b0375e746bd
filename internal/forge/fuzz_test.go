package forge

import (
	"errors"
	"net/http"
	"testing"
)

// FuzzParse: any body, under any event header of any forge, parses into an
// event or fails with ErrIgnored or ErrMalformed; it never panics, and an
// event it accepts has a kind, a ref and a commit.
func FuzzParse(f *testing.F) {
	f.Add("github", "push", []byte(`{"ref":"refs/heads/main","before":"0","after":"1111111111111111111111111111111111111111","commits":[{"id":"1","added":["a"]}]}`))
	f.Add("github", "pull_request", []byte(`{"action":"opened","number":1,"pull_request":{"head":{"sha":"1"},"base":{"ref":"main"}}}`))
	f.Add("gitlab", "Merge Request Hook", []byte(`{"object_attributes":{"iid":1,"action":"open","target_branch":"main","last_commit":{"id":"1"}}}`))
	f.Add("gitlab", "Tag Push Hook", []byte(`{"ref":"refs/tags/v1","after":"1","checkout_sha":"2"}`))
	f.Add("gitea", "push", []byte(`{"ref":"refs/tags/v1","after":"0000"}`))
	f.Fuzz(func(t *testing.T, kind, event string, body []byte) {
		h := http.Header{}
		for _, name := range []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event"} {
			h.Set(name, event)
		}
		ev, err := Parse(Kind(kind), h, body)
		if err != nil {
			if !errors.Is(err, ErrIgnored) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse: unexpected error %v", err)
			}
			return
		}
		if ev.Kind == "" || ev.Ref == "" || ev.Commit == "" {
			t.Fatalf("accepted event without kind, ref or commit: %+v", ev)
		}
	})
}
