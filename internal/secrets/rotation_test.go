package secrets

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recordingHook records calls; Apply fails while fail is set.
type recordingHook struct {
	mu      sync.Mutex
	fail    error
	applied []string // "prev->next" versions
	retired []string // versions
	values  []string // values seen by Apply (next)
}

func (h *recordingHook) Apply(_ context.Context, prev, next Secret) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail != nil {
		return h.fail
	}
	h.applied = append(h.applied, prev.Version+"->"+next.Version)
	h.values = append(h.values, next.Value)
	return nil
}

func (h *recordingHook) Retire(_ context.Context, prev Secret) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retired = append(h.retired, prev.Version)
	return nil
}

// writerOnly hides the Versioned methods of a store: rollback must then
// write the previous value again.
type writerOnly struct{ Writer }

func TestRotateManualWindowAndRetire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openTestStore(t, t.TempDir())
	mustPut(t, ctx, store, "API_TOKEN", "initial-value")
	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	hook := &recordingHook{}
	stateFile := filepath.Join(t.TempDir(), "rotation.json")
	r, err := NewRotator(store, RotatorOptions{StateFile: stateFile, Hook: func(string) Hook { return hook }, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetPolicy("API_TOKEN", Policy{Window: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	m, err := r.Rotate(ctx, "API_TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := store.Get(ctx, "API_TOKEN")
	if cur.Version != m.Version || cur.Value == "initial-value" || len(cur.Value) < 32 {
		t.Fatalf("after rotation: version %s (want %s), value of %d bytes", cur.Version, m.Version, len(cur.Value))
	}
	if len(hook.applied) != 1 || hook.applied[0] != "1->2" || hook.values[0] != cur.Value {
		t.Errorf("hook applied %v", hook.applied)
	}
	for _, tc := range []struct {
		value string
		want  bool
	}{{cur.Value, true}, {"initial-value", true}, {"something-else", false}} {
		if ok, err := r.Valid(ctx, "API_TOKEN", tc.value); err != nil || ok != tc.want {
			t.Errorf("within the window, Valid(%q) = %v, %v; want %v", tc.value, ok, err, tc.want)
		}
	}
	clk.advance(9 * time.Minute)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(hook.retired) != 0 {
		t.Errorf("retired %v before the window passed", hook.retired)
	}
	clk.advance(2 * time.Minute)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if len(hook.retired) != 1 || hook.retired[0] != "1" {
		t.Errorf("retired %v, want [1]", hook.retired)
	}
	if ok, _ := r.Valid(ctx, "API_TOKEN", "initial-value"); ok {
		t.Error("the previous version is still valid after its window")
	}
	// The state survives a restart, and holds no value.
	data, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), cur.Value) || strings.Contains(string(data), "initial-value") {
		t.Error("the rotation state file holds a value")
	}
	r2, err := NewRotator(store, RotatorOptions{StateFile: stateFile, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := r2.State("API_TOKEN"); !ok || st.Previous != "1" || !st.Retired || st.Window != 10*time.Minute {
		t.Errorf("reloaded state = %+v", st)
	}
}

func TestRotateOnPeriod(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openTestStore(t, t.TempDir())
	mustPut(t, ctx, store, "K", "value-0")
	clk := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	r, err := NewRotator(store, RotatorOptions{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetPolicy("K", Policy{Period: time.Hour, Window: time.Hour}); err == nil {
		t.Error("a window as long as the period was accepted")
	}
	if err := r.SetPolicy("K", Policy{Period: time.Hour, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	clk.advance(59 * time.Minute)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cur, _ := store.Get(ctx, "K"); cur.Version != "1" {
		t.Fatalf("rotated after 59 minutes of a 1h period: version %s", cur.Version)
	}
	clk.advance(time.Minute)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if cur, _ := store.Get(ctx, "K"); cur.Version != "2" {
		t.Fatalf("not rotated after the period: version %s", cur.Version)
	}
	clk.advance(30 * time.Minute)
	_ = r.Tick(ctx)
	if cur, _ := store.Get(ctx, "K"); cur.Version != "2" {
		t.Fatalf("rotated again half a period later: version %s", cur.Version)
	}
}

// TestFailingHookRollsBack runs a rotation whose hook fails against every
// backend: the previous value must be current again, and the error must
// name no value.
func TestFailingHookRollsBack(t *testing.T) {
	ctx := context.Background()
	_, vaultAddr := startFakeVault(t)
	vault, err := NewVault(ctx, VaultOptions{Address: vaultAddr, Token: "root-token"})
	if err != nil {
		t.Fatal(err)
	}
	_, aws := startFakeAWS(t)
	for name, w := range map[string]Writer{
		"store":              openTestStore(t, t.TempDir()),
		"store, unversioned": writerOnly{openTestStore(t, t.TempDir())},
		"vault":              vault,
		"aws":                aws,
	} {
		t.Run(name, func(t *testing.T) {
			mustPut(t, ctx, w, "DB_PASSWORD", "old-password-1")
			hook := &recordingHook{fail: errors.New("database refused the new password")}
			var generated string
			r, err := NewRotator(w, RotatorOptions{
				Hook:     func(string) Hook { return hook },
				Generate: func() (string, error) { generated = "new-password-2"; return generated, nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Rotate(ctx, "DB_PASSWORD")
			if !errors.Is(err, ErrRotationFailed) {
				t.Fatalf("Rotate = %v, want ErrRotationFailed", err)
			}
			if strings.Contains(err.Error(), "old-password-1") || strings.Contains(err.Error(), generated) {
				t.Errorf("the error holds a value: %v", err)
			}
			cur, err := w.Get(ctx, "DB_PASSWORD")
			if err != nil || cur.Value != "old-password-1" {
				t.Fatalf("after the rollback the current value is %q (%v), want the previous one", cur.Value, err)
			}
			if st, _ := r.State("DB_PASSWORD"); !strings.Contains(st.LastError, "refused") {
				t.Errorf("state LastError = %q", st.LastError)
			}
			// Once the hook works again, rotation succeeds.
			hook.mu.Lock()
			hook.fail = nil
			hook.mu.Unlock()
			if _, err := r.Rotate(ctx, "DB_PASSWORD"); err != nil {
				t.Fatal(err)
			}
			if cur, _ := w.Get(ctx, "DB_PASSWORD"); cur.Value != generated {
				t.Errorf("after a good rotation: %q", cur.Value)
			}
		})
	}
}

func TestExecHookGetsValuesOnStdinAndMasksItsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "stdin.json")
	script := filepath.Join(dir, "hook.sh")
	body := "#!/bin/sh\ncat > " + out + "\nif [ \"$1\" = apply ]; then echo \"cannot set password new-value-123 for $2\" >&2; exit 3; fi\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	h := ExecHook{Path: script}
	err := h.Apply(context.Background(), Secret{Name: "X", Version: "1", Value: "old-value-123"}, Secret{Name: "X", Version: "2", Value: "new-value-123"})
	if err == nil {
		t.Fatal("a hook exiting 3 succeeded")
	}
	if strings.Contains(err.Error(), "new-value-123") || !strings.Contains(err.Error(), "cannot set password *** for X") {
		t.Errorf("error = %v", err)
	}
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), `"value":"new-value-123"`) || !strings.Contains(string(data), `"value":"old-value-123"`) {
		t.Errorf("stdin = %s", data)
	}
	if err := h.Retire(context.Background(), Secret{Name: "X", Version: "1", Value: "old-value-123"}); err != nil {
		t.Errorf("retire: %v", err)
	}
}
