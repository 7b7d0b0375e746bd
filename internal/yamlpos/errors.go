package yamlpos

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a file.
//
// Line and Col are 1-based. Col is 0 when only the line is known (most YAML
// syntax errors), and Line is 0 for problems that concern the whole file
// rather than a place in it.
type Error struct {
	File  string
	Line  int
	Col   int
	Field string // dotted path such as "jobs.build.steps[0].run"; may be empty
	Msg   string
}

// Error formats the problem as FILE:LINE:COL: FIELD: MSG, leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Col))
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a file, sorted by position once
// reading is done (Reader.Err sorts it).
type ErrorList []*Error

// Error joins the messages of all problems, one per line.
func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap gives the individual errors to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Sort orders the list by line, then column, keeping the order in which
// problems were found for equal positions.
func (l ErrorList) Sort() {
	// The problems of several files (a pipeline and the files it
	// includes) stay grouped by file, in the order the files were met.
	first := make(map[string]int)
	for i, e := range l {
		if _, ok := first[e.File]; !ok {
			first[e.File] = i
		}
	}
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].File != l[j].File {
			return first[l[i].File] < first[l[j].File]
		}
		if l[i].Line != l[j].Line {
			return l[i].Line < l[j].Line
		}
		return l[i].Col < l[j].Col
	})
}

// AsErrorList returns the problems err carries, wrapped or not, as an
// ErrorList, a *ErrorList or a single *Error, and whether it carries any:
// false means err is not about a file's content.
func AsErrorList(err error) (ErrorList, bool) {
	var list ErrorList
	if errors.As(err, &list) {
		return list, true
	}
	var plist *ErrorList
	if errors.As(err, &plist) && plist != nil {
		return *plist, true
	}
	var one *Error
	if errors.As(err, &one) {
		return ErrorList{one}, true
	}
	return nil, false
}
