package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fill writes n records, one minute apart from t0, alternating principals,
// actions and decisions.
func fill(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e := Entry{
			Time:      t0.Add(time.Duration(i) * time.Minute),
			Principal: []string{"user:alice", "token:ci"}[i%2],
			Action:    []string{"read", "submit", "cancel"}[i%3],
			Resource:  fmt.Sprintf(`Hodei::Run::"run-%d"`, i%4),
			Decision:  []string{Allow, Deny}[i%2],
			Remote:    "127.0.0.1:5000",
			RequestID: fmt.Sprintf("req-%d", i),
		}
		if _, err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
}

func newLog(t *testing.T, n int) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path)
	fill(t, l, n)
	return l, path
}

// openLog opens the log at path (a new one or the one a closed log left),
// closed when the test ends.
func openLog(t *testing.T, path string) *Log {
	t.Helper()
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// mustVerify fails the test unless the log at path verifies.
func mustVerify(t *testing.T, path string) {
	t.Helper()
	if _, err := Verify(path, VerifyOptions{}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func writeLines(t *testing.T, path string, ls [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range ls {
		b = append(b, l...)
		if !bytes.HasSuffix(l, []byte("\n")) {
			b = append(b, '\n')
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantProblem(t *testing.T, path string, line int, seq int64, msgPart string) {
	t.Helper()
	_, err := Verify(path, VerifyOptions{})
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("Verify = %v, want a *Problem at line %d", err, line)
	}
	if p.Line != line || p.Seq != seq || !strings.Contains(p.Msg, msgPart) {
		t.Errorf("Verify = %v, want line %d, seq %d, message with %q", p, line, seq, msgPart)
	}
}

func TestAppendedLogVerifies(t *testing.T) {
	t.Parallel()
	l, path := newLog(t, 10)
	rep, err := Verify(path, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seq, hash := l.Head()
	if rep.Records != 10 || rep.FirstSeq != 1 || rep.LastSeq != 10 || seq != 10 || rep.LastHash != hash {
		t.Errorf("report %+v, head %d %s", rep, seq, hash)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	// Reopening goes on from the last record.
	l.Close()
	l2 := openLog(t, path)
	r, err := l2.Append(Entry{Principal: "admin:local", Action: "read", Resource: `Hodei::Cluster::"hodei"`, Decision: Allow})
	if err != nil || r.Seq != 11 || r.Prev != hash {
		t.Fatalf("append after reopen: %+v %v", r, err)
	}
	mustVerify(t, path)
}

func TestVerifyDetectsAnEditedByte(t *testing.T) {
	t.Parallel()
	// Every single-byte change to record 4 (line 4) is detected and blamed
	// on that line: values, keys, digits, the hash, punctuation.
	_, path := newLog(t, 6)
	orig := lines(t, path)
	rec := orig[3]
	for i := 0; i < len(rec)-1; i++ { // not the newline
		for _, c := range []byte{'x', '0', '"'} {
			if rec[i] == c {
				continue
			}
			ls := make([][]byte, len(orig))
			copy(ls, orig)
			mod := bytes.Clone(rec)
			mod[i] = c
			ls[3] = mod
			writeLines(t, path, ls)
			_, err := Verify(path, VerifyOptions{})
			var p *Problem
			if !errors.As(err, &p) || p.Line != 4 {
				t.Fatalf("byte %d of record 4 set to %q (%s): Verify = %v, want a problem on line 4", i, c, mod, err)
			}
		}
	}
	writeLines(t, path, orig)
	mustVerify(t, path)
	// An edit that changes no value (a space before the first field)
	// leaves the record, and so its hash, the same: it is caught because
	// the line is no longer the record's canonical encoding.
	ls := lines(t, path)
	ls[3] = append([]byte("{ "), ls[3][1:]...)
	writeLines(t, path, ls)
	wantProblem(t, path, 4, 4, "not the canonical encoding")
	writeLines(t, path, orig)
	// A consistent edit (a new hash computed for the changed record) is
	// caught by the next record's prev.
	ls = lines(t, path)
	var r Record
	mustUnmarshal(t, ls[2], &r)
	r.Decision = map[string]string{Allow: Deny, Deny: Allow}[r.Decision]
	r.Principal = "user:mallory"
	r.Hash = HashOf(r)
	ls[2] = append(encode(r), '\n')
	writeLines(t, path, ls)
	wantProblem(t, path, 4, 4, "prev does not match")
}

func TestVerifyDetectsRemovedRecords(t *testing.T) {
	t.Parallel()
	_, path := newLog(t, 6)
	orig := lines(t, path)

	writeLines(t, path, append(append([][]byte{}, orig[:2]...), orig[3:]...)) // seq 3 removed
	wantProblem(t, path, 3, 4, "seq 3 to 3 are missing")

	writeLines(t, path, orig[1:]) // seq 1 removed
	wantProblem(t, path, 1, 2, "seq 1 to 1 are missing")

	// Removed and renumbered: the prev chain still breaks.
	ls := append(append([][]byte{}, orig[:2]...), orig[3:]...)
	for i := 2; i < len(ls); i++ {
		var r Record
		mustUnmarshal(t, ls[i], &r)
		r.Seq--
		r.Hash = HashOf(r)
		ls[i] = append(encode(r), '\n')
	}
	writeLines(t, path, ls)
	wantProblem(t, path, 3, 3, "prev does not match")

	// Removed from the end: only a head recorded earlier tells.
	writeLines(t, path, orig[:4])
	if _, err := Verify(path, VerifyOptions{}); err != nil {
		t.Fatalf("a truncated file without a head: %v", err)
	}
	var last Record
	mustUnmarshal(t, orig[5], &last)
	_, err := Verify(path, VerifyOptions{HeadSeq: 6, HeadHash: last.Hash})
	var p *Problem
	if !errors.As(err, &p) || !strings.Contains(p.Msg, "recorded head is gone") {
		t.Errorf("truncated tail with a head: %v", err)
	}
	writeLines(t, path, orig)
	if _, err := Verify(path, VerifyOptions{HeadSeq: 6, HeadHash: last.Hash}); err != nil {
		t.Error(err)
	}
}

func TestVerifyDetectsReorderedRecords(t *testing.T) {
	t.Parallel()
	_, path := newLog(t, 6)
	ls := lines(t, path)
	ls[2], ls[3] = ls[3], ls[2]
	writeLines(t, path, ls)
	wantProblem(t, path, 3, 4, "out of sequence")
}

func TestQueryFilters(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t, 24)
	cases := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"principal", Filter{Principal: "token:ci", Action: "submit"}, []int64{2, 8, 14, 20}},
		{"action and decision", Filter{Action: "read", Decision: Allow}, []int64{1, 7, 13, 19}},
		{"resource by id", Filter{Resource: "run-3", Principal: "token:ci"}, []int64{4, 8, 12, 16, 20, 24}},
		{"resource by uid", Filter{Resource: `Run::"run-0"`, Action: "read"}, []int64{1, 13}},
		{"full resource", Filter{Resource: `Hodei::Run::"run-1"`, Decision: Deny}, []int64{2, 6, 10, 14, 18, 22}},
		{"time range", Filter{Since: t0.Add(5 * time.Minute), Until: t0.Add(8 * time.Minute)}, []int64{6, 7, 8}},
		{"limit keeps the latest", Filter{Principal: "user:alice", Limit: 3}, []int64{19, 21, 23}},
		{"nothing", Filter{Action: "admin"}, nil},
	}
	for _, c := range cases {
		got, err := l.Query(c.f)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", c.name, seqs, c.want)
		}
	}
}

func TestPruneKeepsTheChainVerifiable(t *testing.T) {
	t.Parallel()
	l, path := newLog(t, 10)
	n, err := l.Prune(t0.Add(4 * time.Minute)) // records 1-4 are older
	if err != nil || n != 4 {
		t.Fatalf("Prune = %d, %v; want 4", n, err)
	}
	rep, err := Verify(path, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.AnchorSeq != 4 || rep.FirstSeq != 5 || rep.LastSeq != 10 || rep.Records != 6 {
		t.Errorf("after prune: %+v", rep)
	}
	// Appends go on, in the rewritten file.
	fill(t, l, 2)
	if rep, err = Verify(path, VerifyOptions{}); err != nil || rep.LastSeq != 12 {
		t.Fatalf("after appends: %+v %v", rep, err)
	}
	// The anchor itself is checked: the first kept record must follow it.
	ls := lines(t, path)
	writeLines(t, path, append([][]byte{ls[0]}, ls[2:]...))
	wantProblem(t, path, 2, 6, "seq 5 to 5 are missing")
	writeLines(t, path, ls)

	// A second prune, then everything, then appends on the anchor alone.
	if n, err = l.Prune(t0.Add(7 * time.Minute)); err != nil || n != 3 {
		t.Fatalf("second prune = %d, %v", n, err)
	}
	if rep, err = Verify(path, VerifyOptions{}); err != nil || rep.AnchorSeq != 7 {
		t.Fatalf("after second prune: %+v %v", rep, err)
	}
	if n, err = l.Prune(t0.Add(time.Hour)); err != nil || n != 5 {
		t.Fatalf("prune all = %d, %v", n, err)
	}
	l.Close()
	l2 := openLog(t, path)
	if seq, _ := l2.Head(); seq != 12 {
		t.Fatalf("head after pruning everything and reopening = %d, want 12", seq)
	}
	r, err := l2.Append(Entry{Principal: "admin:local", Action: "read", Resource: "x", Decision: Allow})
	if err != nil || r.Seq != 13 {
		t.Fatalf("append: %+v %v", r, err)
	}
	if rep, err = Verify(path, VerifyOptions{}); err != nil || rep.AnchorSeq != 12 || rep.LastSeq != 13 {
		t.Fatalf("after pruning everything: %+v %v", rep, err)
	}
}

func TestOpenCutsAPartialLastLine(t *testing.T) {
	t.Parallel()
	l, path := newLog(t, 3)
	l.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"time":"2025-`)
	f.Close()
	l2 := openLog(t, path)
	if r, err := l2.Append(Entry{Principal: "p", Action: "a", Resource: "r", Decision: Deny}); err != nil || r.Seq != 4 {
		t.Fatalf("append after cut: %+v %v", r, err)
	}
	mustVerify(t, path)
}

func TestConcurrentAppendsChain(t *testing.T) {
	t.Parallel()
	l, path := newLog(t, 0)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := l.Append(Entry{Principal: fmt.Sprint("g", g), Action: "read", Resource: "r", Decision: Allow}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rep, err := Verify(path, VerifyOptions{})
	if err != nil || rep.Records != 400 {
		t.Fatalf("%+v %v", rep, err)
	}
}

func mustUnmarshal(t *testing.T, line []byte, r *Record) {
	t.Helper()
	if err := json.Unmarshal(line, r); err != nil {
		t.Fatal(err)
	}
}
