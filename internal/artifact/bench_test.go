package artifact_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// benchTree writes n files of size bytes each (random: incompressible).
func benchTree(b *testing.B, n, size int) artifact.Roots {
	b.Helper()
	ws := b.TempDir()
	buf := make([]byte, size)
	for i := range n {
		_, _ = rand.Read(buf)
		p := filepath.Join(ws, "data", fmt.Sprintf("d%02d", i%32), fmt.Sprintf("f%04d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return artifact.Roots{Workspace: ws, Home: b.TempDir()}
}

// BenchmarkUploadDownload moves files through the service over real
// JetStream and mutual TLS: the upload of a job's artifacts, then their
// download with every sha256 checked (bytes/s are those of the files; a
// cache restore is the same download). Two shapes: 100 MB in 500 files,
// and 20 MB in 5,000 small files (a module cache). docs/benchmarks.md
// compares them with tar on the same machine.
func BenchmarkUploadDownload(b *testing.B) {
	for _, shape := range []struct{ n, size int }{{500, 200_000}, {5000, 4_000}} {
		b.Run(fmt.Sprintf("%dx%dB", shape.n, shape.size), func(b *testing.B) { benchUploadDownload(b, shape.n, shape.size) })
	}
}

func benchUploadDownload(b *testing.B, n, size int) {
	f := newFixture(b, artifact.Limits{MaxJobBytes: 1 << 40, MaxTenantBytes: 1 << 40}, "wa")
	src := benchTree(b, n, size)
	files, err := artifact.Collect(src, []string{"data"})
	if err != nil {
		b.Fatal(err)
	}
	c, _, _ := f.agent(b, "wa")
	ctx := context.Background()
	runs := 0
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(int64(n * size))
		for range b.N {
			runs++
			id := fmt.Sprintf("up-%d", runs)
			f.addRun(b, "run-"+id, "acme", job{id: id, key: "build", worker: "wa", st: state.JobRunning, spec: buildSpec})
			if _, _, _, err := c.Upload(ctx, artifact.AttemptRef{JobID: id, Attempt: 1}, store.KindArtifact, "bin", src, files); err != nil {
				b.Fatal(err)
			}
		}
	})
	f.addRun(b, "run-down", "acme",
		job{id: "down-build", key: "build", worker: "wa", st: state.JobRunning, spec: buildSpec},
		job{id: "down-use", key: "use", worker: "wa", st: state.JobRunning, spec: pipeline.JobSpec{Needs: []string{"build"}}})
	if _, _, _, err := c.Upload(ctx, artifact.AttemptRef{JobID: "down-build", Attempt: 1}, store.KindArtifact, "bin", src, files); err != nil {
		b.Fatal(err)
	}
	ref := artifact.AttemptRef{JobID: "down-use", Attempt: 1}
	entries, err := c.List(ctx, ref)
	if err != nil || len(entries) != 1 {
		b.Fatalf("list: %v %v", entries, err)
	}
	b.Run("download", func(b *testing.B) {
		b.SetBytes(int64(n * size))
		for range b.N {
			dst := artifact.Roots{Workspace: b.TempDir()}
			if err := c.Download(ctx, ref, entries[0], dst, -1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
