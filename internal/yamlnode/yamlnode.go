// Package yamlnode holds the small helpers that Hodei's positioned YAML
// readers (pipeline files, pools files) share.
package yamlnode

import "gopkg.in/yaml.v3"

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

// Join appends a field name to a dotted path.
func Join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
