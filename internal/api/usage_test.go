package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/store"
)

func TestAttemptJSONCarriesUsage(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	measured := AttemptJSON(store.Attempt{N: 1, State: "succeeded", FinishedAt: at, PeakMemory: 48 << 20, CPUTime: 1250 * time.Millisecond})
	b, _ := json.Marshal(measured)
	if !strings.Contains(string(b), `"peak_memory_bytes":50331648`) || !strings.Contains(string(b), `"cpu_seconds":1.25`) {
		t.Fatalf("measured attempt: %s", b)
	}
	unmeasured := AttemptJSON(store.Attempt{N: 2, State: "failed", FinishedAt: at})
	b, _ = json.Marshal(unmeasured)
	if strings.Contains(string(b), "peak_memory") || strings.Contains(string(b), "cpu_seconds") {
		t.Fatalf("an attempt without usage shows some: %s", b)
	}
}
