package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/secrets"
	"github.com/hodei-ci/hodei/internal/server"
)

func secretCmd(args []string) int {
	fs := flags("secret", "set|get|list|rotate|delete [NAME] [flags]", `
Manage the secrets of a server. Jobs name the secrets they need
("secrets: [NAME]"); each one becomes an environment variable of the job,
and its value is masked in the job's output.

  hodei secret set NAME              store a new version; the value is read from stdin (or --from-file)
  hodei secret get NAME [--reveal]   show a secret's version and rotation; --reveal prints its value
  hodei secret list                  list the secrets (never their values)
  hodei secret rotate NAME           give it a new generated value now (rolled back if its hook fails)
  hodei secret delete NAME           delete it and all its versions

Values are never passed on the command line (shell history, ps). --reveal
works only on a server started with --secrets-allow-reveal, and needs the
permission to manage secrets.

Examples:
  printf %s "$TOKEN" | hodei secret set DEPLOY_TOKEN
  hodei secret set DB_PASSWORD --from-file ./pw.txt --rotate-every 720h --window 1h
  hodei secret get DB_PASSWORD --reveal`)
	return runSubFlags(fs, args, []sub{
		{"set", secretSet}, {"get", secretGet}, {"list", secretList},
		{"rotate", func(args []string) int { return secretOne("rotate", "POST", "/rotate", args) }},
		{"delete", func(args []string) int { return secretOne("delete", "DELETE", "", args) }},
	}, "set, get, list, rotate or delete")
}

// tenantFlags are the flags every subcommand of hodei secret and hodei
// repo has: the server, the tenant whose secrets or repositories it names,
// and --json.
type tenantFlags struct {
	server, tenant *string
	json           *bool
}

// newTenantFlags makes the flags of the subcommand name of cmd, whose
// things are of kind (in the help of --tenant).
func newTenantFlags(cmd, kind, name, synopsis, help string) (*flag.FlagSet, tenantFlags) {
	fs := flags(cmd+" "+name, synopsis, help)
	return fs, tenantFlags{
		server: addServerFlag(fs),
		tenant: fs.String("tenant", "", "tenant of the "+kind+" (default: yours)"),
		json:   addJSONFlag(fs),
	}
}

func newSecretFlags(name, synopsis, help string) (*flag.FlagSet, tenantFlags) {
	return newTenantFlags("secret", "secret", name, synopsis, help)
}

func (f tenantFlags) query() url.Values {
	if *f.tenant == "" {
		return nil
	}
	return url.Values{"tenant": {*f.tenant}}
}

func secretPath(name string, rest string) string {
	return "/api/v1/secrets/" + url.PathEscape(name) + rest
}

// secretClient parses the arguments of a subcommand that names one secret
// (or none, with want 0).
func secretClient(fs *flag.FlagSet, f tenantFlags, args []string, want int) (*client.Client, []string, int, bool) {
	return namedClient(fs, f.server, args, want, "secret", secrets.ValidName, "letters, digits and _, not starting with a digit")
}

// namedClient parses the arguments of a subcommand that names want things
// of a kind (0 or 1), each valid by valid (rule says what that is), and
// makes the client of the --server flag (server, read once parsed).
func namedClient(fs *flag.FlagSet, server *string, args []string, want int, kind string, valid func(string) bool, rule string) (*client.Client, []string, int, bool) {
	pos, code, ok := parseArgs(fs, args, want, "want one "+kind+" NAME")
	if !ok {
		return nil, nil, code, false
	}
	for _, n := range pos {
		if !valid(n) {
			return nil, nil, usageError(fs, "invalid %s name %q: use %s", kind, n, rule), false
		}
	}
	c, code, ok := newClient(fs, *server)
	return c, pos, code, ok
}

func secretSet(args []string) int {
	fs, f := newSecretFlags("set", "NAME [flags]", `
Store a new version of secret NAME. The value is read from --from-file, or
else from the standard input (one trailing newline is dropped). A rotation
period makes the server rotate it with generated values.`)
	from := fs.String("from-file", "", "read the value from this file")
	every := fs.Duration("rotate-every", 0, "rotate every period, like 720h (0: only with \"hodei secret rotate\")")
	window := fs.Duration("window", 0, "how long the previous version stays valid after a rotation (default 1h)")
	c, pos, code, ok := secretClient(fs, f, args, 1)
	if !ok {
		return code
	}
	var data []byte
	var err error
	if *from != "" {
		data, err = os.ReadFile(*from)
	} else {
		if fi, serr := os.Stdin.Stat(); serr == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(os.Stderr, "value of %s (it shows as you type; end with Enter): ", pos[0])
			line, rerr := bufio.NewReader(os.Stdin).ReadString('\n')
			data, err = []byte(line), rerr
			if errors.Is(err, io.EOF) {
				err = nil
			}
		} else {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, secrets.MaxValueLen+2))
		}
	}
	if err != nil {
		return fail("secret set", err)
	}
	value := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	clear(data)
	if value == "" {
		return usageError(fs, "the value is empty")
	}
	req := secrets.PutRequest{Value: value}
	if *every != 0 || *window != 0 {
		req.Rotation = &secrets.PolicyRequest{}
		if *every != 0 {
			req.Rotation.Period = every.String()
		}
		if *window != 0 {
			req.Rotation.Window = window.String()
		}
	}
	return callAPI("secret set", *f.json, apiJSON[secrets.Info](c, "PUT", secretPath(pos[0], ""), f.query(), req),
		func(info secrets.Info) int {
			fmt.Printf("secret %s: version %s\n", info.Name, info.Version)
			return exitOK
		})
}

