package yamlpos

import (
	"errors"
	"testing"
)

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "ci.yaml", Line: 12, Col: 9, Field: "jobs.build.steps[0].run", Msg: "is required"},
			"ci.yaml:12:9: jobs.build.steps[0].run: is required"},
		{Error{File: "ci.yaml", Line: 3, Col: 1, Msg: "no field"}, "ci.yaml:3:1: no field"},
		{Error{File: "ci.yaml", Line: 3, Msg: "invalid YAML: x"}, "ci.yaml:3: invalid YAML: x"},
		{Error{File: "ci.yaml", Msg: "the file is empty"}, "ci.yaml: the file is empty"},
		{Error{File: "ci.yaml", Field: "jobs", Msg: "must define at least one job"}, "ci.yaml: jobs: must define at least one job"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestErrorList(t *testing.T) {
	l := ErrorList{
		{File: "f", Line: 5, Col: 2, Msg: "c"},
		{File: "f", Line: 2, Col: 7, Msg: "b"},
		{File: "f", Line: 5, Col: 1, Msg: "d-first"},
		{File: "f", Line: 2, Col: 7, Msg: "b-second"},
		{File: "f", Msg: "a"},
	}
	l.Sort()
	want := "f: a\nf:2:7: b\nf:2:7: b-second\nf:5:1: d-first\nf:5:2: c"
	if got := l.Error(); got != want {
		t.Errorf("sorted list:\n%s\nwant\n%s", got, want)
	}

	var err error = l
	var one *Error
	if !errors.As(err, &one) || one != l[0] {
		t.Errorf("errors.As did not reach the first *Error: %v", one)
	}
	if !errors.Is(err, l[3]) {
		t.Errorf("errors.Is does not see the entries")
	}
}
