package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// secret has every form distinct: its length is not a multiple of 3 (padded
// and raw base64 differ), its base64 has a + (standard and URL alphabets
// differ), it has a space (query and path escapes differ) and hex letters.
const secret = "s3cr3t/p@ss w0rd+=~~~~"

func TestStringMasksEveryForm(t *testing.T) {
	t.Parallel()
	set := New(secret)
	b := []byte(secret)
	forms := map[string]string{
		"raw":            secret,
		"base64":         base64.StdEncoding.EncodeToString(b),
		"base64 raw":     base64.RawStdEncoding.EncodeToString(b),
		"base64 url":     base64.URLEncoding.EncodeToString(b),
		"base64 url raw": base64.RawURLEncoding.EncodeToString(b),
		"hex":            hex.EncodeToString(b),
		"HEX":            strings.ToUpper(hex.EncodeToString(b)),
		"query escape":   url.QueryEscape(secret),
		"path escape":    url.PathEscape(secret),
	}
	for name, f := range forms {
		got := set.String("before " + f + " after")
		if got != "before *** after" {
			t.Errorf("%s form %q: got %q", name, f, got)
		}
	}
}

func TestMultiLineSecretMaskedLineByLine(t *testing.T) {
	t.Parallel()
	key := "-----BEGIN KEY-----\r\nMIIBOgIBAAJBAKj34GkxFhD9\nab\n-----END KEY-----"
	set := New(key)
	in := "whole: " + key + "\nfirst: -----BEGIN KEY-----\nmiddle: MIIBOgIBAAJBAKj34GkxFhD9\nshort line kept: ab\n"
	got := set.String(in)
	want := "whole: ***\nfirst: ***\nmiddle: ***\nshort line kept: ab\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestShortValuesAreNotMasked(t *testing.T) {
	t.Parallel()
	set := New("abc", "", "xy")
	if !set.Empty() {
		t.Fatalf("values shorter than %d bytes gave patterns", MinLen)
	}
	if got := set.String("abc xy"); got != "abc xy" {
		t.Errorf("got %q", got)
	}
	if got := New("abcd").String("abcd abc"); got != "*** abc" {
		t.Errorf("4-byte value: got %q", got)
	}
}

func TestLongestMatchWins(t *testing.T) {
	t.Parallel()
	set := New("token", "token-extended")
	if got := set.String("a token-extended b token c"); got != "a *** b *** c" {
		t.Errorf("got %q", got)
	}
}

// TestWriterSplitAcrossWrites checks that a secret cut across writes, at
// every possible cut, is masked, and that the bytes before it are not held.
func TestWriterSplitAcrossWrites(t *testing.T) {
	t.Parallel()
	set := New(secret)
	line := "x=" + secret + "\n"
	for cut := 1; cut < len(line); cut++ {
		var out bytes.Buffer
		w := NewWriter(&out, set)
		if _, err := w.Write([]byte(line[:cut])); err != nil {
			t.Fatal(err)
		}
		if cut >= 2 && !strings.HasPrefix(out.String(), "x=") {
			t.Fatalf("cut %d: %q held back although it cannot be part of a secret", cut, "x=")
		}
		if _, err := w.Write([]byte(line[cut:])); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != "x=***\n" {
			t.Errorf("cut %d: got %q", cut, out.String())
		}
	}
}

// TestWriterEqualsString is the property that makes streaming safe: however
// output is cut into writes, the Writer's result is the masked whole.
func TestWriterEqualsString(t *testing.T) {
	t.Parallel()
	secrets := []string{secret, "hunter22", "multi\nline secret value", "aaaa"}
	set := New(secrets...)
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "x", " ", "\n", "hunt", "er2", "aa"}
	for _, s := range secrets {
		for _, f := range Forms(s) {
			alphabet = append(alphabet, f, f[:len(f)/2], f[len(f)/2:])
		}
	}
	for iter := 0; iter < 2000; iter++ {
		var in strings.Builder
		for n := r.IntN(30); n > 0; n-- {
			in.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		whole := in.String()
		var out bytes.Buffer
		w := NewWriter(&out, set)
		for rest := whole; rest != ""; {
			n := 1 + r.IntN(len(rest))
			if _, err := w.Write([]byte(rest[:n])); err != nil {
				t.Fatal(err)
			}
			if w.Pending() > set.MaxLen()-1 {
				t.Fatalf("held back %d bytes; the longest pattern is %d", w.Pending(), set.MaxLen())
			}
			rest = rest[n:]
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if want := set.String(whole); out.String() != want {
			t.Fatalf("input %q:\nstreamed %q\nwhole    %q", whole, out.String(), want)
		}
		for _, s := range secrets {
			if strings.Contains(out.String(), s) {
				t.Fatalf("input %q: output %q still holds %q", whole, out.String(), s)
			}
		}
	}
}

func TestWriterWithoutSecretsPassesThrough(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := NewWriter(&out, New())
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "abc" || w.Pending() != 0 {
		t.Errorf("got %q, %d pending", out.String(), w.Pending())
	}
}

func BenchmarkWriter(b *testing.B) {
	set := New(secret, "hunter22", "another-secret-value")
	line := []byte(strings.Repeat("building package github.com/example/thing 0123456789abcdef\n", 64))
	w := NewWriter(discard{}, set)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_, _ = w.Write(line)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
