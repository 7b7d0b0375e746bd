package migration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// released holds, for each dialect, the sha256 of each released migration
// as rendered (sqlFingerprint: comments and white space dropped, so the
// files' prose may be reworded). A migration, once released, must not change
// what it does to a database: if this test fails on a version listed here,
// undo the change and put it in a new migration. A new migration adds its
// two lines here, taken from the failure message.
//
// The sums were taken when the two dialects' files were merged into one:
// each rendered file was checked then to be, but for comments and white
// space, the SQL of the file of that dialect it replaced.
var released = map[Dialect]map[int]string{
	SQLite: {
		1:  "c2723d975247bd0bcedb3c748c701ee48124a0014665247d62eeee8a64c36224",
		2:  "637278cbd343bbb9f2fc793056ae0591a1dcda95adce420971e669b712c59465",
		3:  "77c3459fe87d85a6316fbd913bae0db7013b0934ad55c9f92db368e0075b5f82",
		4:  "b47c2378f9c1015ad8b888dbd78c996f5f42a3031fb9586fcd68c21b65a252af",
		5:  "060129753cea3fc0988db0ee94b6b21d19bfb9dfd164fde00515f0db5dd67a3c",
		6:  "9ef7b9df0316cdc75ce45106e44c67bafe070a39dc1c1d09fd20351a3351bade",
		10: "26386f2bfcee4697ef26d19617aa1bce637bd11ab420bd7337be69f72349f7fd",
		30: "64faac50a208dfadaf4a2e0cdc3f50e1261e5a47e55da2de313025858e70bb76",
		52: "8eca41c8c280fc3919b3629bdf080b21e6f95b25bcc560d7bef09d93e4100596",
		53: "bde7a1fd628606611531c2943443f1fcdf9ae7023465cbed52cd4e2a97b72ce0",
		55: "cb3e82d3595c8be1b0373c38eabd85346946c5a9cd4b3f14fa26388bd08db276",
		61: "39ad7478cc75e02e070c3ad3db8a49a437d63129a49987aa66aea35a78af0b5b",
		62: "6c9840a0e4d0c2b27c92429f6c8c01c7074747858c17a70ad064a0036044a484",
		70: "f124e0b7819a277642148bc8b7d5f4a4e02050f3d3374a4375388449747590be",
		80: "1c55b68fcf851ec25a662d9f9d33e14fc56f501ce8da45deb221a6fbe1892d60",
	},
	PostgreSQL: {
		1:  "10cc9f43dfd7df3a3cee4bae4728275a6afe8a84d5ac3661ccb6a19cb9f1ba49",
		2:  "acbb0c35539c189948cc675d3dfbc31d0654abdd39347c3f7a1c2709263c050a",
		3:  "77c3459fe87d85a6316fbd913bae0db7013b0934ad55c9f92db368e0075b5f82",
		4:  "0bc18319023ac03f98414321aee3aa2a235f78a1756ea468b02fe0c5f23225e5",
		5:  "060129753cea3fc0988db0ee94b6b21d19bfb9dfd164fde00515f0db5dd67a3c",
		6:  "9ef7b9df0316cdc75ce45106e44c67bafe070a39dc1c1d09fd20351a3351bade",
		10: "e0f6ce48ceba2a71f30498eff60891e0fc6c08ca81e11720fce0561f569e6fb5",
		30: "dad29e005ed8fa0bb452d0eecb8599b0ce09ed8c1ccea2bca81ef713ee13fcd7",
		52: "f8fa7d56e1ff5de41281ec19fb4c60f452149b1dcded58c1348aff3b76e71144",
		53: "bde7a1fd628606611531c2943443f1fcdf9ae7023465cbed52cd4e2a97b72ce0",
		55: "cb3e82d3595c8be1b0373c38eabd85346946c5a9cd4b3f14fa26388bd08db276",
		61: "39ad7478cc75e02e070c3ad3db8a49a437d63129a49987aa66aea35a78af0b5b",
		62: "6c9840a0e4d0c2b27c92429f6c8c01c7074747858c17a70ad064a0036044a484",
		70: "16c1b4c3cd6eb35daa184c3ef954a5ca29889304a92006fc211fb6f686ab4662",
		80: "7089053746a7f252a98d6ebfe186c7b25bf08e1c6faee3ec49d759cfd57d270f",
	},
}

var sqlComment = regexp.MustCompile(`--[^\n]*`)

// sqlFingerprint is the sha256 of sql without its line comments and with its
// white space folded: what a change to the prose of a file leaves alone.
func sqlFingerprint(sql string) string {
	sum := sha256.Sum256([]byte(strings.Join(strings.Fields(sqlComment.ReplaceAllString(sql, "")), " ")))
	return hex.EncodeToString(sum[:])
}

