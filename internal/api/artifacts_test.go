package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/client"
)

const artifactsYAML = `name: art
jobs:
  build:
    steps:
      - run: mkdir -p dist && seq 1 20000 > dist/numbers.txt && echo hi > dist/hi.txt
    artifacts:
      name: bin
      paths: [dist]
`

// TestArtifactsOverTheAPI: the tenant of a run lists its artifacts, reads
// their archive whole or by range (and each file checks out against its
// listed sha256); another tenant gets 404 for both, as for the run itself;
// a range outside the archive is 416.
func TestArtifactsOverTheAPI(t *testing.T) {
	e := startHardened(t, api.Limits{}, 1)
	acme := e.token("acme-dev", "acme", "developer")
	globex := e.token("globex-dev", "globex", "developer")
	a := e.call(acme, "POST", "/api/v1/runs", "application/yaml", []byte(artifactsYAML))
	if a.status != http.StatusCreated {
		t.Fatalf("submit: %d %s", a.status, a.body)
	}
	var run wire.Run
	if err := json.Unmarshal(a.body, &run); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(e.base, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(acme)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var final wire.RunEvent
	if err := c.FollowLogs(ctx, run.ID, "", func(ev client.Event) error {
		if ev.Run != nil {
			final = *ev.Run
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if final.State != "succeeded" {
		t.Fatalf("run %s", final.State)
	}

	list := e.call(acme, "GET", "/api/v1/runs/"+run.ID+"/artifacts", "", nil)
	var arts wire.Artifacts
	if list.status != http.StatusOK || json.Unmarshal(list.body, &arts) != nil || len(arts.Artifacts) != 1 {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	art := arts.Artifacts[0]
	if art.Job != "build" || art.Name != "bin" || len(art.Files) != 2 || art.Files[1].SHA256 == "" {
		t.Fatalf("artifact %+v", art)
	}
	path := fmt.Sprintf("/api/v1/runs/%s/artifacts/build/bin", run.ID)
	whole := e.call(acme, "GET", path, "", nil)
	if whole.status != http.StatusOK || int64(len(whole.body)) != art.Size || whole.header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("content: %d, %d bytes of %d", whole.status, len(whole.body), art.Size)
	}
	files := make([]artifact.File, len(art.Files))
	for i, f := range art.Files {
		files[i] = artifact.File(f)
	}
	dst := t.TempDir()
	if err := artifact.Unpack(bytes.NewReader(whole.body), artifact.Roots{Workspace: dst}, files, -1); err != nil {
		t.Fatal(err)
	}
	if hi, _ := os.ReadFile(filepath.Join(dst, "dist/hi.txt")); string(hi) != "hi\n" {
		t.Errorf("hi.txt = %q", hi)
	}

	ranged := func(spec string) answer {
		req, _ := http.NewRequest("GET", e.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+acme)
		req.Header.Set("Range", spec)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return answer{resp.StatusCode, resp.Header, b.Bytes()}
	}
	part := ranged("bytes=10-19")
	if part.status != http.StatusPartialContent || !bytes.Equal(part.body, whole.body[10:20]) ||
		part.header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", art.Size) {
		t.Errorf("bytes=10-19: %d %q %q", part.status, part.header.Get("Content-Range"), part.body)
	}
	tail := ranged("bytes=-7")
	if tail.status != http.StatusPartialContent || !bytes.Equal(tail.body, whole.body[len(whole.body)-7:]) {
		t.Errorf("bytes=-7: %d %q", tail.status, tail.body)
	}
	from := ranged(fmt.Sprintf("bytes=%d-", art.Size-3))
	if from.status != http.StatusPartialContent || !bytes.Equal(from.body, whole.body[len(whole.body)-3:]) {
		t.Errorf("open range: %d %q", from.status, from.body)
	}
	e.want(ranged(fmt.Sprintf("bytes=%d-", art.Size)), http.StatusRequestedRangeNotSatisfiable, wire.CodeRange, "a range past the end")
	e.want(ranged("bytes=0-1,4-5"), http.StatusRequestedRangeNotSatisfiable, wire.CodeRange, "two ranges")

	e.want(e.call(globex, "GET", "/api/v1/runs/"+run.ID+"/artifacts", "", nil), http.StatusNotFound, wire.CodeNotFound, "another tenant lists")
	e.want(e.call(globex, "GET", path, "", nil), http.StatusNotFound, wire.CodeNotFound, "another tenant downloads")
	e.want(e.call("", "GET", path, "", nil), http.StatusUnauthorized, wire.CodeUnauthenticated, "anonymous download")
	e.want(e.call(acme, "GET", fmt.Sprintf("/api/v1/runs/%s/artifacts/build/nope", run.ID), "", nil), http.StatusNotFound, wire.CodeNotFound, "no such artifact")
}
