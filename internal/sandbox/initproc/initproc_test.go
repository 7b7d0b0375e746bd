package initproc

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// TestSpecRoundTrip checks that the init reads back what the caller
// encodes, separators and empty values included, and refuses a truncated
// or padded spec.
func TestSpecRoundTrip(t *testing.T) {
	in := Spec{Script: "echo a:b\n10:x", Workspace: "/w s", Env: []string{"A=1", "B=", "C=x:y"},
		Hide: []string{}, UID: 7, GID: 8, UserNS: true, HostUID: 1000, HostGID: 1001}
	b := in.Encode()
	var out Spec
	if err := out.Decode(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(append([]byte{}, b...), 'x'), []byte("3:ab")} {
		if err := new(Spec).Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, st := range []Status{{Code: 3}, {Code: -1, Signal: syscall.SIGKILL}, {Code: -1, Err: "mount /proc: operation not permitted"}} {
		got, err := DecodeStatus(EncodeStatus(st))
		if err != nil || got != st {
			t.Errorf("round trip of %+v: %+v, %v", st, got, err)
		}
	}
	if _, err := DecodeStatus([]byte("x")); err == nil {
		t.Error("DecodeStatus accepted garbage")
	}
}

// TestImportsStayEarly guards the package's reason to exist: it imports only
// standard packages that Go initialises early in any binary (see the
// package doc); strings, path/filepath or encoding/json would make every
// step pay for the initialisation of the whole binary again.
func TestImportsStayEarly(t *testing.T) {
	allowed := map[string]bool{"errors": true, "io": true, "os": true, "os/signal": true, "runtime": true,
		"slices": true, "strconv": true, "syscall": true, "unsafe": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); !allowed[p] {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}