func secretGet(args []string) int {
	fs, f := newSecretFlags("get", "NAME [flags]", `
Show a secret's current version and rotation state. With --reveal, print its
value (and nothing else) on the standard output: the server must allow it
(--secrets-allow-reveal) and you need the permission to manage secrets.`)
	reveal := fs.Bool("reveal", false, "print the value")
	c, pos, code, ok := secretClient(fs, f, args, 1)
	if !ok {
		return code
	}
	if *reveal {
		return callAPI("secret get", *f.json, apiJSON[secrets.Value](c, "POST", secretPath(pos[0], "/reveal"), f.query(), nil),
			func(v secrets.Value) int {
				fmt.Println(v.Value)
				return exitOK
			})
	}
	return callAPI("secret get", *f.json, apiJSON[secrets.Info](c, "GET", secretPath(pos[0], ""), f.query(), nil), printSecret)
}

func printSecret(in secrets.Info) int {
	fmt.Printf("name:     %s\ntenant:   %s\nversion:  %s\n", in.Name, in.Tenant, in.Version)
	if !in.UpdatedAt.IsZero() {
		fmt.Printf("updated:  %s\n", in.UpdatedAt.Local().Format(time.RFC3339))
	}
	if r := in.Rotation; r != nil {
		period := r.Period
		if period == "" {
			period = "on demand"
		}
		fmt.Printf("rotation: %s, previous version valid for %s\n", period, r.Window)
		if r.NextRotation != nil {
			fmt.Printf("next:     %s\n", r.NextRotation.Local().Format(time.RFC3339))
		}
		if r.Previous != "" && r.PreviousValidUntil != nil {
			fmt.Printf("previous: version %s, valid until %s\n", r.Previous, r.PreviousValidUntil.Local().Format(time.RFC3339))
		}
		if r.LastError != "" {
			fmt.Printf("last rotation failed (rolled back): %s\n", r.LastError)
		}
	}
	return exitOK
}

func secretList(args []string) int {
	fs, f := newSecretFlags("list", "[flags]", `
List the secrets of a tenant: names, versions and rotation periods, never
values.`)
	c, _, code, ok := secretClient(fs, f, args, 0)
	if !ok {
		return code
	}
	return callAPI("secret list", *f.json, apiJSON[secrets.List](c, "GET", "/api/v1/secrets", f.query(), nil),
		func(l secrets.List) int {
			if len(l.Secrets) == 0 {
				fmt.Println("no secrets")
				return exitOK
			}
			rows := [][]string{{"NAME", "VERSION", "UPDATED", "ROTATION"}}
			for _, s := range l.Secrets {
				rot := "-"
				if s.Rotation != nil && s.Rotation.Period != "" {
					rot = "every " + s.Rotation.Period
				}
				updated := "-"
				if !s.UpdatedAt.IsZero() {
					updated = s.UpdatedAt.Local().Format(time.DateTime)
				}
				rows = append(rows, []string{s.Name, s.Version, updated, rot})
			}
			printRows(os.Stdout, rows)
			return exitOK
		})
}

func printRows(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				fmt.Fprintln(w, c)
			} else {
				fmt.Fprintf(w, "%-*s  ", widths[i], c)
			}
		}
	}
}

func secretOne(sub, method, rest string, args []string) int {
	help := map[string]string{
		"rotate": `
Rotate secret NAME now: the server stores a generated value as a new
version, has the rotation hook apply it, and rolls back to the previous
version if the hook fails. The previous version stays valid for the
secret's window.`,
		"delete": `
Delete secret NAME and all its versions. Jobs that name it fail from then
on.`,
	}[sub]
	fs, f := newSecretFlags(sub, "NAME [flags]", help)
	c, pos, code, ok := secretClient(fs, f, args, 1)
	if !ok {
		return code
	}
	if method == "DELETE" {
		ctx, stop := signalContext()
		defer stop()
		if err := c.JSON(ctx, method, secretPath(pos[0], rest), f.query(), nil, nil); err != nil {
			return apiFail("secret "+sub, err)
		}
		fmt.Printf("secret %s deleted\n", pos[0])
		return exitOK
	}
	return callAPI("secret "+sub, *f.json, apiJSON[secrets.Info](c, method, secretPath(pos[0], rest), f.query(), nil),
		func(info secrets.Info) int {
			fmt.Printf("secret %s: rotated to version %s\n", info.Name, info.Version)
			return exitOK
		})
}

