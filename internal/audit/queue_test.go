package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// full is an entry with every field set, as the API makes it at
// LevelRequest.
func full(i int, decision string) Entry {
	return Entry{
		Principal: "user:u-bob", PrincipalName: "bob", Tenant: "acme", Action: "read",
		Resource: fmt.Sprintf(`Hodei::Run::"run-%d"`, i), Decision: decision, Reason: "permitted by policy0",
		Remote: "10.0.0.7:51234", RequestID: fmt.Sprintf("req-%d", i), Method: "GET",
		Path: fmt.Sprintf("/api/v1/runs/run-%d", i), Status: 200, Query: "limit=5",
		BodyBytes: 12, BodySHA256: strings.Repeat("ab", 32),
	}
}

func TestLevelsKeepTheirFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	for i, c := range []struct {
		method, decision string
	}{{"GET", Allow}, {"POST", Allow}, {"GET", Deny}} {
		e := full(i, c.decision)
		e.Method = c.method
		if err := l.Enqueue(e.Trim(p.LevelOf(e.Action, c.method, c.decision))); err != nil {
			t.Fatal(err)
		}
	}
	l.Flush()
	recs, err := l.Query(Filter{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("query: %d records, %v", len(recs), err)
	}
	read, write, deny := recs[0], recs[1], recs[2]
	// Metadata: who, what, which, the decision and the status; nothing of
	// the request itself.
	if read.Principal != "user:u-bob" || read.Tenant != "acme" || read.Action != "read" || read.Resource != `Hodei::Run::"run-0"` ||
		read.Decision != Allow || read.Status != 200 || read.RequestID != "req-0" || read.Remote == "" {
		t.Errorf("metadata record lacks a field: %+v", read)
	}
	if read.PrincipalName != "bob" || read.Reason != "" || read.Method != "" || read.Path != "" || read.Query != "" || read.BodyBytes != 0 || read.BodySHA256 != "" {
		t.Errorf("metadata record keeps request fields: %+v", read)
	}
	// Request: everything.
	if write.Reason == "" || write.Method != "POST" || write.Path == "" || write.Query != "limit=5" ||
		write.BodyBytes != 12 || write.BodySHA256 == "" || write.Status != 200 {
		t.Errorf("request record lacks a field: %+v", write)
	}
	// A denial keeps its reason at metadata.
	if deny.Reason == "" || deny.Path != "" {
		t.Errorf("denied read: %+v", deny)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, path)
}

func TestPolicyLevels(t *testing.T) {
	p, err := ParsePolicy("read=none,write=metadata,readLogs=request")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		action, method, decision string
		want                     Level
	}{
		{"read", "GET", Allow, LevelNone},
		{"read", "HEAD", Allow, LevelNone},
		{"read", "GET", Deny, LevelMetadata}, // denials are kept
		{"submit", "POST", Allow, LevelMetadata},
		{"readLogs", "GET", Allow, LevelRequest},
	} {
		if got := p.LevelOf(c.action, c.method, c.decision); got != c.want {
			t.Errorf("%s %s %s: %s, want %s", c.action, c.method, c.decision, got, c.want)
		}
	}
	if d := DefaultPolicy(); d.LevelOf("read", "GET", Allow) != LevelMetadata || d.LevelOf("submit", "POST", Allow) != LevelRequest {
		t.Errorf("default policy %s", d)
	}
	if one, _ := ParsePolicy("none"); one.LevelOf("submit", "POST", Allow) != LevelNone {
		t.Errorf("one level for all: %s", one)
	}
	for _, bad := range []string{"loud", "read=loud", "=none"} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", bad)
		}
	}
	if e := full(1, Allow).Trim(LevelNone); e.Principal == "" {
		t.Error("Trim(LevelNone) removed the metadata: the caller decides not to record")
	}
}

// TestFullQueueDropsAndCountsWithoutBlocking writes the trail into a FIFO
// that nobody reads: the writer blocks once the pipe is full, the queue
// fills, and Enqueue must still return at once, dropping and counting.
// Then the FIFO is read: what was written is a valid chain that says how
// many records are missing.
func TestFullQueueDropsAndCountsWithoutBlocking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	l, err := Open(path, Options{Queue: 64, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// 64 KiB of pipe and 64 queued entries hold far fewer than n records.
	const n = 5000
	enqueued := make(chan struct{})
	go func() {
		defer close(enqueued)
		for i := range n {
			if err := l.Enqueue(full(i, Allow)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-enqueued:
	case <-time.After(30 * time.Second): // a bound on failure only: Enqueue blocked
		t.Fatal("Enqueue blocked behind a blocked writer")
	}
	dropped := l.Dropped()
	if dropped == 0 {
		t.Fatalf("no entry dropped with the writer blocked (%d queued)", l.Queued())
	}
	// Unblock the writer: read the FIFO until Close ends the writes.
	rf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	read := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(rf)
		read <- b
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data := <-read
	rep, err := VerifyReader(bytes.NewReader(data), VerifyOptions{})
	if err != nil {
		t.Fatalf("the chain does not verify after drops: %v", err)
	}
	var written, marks, missing int64
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.Action == DroppedAction {
			marks++
			var k int64
			fmt.Sscanf(r.Reason, "%d records dropped", &k)
			missing += k
			continue
		}
		written++
	}
	if written+int64(dropped) != n || missing != int64(dropped) || marks == 0 || rep.Records != written+marks {
		t.Errorf("%d written + %d dropped != %d, or drop records say %d missing in %d records (verified %d)",
			written, dropped, n, missing, marks, rep.Records)
	}
	if !strings.Contains(logged.String(), "audit records dropped") {
		t.Errorf("the drop was not logged: %q", logged.String())
	}
}

func TestEnqueueRefusesOnAClosedLog(t *testing.T) {
	l, _ := newLog(t, 1)
	l.Close()
	if err := l.Enqueue(full(1, Allow)); err == nil {
		t.Error("Enqueue on a closed log accepted")
	}
}
