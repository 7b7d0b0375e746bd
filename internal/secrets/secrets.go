// Package secrets gives jobs the secrets they name, from a backend: the
// built-in encrypted store (Store), HashiCorp Vault KV v2 (Vault) or AWS
// Secrets Manager (AWS); a fixed set for local runs (Static). It also
// rotates secrets (Rotator) and hands them to agents sealed for their key
// (Sealer), so that no value is ever stored or sent in clear.
//
// Values are never logged and never put in an error: errors name secrets,
// not their values. Secret's String and LogValue hide the value, so that a
// Secret printed by mistake shows only its name and version.
package secrets

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/auth"
)

// Errors. Backends wrap them with the secret's name.
var (
	ErrNotFound    = errors.New("secret not found")
	ErrInvalidName = errors.New("invalid secret name")
	ErrReadOnly    = errors.New("this secrets backend is read-only")
	ErrNoVersion   = errors.New("secret version not found")
)

// namePattern is the form of secret names: they become environment
// variable names in jobs.
var namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// DefaultTenant is the tenant whose secrets have plain names.
const DefaultTenant = "default"

// Qualify is the name under which a backend keeps secret name of a
// tenant: the name itself for the default tenant (and ""), "TENANT/NAME"
// for the others. Each tenant's jobs see only its own secrets, under their
// plain names.
func Qualify(tenant, name string) string {
	if tenant == "" || tenant == DefaultTenant {
		return name
	}
	return tenant + "/" + name
}

// SplitQualified is the reverse of Qualify.
func SplitQualified(q string) (tenant, name string) {
	if t, n, ok := strings.Cut(q, "/"); ok {
		return t, n
	}
	return DefaultTenant, q
}

// ValidTenant reports whether t can name a tenant in a qualified name.
func ValidTenant(t string) bool { return auth.ValidTenant(t) }

// validKey reports whether q is a valid name, plain or qualified.
func validKey(q string) bool {
	t, n := SplitQualified(q)
	return ValidName(n) && (t == DefaultTenant || ValidTenant(t))
}

// MaxNameLen bounds secret names.
const MaxNameLen = 128

// MaxValueLen bounds secret values (64 KiB).
const MaxValueLen = 64 << 10

// ValidName reports whether name can name a secret: it must be usable as an
// environment variable name (letters, digits and _, not starting with a
// digit).
func ValidName(name string) bool {
	return len(name) <= MaxNameLen && namePattern.MatchString(name)
}

// Secret is one version of a secret, with its value.
type Secret struct {
	Name    string
	Version string
	Value   string
	Created time.Time
}

// String hides the value.
func (s Secret) String() string { return "secret " + s.Name + " version " + s.Version }

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return s.String() }

// LogValue hides the value from slog.
func (s Secret) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.Name), slog.String("version", s.Version))
}

// Meta describes a secret without its value.
type Meta struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Updated time.Time `json:"updated_at"`
}

// Provider gives the current version of secrets by name.
//
// Concurrency: implementations are safe for concurrent use; Get and List may
// do network I/O, honour ctx, and may be slow, so the orchestrator's loop
// never calls them (the Sealer does, on its own goroutines). Errors never
// hold a secret's value.
type Provider interface {
	// Get returns the current version of a secret; an error wrapping
	// ErrNotFound if there is none.
	Get(ctx context.Context, name string) (Secret, error)
	// List returns every secret's current version, without values, sorted
	// by name.
	List(ctx context.Context) ([]Meta, error)
}

// Writer is a Provider that can be written to. Put and Delete are atomic
// with respect to Get: a reader sees the old or the new version, never a
// mix.
type Writer interface {
	Provider
	// Put stores value as a new version and makes it current.
	Put(ctx context.Context, name, value string) (Meta, error)
	// Delete removes a secret and all its versions.
	Delete(ctx context.Context, name string) error
}

// Versioned is a Writer that keeps earlier versions and can make one
// current again: rotation uses it to roll back.
type Versioned interface {
	Writer
	// GetVersion returns one version of a secret; ErrNoVersion if it is
	// gone.
	GetVersion(ctx context.Context, name, version string) (Secret, error)
	// Restore makes an earlier version current again.
	Restore(ctx context.Context, name, version string) (Meta, error)
}

// Static is a read-only provider of a fixed set of secrets (`hodei run
// --secrets-file`). Every secret is at version "1".
type Static map[string]string

var _ Provider = Static(nil)

// Get returns the value of name.
func (s Static) Get(_ context.Context, name string) (Secret, error) {
	v, ok := s[name]
	if !ok {
		return Secret{}, &NameError{Name: name, Err: ErrNotFound}
	}
	return Secret{Name: name, Version: "1", Value: v}, nil
}

// List returns the names.
func (s Static) List(context.Context) ([]Meta, error) {
	out := make([]Meta, 0, len(s))
	for k := range s {
		out = append(out, Meta{Name: k, Version: "1"})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// NameError is an error about one secret. Its message names the secret and
// never holds the value.
type NameError struct {
	Name string
	Err  error
}

func (e *NameError) Error() string { return "secret " + e.Name + ": " + e.Err.Error() }
func (e *NameError) Unwrap() error { return e.Err }

func nameErr(name string, err error) error { return &NameError{Name: name, Err: err} }

func checkName(name string) error {
	if !validKey(name) {
		return nameErr(name, ErrInvalidName)
	}
	return nil
}
