package yamlpos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// yamlLine extracts the line from a yaml.v3 error message.
var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// Reader reads one file's YAML node tree, collecting a positioned Error for
// every problem it meets. Its methods report at the node as written (an
// alias where it is used) and read the value it stands for (the anchored
// node). A Reader is used by one goroutine.
type Reader struct {
	File  string
	Lines []string // of the file, to place errors yaml.v3 gives no column for
	errs  ErrorList
	// root collects the problems of a Reader made by Sub.
	root *Reader
}

// NewReader returns a Reader of data, named file in messages.
func NewReader(file string, data []byte) *Reader {
	return &Reader{File: file, Lines: strings.Split(string(data), "\n")}
}

// Sub returns a Reader of another file (one that file includes) whose
// problems are collected with r's: r's Err and Failed report them.
func (r *Reader) Sub(file string, data []byte) *Reader {
	sub := NewReader(file, data)
	sub.root = r.top()
	return sub
}

// top is the Reader that collects r's problems.
func (r *Reader) top() *Reader {
	if r.root != nil {
		return r.root
	}
	return r
}

// Err returns the problems found so far as an ErrorList sorted by position,
// or nil if there are none.
func (r *Reader) Err() error {
	r = r.top()
	if len(r.errs) == 0 {
		return nil
	}
	r.errs.Sort()
	return r.errs
}

// Failed reports whether a problem was found.
func (r *Reader) Failed() bool { return len(r.top().errs) > 0 }

// Errorf records a problem at node n (at no place when n is nil) in field.
func (r *Reader) Errorf(n *yaml.Node, field, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	r.ErrorAt(line, col, field, format, args...)
}

// ErrorAt records a problem at line and column (0 when unknown) in field.
func (r *Reader) ErrorAt(line, col int, field, format string, args ...any) {
	if line > len(r.Lines) && len(r.Lines) > 0 {
		// Only an implicit node at the very end gets a line past the last
		// one.
		line, col = len(r.Lines), 0
	}
	top := r.top()
	top.errs = append(top.errs, &Error{File: r.File, Line: line, Col: col, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Decode reads the single YAML document in data and returns its root node,
// or nil after recording why it can't: a syntax error, an empty file
// ("the file is empty: " + empty) or a second document ("found a second
// YAML document: " + one).
func (r *Reader) Decode(data []byte, empty, one string) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			r.ErrorAt(0, 0, "", "the file is empty: %s", empty)
		} else {
			r.syntaxError(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		r.syntaxError(data, err)
		return nil
	default:
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		r.Errorf(at, "", "found a second YAML document: %s", one)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 ||
		doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].ShortTag() == "!!null" && doc.Content[0].Value == "" {
		r.ErrorAt(0, 0, "", "the file is empty: %s", empty)
		return nil
	}
	return doc.Content[0]
}

// syntaxError records a YAML error, with the line yaml.v3 gives or, when it
// gives none, the best position that can be found.
func (r *Reader) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line, col int
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		line, col = r.locate(data, msg)
	}
	r.ErrorAt(line, col, "", "invalid YAML: %s", msg)
}

// locate finds where a YAML error that yaml.v3 reports without a line lies.
// yaml.v3 leaves the line out when it is the first one, and for problems of
// encoding, which are found by scanning for the offending character.
func (r *Reader) locate(data []byte, msg string) (line, col int) {
	switch {
	case strings.Contains(msg, "control characters") || strings.Contains(msg, "UTF-8") ||
		strings.Contains(msg, "Unicode"):
		line, col = 1, 1
		for i := 0; i < len(data); {
			c, size := utf8.DecodeRune(data[i:])
			if c == utf8.RuneError && size == 1 || !printable(c) && !(c == 0xFEFF && i == 0) {
				return line, col
			}
			if c == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
			i += size
		}
		return 0, 0
	case strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		for i, l := range r.Lines {
			if j := strings.Index(l, "*"+name); j >= 0 {
				return i + 1, utf8.RuneCountInString(l[:j]) + 1
			}
		}
	}
	return 1, 0
}

// printable reports whether YAML allows c in a stream.
func printable(c rune) bool {
	return c == '\t' || c == '\n' || c == '\r' || c >= 0x20 && c <= 0x7E || c == 0x85 ||
		c >= 0xA0 && c <= 0xD7FF || c >= 0xE000 && c <= 0xFFFD && c != 0xFEFF || c >= 0x10000 && c <= 0x10FFFF
}

// Entry is one key/value pair of a YAML map: Name is the key's text; Key
// and Val are the nodes as written (either may be an alias).
type Entry struct {
	Name     string
	Key, Val *yaml.Node
}

// maxMergeDepth bounds how deep merge keys may nest (a map merged into one
// merged into another...).
const maxMergeDepth = 32

