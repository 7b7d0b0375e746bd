package artifact

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// collectAndPack packs the files of r that patterns name, and returns the
// archive with its record.
func collectAndPack(t *testing.T, r Roots, patterns ...string) ([]byte, []File) {
	t.Helper()
	names, err := Collect(r, patterns)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	files, err := Pack(&buf, r, names)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), files
}

func TestCollectMatchesGlobsDirectoriesAndHome(t *testing.T) {
	t.Parallel()
	ws, home := t.TempDir(), t.TempDir()
	writeFiles(t, ws, map[string]string{
		"dist/a.bin": "a", "dist/sub/b.bin": "b", "dist/notes.txt": "n",
		"report.xml": "r", "src/x/y/test.xml": "t", "other.txt": "o",
	})
	writeFiles(t, home, map[string]string{".cache/go/x": "x"})
	if err := os.Symlink(filepath.Join(ws, "other.txt"), filepath.Join(ws, "dist/link.bin")); err != nil {
		t.Fatal(err)
	}
	r := Roots{Workspace: ws, Home: home}
	for _, tc := range []struct {
		patterns []string
		want     []string
	}{
		{[]string{"dist/"}, []string{"dist/a.bin", "dist/notes.txt", "dist/sub/b.bin"}},
		{[]string{"dist/*.bin"}, []string{"dist/a.bin"}},
		{[]string{"dist/**/*.bin"}, []string{"dist/a.bin", "dist/sub/b.bin"}},
		{[]string{"**/*.xml"}, []string{"report.xml", "src/x/y/test.xml"}},
		{[]string{"~/.cache", "report.xml", "report.xml"}, []string{"report.xml", "~/.cache/go/x"}},
		{[]string{"missing/**"}, []string{}},
	} {
		got, err := Collect(r, tc.patterns)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("Collect(%q) = %q, want %q", tc.patterns, got, tc.want)
		}
	}
}

func TestPackUnpackRoundTripChecksEveryFile(t *testing.T) {
	t.Parallel()
	src, home := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"dist/a.bin": strings.Repeat("a", 100000), "dist/empty": ""})
	writeFiles(t, home, map[string]string{".deps/lib": "lib"})
	if err := os.Chmod(filepath.Join(src, "dist/a.bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := Roots{Workspace: src, Home: home}
	archive, files := collectAndPack(t, r, "dist", "~/.deps")
	if len(files) != 3 || files[0].SHA256 == "" || files[0].Size != 100000 {
		t.Fatalf("files %+v", files)
	}
	dst := Roots{Workspace: t.TempDir(), Home: t.TempDir()}
	if err := Unpack(bytes.NewReader(archive), dst, files, -1); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst.Workspace, "dist/a.bin"))
	if err != nil || string(got) != strings.Repeat("a", 100000) {
		t.Fatalf("a.bin: %d bytes, %v", len(got), err)
	}
	if st, _ := os.Stat(filepath.Join(dst.Workspace, "dist/a.bin")); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", st.Mode().Perm())
	}
	if got, _ := os.ReadFile(filepath.Join(dst.Home, ".deps/lib")); string(got) != "lib" {
		t.Errorf("~/.deps/lib = %q", got)
	}
}

// TestUnpackRefusesWhatWasNotRecorded: an archive whose content differs
// from the record (another byte, a file missing, a file added, a cut
// stream) fails with ErrCorrupt naming the file.
func TestUnpackRefusesWhatWasNotRecorded(t *testing.T) {
	t.Parallel()
	pack := func(files map[string]string) ([]byte, []File) {
		dir := t.TempDir()
		writeFiles(t, dir, files)
		return collectAndPack(t, Roots{Workspace: dir}, "**")
	}
	good, rec := pack(map[string]string{"bin/app": "the build", "lib/x": "x"})
	changed, _ := pack(map[string]string{"bin/app": "the bUild", "lib/x": "x"})
	missing, _ := pack(map[string]string{"bin/app": "the build"})
	added, _ := pack(map[string]string{"bin/app": "the build", "lib/x": "x", "lib/y": "y"})
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"a changed byte", changed, "bin/app: sha256"},
		{"a missing file", missing, `missing, first "lib/x"`},
		{"a file added", added, `"lib/y", which was not recorded`},
		{"a cut stream", good[:len(good)/2], "corrupt"},
	} {
		err := Unpack(bytes.NewReader(tc.archive), Roots{Workspace: t.TempDir()}, rec, -1)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want ErrCorrupt naming %q", tc.name, err, tc.want)
		}
	}
	if err := Unpack(bytes.NewReader(good), Roots{Workspace: t.TempDir()}, rec, -1); err != nil {
		t.Fatalf("the archive as recorded: %v", err)
	}
}

func TestCacheKeyHashesFiles(t *testing.T) {
	t.Parallel()
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"go.sum": "v1", "a/go.sum": "v2"})
	r := Roots{Workspace: ws}
	k1, err := CacheKey("go-${{ hashFiles('go.sum') }}-x", r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k1, "go-") || !strings.HasSuffix(k1, "-x") || len(k1) != len("go--x")+64 {
		t.Fatalf("key %q", k1)
	}
	kAll, _ := CacheKey("go-${{ hashFiles('**/go.sum') }}", r)
	if kAll == "go-"+k1[3:67] {
		t.Error("hashFiles of two files equals that of one")
	}
	writeFiles(t, ws, map[string]string{"go.sum": "v1 changed"})
	if k2, _ := CacheKey("go-${{ hashFiles('go.sum') }}-x", r); k2 == k1 {
		t.Error("the key did not change with the file")
	}
	if k, _ := CacheKey("go-${{ hashFiles('none.sum') }}", r); k != "go-" {
		t.Errorf("no file matched: %q, want go-", k)
	}
	if _, err := CacheKey("go-${{ github.sha }}", r); err == nil {
		t.Error("an unknown expression was evaluated")
	}
}
