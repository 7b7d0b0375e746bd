package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Service is what the API serves: a backend, the rotator of its secrets
// (nil for a read-only backend), and whether values may be revealed.
type Service struct {
	Provider Provider
	Rotator  *Rotator
	// AllowReveal lets the API return values (POST .../reveal); off by
	// default: secrets are write-only, like a password field.
	AllowReveal bool
}

// ErrInvalidPolicy is a refused rotation policy.
var ErrInvalidPolicy = errors.New("invalid rotation policy")

// ErrRevealDisabled is the answer to a reveal when AllowReveal is off.
var ErrRevealDisabled = errors.New("revealing secret values is disabled on this server (start it with --secrets-allow-reveal)")

// Info describes a secret without its value: what the API answers.
type Info struct {
	Name      string        `json:"name"`
	Tenant    string        `json:"tenant"`
	Version   string        `json:"version"`
	UpdatedAt time.Time     `json:"updated_at,omitzero"`
	Rotation  *RotationInfo `json:"rotation,omitempty"`
}

// RotationInfo is the rotation policy and state of a secret.
type RotationInfo struct {
	Period             string     `json:"period,omitempty"` // a Go duration; "" rotates only on demand
	Window             string     `json:"window"`
	LastRotated        time.Time  `json:"last_rotated,omitzero"`
	NextRotation       *time.Time `json:"next_rotation,omitempty"`
	Previous           string     `json:"previous_version,omitempty"`
	PreviousValidUntil *time.Time `json:"previous_valid_until,omitempty"`
	LastError          string     `json:"last_error,omitempty"`
}

// Value is a revealed secret.
type Value struct {
	Name    string `json:"name"`
	Tenant  string `json:"tenant"`
	Version string `json:"version"`
	Value   string `json:"value"`
}

// PutRequest is the body of PUT /api/v1/secrets/{name}.
type PutRequest struct {
	Value string `json:"value"`
	// Rotation, when set, replaces the secret's rotation policy.
	Rotation *PolicyRequest `json:"rotation,omitempty"`
}

// PolicyRequest is a rotation policy with durations as text ("720h").
type PolicyRequest struct {
	Period string `json:"period,omitempty"`
	Window string `json:"window,omitempty"`
}

// Parse reads the durations.
func (p PolicyRequest) Parse() (Policy, error) {
	var out Policy
	var err error
	if p.Period != "" {
		if out.Period, err = time.ParseDuration(p.Period); err != nil {
			return out, errors.New("rotation period: want a duration such as 720h")
		}
	}
	if p.Window != "" {
		if out.Window, err = time.ParseDuration(p.Window); err != nil {
			return out, errors.New("rotation window: want a duration such as 1h")
		}
	}
	return out, nil
}

// List is the answer of GET /api/v1/secrets.
type List struct {
	Secrets []Info `json:"secrets"`
}

// Writer returns the backend as a Writer, or ErrReadOnly.
func (s *Service) Writer() (Writer, error) {
	w, ok := s.Provider.(Writer)
	if !ok {
		return nil, ErrReadOnly
	}
	return w, nil
}

// Info describes one secret of a tenant.
func (s *Service) Info(ctx context.Context, tenant, name string) (Info, error) {
	sec, err := s.Provider.Get(ctx, Qualify(tenant, name))
	if err != nil {
		return Info{}, err
	}
	return s.info(tenant, Meta{Name: Qualify(tenant, name), Version: sec.Version, Updated: sec.Created}), nil
}

func (s *Service) info(tenant string, m Meta) Info {
	_, name := SplitQualified(m.Name)
	if tenant == "" {
		tenant = DefaultTenant
	}
	in := Info{Name: name, Tenant: tenant, Version: m.Version, UpdatedAt: m.Updated}
	if s.Rotator == nil {
		return in
	}
	st, ok := s.Rotator.State(m.Name)
	if !ok {
		return in
	}
	ri := &RotationInfo{Window: s.Rotator.window(&st).String(), LastRotated: st.LastRotated, Previous: st.Previous, LastError: st.LastError}
	if st.Period > 0 {
		ri.Period = st.Period.String()
		next := st.LastRotated.Add(st.Period)
		ri.NextRotation = &next
	}
	if st.Previous != "" && !st.Retired {
		until := st.PreviousUntil
		ri.PreviousValidUntil = &until
	}
	in.Rotation = ri
	return in
}

// List lists the secrets of a tenant.
func (s *Service) List(ctx context.Context, tenant string) ([]Info, error) {
	all, err := s.Provider.List(ctx)
	if err != nil {
		return nil, err
	}
	if tenant == "" {
		tenant = DefaultTenant
	}
	out := []Info{}
	for _, m := range all {
		if t, _ := SplitQualified(m.Name); t == tenant {
			out = append(out, s.info(tenant, m))
		}
	}
	return out, nil
}

// Put stores a new value (and, if given, a rotation policy).
func (s *Service) Put(ctx context.Context, tenant, name, value string, policy *Policy) (Info, error) {
	w, err := s.Writer()
	if err != nil {
		return Info{}, err
	}
	q := Qualify(tenant, name)
	if err := checkName(q); err != nil {
		return Info{}, err
	}
	if policy != nil {
		if s.Rotator == nil {
			return Info{}, nameErr(name, fmt.Errorf("%w: this server does not rotate secrets", ErrInvalidPolicy))
		}
		// Checked before the value is stored, applied after.
		if err := policy.check(); err != nil {
			return Info{}, nameErr(name, fmt.Errorf("%w: %v", ErrInvalidPolicy, err))
		}
	}
	m, err := w.Put(ctx, q, value)
	if err != nil {
		return Info{}, err
	}
	if policy != nil {
		if err := s.Rotator.SetPolicy(q, *policy); err != nil {
			return Info{}, err
		}
	}
	return s.info(tenant, m), nil
}

// Rotate rotates a secret now.
func (s *Service) Rotate(ctx context.Context, tenant, name string) (Info, error) {
	if s.Rotator == nil {
		return Info{}, ErrReadOnly
	}
	m, err := s.Rotator.Rotate(ctx, Qualify(tenant, name))
	if err != nil {
		return Info{}, err
	}
	return s.info(tenant, m), nil
}

// Delete deletes a secret and its rotation state.
func (s *Service) Delete(ctx context.Context, tenant, name string) error {
	w, err := s.Writer()
	if err != nil {
		return err
	}
	q := Qualify(tenant, name)
	if err := w.Delete(ctx, q); err != nil {
		return err
	}
	if s.Rotator != nil {
		return s.Rotator.Forget(q)
	}
	return nil
}

// Reveal returns a secret's current value, if AllowReveal.
func (s *Service) Reveal(ctx context.Context, tenant, name string) (Value, error) {
	if !s.AllowReveal {
		return Value{}, ErrRevealDisabled
	}
	sec, err := s.Provider.Get(ctx, Qualify(tenant, name))
	if err != nil {
		return Value{}, err
	}
	if tenant == "" {
		tenant = DefaultTenant
	}
	return Value{Name: name, Tenant: tenant, Version: sec.Version, Value: sec.Value}, nil
}
