// Package yamlpos is Hodei's one reader of positioned YAML: every YAML file
// the project reads (pipeline files, pools files) goes through it, so that
// each problem names file, line, column and field the same way, unknown keys
// get the same "did you mean" hint, aliases and duplicate keys are handled
// alike, and errors come sorted by position.
//
// The name says what it adds to gopkg.in/yaml.v3: positions. A Reader walks
// a yaml.Node tree and collects an Error (file:line:col: field: message) for
// every problem instead of stopping at the first; the formats' own parsers
// (internal/pipeline, internal/workers) say only what their fields mean.
package yamlpos

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// Describe names the type of a node for error messages: "a map", "a list",
// "a string", "an integer"...
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!str", "!!timestamp", "!!merge":
			return "a string"
		}
		return "a value tagged " + n.Tag
	}
	return "nothing"
}

// Got shows a value that has the wrong type or range for a field that takes
// one scalar (integer, number, boolean, duration): the value as written
// (quoted when it is a string) for a scalar, else Describe.
func Got(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return Describe(n)
	}
	if IsString(n) {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

// Deref follows aliases to the node they name.
func Deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// IsString reports whether n is a string scalar. Unquoted dates count: they
// are text to Hodei's files.
func IsString(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp", "!!merge":
		return true
	}
	return false
}

// Join appends a field name to a dotted path.
func Join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Index appends a list index to a path: "steps" and 2 make "steps[2]".
func Index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
