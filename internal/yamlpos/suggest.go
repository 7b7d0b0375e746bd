package yamlpos

import (
	"fmt"
	"math"
	"strings"
)

// DidYouMean returns ` (did you mean "X"?)` where X is the candidate
// closest to s, or "" when none is close enough to be a likely typo.
func DidYouMean(s string, candidates []string) string {
	if c := Suggest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// Suggest returns the candidate closest to s, if one is close enough to be
// a likely typo: the same but for case and '_' against '-', or a few edits
// away.
func Suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	norm := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	for _, c := range candidates {
		if norm == strings.ToLower(strings.ReplaceAll(c, "_", "-")) {
			return c
		}
		if d := distance(s, c); d < bestDist && (d == 1 || 2*d < max(len(s), len(c))) {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