// Entries lists the pairs of map n (n itself, not an alias of it),
// reporting and leaving out keys that are not scalars and duplicates. A
// merge key (<<: *anchor, or <<: [*a, *b]) brings in the pairs of the maps
// it names, as YAML 1.1 merges them: the map's own keys win, then the first
// map listed. Merged pairs keep their nodes, so that a problem in one is
// reported where the anchored map defines it. path is the field of the map.
func (r *Reader) Entries(n *yaml.Node, path string) []Entry {
	return r.entries(n, path, 0)
}

func (r *Reader) entries(n *yaml.Node, path string, depth int) []Entry {
	seen := make(map[string]*yaml.Node)
	var out []Entry
	var merged []Entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kd := Deref(k)
		switch {
		case kd.Kind != yaml.ScalarNode || kd.ShortTag() == "!!null":
			r.Errorf(k, path, "keys must be names, got %s", Describe(kd))
			continue
		case kd.ShortTag() == "!!merge" && kd.Style == 0:
			merged = append(merged, r.merge(k, v, path, depth)...)
			continue
		}
		name := kd.Value
		if first, dup := seen[name]; dup {
			r.Errorf(k, Join(path, name), "duplicate key %q (first defined at line %d)", name, first.Line)
			continue
		}
		seen[name] = k
		out = append(out, Entry{Name: name, Key: k, Val: v})
	}
	if len(merged) == 0 {
		return out
	}
	// Merged pairs come first, in the order of their maps, unless the map
	// sets the key itself.
	var all []Entry
	for _, e := range merged {
		if _, own := seen[e.Name]; own {
			continue
		}
		seen[e.Name] = e.Key
		all = append(all, e)
	}
	return append(all, out...)
}

// merge reads the value of a merge key: a map or a list of maps.
func (r *Reader) merge(k, v *yaml.Node, path string, depth int) []Entry {
	if depth >= maxMergeDepth {
		r.Errorf(k, path, "merge keys (<<) nested more than %d deep", maxMergeDepth)
		return nil
	}
	vd := Deref(v)
	var maps []*yaml.Node
	switch vd.Kind {
	case yaml.MappingNode:
		maps = []*yaml.Node{vd}
	case yaml.SequenceNode:
		for _, it := range vd.Content {
			if d := Deref(it); d.Kind == yaml.MappingNode {
				maps = append(maps, d)
				continue
			}
			r.Errorf(it, path, "a merge key (<<) takes a map or a list of maps (like <<: [*defaults, *linux]), got %s in the list", Describe(Deref(it)))
		}
	default:
		r.Errorf(v, path, "a merge key (<<) takes a map or a list of maps (like <<: *defaults), got %s", Describe(vd))
		return nil
	}
	var out []Entry
	for _, m := range maps {
		out = append(out, r.entries(m, path, depth+1)...)
	}
	return out
}

// Fields is Entries for a map with a fixed set of keys: unknown ones are
// reported, with the closest allowed one when it looks like a typo, and
// left out.
func (r *Reader) Fields(n *yaml.Node, path string, allowed []string) []Entry {
	var out []Entry
	for _, e := range r.Entries(n, path) {
		if !slices.Contains(allowed, e.Name) {
			r.Errorf(e.Key, Join(path, e.Name), "unknown field %q%s; allowed fields: %s", e.Name, DidYouMean(e.Name, allowed), strings.Join(allowed, ", "))
			continue
		}
		out = append(out, e)
	}
	return out
}

// ExtensionPrefix starts the keys FieldsWithExtensions ignores: a file
// keeps its anchors under them (x-defaults: &defaults ...).
const ExtensionPrefix = "x-"

// FieldsWithExtensions is Fields that leaves out, without a word, the keys
// starting with ExtensionPrefix.
func (r *Reader) FieldsWithExtensions(n *yaml.Node, path string, allowed []string) []Entry {
	var out []Entry
	for _, e := range r.Entries(n, path) {
		if strings.HasPrefix(e.Name, ExtensionPrefix) {
			continue
		}
		if !slices.Contains(allowed, e.Name) {
			r.Errorf(e.Key, Join(path, e.Name), "unknown field %q%s; allowed fields: %s", e.Name, DidYouMean(e.Name, allowed), strings.Join(allowed, ", "))
			continue
		}
		out = append(out, e)
	}
	return out
}

// Text reads a non-empty string.
func (r *Reader) Text(n *yaml.Node, field string) (string, bool) {
	v := Deref(n)
	if !IsString(v) {
		r.Errorf(n, field, "must be a string, got %s", Describe(v))
		return "", false
	}
	if strings.TrimSpace(v.Value) == "" {
		r.Errorf(n, field, "must not be empty")
		return "", false
	}
	return v.Value, true
}

