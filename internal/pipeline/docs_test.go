package pipeline

import (
	"os"
	"strings"
	"testing"
)

type fence struct {
	lang, body string
}

// fences returns the fenced code blocks of a Markdown file.
func fences(t *testing.T, path string) []fence {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []fence
	var cur *fence
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &fence{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	return out
}

// TestDocExamples keeps the YAML of docs/pipeline.md honest: every snippet
// that is (or can be wrapped into) a pipeline parses, expands and matches
// the schema, and the broken file of the Errors section gives exactly the
// errors shown after it.
func TestDocExamples(t *testing.T) {
	sch := compileSchema(t)
	blocks := fences(t, "../../docs/pipeline.md")
	checked, errorExamples := 0, 0
	for i, b := range blocks {
		if b.lang != "yaml" {
			continue
		}
		src := b.body
		switch first := strings.SplitN(src, "\n", 2)[0]; {
		case strings.HasPrefix(first, "name:"):
		case strings.HasPrefix(first, "jobs:"), strings.HasPrefix(first, "env:"):
			src = "name: doc\n" + src
		case strings.HasPrefix(first, "test:"):
			src = "name: doc\njobs:\n" + indent(strings.TrimSuffix(src, "\n"), "  ") + "\n"
		case strings.HasPrefix(first, "steps:"):
			src = "name: doc\njobs:\n  j:\n" + indent(strings.TrimSuffix(src, "\n"), "    ") + "\n"
		case strings.HasPrefix(first, "runs-on:"):
			src = "name: doc\njobs:\n  j:\n" + indent(strings.TrimSuffix(src, "\n"), "    ") + "\n    steps: [{run: x}]\n"
		default:
			continue
		}
		checked++
		_, err := Parse("ci.yaml", []byte(src))
		if i+1 < len(blocks) && blocks[i+1].lang == "text" {
			errorExamples++
			if err == nil || err.Error()+"\n" != blocks[i+1].body {
				t.Errorf("errors of the example in block %d differ from the doc:\ngot:\n%v\ndoc:\n%s", i, err, blocks[i+1].body)
			}
			continue
		}
		if err != nil {
			t.Errorf("block %d:\n%s\ndoes not parse:\n%v", i, src, err)
			continue
		}
		p, _ := Parse("ci.yaml", []byte(src))
		if _, err := Expand(p); err != nil {
			t.Errorf("block %d does not expand: %v", i, err)
		}
		v, err := yamlToJSON([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("block %d fails the schema: %v", i, err)
		}
	}
	if checked < 6 || errorExamples != 2 {
		t.Errorf("checked %d snippets and %d error examples; the doc's structure changed", checked, errorExamples)
	}
}
