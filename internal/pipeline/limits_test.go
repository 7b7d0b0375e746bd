package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// jobsFile is a pipeline of n plain jobs and one matrix job of rows x cols
// combinations.
func jobsFile(n, rows, cols int) string {
	var b strings.Builder
	b.WriteString("name: many\njobs:\n")
	for i := range n {
		fmt.Fprintf(&b, "  j%d:\n    steps: [{run: \"true\"}]\n", i)
	}
	if rows > 0 {
		b.WriteString("  m:\n    matrix:\n      a: [")
		for i := range rows {
			fmt.Fprintf(&b, "%d,", i)
		}
		b.WriteString("]\n      b: [")
		for i := range cols {
			fmt.Fprintf(&b, "%d,", i)
		}
		b.WriteString("]\n    steps: [{run: \"true\"}]\n")
	}
	return b.String()
}

func TestJobsPerPipelineLimit(t *testing.T) {
	// 1,000 plain jobs pass the default; 1,001 do not.
	if _, err := Parse("ok.yaml", []byte(jobsFile(DefaultMaxJobs, 0, 0))); err != nil {
		t.Fatalf("%d jobs refused: %v", DefaultMaxJobs, err)
	}
	_, err := Parse("big.yaml", []byte(jobsFile(DefaultMaxJobs+1, 0, 0)))
	want := "big.yaml:2:1: jobs: the pipeline has 1001 jobs (matrix combinations counted); at most 1000 are allowed in one pipeline"
	if err == nil || err.Error() != want {
		t.Fatalf("1001 jobs: %v, want %q", err, want)
	}
	// Matrix combinations count: 2 plain jobs and a 10x10 matrix are 102.
	src := []byte(jobsFile(2, 10, 10))
	if _, err := ParseWithLimits("m.yaml", src, Limits{MaxJobs: 102}); err != nil {
		t.Fatalf("102 jobs with a limit of 102: %v", err)
	}
	_, err = ParseWithLimits("m.yaml", src, Limits{MaxJobs: 101})
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Field != "jobs" || !strings.Contains(list[0].Msg, "102 jobs") || !strings.Contains(list[0].Msg, "at most 101") {
		t.Fatalf("102 jobs with a limit of 101: %v", err)
	}
}

func TestFileSizeLimit(t *testing.T) {
	src := jobsFile(1, 0, 0)
	pad := func(n int) []byte { return []byte(src + "#" + strings.Repeat("x", n-len(src)-2) + "\n") }
	if _, err := Parse("ok.yaml", pad(DefaultMaxFileBytes)); err != nil {
		t.Fatalf("a file of exactly 1 MiB refused: %v", err)
	}
	_, err := Parse("big.yaml", pad(DefaultMaxFileBytes+1))
	want := "big.yaml: the file is 1Mi (1048577 bytes), larger than the limit of 1Mi (1048576 bytes) on pipeline files"
	if err == nil || err.Error() != want {
		t.Fatalf("1 MiB + 1: %v, want %q", err, want)
	}
	if _, err := ParseWithLimits("small.yaml", []byte(src), Limits{MaxFileBytes: 10}); err == nil || !strings.Contains(err.Error(), "limit of 10 (10 bytes)") {
		t.Fatalf("limit of 10 (10 bytes): %v", err)
	}

	// ReadFile (the CLI's read) stops at the limit: a 3 MiB file is
	// refused after reading 1 MiB + 1 byte, and its size is named.
	path := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(path, bytes.Repeat([]byte("#\n"), 3<<19), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = ReadFile(path, f, 0)
	if err == nil || !strings.Contains(err.Error(), "the file is 3Mi (3145728 bytes), larger than the limit of 1Mi") {
		t.Fatalf("ReadFile of 3 MiB: %v", err)
	}
	// A stream (standard input) is read only up to the limit.
	counted := &countReader{r: bytes.NewReader(bytes.Repeat([]byte("#\n"), 3<<19))}
	_, err = ReadFile("stdin.yaml", counted, 0)
	if err == nil || !strings.Contains(err.Error(), "stdin.yaml: the file is larger than the limit of 1Mi (1048576 bytes)") {
		t.Fatalf("ReadFile of a 3 MiB stream: %v", err)
	}
	if counted.n > DefaultMaxFileBytes+1 {
		t.Errorf("ReadFile read %d bytes, want at most %d", counted.n, DefaultMaxFileBytes+1)
	}
	if _, err := ParseFile(path); err == nil || !strings.Contains(err.Error(), "limit of 1Mi") {
		t.Errorf("ParseFile of 3 MiB: %v", err)
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
