package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is an
// ErrorList of well-placed errors, and that whatever Parse accepts, Expand
// expands into a valid run.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"../../examples/*.yaml", "testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("name: x\njobs: {a: {steps: [{run: x}]}}\n"))
	f.Add([]byte("name: x\njobs: {a: {needs: b, steps: [{run: x}]}, b: {matrix: {v: [1, 2]}, steps: [{run: '${{ matrix.v }}'}]}}\n"))
	f.Add([]byte("name: x\nenv: &e {A: 1}\njobs: {a: {env: *e, steps: &s [{run: x}]}, b: {steps: *s}}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			checkErrorList(t, data, p, err)
			return
		}
		if p == nil || len(p.Jobs) == 0 {
			t.Fatalf("Parse succeeded with %+v", p)
		}
		specs, err := Expand(p)
		if err != nil {
			t.Fatalf("Parse accepted the file but Expand failed:\n%v\ninput:\n%s", err, data)
		}
		assertTopological(t, specs)
		perJob := make(map[string]int)
		for _, s := range specs {
			perJob[s.JobID]++
			if len(s.Steps) == 0 || s.CPUMilli <= 0 || s.Memory <= 0 {
				t.Fatalf("incomplete spec %+v", s)
			}
		}
		for _, j := range p.Jobs {
			if perJob[j.ID] != len(combinations(j.Matrix)) || perJob[j.ID] > MaxMatrixCombinations {
				t.Fatalf("job %s expanded into %d specs", j.ID, perJob[j.ID])
			}
		}
	})
}

func checkErrorList(t *testing.T, data []byte, p *Pipeline, err error) {
	t.Helper()
	if p != nil {
		t.Fatalf("Parse returned a pipeline with its error")
	}
	list, ok := err.(ErrorList)
	if !ok || len(list) == 0 {
		t.Fatalf("error %T (%v) is not a non-empty ErrorList", err, err)
	}
	lines := bytes.Count(data, []byte("\n")) + 1
	for i, e := range list {
		switch {
		case e == nil:
			t.Fatalf("nil entry in %v", list)
		case e.File != "fuzz.yaml" || e.Msg == "":
			t.Fatalf("entry without file or message: %#v", e)
		case e.Line == 0 && (e.Col != 0 || e.Field != ""):
			t.Fatalf("file-level error with a column or field: %#v", e)
		case e.Line < 0 || e.Line > lines || e.Col < 0:
			t.Fatalf("error placed outside the %d-line input: %#v", lines, e)
		}
		if i > 0 && (e.Line < list[i-1].Line || e.Line == list[i-1].Line && e.Col < list[i-1].Col) {
			t.Fatalf("errors not sorted:\n%v", list)
		}
	}
}
