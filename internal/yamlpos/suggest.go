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

// distance is the optimal string alignment distance between a and b: the
// edits (insert, delete, replace, swap of two neighbours) that turn one into
// the other, each part of the text edited once.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	// rows[i%3] is row i of the table: the distances from a[:i].
	var rows [3][]int
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur, prev, prev2 := rows[i%3], rows[(i-1)%3], rows[(i+1)%3]
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
	}
	return rows[len(a)%3][len(b)]
}
