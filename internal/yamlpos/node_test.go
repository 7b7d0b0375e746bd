package yamlpos

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDescribe(t *testing.T) {
	for src, want := range map[string]string{
		"{a: 1}": "a map", "[1]": "a list", "x": "a string", "2026-01-02": "a string",
		"3": "an integer", "1.5": "a number", "true": "a boolean", "null": "null", "!!binary aGk=": "a value tagged !!binary",
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatal(err)
		}
		if got := Describe(doc.Content[0]); got != want {
			t.Errorf("Describe(%s) = %q, want %q", src, got, want)
		}
	}
	if Describe(&yaml.Node{}) != "nothing" {
		t.Error("empty node")
	}
	if Join("", "a") != "a" || Join("a", "b") != "a.b" {
		t.Error("Join")
	}
}
