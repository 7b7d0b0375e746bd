package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestFailLimiterBucket: a burst of failures per address, then one more per
// period, with the wait until the next one; addresses are apart.
func TestFailLimiterBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFailLimiter(Limits{AuthFailBurst: 3, AuthFailEvery: 10 * time.Second})
	f.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if w := f.fail("10.0.0.1"); w != 0 {
			t.Fatalf("failure %d limited (wait %s)", i+1, w)
		}
	}
	if w := f.fail("10.0.0.1"); w != 10*time.Second {
		t.Errorf("past the burst: wait %s, want 10s", w)
	}
	if w := f.fail("10.0.0.2"); w != 0 {
		t.Errorf("another address limited: %s", w)
	}
	now = now.Add(4 * time.Second)
	if w := f.fail("10.0.0.1"); w != 6*time.Second {
		t.Errorf("4s later: wait %s, want 6s", w)
	}
	now = now.Add(6 * time.Second)
	if w := f.fail("10.0.0.1"); w != 0 {
		t.Errorf("a period later: wait %s, want none", w)
	}
	if w := f.fail("10.0.0.1"); w == 0 {
		t.Error("the token given back was used twice")
	}
	if got := retryAfter(6 * time.Second); got != "6" {
		t.Errorf("Retry-After of 6s = %q", got)
	}
	if got := retryAfter(100 * time.Millisecond); got != "1" {
		t.Errorf("Retry-After of 100ms = %q", got)
	}
	if newFailLimiter(Limits{AuthFailBurst: -1}).fail("x") != 0 {
		t.Error("a turned-off limiter limits")
	}
}

// TestFailLimiterMemoryIsBounded: past maxBuckets addresses, the limiter
// forgets the addresses whose buckets are full again.
func TestFailLimiterMemoryIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFailLimiter(Limits{AuthFailBurst: 1, AuthFailEvery: time.Second})
	f.now = func() time.Time { return now }
	for i := 0; i < maxBuckets+500; i++ {
		if i == maxBuckets/2 {
			now = now.Add(time.Minute) // the first half's buckets refill
		}
		f.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if n := len(f.buckets); n > maxBuckets {
		t.Errorf("%d buckets kept, want at most %d", n, maxBuckets)
	}
}

// TestCapHandler: long texts, errors and grouped texts are cut with their
// length beside them; short ones and numbers are left alone.
func TestCapHandler(t *testing.T) {
	var buf bytes.Buffer
	log := capLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	long := strings.Repeat("é", 300) // 600 bytes: the cut falls inside a rune
	log.With("path", long).Info("m", "id", "short", "err", errors.New(long), "n", 7, slog.Group("g", "x", long))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	for _, k := range []string{"path", "err"} {
		s, _ := m[k].(string)
		if len(s) > 256+len("...(truncated)") || !strings.HasSuffix(s, "...(truncated)") || m[k+"_len"] != float64(600) {
			t.Errorf("%s = %q (%d bytes), %s_len = %v", k, s, len(s), k, m[k+"_len"])
		}
		if strings.ContainsRune(s, '\uFFFD') {
			t.Errorf("%s cut inside a rune", k)
		}
	}
	if g, _ := m["g"].(map[string]any); g == nil || g["x_len"] != float64(600) {
		t.Errorf("group = %v", m["g"])
	}
	if m["id"] != "short" || m["id_len"] != nil || m["n"] != float64(7) {
		t.Errorf("short values changed: %v", m)
	}
}
