package secrets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"
)

// Vault reads and writes secrets in a HashiCorp Vault KV version 2 engine,
// with the official client (github.com/hashicorp/vault/api).
//
// Secret NAME is the key "value" of the KV entry <Mount>/<Prefix>NAME
// (secret/hodei/NAME by default), so that its versions are Vault's.
// Authentication is a token, or AppRole (role id and secret id): on a 403
// the provider logs in again once and retries, which renews an expired
// AppRole token.
//
// Hodei's tests run this code against a fake of Vault's HTTP API (the
// endpoints it calls), not against a real Vault server.
type Vault struct {
	c    *vault.Client
	kv   *vault.KVv2
	opts VaultOptions

	mu sync.Mutex // serialises logins
}

var _ Versioned = (*Vault)(nil)

// VaultOptions configure NewVault.
type VaultOptions struct {
	Address string // https://vault.example.com:8200
	// Token authenticates with a token; RoleID and SecretID with AppRole
	// (which wins when both are set).
	Token    string
	RoleID   string
	SecretID string
	// AppRoleMount is the path of the AppRole auth method ("approle").
	AppRoleMount string
	// Mount is the path of the KV v2 engine ("secret").
	Mount string
	// Prefix is prepended to secret names ("hodei/").
	Prefix string
	// CACert is a PEM file of the CA that signed Vault's certificate.
	CACert string
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace  string
	HTTPClient *http.Client
}

// NewVault connects to Vault and, for AppRole, logs in.
func NewVault(ctx context.Context, o VaultOptions) (*Vault, error) {
	if o.Address == "" {
		return nil, errors.New("vault: an address is required")
	}
	if o.Mount == "" {
		o.Mount = "secret"
	}
	if o.Prefix == "" {
		o.Prefix = "hodei/"
	}
	if o.AppRoleMount == "" {
		o.AppRoleMount = "approle"
	}
	if o.Token == "" && (o.RoleID == "" || o.SecretID == "") {
		return nil, errors.New("vault: a token, or an AppRole role id and secret id, are required")
	}
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, fmt.Errorf("vault: %w", cfg.Error)
	}
	cfg.Address = o.Address
	if o.HTTPClient != nil {
		cfg.HttpClient = o.HTTPClient
	}
	if o.CACert != "" {
		if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: o.CACert}); err != nil {
			return nil, fmt.Errorf("vault: tls: %w", err)
		}
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	// The token comes from the options only, not from VAULT_TOKEN.
	c.ClearToken()
	if o.Namespace != "" {
		c.SetNamespace(o.Namespace)
	}
	v := &Vault{c: c, kv: c.KVv2(o.Mount), opts: o}
	if o.RoleID != "" && o.SecretID != "" {
		if err := v.login(ctx); err != nil {
			return nil, err
		}
	} else {
		c.SetToken(o.Token)
	}
	return v, nil
}

func (v *Vault) login(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.c.ClearToken()
	resp, err := v.c.Logical().WriteWithContext(ctx, "auth/"+v.opts.AppRoleMount+"/login", map[string]any{
		"role_id":   v.opts.RoleID,
		"secret_id": v.opts.SecretID,
	})
	if err != nil {
		return fmt.Errorf("vault: approle login: %w", err)
	}
	if resp == nil || resp.Auth == nil || resp.Auth.ClientToken == "" {
		return errors.New("vault: approle login returned no token")
	}
	v.c.SetToken(resp.Auth.ClientToken)
	return nil
}

// call runs f, and once more after a new AppRole login if Vault answered
// 403 (an expired or revoked token).
func (v *Vault) call(ctx context.Context, f func() error) error {
	err := f()
	if err == nil || v.opts.RoleID == "" {
		return err
	}
	var re *vault.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		if lerr := v.login(ctx); lerr != nil {
			return lerr
		}
		return f()
	}
	return err
}

func (v *Vault) path(name string) string { return v.opts.Prefix + name }

func (v *Vault) wrap(name string, err error) error {
	if errors.Is(err, vault.ErrSecretNotFound) {
		return nameErr(name, ErrNotFound)
	}
	return nameErr(name, fmt.Errorf("vault: %w", err))
}

func (v *Vault) secretOf(name string, s *vault.KVSecret) (Secret, error) {
	if s == nil || s.Data == nil || s.VersionMetadata == nil {
		return Secret{}, nameErr(name, ErrNotFound)
	}
	val, ok := s.Data["value"].(string)
	if !ok {
		return Secret{}, nameErr(name, errors.New(`vault: the entry has no string key "value"`))
	}
	return Secret{Name: name, Version: strconv.Itoa(s.VersionMetadata.Version), Value: val, Created: s.VersionMetadata.CreatedTime}, nil
}

