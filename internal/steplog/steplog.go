// Package steplog is the format of the lines the agent writes into a job's
// log around each step: a header before it ("==> step 2/3: make test") and
// a footer after it ("<== step 2/3 exited 0 in 1.24s").
package steplog

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// MaxTitle is how many characters of a step's title its header shows.
const MaxTitle = 80

// Title is what a header calls a step: its name, or else the first line of
// its script (with " …" when more lines follow), without control
// characters, cut at MaxTitle. The caller masks secrets before or after.
func Title(name, script string) string {
	title := name
	if title == "" {
		title = strings.TrimSpace(script)
		if first, _, more := strings.Cut(title, "\n"); more {
			title = strings.TrimSpace(first) + " …"
		}
	}
	title = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, title)
	if r := []rune(title); len(r) > MaxTitle {
		title = string(r[:MaxTitle-1]) + "…"
	}
	return title
}

// Header is the line before step i (0-based) of n.
func Header(i, n int, title string) string {
	return fmt.Sprintf("==> step %d/%d: %s\n", i+1, n, title)
}

// Exited is how a footer says a step ended with an exit code.
func Exited(code int) string { return "exited " + strconv.Itoa(code) }

// Stopped is how a footer says a step was ended without an exit code.
func Stopped(why string) string { return "stopped (" + why + ")" }

// Footer is the line after step i (0-based) of n: how it ended (Exited or
// Stopped) and how long it ran.
func Footer(i, n int, how string, took time.Duration) string {
	return fmt.Sprintf("<== step %d/%d %s in %s\n", i+1, n, how, took.Round(10*time.Millisecond))
}

var footerTook = regexp.MustCompile(`(?m)(<== step [0-9]+/[0-9]+ .*) in [0-9.hmsµn]+$`)

// ZeroDurations writes every footer of log as if its step took no time:
// what a log is compared on when the durations cannot be known.
func ZeroDurations(log string) string {
	return footerTook.ReplaceAllString(log, "$1 in 0s")
}
