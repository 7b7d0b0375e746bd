package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/logtest"
	"github.com/hodei-ci/hodei/internal/server"
)

// TestBlockedAuditWriterNeverHoldsRequests makes the audit file a FIFO that
// nobody reads: the trail's writer blocks once the pipe is full and its
// queue fills. Requests must still be answered; the records that do not
// fit are dropped, counted in hodei_audit_dropped_total and noted in the
// trail, and what was written still verifies. The records show the levels
// of the default policy: a submission with its body's digest, reads
// without their path.
func TestBlockedAuditWriterNeverHoldsRequests(t *testing.T) {
	dataDir := t.TempDir()
	fifo := server.AuditPath(dataDir)
	if err := os.MkdirAll(filepath.Dir(fifo), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &hardEnv{secureEnv: &secureEnv{t: t, toks: map[string]string{}}, dataDir: dataDir, log: &logtest.Buffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{
		DataDir:    dataDir,
		NATSListen: "none",
		HTTPAddr:   "127.0.0.1:0",
		Logger:     slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Security: server.SecurityOptions{
			Enabled:      true,
			AuditQueue:   16,
			OnAdminToken: func(tok string) { e.admin = tok },
		},
	})
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			go io.Copy(io.Discard, mustOpen(t, fifo)) // let Close drain the queue
			srv.Close()
		}
	})
	e.srv, e.base = srv, "http://"+srv.HTTPAddr()

	body := []byte(helloYAML)
	a := e.call(e.admin, "POST", "/api/v1/runs?file=hello.yaml", "application/yaml", body)
	if a.status != http.StatusCreated {
		t.Fatalf("submit: %d %s", a.status, a.body)
	}
	var run struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(a.body, &run); err != nil {
		t.Fatal(err)
	}
	// Far more records than the pipe (64 KiB) and the queue (16) hold. A
	// request stuck behind the writer would hang here until the test's
	// deadline.
	for i := range 600 {
		if a := e.call(e.admin, "GET", "/api/v1/runs/"+run.ID, "", nil); a.status != http.StatusOK {
			t.Fatalf("read %d: %d %s", i, a.status, a.body)
		}
	}
	m := e.call("", "GET", "/metrics", "", nil)
	match := regexp.MustCompile(`(?m)^hodei_audit_dropped_total (\S+)$`).FindSubmatch(m.body)
	if match == nil {
		t.Fatalf("no hodei_audit_dropped_total in /metrics")
	}
	if n, _ := strconv.ParseFloat(string(match[1]), 64); n < 1 || uint64(n) != srv.Audit().Dropped() {
		t.Errorf("hodei_audit_dropped_total %s, the log counts %d", match[1], srv.Audit().Dropped())
	}

	// Unblock: read the FIFO while the server closes (Close writes what
	// was queued, then closes the write end).
	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(mustOpen(t, fifo))
		read <- b
	}()
	srv.Close()
	closed = true
	data := <-read
	rep, err := audit.VerifyReader(bytes.NewReader(data), audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("the trail does not verify after drops: %v", err)
	}
	var submit, reads, drops int
	sum := sha256.Sum256(body)
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Action == audit.DroppedAction:
			drops++
		case r.Action == "submit":
			submit++
			if r.Status != http.StatusCreated || r.Method != "POST" || r.Query != "file=hello.yaml" ||
				r.BodyBytes != int64(len(body)) || r.BodySHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("submission recorded at the request level without its request: %s", line)
			}
		case r.Action == "read":
			reads++
			if r.Status != http.StatusOK || r.Path != "" || r.Method != "" || r.Reason != "" || r.Principal == "" {
				t.Errorf("read recorded not at the metadata level: %s", line)
			}
		}
	}
	t.Logf("%d records verified (%d bytes): 1 submission, %d reads, %d drop records; %d dropped",
		rep.Records, len(data), reads, drops, srv.Audit().Dropped())
	if submit != 1 || drops == 0 || reads == 0 || uint64(reads) >= 600 {
		t.Errorf("%d submissions, %d reads, %d drop records in the trail", submit, reads, drops)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
	}
	return f
}
