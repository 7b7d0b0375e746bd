package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"
)

// TestIdempotencyKeyHeader: POST /runs and /rerun with one Idempotency-Key
// answer the run the first made; a malformed key is a 400; the client's
// submissions carry a key of their own, one per call.
func TestIdempotencyKeyHeader(t *testing.T) {
	e := start(t)
	const yaml = "name: k\njobs:\n  a:\n    steps: [{run: 'true'}]\n"
	post := func(path, key string) (*http.Response, []byte) {
		t.Helper()
		// A re-run takes no pipeline: its body is empty.
		var body io.Reader = strings.NewReader(yaml)
		if strings.HasSuffix(path, "/rerun") {
			body = http.NoBody
		}
		req, err := http.NewRequest("POST", e.base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if body != http.NoBody {
			req.Header.Set("Content-Type", "application/yaml")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, data
	}
	runID := func(resp *http.Response, body []byte) string {
		t.Helper()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d, want 201: %s", resp.StatusCode, body)
		}
		var r wire.Run
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	first := runID(post("/api/v1/runs", "abc-1"))
	if again := runID(post("/api/v1/runs", "abc-1")); again != first {
		t.Fatalf("POST /runs with key abc-1 twice: runs %s and %s", first, again)
	}
	if other := runID(post("/api/v1/runs", "abc-2")); other == first {
		t.Fatalf("another key got the same run %s", first)
	}
	re := runID(post("/api/v1/runs/"+first+"/rerun", "re-1"))
	if re == first {
		t.Fatalf("rerun made no new run")
	}
	if again := runID(post("/api/v1/runs/"+first+"/rerun", "re-1")); again != re {
		t.Fatalf("rerun with key re-1 twice: runs %s and %s", re, again)
	}
	resp, body := post("/api/v1/runs", strings.Repeat("x", 256))
	wantError(t, resp, body, http.StatusBadRequest, wire.CodeBadRequest)
	resp, body = post("/api/v1/runs", "clé")
	wantError(t, resp, body, http.StatusBadRequest, wire.CodeBadRequest)

	// The client: a key per call, the same key when the caller gives one.
	ctx := testCtx(t, 30*time.Second)
	a, err := e.c.Submit(ctx, "k.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.c.Submit(ctx, "k.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID {
		t.Fatalf("two client submissions got one run %s", a.ID)
	}
	kctx := client.WithIdempotencyKey(ctx, "client-key")
	c1, err := e.c.Submit(kctx, "k.yaml", []byte(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := e.c.SubmitRun(kctx, "k.yaml", []byte(yaml), "", map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c1.ID != c2.ID {
		t.Fatalf("client submissions with one key: runs %s and %s", c1.ID, c2.ID)
	}
}

// TestLeaderOfASingleServer: a server on SQLite leads itself.
func TestLeaderOfASingleServer(t *testing.T) {
	e := start(t)
	resp, body := e.do(t, "GET", "/api/v1/leader", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/leader: %d %s", resp.StatusCode, body)
	}
	var l wire.Leader
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatal(err)
	}
	if !l.Self || !l.Known || l.Epoch != 0 {
		t.Fatalf("leader of a single server = %+v, want self and known at epoch 0", l)
	}
}