// Scalar reads a string, number or boolean as written.
func (r *Reader) Scalar(n *yaml.Node, field string) (string, bool) {
	v := Deref(n)
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!str", "!!timestamp", "!!merge", "!!int", "!!float", "!!bool":
			return v.Value, true
		}
	}
	r.Errorf(n, field, "must be a string, number or boolean, got %s", Describe(v))
	return "", false
}

// Bool reads true or false.
func (r *Reader) Bool(n *yaml.Node, field string) (bool, bool) {
	v := Deref(n)
	var b bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		r.Errorf(n, field, "must be true or false, got %s", Got(v))
		return false, false
	}
	return b, true
}

// IntIn reads an integer in [lo, hi].
func (r *Reader) IntIn(n *yaml.Node, field string, lo, hi int) (int, bool) {
	v := Deref(n)
	var i int64
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&i) != nil || i < int64(lo) || i > int64(hi) {
		r.Errorf(n, field, "must be an integer from %d to %d, got %s", lo, hi, Got(v))
		return 0, false
	}
	return int(i), true
}

// Number reads a finite number, integer or not, of lo or more.
func (r *Reader) Number(n *yaml.Node, field string, lo float64) (float64, bool) {
	v := Deref(n)
	var f float64
	if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!int" && v.ShortTag() != "!!float") || v.Decode(&f) != nil ||
		f < lo || math.IsInf(f, 0) || math.IsNaN(f) {
		r.Errorf(n, field, "must be a number, %v or more, got %s", lo, Got(v))
		return 0, false
	}
	return f, true
}

// Duration reads a positive Go duration such as 30s or 1h30m.
func (r *Reader) Duration(n *yaml.Node, field string) (time.Duration, bool) {
	v := Deref(n)
	if !IsString(v) {
		r.Errorf(n, field, "must be a duration such as 30s, 10m or 1h30m, got %s", Got(v))
		return 0, false
	}
	d, err := time.ParseDuration(v.Value)
	if err != nil {
		r.Errorf(n, field, "invalid duration %q: use a number with a unit (ms, s, m, h) such as 30s, 10m or 1h30m", v.Value)
		return 0, false
	}
	if d <= 0 {
		r.Errorf(n, field, "must be greater than zero, got %s", v.Value)
		return 0, false
	}
	return d, true
}

// Map returns the map n stands for, or reports "must be WANT, got ..." and
// returns false when n is not a map. want describes the map, such as
// "a map with image and network".
func (r *Reader) Map(n *yaml.Node, field, want string) (*yaml.Node, bool) {
	v := Deref(n)
	if v.Kind != yaml.MappingNode {
		r.Errorf(n, field, "must be %s, got %s", want, Describe(v))
		return nil, false
	}
	return v, true
}

// List returns the elements of the list n. Anything else is reported as
// "must be WANT, got ..." (want, such as "a list of paths"), and an empty
// list as empty unless empty is "": ok is false then.
func (r *Reader) List(n *yaml.Node, field, want, empty string) ([]*yaml.Node, bool) {
	v := Deref(n)
	if v.Kind != yaml.SequenceNode {
		r.Errorf(n, field, "must be %s, got %s", want, Describe(v))
		return nil, false
	}
	if len(v.Content) == 0 && empty != "" {
		r.Errorf(n, field, "%s", empty)
		return nil, false
	}
	return v.Content, true
}

// Texts calls each with every element of items that is a non-empty string
// (see Text), with its path field[i].
func (r *Reader) Texts(items []*yaml.Node, field string, each func(n *yaml.Node, field, s string)) {
	for i, it := range items {
		f := Index(field, i)
		if s, ok := r.Text(it, f); ok {
			each(it, f, s)
		}
	}
}

// Item is one value of a field written alone or as a list (OneOrList):
// its node and its path (the field itself, or field[i] in a list).
type Item struct {
	Node  *yaml.Node
	Field string
}

// OneOrList returns the values of a field that takes one scalar or a list:
// the scalar n alone, or each element of the list n. Anything else is
// reported as "must be WANT, got ..." and gives none. want describes both
// forms, such as "a label or a list of labels".
func (r *Reader) OneOrList(n *yaml.Node, field, want string) []Item {
	v := Deref(n)
	switch v.Kind {
	case yaml.ScalarNode:
		return []Item{{Node: n, Field: field}}
	case yaml.SequenceNode:
		items := make([]Item, len(v.Content))
		for i, it := range v.Content {
			items[i] = Item{Node: it, Field: Index(field, i)}
		}
		return items
	}
	r.Errorf(n, field, "must be %s, got %s", want, Describe(v))
	return nil
}
