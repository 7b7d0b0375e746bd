package secrets

import (
	"fmt"
	"strings"
)

// ParseDotenv reads a dotenv file (`hodei run --secrets-file`): one
// NAME=VALUE per line, blank lines and # comments ignored, an optional
// leading "export ". A value may be unquoted (trimmed, and cut at " #"),
// in single quotes (taken as is), or in double quotes (with \n, \t, \",
// \\ escapes, and spanning several lines). Errors give the line, never a
// value.
func ParseDotenv(data []byte) (map[string]string, error) {
	out := map[string]string{}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		name, rest, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want NAME=VALUE", lineNo)
		}
		name = strings.TrimSpace(name)
		if !ValidName(name) {
			return nil, fmt.Errorf("line %d: invalid name %q: use letters, digits and _, not starting with a digit", lineNo, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("line %d: %s is set twice", lineNo, name)
		}
		rest = strings.TrimLeft(rest, " \t")
		var value string
		switch {
		case strings.HasPrefix(rest, "'"):
			end := strings.Index(rest[1:], "'")
			if end < 0 {
				return nil, fmt.Errorf("line %d: %s: unterminated single quote", lineNo, name)
			}
			value = rest[1 : 1+end]
		case strings.HasPrefix(rest, `"`):
			v, consumed, err := doubleQuoted(lines[i:], rest[1:])
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %v", lineNo, name, err)
			}
			value = v
			i += consumed
		default:
			if k := strings.Index(rest, " #"); k >= 0 {
				rest = rest[:k]
			}
			value = strings.TrimSpace(rest)
		}
		out[name] = value
	}
	return out, nil
}

// doubleQuoted reads a double-quoted value that starts with first (after
// the quote) and may go on over the following lines; it returns how many
// more lines it used.
func doubleQuoted(lines []string, first string) (string, int, error) {
	var b strings.Builder
	s := first
	for used := 0; ; {
		for k := 0; k < len(s); k++ {
			c := s[k]
			switch {
			case c == '"':
				return b.String(), used, nil
			case c == '\\' && k+1 < len(s):
				k++
				switch s[k] {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				default:
					b.WriteByte(s[k])
				}
			default:
				b.WriteByte(c)
			}
		}
		used++
		if used >= len(lines) {
			return "", 0, fmt.Errorf("unterminated double quote")
		}
		b.WriteByte('\n')
		s = lines[used]
	}
}
