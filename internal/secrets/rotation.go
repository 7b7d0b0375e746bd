package secrets

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hodei-ci/hodei/internal/atomicfile"
	"github.com/hodei-ci/hodei/internal/mask"
)

// ErrRotationFailed means a rotation was rolled back: the hook could not
// apply the new version, and the previous one is current again.
var ErrRotationFailed = errors.New("rotation failed and was rolled back")

// Hook applies a secret's new version to the system that uses it (a
// database password, an API key at a provider). The Rotator calls it after
// storing the new version; if Apply fails, the Rotator rolls back.
//
// Concurrency: the Rotator calls a hook for one rotation at a time.
type Hook interface {
	// Apply makes the system accept next, and checks that next works. The
	// system must keep accepting prev until Retire: jobs started before the
	// rotation still hold it.
	Apply(ctx context.Context, prev, next Secret) error
	// Retire is called once prev's window has passed: the system may stop
	// accepting it.
	Retire(ctx context.Context, prev Secret) error
}

// NopHook is the hook of secrets that only Hodei uses: nothing to apply.
type NopHook struct{}

// Apply does nothing.
func (NopHook) Apply(context.Context, Secret, Secret) error { return nil }

// Retire does nothing.
func (NopHook) Retire(context.Context, Secret) error { return nil }

// ExecHook runs a program: `PROGRAM apply NAME` and `PROGRAM retire NAME`,
// with a JSON object on its standard input (name, previous and next, each
// with version and value), never in its arguments or environment. Exit
// status 0 is success. On failure, the error carries the end of its
// standard error with every form of both values masked.
type ExecHook struct{ Path string }

// Apply runs `PROGRAM apply NAME`.
func (h ExecHook) Apply(ctx context.Context, prev, next Secret) error {
	return h.run(ctx, "apply", next.Name, map[string]any{"name": next.Name, "previous": hookSecret(prev), "next": hookSecret(next)}, prev.Value, next.Value)
}

// Retire runs `PROGRAM retire NAME`.
func (h ExecHook) Retire(ctx context.Context, prev Secret) error {
	return h.run(ctx, "retire", prev.Name, map[string]any{"name": prev.Name, "previous": hookSecret(prev)}, prev.Value)
}

func hookSecret(s Secret) map[string]string {
	return map[string]string{"version": s.Version, "value": s.Value}
}

func (h ExecHook) run(ctx context.Context, action, name string, in any, values ...string) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	defer clear(data)
	cmd := exec.CommandContext(ctx, h.Path, action, name)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Run(); err != nil {
		msg := mask.New(values...).String(lastBytes(stderr.String(), 512))
		return fmt.Errorf("rotation hook %s %s: %v: %s", filepath.Base(h.Path), action, err, msg)
	}
	return nil
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Policy is how a secret rotates.
type Policy struct {
	// Period between automatic rotations; 0 rotates only on demand.
	Period time.Duration `json:"period,omitempty"`
	// Window is how long the previous version stays valid after a
	// rotation (1 hour by default).
	Window time.Duration `json:"window,omitempty"`
}

func (p Policy) check() error {
	if p.Period < 0 || p.Window < 0 {
		return errors.New("rotation period and window cannot be negative")
	}
	w := p.Window
	if w == 0 {
		w = DefaultWindow
	}
	if p.Period > 0 && w >= p.Period {
		return fmt.Errorf("the rotation window (%s) must be shorter than the period (%s)", w, p.Period)
	}
	return nil
}

// DefaultWindow is the window of a policy that sets none.
const DefaultWindow = time.Hour

// RotationState is what the Rotator knows of one secret. It holds versions,
// never values.
type RotationState struct {
	Policy
	// LastRotated is the time of the last rotation (or of the policy, before
	// the first one): the next automatic one is due a Period later.
	LastRotated time.Time `json:"last_rotated"`
	// Previous is the version replaced by the last rotation; it stays
	// valid until PreviousUntil, then it is retired.
	Previous      string    `json:"previous,omitempty"`
	PreviousUntil time.Time `json:"previous_until,omitzero"`
	Retired       bool      `json:"retired,omitempty"`
	// LastError is why the last rotation was rolled back, if it was.
	LastError string `json:"last_error,omitempty"`
}

