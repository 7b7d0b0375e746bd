package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/state"
)

// TestRepositoryPipelineIncludes pushes a pipeline that includes a file of
// its repository: the run has the included file's jobs, read at the
// pushed commit, and keeps the file, so that a re-run after the file
// changed runs the content of the first run. An include the commit does
// not have is an error naming the including file's line and column.
func TestRepositoryPipelineIncludes(t *testing.T) {
	const token, secret = "ghs_t0ken", "hook-secret"
	s, _, w := repoOnForge(t, forge.GitHub, token, secret)
	zero := strings.Repeat("0", 40)
	const main = `name: inc
include: [lib/common.yaml]
jobs:
  build:
    checkout: false
    steps: [{run: echo built}]
`
	common := func(v string) string {
		return "jobs:\n  test:\n    needs: build\n    checkout: false\n    steps: [{run: echo from-included-" + v + "}]\n"
	}
	sha := w.commit(t, "first", map[string]string{".hodei/ci.yaml": main, ".hodei/lib/common.yaml": common("v1")})
	w.push(t, "main:refs/heads/main")
	sub := s.Hub.Subscribe("", 1<<16)
	defer sub.Close()
	body := githubPush("refs/heads/main", zero, sha, ".hodei/ci.yaml")
	code, res, raw := hook(t, s, "github", githubHeaders("push", "d-inc-1", body, secret), body)
	if code != http.StatusOK || len(res.RunIDs) != 1 || len(res.Errors) != 0 {
		t.Fatalf("push: %d %s; want one run", code, raw)
	}
	first := res.RunIDs[0]
	if st, logs := runLogs(t, s, sub, first); st != state.RunSucceeded || !strings.Contains(logs, "from-included-v1") {
		t.Fatalf("run %s: %s\n%s", first, st, logs)
	}
	run, err := s.Store.GetRun(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(run.Includes[".hodei/lib/common.yaml"]); got != common("v1") || len(run.Includes) != 1 {
		t.Errorf("the run keeps includes %q", run.Includes)
	}

	// The included file changes at the next commit; a re-run of the first
	// run runs what it included.
	sha2 := w.commit(t, "second", map[string]string{".hodei/lib/common.yaml": common("v2")})
	w.push(t, "main:refs/heads/main")
	code, data := apiCall(t, s, http.MethodPost, "/api/v1/runs/"+first+"/rerun", nil, nil)
	var again wire.Run
	if err := json.Unmarshal(data, &again); code != http.StatusCreated || err != nil {
		t.Fatalf("rerun: %d %s", code, data)
	}
	if st, logs := runLogs(t, s, sub, again.ID); st != state.RunSucceeded || !strings.Contains(logs, "from-included-v1") || strings.Contains(logs, "v2") {
		t.Errorf("re-run %s: %s, want the first run's included file\n%s", again.ID, st, logs)
	}
	body = githubPush("refs/heads/main", sha, sha2, ".hodei/lib/common.yaml")
	if code, res, raw = hook(t, s, "github", githubHeaders("push", "d-inc-2", body, secret), body); code != http.StatusOK || len(res.RunIDs) != 1 {
		t.Fatalf("second push: %d %s", code, raw)
	}
	if st, logs := runLogs(t, s, sub, res.RunIDs[0]); st != state.RunSucceeded || !strings.Contains(logs, "from-included-v2") {
		t.Errorf("run of the second commit: %s\n%s", st, logs)
	}

	// An include the commit lacks.
	sha3 := w.commit(t, "third", map[string]string{".hodei/ci.yaml": strings.Replace(main, "lib/common.yaml", "lib/gone.yaml", 1)})
	w.push(t, "main:refs/heads/main")
	body = githubPush("refs/heads/main", sha2, sha3, ".hodei/ci.yaml")
	code, res, raw = hook(t, s, "github", githubHeaders("push", "d-inc-3", body, secret), body)
	want := ".hodei/ci.yaml:2:11: include[0]: included file .hodei/lib/gone.yaml does not exist"
	if code != http.StatusOK || len(res.RunIDs) != 0 || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], want) {
		t.Errorf("push with a missing include: %d %s; want the error %q", code, raw, want)
	}
}
