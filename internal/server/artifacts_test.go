package server

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// bigDAG's producer writes 200 MB in 1,000 files of random bytes, with
// their sha256 in SUMS; two consumers check every file with sha256sum.
const bigDAG = `name: big
jobs:
  produce:
    steps:
      - run: |
          mkdir -p data
          head -c 200000000 /dev/urandom | split -b 200000 -a 3 -d - data/f
          sha256sum data/* > SUMS
    artifacts:
      name: data
      paths: [data, SUMS]
  check-a:
    needs: produce
    steps:
      - run: test $(ls data | wc -l) -eq 1000 && sha256sum -c --quiet SUMS && echo all-1000-match
  check-b:
    needs: [produce]
    steps:
      - run: sha256sum -c --quiet SUMS && du -sb data && echo all-1000-match
  no-artifacts:
    needs: [{job: produce, artifacts: false}]
    steps:
      - run: test ! -e SUMS && test ! -e data && echo nothing-here
`

// TestDAGOf200MBIn1000FilesReachesEveryConsumer: what the producer wrote
// reaches each consumer byte for byte (sha256sum of every file, besides
// the agent's own check against the recorded sha256), and a consumer that
// opts out gets nothing.
func TestDAGOf200MBIn1000FilesReachesEveryConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 600 MB")
	}
	s := startServerTTL(t, 2, false, 20*time.Second)
	run, jobs := runPipeline(t, s, bigDAG, 10*time.Minute)
	if run.State != state.RunSucceeded {
		for k, j := range jobs {
			t.Logf("%s: %s %s\n%s", k, j.State, j.Error, tail(logsOf(t, s, j.ID), 2000))
		}
		t.Fatalf("run %s", run.State)
	}
	for _, k := range []string{"check-a", "check-b"} {
		log := logsOf(t, s, jobs[k].ID)
		if !strings.Contains(log, "all-1000-match") || !strings.Contains(log, "hodei: artifacts data of produce: 1001 files, 190.8 MiB, verified") {
			t.Errorf("%s:\n%s", k, tail(log, 2000))
		}
		t.Logf("%s: %s", k, firstLine(log, "hodei: artifacts"))
	}
	t.Logf("produce: %s", firstLine(logsOf(t, s, jobs["produce"].ID), "hodei: artifacts"))
	if log := logsOf(t, s, jobs["no-artifacts"].ID); !strings.Contains(log, "nothing-here") || strings.Contains(log, "hodei: artifacts") {
		t.Errorf("no-artifacts:\n%s", log)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func firstLine(log, prefix string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestCorruptedArtifactFailsTheConsumer: an object changed in the blob
// store after its upload (same file names, one byte different) is caught
// when the consumer downloads it, and the job fails saying which file.
func TestCorruptedArtifactFailsTheConsumer(t *testing.T) {
	s := startUnisolatedServer(t, 2)
	gate := filepath.Join(t.TempDir(), "go")
	yaml := `name: corrupt
jobs:
  build:
    steps:
      - run: mkdir -p dist && echo "the real build" > dist/app && echo lib > dist/lib
    artifacts:
      name: bin
      paths: [dist]
  gate:
    steps:
      # Waits until the test has changed the stored object.
      - run: while [ ! -e ` + gate + ` ]; do sleep 0.05; done
  use:
    needs: [build, gate]
    steps:
      - run: cat dist/app
`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, sub := submitWatched(ctx, t, s, "corrupt.yaml", yaml)
	defer sub.Close()
	waitJob(ctx, t, sub, run.ID, "build", state.JobSucceeded)
	recs, err := s.Store.ListArtifacts(ctx, store.ArtifactFilter{RunID: run.ID})
	if err != nil || len(recs) != 1 {
		t.Fatalf("records %v, %v", recs, err)
	}
	// The same two files, one of them changed by one byte.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "dist/app"), []byte("the reaL build\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "dist/lib"), []byte("lib\n"), 0o644)
	var buf bytes.Buffer
	if _, err := artifact.Pack(&buf, artifact.Roots{Workspace: dir}, []string{"dist/app", "dist/lib"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Artifacts.Blobs().Put(ctx, recs[0].Object, &buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitRun(ctx, t, s, sub, run.ID)
	_, jobs := loadRun(t, s, run.ID)
	use := jobs["use"]
	if use.State != state.JobFailed || !regexp.MustCompile(`artifacts of build \(bin\): archive: corrupt: dist/app: sha256 [0-9a-f]{64} \(15 bytes\), recorded [0-9a-f]{64} \(15 bytes\)`).MatchString(use.Error) {
		t.Fatalf("use: %s %q", use.State, use.Error)
	}
	if log := logsOf(t, s, use.ID); strings.Contains(log, "the rea") {
		t.Errorf("a step ran on the corrupted files:\n%s", log)
	}
}

// waitJob waits for a job of a run to reach a state.
func waitJob(ctx context.Context, t *testing.T, sub *hub.Sub, runID, key string, want state.JobState) {
	t.Helper()
	if !waitNote(ctx, t, sub, func(n hub.Note) bool {
		return n.Kind == hub.KindJob && n.RunID == runID && n.JobKey == key && n.JobState == want
	}) {
		t.Fatalf("job %s did not become %s", key, want)
	}
}

// TestCacheRestoredOnTheSecondRun: the first run misses and saves the
// cache; the second restores it (the files are there before the first
// step, the lookups count one hit) and does not save it again.
func TestCacheRestoredOnTheSecondRun(t *testing.T) {
	s := startServer(t, 1)
	yaml := `name: cached
jobs:
  build:
    cache:
      - key: deps-v1
        paths: [~/.deps, vendor]
        restore_keys: [deps-]
    steps:
      - run: |
          if [ -f ~/.deps/lib ] && [ -f vendor/mod.txt ]; then
            echo "restored: $(cat ~/.deps/lib) $(cat vendor/mod.txt)"
          else
            mkdir -p ~/.deps vendor
            echo "lib 1.2.3" > ~/.deps/lib
            seq 1 1000 > vendor/mod.txt
            echo downloaded
          fi
`
	run1, jobs1 := runPipeline(t, s, yaml, 2*time.Minute)
	log1 := logsOf(t, s, jobs1["build"].ID)
	if run1.State != state.RunSucceeded || !strings.Contains(log1, "hodei: cache deps-v1: miss") || !strings.Contains(log1, "downloaded") || !strings.Contains(log1, "hodei: cache deps-v1: saved 2 files") {
		t.Fatalf("first run %s:\n%s", run1.State, log1)
	}
	run2, jobs2 := runPipeline(t, s, yaml, 2*time.Minute)
	log2 := logsOf(t, s, jobs2["build"].ID)
	if run2.State != state.RunSucceeded || !strings.Contains(log2, "hodei: cache deps-v1: hit: 2 files") ||
		!strings.Contains(log2, "restored: lib 1.2.3 1 2 3") && !strings.Contains(log2, "restored: lib 1.2.3 1\n2") ||
		strings.Contains(log2, "saved") {
		t.Fatalf("second run %s:\n%s", run2.State, log2)
	}
	if hit, miss := s.Artifacts.CacheLookups("hit"), s.Artifacts.CacheLookups("miss"); hit != 1 || miss != 1 {
		t.Errorf("lookups: %v hits, %v misses; want 1 and 1", hit, miss)
	}
	t.Logf("second run: %s", firstLine(log2, "hodei: cache"))
}

// TestArtifactsAndCachesInS3: with an S3-compatible store (a real S3
// protocol server in the test), artifacts reach the job that needs them
// checked, and a cache saved by one run is restored by the next.
func TestArtifactsAndCachesInS3(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("hodei"); err != nil {
		t.Fatal(err)
	}
	s3srv := httptest.NewServer(gofakes3.New(backend).Server())
	defer s3srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	s := startTestServer(t, Options{
		NATSListen: "none", LocalWorkers: 1,
		ArtifactsStore: "s3://hodei/ci?region=us-east-1&path-style=1&endpoint=" + s3srv.URL,
	})
	yaml := `name: s3
jobs:
  build:
    cache:
      - key: k1
        paths: [~/.deps]
    steps:
      - run: |
          test -f ~/.deps/lib && echo "restored-$(cat ~/.deps/lib)" || { mkdir -p ~/.deps && echo lib > ~/.deps/lib; }
          mkdir -p dist && head -c 20000000 /dev/urandom > dist/big && sha256sum dist/big > SUM
    artifacts: {paths: [dist, SUM]}
  use:
    needs: build
    steps:
      - run: sha256sum -c SUM && echo big-ok
`
	for i := 1; i <= 2; i++ {
		run, jobs := runPipeline(t, s, yaml, 2*time.Minute)
		build, use := logsOf(t, s, jobs["build"].ID), logsOf(t, s, jobs["use"].ID)
		if run.State != state.RunSucceeded || !strings.Contains(use, "big-ok") || !strings.Contains(use, "verified") {
			t.Fatalf("run %d %s:\n%s\n%s", i, run.State, build, use)
		}
		if restored := strings.Contains(build, "restored-lib"); restored != (i == 2) {
			t.Errorf("run %d: cache restored %v:\n%s", i, restored, build)
		}
	}
	objects, err := backend.ListBucket("hodei", &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil || len(objects.Contents) != 3 { // two artifacts, one cache entry
		t.Fatalf("objects in the bucket: %+v, %v", objects, err)
	}
}