// Get reads the current version.
func (v *Vault) Get(ctx context.Context, name string) (Secret, error) {
	if err := checkName(name); err != nil {
		return Secret{}, err
	}
	var s *vault.KVSecret
	err := v.call(ctx, func() (err error) { s, err = v.kv.Get(ctx, v.path(name)); return err })
	if err != nil {
		return Secret{}, v.wrap(name, err)
	}
	return v.secretOf(name, s)
}

// versionNumber checks name and reads ver, which Vault numbers.
func versionNumber(name, ver string) (int, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(ver)
	if err != nil {
		return 0, nameErr(name, ErrNoVersion)
	}
	return n, nil
}

// GetVersion reads one version.
func (v *Vault) GetVersion(ctx context.Context, name, ver string) (Secret, error) {
	n, err := versionNumber(name, ver)
	if err != nil {
		return Secret{}, err
	}
	var s *vault.KVSecret
	err = v.call(ctx, func() (err error) { s, err = v.kv.GetVersion(ctx, v.path(name), n); return err })
	if err != nil {
		if errors.Is(err, vault.ErrSecretNotFound) {
			return Secret{}, nameErr(name, ErrNoVersion)
		}
		return Secret{}, v.wrap(name, err)
	}
	return v.secretOf(name, s)
}

// List lists the entries under the prefix (and, for tenants other than the
// default, under PREFIX/TENANT/), with their metadata.
func (v *Vault) List(ctx context.Context) ([]Meta, error) {
	out := []Meta{}
	if err := v.list(ctx, "", &out); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// list appends the entries of folder ("" or "TENANT/").
func (v *Vault) list(ctx context.Context, folder string, out *[]Meta) error {
	var resp *vault.Secret
	err := v.call(ctx, func() (err error) {
		resp, err = v.c.Logical().ListWithContext(ctx, v.opts.Mount+"/metadata/"+v.opts.Prefix+folder)
		return err
	})
	if err != nil {
		return fmt.Errorf("vault: list: %w", err)
	}
	if resp == nil || resp.Data == nil {
		return nil
	}
	keys, _ := resp.Data["keys"].([]any)
	for _, k := range keys {
		key, _ := k.(string)
		if t, ok := strings.CutSuffix(key, "/"); ok {
			if folder == "" && ValidTenant(t) {
				if err := v.list(ctx, key, out); err != nil {
					return err
				}
			}
			continue
		}
		name := folder + key
		if !validKey(name) {
			continue // an entry Hodei did not write
		}
		var md *vault.KVMetadata
		err := v.call(ctx, func() (err error) { md, err = v.kv.GetMetadata(ctx, v.path(name)); return err })
		if err != nil {
			return v.wrap(name, err)
		}
		*out = append(*out, Meta{Name: name, Version: strconv.Itoa(md.CurrentVersion), Updated: md.UpdatedTime})
	}
	return nil
}

// Put writes a new version.
func (v *Vault) Put(ctx context.Context, name, value string) (Meta, error) {
	if err := checkName(name); err != nil {
		return Meta{}, err
	}
	var s *vault.KVSecret
	err := v.call(ctx, func() (err error) {
		s, err = v.kv.Put(ctx, v.path(name), map[string]any{"value": value})
		return err
	})
	if err != nil {
		return Meta{}, v.wrap(name, err)
	}
	if s == nil || s.VersionMetadata == nil {
		return Meta{}, nameErr(name, errors.New("vault: no version in the answer"))
	}
	return Meta{Name: name, Version: strconv.Itoa(s.VersionMetadata.Version), Updated: s.VersionMetadata.CreatedTime}, nil
}

// Restore writes an earlier version again as the newest (Vault's rollback,
// with check-and-set).
func (v *Vault) Restore(ctx context.Context, name, ver string) (Meta, error) {
	n, err := versionNumber(name, ver)
	if err != nil {
		return Meta{}, err
	}
	var s *vault.KVSecret
	err = v.call(ctx, func() (err error) { s, err = v.kv.Rollback(ctx, v.path(name), n); return err })
	if err != nil {
		return Meta{}, v.wrap(name, err)
	}
	return Meta{Name: name, Version: strconv.Itoa(s.VersionMetadata.Version), Updated: s.VersionMetadata.CreatedTime}, nil
}

// Delete removes the entry and all its versions.
func (v *Vault) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := v.Get(ctx, name); err != nil {
		return err
	}
	err := v.call(ctx, func() error { return v.kv.DeleteMetadata(ctx, v.path(name)) })
	if err != nil {
		return v.wrap(name, err)
	}
	return nil
}
