package pipeline

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseCPU parses a CPU quantity into millicores: whole or fractional cores
// ("2" = 2000, "0.5" = 500, at most three decimals) or millicores with an "m"
// suffix ("500m" = 500). The result is always greater than zero.
func ParseCPU(s string) (int64, error) {
	bad := func() (int64, error) {
		return 0, fmt.Errorf("invalid CPU quantity %q: use cores such as \"2\" or \"0.5\", or millicores such as \"500m\"", s)
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("invalid CPU quantity %q: must be greater than zero", s)
	}
	var milli int64
	if digits, ok := strings.CutSuffix(s, "m"); ok {
		if !allDigits(digits) {
			return bad()
		}
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid CPU quantity %q: too large", s)
		}
		milli = v
	} else {
		whole, frac, hasDot := strings.Cut(s, ".")
		if whole != "" && !allDigits(whole) || hasDot && !allDigits(frac) || !hasDot && whole == "" {
			return bad()
		}
		if len(frac) > 3 {
			return 0, fmt.Errorf("invalid CPU quantity %q: finer than a millicore (at most three decimals)", s)
		}
		var w int64
		if whole != "" {
			v, err := strconv.ParseInt(whole, 10, 64)
			if err != nil || v > math.MaxInt64/1000 {
				return 0, fmt.Errorf("invalid CPU quantity %q: too large", s)
			}
			w = v
		}
		f := int64(0)
		if frac != "" {
			v, _ := strconv.ParseInt(frac+strings.Repeat("0", 3-len(frac)), 10, 64)
			f = v
		}
		if w*1000 > math.MaxInt64-f {
			return 0, fmt.Errorf("invalid CPU quantity %q: too large", s)
		}
		milli = w*1000 + f
	}
	if milli == 0 {
		return 0, fmt.Errorf("invalid CPU quantity %q: must be greater than zero", s)
	}
	return milli, nil
}

// memoryUnits are the suffixes ParseMemory understands, longest first.
var memoryUnits = []struct {
	suffix string
	mult   int64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// ParseMemory parses a memory quantity into bytes: a whole number with an
// optional suffix, binary (Ki, Mi, Gi, Ti) or decimal (K, M, G, T), such as
// "512Mi" or "1G", or a plain number of bytes. The result is always greater
// than zero.
func ParseMemory(s string) (int64, error) {
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("invalid memory quantity %q: must be greater than zero", s)
	}
	digits, mult := s, int64(1)
	for _, u := range memoryUnits {
		if d, ok := strings.CutSuffix(s, u.suffix); ok {
			digits, mult = d, u.mult
			break
		}
	}
	if !allDigits(digits) {
		return 0, fmt.Errorf("invalid memory quantity %q: use a whole number of bytes with an optional suffix Ki, Mi, Gi, Ti, K, M, G or T, such as \"512Mi\"", s)
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid memory quantity %q: too large", s)
	}
	if v == 0 {
		return 0, fmt.Errorf("invalid memory quantity %q: must be greater than zero", s)
	}
	return v * mult, nil
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
