package server

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// IdleTrim trims memory again (TrimMemory) while a server stays idle: the
// executable's pages that a first minute of work paged back in, and the
// heap that work left, are given back when nothing uses them. Trimming a
// busy server would only make it fault its code back in, so a trim needs
// both conditions of ShouldTrim.
type IdleTrim struct {
	// Every is how often it looks (default 1 minute).
	Every time.Duration
	// MaxCPU is the share of one CPU the process may have used since the
	// last look for it to count as idle (default 0.01).
	MaxCPU float64
	// Growth is how much the resident set must have grown since the last
	// trim (default 4 MiB).
	Growth int64
	Log    *slog.Logger
}

// ShouldTrim says whether a process that used cpu over the last interval
// and holds rss bytes, trimmed last at lastRSS bytes, is idle and has grown
// enough to be worth a trim.
func (t IdleTrim) ShouldTrim(cpu, interval time.Duration, rss, lastRSS int64) bool {
	t = t.withDefaults()
	if interval <= 0 || float64(cpu) > t.MaxCPU*float64(interval) {
		return false
	}
	return rss-lastRSS >= t.Growth
}

func (t IdleTrim) withDefaults() IdleTrim {
	if t.Every <= 0 {
		t.Every = time.Minute
	}
	if t.MaxCPU <= 0 {
		t.MaxCPU = 0.01
	}
	if t.Growth <= 0 {
		t.Growth = 4 << 20
	}
	if t.Log == nil {
		t.Log = slog.New(slog.DiscardHandler)
	}
	return t
}

// Run looks every t.Every until ctx ends. lastRSS is the resident set
// right after the start-up trim.
func (t IdleTrim) Run(ctx context.Context, lastRSS int64) {
	t = t.withDefaults()
	tick := time.NewTicker(t.Every)
	defer tick.Stop()
	lastCPU, lastAt := processCPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cpu, now := processCPU(), time.Now()
		rss := residentBytes()
		if rss > 0 && t.ShouldTrim(cpu-lastCPU, now.Sub(lastAt), rss, lastRSS) {
			if _, _, err := TrimMemory(); err != nil {
				t.Log.Debug("idle trim failed", "err", err)
			} else {
				after := residentBytes()
				t.Log.Debug("memory trimmed while idle", "resident_before", rss, "resident_after", after)
				rss = after
			}
			lastRSS = rss
		} else if rss > 0 && rss < lastRSS {
			lastRSS = rss
		}
		// The trim's own CPU does not count against the next interval.
		lastCPU, lastAt = processCPU(), time.Now()
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// residentBytes is this process's resident set (VmRSS), 0 if unknown.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fs := strings.Fields(string(b))
	if len(fs) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fs[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// ResidentBytes is this process's resident set (VmRSS), 0 if unknown.
func ResidentBytes() int64 { return residentBytes() }
