package pipeline

import (
	"strings"
	"testing"
)

// parsed is an input of a quantity parser and its value.
type parsed struct {
	in   string
	want int64
}

// parseError is an input a quantity parser refuses, and part of its error.
type parseError struct{ in, msg string }

func checkParsed(t *testing.T, name string, parse func(string) (int64, error), tests []parsed) {
	t.Helper()
	for _, tt := range tests {
		got, err := parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s(%q) = %d, %v; want %d", name, tt.in, got, err, tt.want)
		}
	}
}

func checkParseErrors(t *testing.T, name string, parse func(string) (int64, error), tests []parseError) {
	t.Helper()
	for _, tt := range tests {
		got, err := parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) || got != 0 {
			t.Errorf("%s(%q) = %d, %v; want an error containing %q", name, tt.in, got, err, tt.msg)
		}
	}
}

func TestParseCPU(t *testing.T) {
	checkParsed(t, "ParseCPU", ParseCPU, []parsed{
		{"500m", 500},
		{"1m", 1},
		{"2", 2000},
		{"0.5", 500},
		{".5", 500},
		{"1.25", 1250},
		{"0.001", 1},
		{"2.100", 2100},
		{"007", 7000},
		{"64", 64000},
		{"9223372036854775", 9223372036854775000},
		{"9223372036854775.807", 9223372036854775807},
		{"9223372036854775807m", 9223372036854775807},
	})
}

func TestParseCPUErrors(t *testing.T) {
	checkParseErrors(t, "ParseCPU", ParseCPU, []parseError{
		{"", "use cores"},
		{"abc", "use cores"},
		{"m", "use cores"},
		{"1.5m", "use cores"},
		{"1.", "use cores"},
		{".", "use cores"},
		{"1.2.3", "use cores"},
		{"1e3", "use cores"},
		{" 1", "use cores"},
		{"+1", "use cores"},
		{"2 cores", "use cores"},
		{"0", "must be greater than zero"},
		{"0m", "must be greater than zero"},
		{"0.000", "must be greater than zero"},
		{"-1", "must be greater than zero"},
		{"-500m", "must be greater than zero"},
		{"0.0005", "finer than a millicore"},
		{"9223372036854776", "too large"},
		{"9223372036854775.808", "too large"},
		{"9223372036854775808m", "too large"},
	})
}

func TestParseMemory(t *testing.T) {
	checkParsed(t, "ParseMemory", ParseMemory, []parsed{
		{"1", 1},
		{"1048576", 1 << 20},
		{"1Ki", 1 << 10},
		{"64Mi", 64 << 20},
		{"2Gi", 2 << 30},
		{"1Ti", 1 << 40},
		{"1K", 1000},
		{"5M", 5_000_000},
		{"3G", 3_000_000_000},
		{"2T", 2_000_000_000_000},
		{"8388607Ti", 8388607 << 40},
	})
}

func TestParseMemoryErrors(t *testing.T) {
	checkParseErrors(t, "ParseMemory", ParseMemory, []parseError{
		{"", "use a whole number"},
		{"Mi", "use a whole number"},
		{"lots", "use a whole number"},
		{"1.5Gi", "use a whole number"},
		{"12Gb", "use a whole number"},
		{"1ki", "use a whole number"},
		{"1 Mi", "use a whole number"},
		{"1MiB", "use a whole number"},
		{"0", "must be greater than zero"},
		{"0Gi", "must be greater than zero"},
		{"-1", "must be greater than zero"},
		{"-64Mi", "must be greater than zero"},
		{"8388608Ti", "too large"},
		{"99999999999999999999", "too large"},
	})
}