// Rotator rotates secrets of a Writer: on demand (Rotate) and when their
// period is over (Tick). A rotation stores a generated value as a new
// version, has the secret's Hook apply it, and rolls back to the previous
// version if the hook fails. The previous version stays valid for the
// policy's window; then the hook retires it.
//
// Rotations run one at a time. The rotation states (policies, versions and
// times, no values) are kept in a JSON file.
type Rotator struct {
	w        Writer
	hook     func(name string) Hook
	path     string
	now      func() time.Time
	generate func() (string, error)
	log      *slog.Logger

	rotating sync.Mutex // one rotation at a time; taken before mu
	mu       sync.Mutex
	states   map[string]*RotationState
}

// RotatorOptions configure NewRotator.
type RotatorOptions struct {
	// StateFile keeps the rotation states; "" keeps them in memory only.
	StateFile string
	// Hook returns the hook of a secret; NopHook for all by default.
	Hook func(name string) Hook
	// Generate makes new values: 32 random bytes, base64url, by default.
	Generate func() (string, error)
	Now      func() time.Time
	Logger   *slog.Logger
}

// NewRotator loads the rotation states.
func NewRotator(w Writer, o RotatorOptions) (*Rotator, error) {
	r := &Rotator{w: w, hook: o.Hook, path: o.StateFile, now: o.Now, generate: o.Generate, log: o.Logger, states: map[string]*RotationState{}}
	if r.hook == nil {
		r.hook = func(string) Hook { return NopHook{} }
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.generate == nil {
		r.generate = RandomValue
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.path != "" {
		if err := readJSON(r.path, "rotation states", &r.states); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// RandomValue is 32 random bytes in base64url (43 characters).
func RandomValue() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (r *Rotator) saveLocked() error {
	if r.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(r.states, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(r.path, data, 0o600)
}

// SetPolicy sets how a secret rotates; the next automatic rotation is a
// Period from now.
func (r *Rotator) SetPolicy(name string, p Policy) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := p.check(); err != nil {
		return nameErr(name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[name]
	if st == nil {
		st = &RotationState{}
		r.states[name] = st
	}
	st.Policy = p
	st.LastRotated = r.now().UTC()
	return r.saveLocked()
}

// State returns what the Rotator knows of a secret.
func (r *Rotator) State(name string) (RotationState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[name]
	if st == nil {
		return RotationState{}, false
	}
	return *st, true
}

// Forget drops a deleted secret's state.
func (r *Rotator) Forget(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.states, name)
	return r.saveLocked()
}

func (r *Rotator) window(st *RotationState) time.Duration {
	if st.Window > 0 {
		return st.Window
	}
	return DefaultWindow
}

// Rotate gives a secret a new generated value now. If the hook fails to
// apply it, the previous version is made current again and the error wraps
// ErrRotationFailed.
func (r *Rotator) Rotate(ctx context.Context, name string) (Meta, error) {
	if err := checkName(name); err != nil {
		return Meta{}, err
	}
	r.rotating.Lock()
	defer r.rotating.Unlock()
	prev, err := r.w.Get(ctx, name)
	if err != nil {
		return Meta{}, err
	}
	r.mu.Lock()
	st := r.states[name]
	if st == nil {
		st = &RotationState{}
		r.states[name] = st
	}
	older, olderRetired := st.Previous, st.Retired
	r.mu.Unlock()
	hook := r.hook(name)
	// Only one earlier version is valid at a time: the one this rotation
	// replaces. One still in its window is retired first.
	if older != "" && !olderRetired {
		r.retire(ctx, name, older, hook)
	}
	value, err := r.generate()
	if err != nil {
		return Meta{}, nameErr(name, fmt.Errorf("generate a value: %w", err))
	}
	m, err := r.w.Put(ctx, name, value)
	if err != nil {
		return Meta{}, err
	}
	next := Secret{Name: name, Version: m.Version, Value: value, Created: m.Updated}
	if aerr := hook.Apply(ctx, prev, next); aerr != nil {
		rerr := r.rollback(ctx, prev)
		r.mu.Lock()
		st.LastError = aerr.Error()
		_ = r.saveLocked()
		r.mu.Unlock()
		if rerr != nil {
			return Meta{}, nameErr(name, fmt.Errorf("rotation failed (%v), and so did the rollback to version %s: %w", aerr, prev.Version, rerr))
		}
		r.log.Warn("secret rotation rolled back", "secret", name, "restored_version", prev.Version, "err", aerr)
		return Meta{}, nameErr(name, fmt.Errorf("%w to version %s: %v", ErrRotationFailed, prev.Version, aerr))
	}
	now := r.now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	st.LastRotated = now
	st.Previous = prev.Version
	st.PreviousUntil = now.Add(r.window(st))
	st.Retired = false
	st.LastError = ""
	if err := r.saveLocked(); err != nil {
		return m, fmt.Errorf("secret %s rotated to version %s, but its rotation state was not saved: %w", name, m.Version, err)
	}
	r.log.Info("secret rotated", "secret", name, "version", m.Version, "previous", prev.Version)
	return m, nil
}

// rollback makes prev current again: by restoring its version when the
// backend keeps versions, else by writing its value as a new version.
func (r *Rotator) rollback(ctx context.Context, prev Secret) error {
	if v, ok := r.w.(Versioned); ok {
		_, err := v.Restore(ctx, prev.Name, prev.Version)
		return err
	}
	_, err := r.w.Put(ctx, prev.Name, prev.Value)
	return err
}

func (r *Rotator) retire(ctx context.Context, name, version string, hook Hook) {
	prev := Secret{Name: name, Version: version}
	if v, ok := r.w.(Versioned); ok {
		s, err := v.GetVersion(ctx, name, version)
		if err != nil {
			r.log.Warn("secret retire: previous version unreadable", "secret", name, "version", version, "err", err)
		} else {
			prev = s
		}
	}
	if err := hook.Retire(ctx, prev); err != nil {
		r.log.Warn("secret retire failed", "secret", name, "version", version, "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.states[name]; st != nil && st.Previous == version {
		st.Retired = true
		_ = r.saveLocked()
	}
}

// Valid reports whether value is the current version of a secret, or the
// previous one within its window.
func (r *Rotator) Valid(ctx context.Context, name, value string) (bool, error) {
	cur, err := r.w.Get(ctx, name)
	if err != nil {
		return false, err
	}
	if subtle.ConstantTimeCompare([]byte(cur.Value), []byte(value)) == 1 {
		return true, nil
	}
	r.mu.Lock()
	st := r.states[name]
	var prevVer string
	if st != nil && st.Previous != "" && !st.Retired && r.now().Before(st.PreviousUntil) {
		prevVer = st.Previous
	}
	r.mu.Unlock()
	v, ok := r.w.(Versioned)
	if prevVer == "" || !ok {
		return false, nil
	}
	prev, err := v.GetVersion(ctx, name, prevVer)
	if err != nil {
		return false, nil
	}
	return subtle.ConstantTimeCompare([]byte(prev.Value), []byte(value)) == 1, nil
}

// Tick rotates the secrets whose period is over and retires the previous
// versions whose window has passed. It returns the errors of the
// rotations, joined.
func (r *Rotator) Tick(ctx context.Context) error {
	now := r.now()
	var due, expired []string
	r.mu.Lock()
	for name, st := range r.states {
		if st.Period > 0 && !now.Before(st.LastRotated.Add(st.Period)) {
			due = append(due, name)
		} else if st.Previous != "" && !st.Retired && !now.Before(st.PreviousUntil) {
			expired = append(expired, name)
		}
	}
	r.mu.Unlock()
	sort.Strings(due)
	sort.Strings(expired)
	var errs []error
	for _, name := range expired {
		r.mu.Lock()
		ver := r.states[name].Previous
		r.mu.Unlock()
		r.retire(ctx, name, ver, r.hook(name))
	}
	for _, name := range due {
		if _, err := r.Rotate(ctx, name); err != nil {
			errs = append(errs, err)
			if errors.Is(err, ErrNotFound) {
				// A deleted secret does not rotate again.
				_ = r.Forget(name)
				continue
			}
			// A failed rotation is tried again a period later, not at every
			// tick.
			r.mu.Lock()
			if st := r.states[name]; st != nil {
				st.LastRotated = now.UTC()
				_ = r.saveLocked()
			}
			r.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Run calls Tick every period until ctx ends.
func (r *Rotator) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Tick(ctx); err != nil {
				r.log.Warn("secret rotation", "err", err)
			}
		}
	}
}
