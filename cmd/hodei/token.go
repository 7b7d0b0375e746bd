package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/audit"
	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/server"
)

const tokenUsage = `Usage: hodei token create|list|revoke [ARGS] [flags]

Manage the API tokens of a server (for automation: CI jobs, bots). Only
administrators may. A token's secret is shown once, when it is made; the
server keeps only its SHA-256.

  hodei token create NAME --role ROLE [--tenant T] [--scope ACTION] [--ttl 90d]
  hodei token list
  hodei token revoke NAME

Run "hodei token create --help" (and so on) for the flags.
`

func tokenCmd(args []string) int {
	return runSubUsage("token", tokenUsage, args, []sub{{"create", tokenCreate}, {"list", tokenList}, {"revoke", tokenRevoke}})
}

func tokenCreate(args []string) int {
	fs := flags("token create", "NAME --role ROLE [flags]", `
Make an API token and print its secret (once: it cannot be shown again).
Roles say what it may do (admin, maintainer, developer, viewer, or a role of
your own policies), in its tenant; scopes narrow it to some actions
(submit, read, readLogs, cancel, ...).

Example:
  hodei token create ci-acme --role developer --tenant acme --scope submit,read --ttl 180d`)
	server := addServerFlag(fs)
	roles := fs.String("role", "", "roles of the token, comma-separated (required)")
	tenant := fs.String("tenant", "", "tenant the token acts in")
	scopes := fs.String("scope", "", "actions the token is limited to, comma-separated (default: all its roles allow)")
	ttl := fs.String("ttl", "90d", `how long the token is valid ("0": no expiry)`)
	asJSON := addJSONFlag(fs)
	pos, code, ok := parseArgs(fs, args, 1, "want one token NAME")
	if !ok {
		return code
	}
	if *roles == "" {
		return usageError(fs, "--role is required")
	}
	c, code, ok := newClient(fs, *server)
	if !ok {
		return code
	}
	req := auth.TokenRequest{Name: pos[0], Tenant: *tenant, Roles: splitList(*roles), Scopes: splitList(*scopes), TTL: *ttl}
	return callAPI("token create", *asJSON, apiJSON[auth.NewToken](c, "POST", "/api/v1/tokens", nil, req),
		func(nt auth.NewToken) int {
			fmt.Println(nt.Secret)
			exp := "never"
			if nt.Token.ExpiresAt != nil {
				exp = cli.FormatTime(*nt.Token.ExpiresAt)
			}
			fmt.Fprintf(os.Stderr, "token %s (%s) made: roles %s, tenant %q, expires %s. Keep the secret above: it is not shown again.\n",
				nt.Token.Name, nt.Token.ID, strings.Join(nt.Token.Roles, ","), nt.Token.Tenant, exp)
			return exitOK
		})
}

