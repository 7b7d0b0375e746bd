package secrets

import (
	"strings"
	"testing"
)

func TestParseDotenv(t *testing.T) {
	t.Parallel()
	src := `# comment
export TOKEN=abc123  # trailing comment
PLAIN = spaced value
SINGLE='it''s #not a comment'
DOUBLE="line1\nline2 \"q\" \\ end"
KEY="-----BEGIN-----
middle
-----END-----"
EMPTY=
`
	got, err := ParseDotenv([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"TOKEN":  "abc123",
		"PLAIN":  "spaced value",
		"SINGLE": "it",
		"DOUBLE": "line1\nline2 \"q\" \\ end",
		"KEY":    "-----BEGIN-----\nmiddle\n-----END-----",
		"EMPTY":  "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d names, want %d", len(got), len(want))
	}
	for _, tc := range []struct{ src, want string }{
		{"NOEQUALS", "line 1: want NAME=VALUE"},
		{"1BAD=x", `line 1: invalid name "1BAD"`},
		{"A=1\nA=2", "line 2: A is set twice"},
		{"A='s3cret", "line 1: A: unterminated single quote"},
		{"\nA=\"s3cret\nmore", "line 2: A: unterminated double quote"},
	} {
		_, err := ParseDotenv([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: the error holds the value: %v", tc.src, err)
		}
	}
}