// secretsBackendFlags are the server's flags that choose the secrets
// backend.
type secretsBackendFlags struct {
	backend, keyFile, hook                     *string
	allowReveal                                *bool
	vaultAddr, vaultTokenFile, vaultRoleID     *string
	vaultSecretIDFile, vaultMount, vaultPrefix *string
	vaultCA, vaultNamespace                    *string
	awsRegion, awsEndpoint, awsPrefix          *string
}

func addSecretsBackendFlags(fs *flag.FlagSet) secretsBackendFlags {
	return secretsBackendFlags{
		backend:           fs.String("secrets-backend", "builtin", "where secrets are kept: builtin (encrypted in the data dir), vault or aws"),
		keyFile:           fs.String("secrets-key-file", "", "key file of the builtin store (default DATA-DIR/secrets/kek.json; $HODEI_SECRETS_KEY wins)"),
		hook:              fs.String("secrets-rotation-hook", "", "program that applies rotated secrets: PROGRAM apply|retire NAME, values on stdin"),
		allowReveal:       fs.Bool("secrets-allow-reveal", false, "let \"hodei secret get --reveal\" read values"),
		vaultAddr:         fs.String("vault-addr", os.Getenv("VAULT_ADDR"), "Vault address (backend vault)"),
		vaultTokenFile:    fs.String("vault-token-file", "", "file holding a Vault token (else $VAULT_TOKEN, or AppRole)"),
		vaultRoleID:       fs.String("vault-role-id", "", "AppRole role id"),
		vaultSecretIDFile: fs.String("vault-secret-id-file", "", "file holding the AppRole secret id"),
		vaultMount:        fs.String("vault-mount", "secret", "path of the KV version 2 engine"),
		vaultPrefix:       fs.String("vault-prefix", "hodei/", "prefix of Hodei's entries in the engine"),
		vaultCA:           fs.String("vault-ca", "", "CA certificate of Vault's TLS"),
		vaultNamespace:    fs.String("vault-namespace", "", "Vault Enterprise namespace"),
		awsRegion:         fs.String("aws-region", "", "AWS region (backend aws; default: the SDK's configuration)"),
		awsEndpoint:       fs.String("aws-endpoint", "", "Secrets Manager endpoint (a VPC endpoint)"),
		awsPrefix:         fs.String("aws-prefix", "hodei/", "prefix of Hodei's secrets in Secrets Manager"),
	}
}

func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// provider opens the chosen backend; nil for the builtin store (the server
// opens it in its data dir).
func (f secretsBackendFlags) provider(ctx context.Context) (secrets.Provider, error) {
	switch *f.backend {
	case "builtin", "":
		return nil, nil
	case "vault":
		o := secrets.VaultOptions{Address: *f.vaultAddr, RoleID: *f.vaultRoleID, Mount: *f.vaultMount, Prefix: *f.vaultPrefix, CACert: *f.vaultCA, Namespace: *f.vaultNamespace}
		var err error
		switch {
		case *f.vaultRoleID != "":
			if *f.vaultSecretIDFile == "" {
				return nil, errors.New("--vault-role-id needs --vault-secret-id-file")
			}
			if o.SecretID, err = readSecretFile(*f.vaultSecretIDFile); err != nil {
				return nil, err
			}
		case *f.vaultTokenFile != "":
			if o.Token, err = readSecretFile(*f.vaultTokenFile); err != nil {
				return nil, err
			}
		default:
			o.Token = os.Getenv("VAULT_TOKEN")
		}
		return secrets.NewVault(ctx, o)
	case "aws":
		return secrets.NewAWS(ctx, secrets.AWSOptions{Region: *f.awsRegion, Endpoint: *f.awsEndpoint, Prefix: *f.awsPrefix})
	}
	return nil, fmt.Errorf("--secrets-backend %q: want builtin, vault or aws", *f.backend)
}

// options are the server's secrets options from the flags.
func (f secretsBackendFlags) options(ctx context.Context) (server.SecretsOptions, error) {
	p, err := f.provider(ctx)
	if err != nil {
		return server.SecretsOptions{}, err
	}
	o := server.SecretsOptions{Provider: p, KeyFile: *f.keyFile, AllowReveal: *f.allowReveal}
	if *f.hook != "" {
		o.RotationHook = secrets.ExecHook{Path: *f.hook}
	}
	return o, nil
}