func TestReleasedMigrationsUnchanged(t *testing.T) {
	for _, d := range []Dialect{SQLite, PostgreSQL} {
		ms, err := Load(d)
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
		seen := map[int]bool{}
		for _, m := range ms {
			seen[m.Version] = true
			want, ok := released[d][m.Version]
			switch got := sqlFingerprint(m.SQL); {
			case !ok:
				t.Errorf("%v: %s is not in released: add %d: %q", d, m.Name, m.Version, got)
			case got != want:
				t.Errorf("%v: %s renders other SQL than when it was released (sum %s, was %s)", d, m.Name, got, want)
			}
		}
		for v := range released[d] {
			if !seen[v] {
				t.Errorf("%v: released migration %d is gone", d, v)
			}
		}
	}
}

func TestParseRendersDialect(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0001_a.sql": {Data: []byte("CREATE TABLE a (id {{key}} NOT NULL, at {{int64}}, b {{bytes}}, l {{textlist}}, n INTEGER){{if sqlite}} WITHOUT ROWID{{end}};{{if postgres}} CREATE FUNCTION f();{{end}}")},
		"m/0002_b.sql": {Data: []byte("CREATE TABLE b (x TEXT);")},
		"m/notes.txt":  {Data: []byte("{{not sql")},
	}
	for _, tc := range []struct {
		d    Dialect
		want string
	}{
		{SQLite, "CREATE TABLE a (id TEXT NOT NULL, at INTEGER, b BLOB, l TEXT, n INTEGER) WITHOUT ROWID;"},
		{PostgreSQL, `CREATE TABLE a (id TEXT COLLATE "C" NOT NULL, at BIGINT, b BYTEA, l TEXT[], n INTEGER); CREATE FUNCTION f();`},
	} {
		ms, err := Parse(fsys, "m", tc.d)
		if err != nil {
			t.Fatalf("%v: %v", tc.d, err)
		}
		if len(ms) != 2 || ms[0].Version != 1 || ms[1].Version != 2 {
			t.Fatalf("%v: parsed %+v, want versions 1 and 2", tc.d, ms)
		}
		if ms[0].SQL != tc.want {
			t.Errorf("%v: rendered\n%s\nwant\n%s", tc.d, ms[0].SQL, tc.want)
		}
		if ms[1].SQL != "CREATE TABLE b (x TEXT);" {
			t.Errorf("%v: a file without actions rendered as %q", tc.d, ms[1].SQL)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"unknown action": {"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x {{uuid}});")}},
		"bad template":   {"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x {{if sqlite}}INTEGER);")}},
		"end without if": {"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER){{end}};")}},
		"unclosed":       {"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x {{int64);")}},
		"nested if":      {"m/0001_a.sql": {Data: []byte("{{if sqlite}}{{if postgres}}x{{end}}{{end}}")}},
		"duplicate":      {"m/0001_a.sql": {Data: []byte("SELECT 1;")}, "m/0001_b.sql": {Data: []byte("SELECT 1;")}},
		"not from 1":     {"m/0002_a.sql": {Data: []byte("SELECT 1;")}},
		"bad name":       {"m/0001_a.sql": {Data: []byte("SELECT 1;")}, "m/two_b.sql": {Data: []byte("SELECT 1;")}},
		"none":           {"m/README.md": {Data: []byte("no migrations")}},
	} {
		if ms, err := Parse(fsys, "m", SQLite); err == nil {
			t.Errorf("%s: parsed %+v, want an error", name, ms)
		}
	}
	ok := fstest.MapFS{"m/0001_a.sql": {Data: []byte("SELECT 1;")}}
	if _, err := Parse(ok, "m", Dialect(0)); err == nil {
		t.Error("parsed for dialect 0, want an error")
	}
}

func TestPending(t *testing.T) {
	ms := []Migration{{Version: 1}, {Version: 3}, {Version: 4}}
	versions := func(ms []Migration) []int {
		var vs []int
		for _, m := range ms {
			vs = append(vs, m.Version)
		}
		return vs
	}
	for _, tc := range []struct {
		applied map[int]bool
		want    []int
	}{
		{nil, []int{1, 3, 4}},
		{map[int]bool{1: true, 4: true}, []int{3}}, // 3 merged after 4 was applied
		{map[int]bool{1: true, 3: true, 4: true}, nil},
	} {
		got, err := Pending(ms, tc.applied)
		if err != nil {
			t.Fatalf("applied %v: %v", tc.applied, err)
		}
		if !slices.Equal(versions(got), tc.want) {
			t.Errorf("applied %v: pending %v, want %v", tc.applied, versions(got), tc.want)
		}
	}
	_, err := Pending(ms, map[int]bool{1: true, 5: true})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("a database at version 5 of a binary that knows up to 4: %v, want ErrSchemaTooNew", err)
	}
}
