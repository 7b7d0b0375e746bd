package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/hodei-ci/hodei/internal/auth"
	"github.com/hodei-ci/hodei/internal/client"
)

func loginCmd(args []string) int {
	fs := flags("login", "[flags]", `
Sign in for the commands that talk to a server (submit, runs, logs, cancel,
workers, token, audit). They then send the saved token as "Authorization:
Bearer".

With --issuer and --client-id, sign in at an OpenID Connect provider
(Keycloak, ...): by the device flow if the provider offers it (open the URL
shown, anywhere, and enter the code), else in a browser on this machine (the
authorization code flow with PKCE; the provider must accept the redirect
http://127.0.0.1/callback on any port). With --save-token, save a Hodei
API token instead ("-" reads it from the standard input).

Credentials are kept per server in ~/.config/hodei/credentials.json (mode
0600; $HODEI_CREDENTIALS names another file). $HODEI_TOKEN, when set, is
sent instead of any saved credential.

Examples:
  hodei login --issuer https://sso.example.com/realms/ci --client-id hodei-cli
  hodei login --save-token - --server https://ci.example.com < token.txt`)
	server := addServerFlag(fs)
	issuer := fs.String("issuer", "", "URL of the OpenID Connect provider")
	clientID := fs.String("client-id", "", "client id of the Hodei CLI at the provider")
	clientSecret := fs.String("client-secret", "", "client secret, for a provider that gives the CLI one (normally none)")
	flow := fs.String("flow", auth.FlowAuto, "auto, device or pkce")
	scopes := fs.String("scopes", "openid,profile,email,offline_access", "scopes to ask for, comma-separated")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address of the PKCE redirect")
	token := fs.String("save-token", "", `save this Hodei token ("-": read it from the standard input)`)
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for the sign-in")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	path, err := auth.CredentialsPath()
	if err != nil {
		return fail("login", err)
	}
	if *token != "" {
		tok := *token
		if tok == "-" {
			b, err := io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
			if err != nil {
				return fail("login", err)
			}
			tok = strings.TrimSpace(string(b))
		}
		if tok == "" {
			return usageError(fs, "--save-token: empty token")
		}
		if err := auth.SaveCredential(path, *server, auth.Credential{Token: tok}); err != nil {
			return fail("login", err)
		}
		fmt.Fprintf(os.Stderr, "token saved for %s in %s\n", *server, path)
		return whoamiAfterLogin(*server, tok)
	}
	if *issuer == "" || *clientID == "" {
		return usageError(fs, "give --issuer and --client-id (or --save-token)")
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cred, err := auth.Login(ctx, auth.LoginOptions{
		Issuer: *issuer, ClientID: *clientID, ClientSecret: *clientSecret, Flow: *flow,
		Scopes: splitList(*scopes), ListenAddr: *listen,
		OpenURL: func(u string) error {
			fmt.Fprintf(os.Stderr, "Opening your browser to sign in. If it does not open, visit:\n\n  %s\n\n", u)
			openBrowser(u)
			return nil
		},
		ShowCode: func(da *oauth2.DeviceAuthResponse) error {
			fmt.Fprintf(os.Stderr, "To sign in, open %s and enter the code\n\n  %s\n\n", da.VerificationURI, da.UserCode)
			if da.VerificationURIComplete != "" {
				fmt.Fprintf(os.Stderr, "(or open %s)\n", da.VerificationURIComplete)
			}
			fmt.Fprintln(os.Stderr, "Waiting...")
			return nil
		},
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no sign-in within %s", *timeout)
		}
		return fail("login", err)
	}
	if err := auth.SaveCredential(path, *server, cred); err != nil {
		return fail("login", err)
	}
	fmt.Fprintf(os.Stderr, "signed in at %s; credentials for %s saved in %s\n", *issuer, *server, path)
	return whoamiAfterLogin(*server, cred.Bearer())
}

// whoamiAfterLogin shows who the server sees, if it answers; a server that
// cannot be reached is not a failed login.
func whoamiAfterLogin(server, tok string) int {
	c, err := client.New(server, nil)
	if err != nil {
		return exitOK
	}
	c.SetToken(tok)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p auth.Principal
	if err := c.JSON(ctx, "GET", "/api/v1/whoami", nil, nil, &p); err != nil {
		var ae *client.Error
		if errors.As(err, &ae) && ae.Status == 401 {
			fmt.Fprintf(os.Stderr, "hodei login: %s refuses these credentials: %s\n", server, ae.Message)
			return exitFailed
		}
		return exitOK
	}
	fmt.Printf("%s sees you as %s (%s), tenant %q, roles %s\n", server, p.Name, p.ID, p.Tenant, strings.Join(p.Roles, ","))
	return exitOK
}

func openBrowser(u string) {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		cmd = exec.Command("xdg-open", u)
	}
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// clientToken is the token the CLI sends to server: $HODEI_TOKEN, else the
// saved credential of that server (renewed first if it has expired and can
// be). "" sends none.
func clientToken(server string) string {
	if t := os.Getenv("HODEI_TOKEN"); t != "" {
		return t
	}
	path, err := auth.CredentialsPath()
	if err != nil {
		return ""
	}
	creds, err := auth.LoadCredentials(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hodei: %v\n", err)
		return ""
	}
	key := auth.ServerKey(server)
	cred, ok := creds.Servers[key]
	if !ok {
		return ""
	}
	if cred.Expired(time.Now()) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		renewed, err := cred.Refresh(ctx, nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hodei: your login has expired: %v\n", err)
		}
		if renewed {
			creds.Servers[key] = cred
			if err := creds.Save(path); err != nil {
				fmt.Fprintf(os.Stderr, "hodei: %v\n", err)
			}
		}
	}
	return cred.Bearer()
}
