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
// the API), and the server's anonymous memory (RssAnon: heap, buffers,
// caches; not the executable's pages, which start-up touches and the
// server gives back once ready) stays under 100 MiB while it does: no
// part of the path holds the whole line. The peak of the whole resident
// set is logged (docs/benchmarks.md).
func TestLongLineStreamsInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB through the whole path: not in -short")
	}
	const size = 200_000_000
	const maxAnon = 100 << 20
	c := newCluster(t, "--workers", "1", "--max-log-bytes", "300Mi")
	srv := c.server(t, "server.log")
	// The kernel keeps no peak of the anonymous memory alone: sample it
	// (a poll of another process's counters) until the test ends.
	pid := srv.cmd.Process.Pid
	var maxSeen int64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if anon, ok := anonMem(pid); ok {
				maxSeen = max(maxSeen, anon)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
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

	close(stop)
	<-sampled
	peak, rss := procMem(t, pid)
	t.Logf("server: anonymous memory at most %d MiB; resident peak %d MiB (the executable's pages included), now %d MiB, after storing and serving a %d MB line",
		maxSeen>>20, peak>>20, rss>>20, size/1_000_000)
	if maxSeen == 0 || maxSeen > maxAnon {
		t.Errorf("the server's anonymous memory reached %d MiB with the line: want under %d MiB whatever the line's length", maxSeen>>20, maxAnon>>20)
	}
}

// anonMem reads the anonymous resident memory (RssAnon) of process pid.
func anonMem(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "RssAnon:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
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
