package secrets

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testValue = "postgres://app:Sup3r-s3cret@db/app"

// filesContain reports which files under dir hold needle.
func filesContain(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// assertNotAtRest fails if any file under dir holds value in clear, in
// base64 or in hex.
func assertNotAtRest(t *testing.T, dir, value string) {
	t.Helper()
	for _, form := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), base64.RawStdEncoding.EncodeToString([]byte(value)), hex.EncodeToString([]byte(value))} {
		if hits := filesContain(t, dir, []byte(form)); len(hits) > 0 {
			t.Errorf("the value is at rest in %v (form %q)", hits, form)
		}
	}
}

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(StoreOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestStore opens a store in a new directory and returns it with the
// directory.
func newTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	return openTestStore(t, dir), dir
}

func TestStoreVersionsAndNothingInClearAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir := newTestStore(t)
	m1 := mustPut(t, ctx, s, "DB_URL", testValue)
	m2 := mustPut(t, ctx, s, "DB_URL", testValue+"-v2")
	if m1.Version != "1" || m2.Version != "2" {
		t.Fatalf("versions %s, %s", m1.Version, m2.Version)
	}
	got, err := s.Get(ctx, "DB_URL")
	if err != nil || got.Value != testValue+"-v2" || got.Version != "2" {
		t.Fatalf("Get = %v %q, %v", got, got.Value, err)
	}
	old, err := s.GetVersion(ctx, "DB_URL", "1")
	if err != nil || old.Value != testValue {
		t.Fatalf("GetVersion(1) = %q, %v", old.Value, err)
	}
	assertNotAtRest(t, dir, testValue)
	st, err := os.Stat(filepath.Join(dir, keyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	st, _ = os.Stat(filepath.Join(dir, storeFileName))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("store file mode %v, want 0600", st.Mode().Perm())
	}

	// Reopened, it reads what it wrote.
	s2 := openTestStore(t, dir)
	if got, err := s2.Get(ctx, "DB_URL"); err != nil || got.Value != testValue+"-v2" {
		t.Fatalf("after reopen: %q, %v", got.Value, err)
	}
	if _, err := s2.Restore(ctx, "DB_URL", "1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Get(ctx, "DB_URL"); got.Value != testValue || got.Version != "1" {
		t.Errorf("after Restore(1): %q version %s", got.Value, got.Version)
	}
	list, _ := s2.List(ctx)
	if len(list) != 1 || list[0].Name != "DB_URL" || list[0].Version != "1" {
		t.Errorf("List = %+v", list)
	}
	if err := s2.Delete(ctx, "DB_URL"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, "DB_URL"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, err := s2.Put(ctx, "1BAD", "x"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
}

func TestStoreKeepsMaxVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := OpenStore(StoreOptions{Dir: t.TempDir(), MaxVersions: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		mustPut(t, ctx, s, "K", strings.Repeat("v", i+4))
	}
	if _, err := s.GetVersion(ctx, "K", "1"); !errors.Is(err, ErrNoVersion) {
		t.Errorf("version 1 of 6 kept with MaxVersions 3: %v", err)
	}
	for _, v := range []string{"4", "5", "6"} {
		if _, err := s.GetVersion(ctx, "K", v); err != nil {
			t.Errorf("version %s: %v", v, err)
		}
	}
}

// TestStoreCiphertextsAreBoundToTheirEntry moves one secret's encrypted
// version into another's entry: it must not decrypt.
func TestStoreCiphertextsAreBoundToTheirEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir := newTestStore(t)
	mustPut(t, ctx, s, "A", testValue)
	mustPut(t, ctx, s, "B", "other value")
	var f storeFile
	data, _ := os.ReadFile(filepath.Join(dir, storeFileName))
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	f.Secrets["B"].Versions[0] = f.Secrets["A"].Versions[0]
	data, _ = json.Marshal(f)
	if err := os.WriteFile(filepath.Join(dir, storeFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openTestStore(t, dir).Get(ctx, "B")
	if err == nil {
		t.Fatal("B decrypted A's ciphertext")
	}
	if strings.Contains(err.Error(), testValue) {
		t.Errorf("error holds the value: %v", err)
	}
}

func TestRotateKEKRewrapsAndForgetsTheOldKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir := newTestStore(t)
	for _, n := range []string{"A", "B"} {
		mustPut(t, ctx, s, n, testValue+n)
	}
	oldKF := readKeyFile(t, dir)
	newID, err := s.RotateKEK()
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldKF.Primary {
		t.Fatal("the key did not change")
	}
	kf := readKeyFile(t, dir)
	if len(kf.Keys) != 1 || kf.Primary != newID || kf.Keys[0].ID != newID {
		t.Fatalf("key file after rotation: primary %s, %d keys", kf.Primary, len(kf.Keys))
	}
	var f storeFile
	data, _ := os.ReadFile(filepath.Join(dir, storeFileName))
	_ = json.Unmarshal(data, &f)
	for name, r := range f.Secrets {
		for _, v := range r.Versions {
			if v.KEK != newID {
				t.Errorf("%s version %d still wrapped by %s", name, v.N, v.KEK)
			}
		}
	}
	for _, dirS := range []*Store{s, openTestStore(t, dir)} {
		for _, n := range []string{"A", "B"} {
			if got, err := dirS.Get(ctx, n); err != nil || got.Value != testValue+n {
				t.Errorf("%s after rotation: %q, %v", n, got.Value, err)
			}
		}
	}
	// The old key can no longer open anything: it is gone from the file
	// and the data keys are wrapped by the new one.
	if bytes.Contains(mustRead(t, filepath.Join(dir, keyFileName)), []byte(base64.StdEncoding.EncodeToString(oldKF.Keys[0].Key))) {
		t.Error("the old key is still in the key file")
	}
}

// TestInterruptedRotationIsFinishedAtOpen leaves the key file as a crash
// after its first step would: the new key primary, the old one kept, the
// data still wrapped by the old one.
func TestInterruptedRotationIsFinishedAtOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir := newTestStore(t)
	mustPut(t, ctx, s, "A", testValue)
	ring, err := loadKeyring(StoreOptions{Dir: dir}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	ring.keys[keyID(key)] = key
	ring.primary = keyID(key)
	if err := ring.save(time.Now()); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	if got, err := s2.Get(ctx, "A"); err != nil || got.Value != testValue {
		t.Fatalf("after finishing the rotation: %q, %v", got.Value, err)
	}
	if kf := readKeyFile(t, dir); len(kf.Keys) != 1 || kf.Primary != keyID(key) {
		t.Errorf("key file: primary %s, %d keys", kf.Primary, len(kf.Keys))
	}
}

func TestEnvironmentKeyAndItsRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := hex.EncodeToString(bytes.Repeat([]byte{2}, 32))
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	open := func(m map[string]string) (*Store, error) {
		key, prev, err := KeyFromEnv(env(m))
		if err != nil {
			t.Fatal(err)
		}
		return OpenStore(StoreOptions{Dir: dir, Key: key, PreviousKeys: prev})
	}
	s, err := open(map[string]string{EnvKey: k1})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, ctx, s, "A", testValue)
	if _, err := os.Stat(filepath.Join(dir, keyFileName)); !os.IsNotExist(err) {
		t.Errorf("a key file was written although the key comes from the environment: %v", err)
	}
	if _, err := s.RotateKEK(); err == nil {
		t.Error("RotateKEK with an environment key succeeded")
	}
	// The new key alone cannot read what the old one wrapped...
	s2, err := open(map[string]string{EnvKey: k2})
	if err == nil {
		if _, gerr := s2.Get(ctx, "A"); gerr == nil {
			t.Fatal("read with the wrong key")
		}
	}
	// ...with the old one as previous, the store is re-wrapped...
	if _, err := open(map[string]string{EnvKey: k2, EnvPreviousKey: k1}); err != nil {
		t.Fatal(err)
	}
	// ...and then the new key is enough.
	s3, err := open(map[string]string{EnvKey: k2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s3.Get(ctx, "A"); err != nil || got.Value != testValue {
		t.Fatalf("with the new key: %q, %v", got.Value, err)
	}
	if _, _, err := KeyFromEnv(env(map[string]string{EnvKey: "short"})); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestSecretHidesItsValueWhenPrinted(t *testing.T) {
	t.Parallel()
	s := Secret{Name: "A", Version: "3", Value: testValue}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := sprintf(f, s); strings.Contains(out, testValue) {
			t.Errorf("%s prints the value: %s", f, out)
		}
	}
}

func readKeyFile(t *testing.T, dir string) keyFile {
	t.Helper()
	var kf keyFile
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, keyFileName)), &kf); err != nil {
		t.Fatal(err)
	}
	return kf
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyFileReadableByOthersIsRefused: a key file that others may read is
// refused at open, naming the file and what to do; once chmod 600, it
// opens and still decrypts.
func TestKeyFileReadableByOthersIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir := newTestStore(t)
	mustPut(t, ctx, s, "A", testValue)
	kf := filepath.Join(dir, "kek.json")
	for _, mode := range []os.FileMode{0o640, 0o604} {
		if err := os.Chmod(kf, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStore(StoreOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "readable by others") || !strings.Contains(err.Error(), kf) {
			t.Errorf("key file mode %v: %v, want a refusal naming the file", mode, err)
		}
	}
	if err := os.Chmod(kf, 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	if v, err := s2.Get(ctx, "A"); err != nil || v.Value != testValue {
		t.Errorf("after chmod 600: %+v %v", v, err)
	}
}