func tokenList(args []string) int {
	fs := flags("token list", "[flags]", `
List the API tokens of a server (never their secrets).`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	c, code, ok := clientNoArgs(fs, args, server)
	if !ok {
		return code
	}
	return callAPI("token list", *asJSON, apiJSON[auth.TokenList](c, "GET", "/api/v1/tokens", nil, nil),
		func(l auth.TokenList) int {
			rows := make([][]string, len(l.Tokens))
			for i, t := range l.Tokens {
				exp := "never"
				if t.ExpiresAt != nil {
					exp = cli.FormatTime(*t.ExpiresAt)
					if time.Now().After(*t.ExpiresAt) {
						exp += " (expired)"
					}
				}
				scopes := strings.Join(t.Scopes, ",")
				if scopes == "" {
					scopes = "-"
				}
				rows[i] = []string{t.Name, t.ID, t.Tenant, strings.Join(t.Roles, ","), scopes, cli.FormatTime(t.CreatedAt), exp}
			}
			return printTable("token list", "no tokens", []string{"NAME", "ID", "TENANT", "ROLES", "SCOPES", "CREATED", "EXPIRES"}, rows)
		})
}

func tokenRevoke(args []string) int {
	fs := flags("token revoke", "NAME [flags]", `
Revoke an API token (by name or id): it stops working at once.`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	pos, c, code, ok := clientArgs(fs, args, server, 1, "want one token NAME")
	if !ok {
		return code
	}
	return callAPI("token revoke", *asJSON, apiJSON[auth.Token](c, "DELETE", "/api/v1/tokens/"+url.PathEscape(pos[0]), nil, nil),
		func(t auth.Token) int {
			fmt.Printf("token %s (%s) revoked\n", t.Name, t.ID)
			return exitOK
		})
}

// securityFlags are the flags of "hodei server" that secure its API.
type securityFlags struct {
	auth, policies, authzBackend, avpStore, avpRegion, avpEndpoint, retention                                 *string
	issuer, audience, roles, rolePrefix, groups, username, tenant, tenantGroupPrefix, defaultTenant, clientID *string
	skew                                                                                                      *time.Duration
	auditSync, metricsAuth, localAdmin                                                                        *bool
	auditLevel                                                                                                *string
	auditQueue                                                                                                *int
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	return &securityFlags{
		auth:              fs.String("auth", "on", `"on": every API call needs credentials, checked by Cedar policies and audited; "off": an open API (trusted networks only)`),
		localAdmin:        fs.Bool("local-admin", true, "accept the local admin token (made and printed once at the first start)"),
		issuer:            fs.String("oidc-issuer", "", "accept bearer JWTs of this OpenID Connect issuer (URL)"),
		audience:          fs.String("oidc-audience", "", "audiences a JWT may be for, comma-separated (required with --oidc-issuer)"),
		clientID:          fs.String("oidc-client-id", "", `client id that "{client}" stands for in claim paths (default: the first audience)`),
		roles:             fs.String("oidc-roles-claim", "realm_access.roles,resource_access.{client}.roles", "claim paths holding roles, comma-separated"),
		rolePrefix:        fs.String("oidc-role-prefix", "", `keep only roles with this prefix, without it (e.g. "hodei-")`),
		groups:            fs.String("oidc-groups-claim", "groups", "claim path of the groups"),
		username:          fs.String("oidc-username-claim", "preferred_username", "claim path of the name shown"),
		tenant:            fs.String("oidc-tenant-claim", "tenant", "claim path of the tenant"),
		tenantGroupPrefix: fs.String("oidc-tenant-group-prefix", "tenant:", `a group "<prefix><tenant>" names the tenant when the tenant claim is absent ("-": none)`),
		defaultTenant:     fs.String("oidc-default-tenant", "default", `tenant of users whose token names none ("-": none)`),
		skew:              fs.Duration("oidc-clock-skew", auth.DefaultClockSkew, "how long after expiry a JWT is still accepted"),
		policies:          fs.String("policies", "", "directory of Cedar policies (*.cedar, and optionally a *.cedarschema) replacing the defaults"),
		authzBackend:      fs.String("authz", "cedar", `"cedar" (in-process) or "avp" (Amazon Verified Permissions; AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment)`),
		avpStore:          fs.String("avp-policy-store", "", "Verified Permissions policy store id"),
		avpRegion:         fs.String("avp-region", "", "Verified Permissions region (default $AWS_REGION)"),
		avpEndpoint:       fs.String("avp-endpoint", "", "Verified Permissions endpoint URL (default: the region's)"),
		retention:         fs.String("audit-retention", "0", `prune audit records older than this ("365d"; "0": keep all)`),
		auditSync:         fs.Bool("audit-sync", false, "fsync every audit record"),
		auditLevel:        fs.String("audit-level", "read=metadata,write=request", `what the audit trail keeps of a request: none, metadata or request, for all ("metadata") or per class and action ("read=metadata,write=request,readLogs=none"); denials are kept at metadata at least`),
		auditQueue:        fs.Int("audit-queue", audit.DefaultQueue, "audit records held for the writer; past it records are dropped (counted in hodei_audit_dropped_total), never waited for"),
		metricsAuth:       fs.Bool("metrics-auth", false, "/metrics needs credentials too (action readMetrics)"),
	}
}

// options turns the flags into server options; httpAddr is where the API
// listens, to save the local admin token for the local CLI.
func (f *securityFlags) options(httpAddr string) (server.SecurityOptions, error) {
	var o server.SecurityOptions
	switch *f.auth {
	case "off":
		return o, nil
	case "on":
	default:
		return o, fmt.Errorf("--auth %q: want on or off", *f.auth)
	}
	o.Enabled, o.NoLocalAdmin, o.ProtectMetrics, o.AuditSync = true, !*f.localAdmin, *f.metricsAuth, *f.auditSync
	o.PoliciesDir = *f.policies
	var err error
	if o.AuditRetention, err = auth.ParseTTL(*f.retention); err != nil {
		return o, fmt.Errorf("--audit-retention: %v", err)
	}
	pol, err := audit.ParsePolicy(*f.auditLevel)
	if err != nil {
		return o, fmt.Errorf("--audit-level: %v", err)
	}
	o.AuditPolicy = &pol
	if *f.auditQueue < 1 {
		return o, fmt.Errorf("--audit-queue must be at least 1")
	}
	o.AuditQueue = *f.auditQueue
	if *f.issuer != "" {
		aud := splitList(*f.audience)
		if len(aud) == 0 {
			return o, errors.New("--oidc-audience is required with --oidc-issuer")
		}
		o.OIDC = &auth.OIDCConfig{Issuer: *f.issuer, Audiences: aud, ClockSkew: *f.skew, Claims: auth.ClaimMapping{
			Roles: splitList(*f.roles), Client: *f.clientID, RolePrefix: *f.rolePrefix, Groups: *f.groups,
			Username: *f.username, Tenant: *f.tenant, TenantGroupPrefix: *f.tenantGroupPrefix, DefaultTenant: *f.defaultTenant,
		}}
		if *f.skew == 0 {
			o.OIDC.ClockSkew = -1 // none
		}
	}
	switch *f.authzBackend {
	case "cedar":
	case "avp":
		creds, err := authz.AWSCredentialsFromEnv()
		if err != nil {
			return o, err
		}
		region := *f.avpRegion
		if region == "" {
			region = os.Getenv("AWS_REGION")
		}
		if *f.avpStore == "" || region == "" {
			return o, errors.New("--authz avp needs --avp-policy-store and --avp-region (or $AWS_REGION)")
		}
		o.Authorizer = &authz.VerifiedPermissions{PolicyStoreID: *f.avpStore, Region: region, Endpoint: *f.avpEndpoint, Credentials: creds}
	default:
		return o, fmt.Errorf("--authz %q: want cedar or avp", *f.authzBackend)
	}
	o.OnAdminToken = func(tok string) { announceAdminToken(tok, httpAddr) }
	return o, nil
}

// announceAdminToken prints the new local admin token once and, when the
// API is reachable on loopback, saves it for the CLI of the user running
// the server.
func announceAdminToken(tok, httpAddr string) {
	fmt.Fprintf(os.Stderr, "\nhodei server: the local admin token (shown once; the server keeps only its hash):\n\n  %s\n\n", tok)
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return
	}
	ip := net.ParseIP(host)
	if port == "0" || host != "" && host != "localhost" && (ip == nil || !(ip.IsLoopback() || ip.IsUnspecified())) {
		fmt.Fprintln(os.Stderr, `Save it where you run the CLI: hodei login --save-token - --server URL`)
		return
	}
	srv := "http://127.0.0.1:" + port
	path, err := auth.CredentialsPath()
	if err == nil {
		err = auth.SaveCredential(path, srv, auth.Credential{Token: tok})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hodei server: could not save it for the CLI: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "Saved in %s for %s: the hodei CLI of this user sends it.\n\n", path, srv)
}
