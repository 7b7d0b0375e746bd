package pipeline

import (
	"strings"
	"testing"
)

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
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
	}
	for _, tt := range tests {
		got, err := ParseCPU(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseCPUErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
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
	}
	for _, tt := range tests {
		got, err := ParseCPU(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) || got != 0 {
			t.Errorf("ParseCPU(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.msg)
		}
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
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
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseMemoryErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
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
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) || got != 0 {
			t.Errorf("ParseMemory(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.msg)
		}
	}
}
