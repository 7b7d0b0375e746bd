package server

import (
	"testing"
	"time"
)

func TestIdleTrimNeedsIdleAndGrowth(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tr := IdleTrim{}
	for _, tc := range []struct {
		name          string
		cpu, interval time.Duration
		rss, last     int64
		want          bool
	}{
		{"idle and grown", 100 * time.Millisecond, time.Minute, 40 * mib, 30 * mib, true},
		{"idle, grown exactly the threshold", 0, time.Minute, 34 * mib, 30 * mib, true},
		{"idle, grown too little", 0, time.Minute, 33 * mib, 30 * mib, false},
		{"busy: over 1% of a CPU", 700 * time.Millisecond, time.Minute, 60 * mib, 30 * mib, false},
		{"shrunk", 0, time.Minute, 20 * mib, 30 * mib, false},
		{"no interval", 0, 0, 60 * mib, 30 * mib, false},
	} {
		if got := tr.ShouldTrim(tc.cpu, tc.interval, tc.rss, tc.last); got != tc.want {
			t.Errorf("%s: ShouldTrim = %v, want %v", tc.name, got, tc.want)
		}
	}
	custom := IdleTrim{MaxCPU: 0.5, Growth: mib}
	if !custom.ShouldTrim(20*time.Second, time.Minute, 31*mib, 30*mib) {
		t.Error("custom thresholds: a third of a CPU and 1 MiB of growth should trim")
	}
}

// TestResidentBytesIsKnown checks the two readings Run decides on.
func TestResidentBytesIsKnown(t *testing.T) {
	t.Parallel()
	if ResidentBytes() <= 0 {
		t.Fatal("the resident set of this process is unknown")
	}
	if processCPU() <= 0 {
		t.Fatal("the CPU time of this process is unknown")
	}
}
