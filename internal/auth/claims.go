package auth

import (
	"fmt"
	"slices"
	"strings"
)

// ClaimMapping says where in a token's claims Hodei finds a principal's
// roles, groups, name and tenant. A path is claim names joined by dots
// ("realm_access.roles"); a segment "{client}" stands for Client, so a
// client id with dots in it still works. The zero value is Keycloak's
// layout (see the defaults on each field).
type ClaimMapping struct {
	// Roles are paths to claims holding role names (a string, or a list of
	// strings); their roles add up. Default: "realm_access.roles" and
	// "resource_access.{client}.roles" (Keycloak's realm and client roles).
	Roles []string
	// Client replaces "{client}" in paths (default: the first audience).
	Client string
	// RolePrefix, if set, keeps only the roles that start with it, without
	// it ("hodei-" maps the Keycloak role "hodei-admin" to "admin" and
	// drops "offline_access").
	RolePrefix string
	// Groups is the path of the group list (default "groups"). Keycloak's
	// group mapper writes full paths ("/tenant:acme") unless told not to;
	// a leading "/" is ignored when matching TenantGroupPrefix.
	Groups string
	// Username is the path of the name people see (default
	// "preferred_username"; then "email", then the subject).
	Username string
	// Tenant is the path of a claim naming the tenant (default "tenant").
	Tenant string
	// TenantGroupPrefix: a group named with this prefix names the tenant
	// when the Tenant claim is absent (default "tenant:"; "-" for none).
	TenantGroupPrefix string
	// DefaultTenant is the tenant of a principal whose token names none
	// (default "default", the tenant of runs submitted without one; "-"
	// for none, and then such principals reach no tenant's runs).
	DefaultTenant string
}

// DefaultClaimMapping returns the mapping used when none is configured,
// for tokens issued to client.
func DefaultClaimMapping(client string) ClaimMapping {
	return ClaimMapping{}.withDefaults(client)
}

func (m ClaimMapping) withDefaults(client string) ClaimMapping {
	if len(m.Roles) == 0 {
		m.Roles = []string{"realm_access.roles", "resource_access.{client}.roles"}
	}
	if m.Client == "" {
		m.Client = client
	}
	if m.Groups == "" {
		m.Groups = "groups"
	}
	if m.Username == "" {
		m.Username = "preferred_username"
	}
	if m.Tenant == "" {
		m.Tenant = "tenant"
	}
	if m.TenantGroupPrefix == "" {
		m.TenantGroupPrefix = "tenant:"
	}
	if m.DefaultTenant == "" {
		m.DefaultTenant = "default"
	}
	return m
}

// lookup follows a path through nested claim objects.
func (m ClaimMapping) lookup(claims map[string]any, path string) (any, bool) {
	var cur any = claims
	for _, seg := range strings.Split(path, ".") {
		if seg == "{client}" {
			seg = m.Client
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// strs reads a claim that is a string or a list of strings (a single
// string may also hold several names separated by spaces or commas, as
// some issuers write scopes and roles).
func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.FieldsFunc(x, func(r rune) bool { return r == ' ' || r == ',' })
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return x
	}
	return nil
}

func (m ClaimMapping) str(claims map[string]any, path string) string {
	v, ok := m.lookup(claims, path)
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case string:
		return x
	case float64, bool:
		return fmt.Sprint(x)
	}
	return ""
}

// Principal maps verified claims to a principal of kind user. The mapping
// must have its defaults (see DefaultClaimMapping).
func (m ClaimMapping) Principal(claims map[string]any) Principal {
	sub := m.str(claims, "sub")
	p := Principal{ID: "user:" + sub, Kind: KindUser}
	p.Name = m.str(claims, m.Username)
	if p.Name == "" {
		p.Name = m.str(claims, "email")
	}
	if p.Name == "" {
		p.Name = sub
	}
	for _, path := range m.Roles {
		v, ok := m.lookup(claims, path)
		if !ok {
			continue
		}
		for _, r := range strs(v) {
			if m.RolePrefix != "" {
				var ok bool
				if r, ok = strings.CutPrefix(r, m.RolePrefix); !ok || r == "" {
					continue
				}
			}
			if !slices.Contains(p.Roles, r) {
				p.Roles = append(p.Roles, r)
			}
		}
	}
	if v, ok := m.lookup(claims, m.Groups); ok {
		p.Groups = strs(v)
	}
	p.Tenant = m.str(claims, m.Tenant)
	if p.Tenant == "" && m.TenantGroupPrefix != "-" {
		for _, g := range p.Groups {
			if t, ok := strings.CutPrefix(strings.TrimPrefix(g, "/"), m.TenantGroupPrefix); ok && t != "" {
				p.Tenant = t
				break
			}
		}
	}
	if p.Tenant == "" && m.DefaultTenant != "-" {
		p.Tenant = m.DefaultTenant
	}
	return p
}
