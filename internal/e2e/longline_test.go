package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLongLineStreamsInBoundedMemory: a step prints one line of 200 MB, no
// newline anywhere. It goes through the agent, NATS and the server in
// bounded chunks and is stored byte for byte (its SHA-256 read back from
// the API), and the server process's peak resident memory while it does
// (VmHWM, reset once the server is ready: start-up touches most of the
// binary, which is not what this measures) grows by less than 64 MiB over
// the ready server's: no part of the path holds the whole line, nor a
// third of it. (The goal, under 100 MiB in all, is met only
// narrowly: 98 – 103 MiB measured; docs/benchmarks.md.)
func TestLongLineStreamsInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB through the whole path: not in -short")
	}
	const size = 200_000_000
	const maxGrowth = 64 << 20
	c := newCluster(t, "--workers", "1", "--max-log-bytes", "300Mi")
	srv := c.server(t, "server.log")
	// Reset the high-water mark to the resident set of the ready server
	// (proc(5): clear_refs).
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", srv.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the server's peak resident memory: %v", err)
	}
	start, _ := procMem(t, srv.cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	id, err := c.api.submit(ctx, fmt.Sprintf(`name: long-line
jobs:
  line:
    steps: [{run: "head -c %d /dev/zero | tr '\\000' a"}]
`, size))
	if err != nil {
		t.Fatal(err)
	}
	c.api.waitFinal(t, ctx, 12*time.Minute, id)
	r, err := c.api.run(ctx, id)
	if err != nil || r.State != "succeeded" {
		t.Fatalf("run %+v: %v", r, err)
	}

	// The stored output, streamed: the step's header line, the line, the
	// step's footer.
	req, err := http.NewRequestWithContext(ctx, "GET", c.api.base+"/api/v1/runs/"+id+"/logs?job=line", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logs: HTTP %d", resp.StatusCode)
	}
	n, sum, err := outputSum(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	block := bytes.Repeat([]byte("a"), 1<<20)
	for left := size; left > 0; left -= len(block) {
		want.Write(block[:min(left, len(block))])
	}
	if n != size || !bytes.Equal(sum, want.Sum(nil)) {
		t.Errorf("stored output: %d bytes, sha256 %x; want %d bytes of \"a\", sha256 %x", n, sum, size, want.Sum(nil))
	}

	peak, rss := procMem(t, srv.cmd.Process.Pid)
	t.Logf("server: resident %d MiB when ready; peak %d MiB, now %d MiB, after storing and serving a %d MB line", start>>20, peak>>20, rss>>20, size/1_000_000)
	if peak-start > maxGrowth {
		t.Errorf("the server's resident memory grew by %d MiB (%d to %d) with the line: want under %d MiB whatever the line's length",
			(peak-start)>>20, start>>20, peak>>20, maxGrowth>>20)
	}
}

// outputSum reads a job's plain log (its step's header line, the output,
// its footer line) and returns the length and SHA-256 of the output alone,
// holding only a small tail of it at a time.
func outputSum(r io.Reader) (int64, []byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	header, err := br.ReadString('\n')
	if err != nil || !strings.Contains(header, "==> step 1/1") {
		return 0, nil, fmt.Errorf("log header %q: %v", header, err)
	}
	h := sha256.New()
	var n int64
	const keep = 4 << 10 // more than the footer line
	buf := make([]byte, 0, 256<<10)
	chunk := make([]byte, 64<<10)
	for {
		k, err := br.Read(chunk)
		buf = append(buf, chunk[:k]...)
		if len(buf) > cap(buf)-len(chunk) {
			// Hash all but the tail, which may hold the footer.
			out := len(buf) - keep
			h.Write(buf[:out])
			n += int64(out)
			buf = append(buf[:0], buf[out:]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, err
		}
	}
	i := bytes.LastIndex(buf, []byte("<== step 1/1"))
	if i < 0 {
		return 0, nil, fmt.Errorf("no step footer at the end of the log: %q", buf[max(0, len(buf)-200):])
	}
	// The footer starts a line of its own: a newline is added after output
	// that did not end with one.
	out := bytes.TrimSuffix(buf[:i], []byte("\n"))
	h.Write(out)
	n += int64(len(out))
	return n, h.Sum(nil), nil
}

// procMem reads a process's peak and current resident memory.
func procMem(t *testing.T, pid int) (peak, rss int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			peak = kb << 10
		case "VmRSS:":
			rss = kb << 10
		}
	}
	if peak == 0 {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	return peak, rss
}
