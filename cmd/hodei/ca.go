package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pki"
)

func caCmd(args []string) int {
	fs := flags("ca", "init|issue [ARGS] [flags]", `
Manage Hodei's internal certificate authority (ECDSA P-256), which secures
the API (TLS), and the NATS bus between the server and its agents (mutual
TLS, with each agent confined to its own subjects).

  hodei ca init                            create the CA: ca.crt, ca.key (0600)
  hodei ca issue server NAME --dns HOST... a server certificate (API and NATS)
  hodei ca issue agent ID                  an agent's certificate: it may use only its own subjects
  hodei ca issue client NAME               a client certificate (for tools)

Each certificate goes to NAME.crt (with the CA's certificate after it) and
NAME.key (0600) in --pki-dir. Nothing is ever overwritten.

Example:
  hodei ca init --pki-dir /etc/hodei/pki
  hodei ca issue server ci --dns ci.example.com --ip 10.0.0.5 --pki-dir /etc/hodei/pki
  hodei ca issue agent builder-1 --pki-dir /etc/hodei/pki`)
	return runSubFlags(fs, args, []sub{{"init", caInit}, {"issue", caIssue}}, "init or issue")
}

func addPKIDir(fs *flag.FlagSet) *string {
	return fs.String("pki-dir", "./hodei-pki", "directory of the CA and of the certificates it issues")
}

func caInit(args []string) int {
	fs := flags("ca init", "[flags]", `
Create a new certificate authority in --pki-dir: ca.crt (to give to every
client, agent and server) and ca.key (0600; keep it offline if you can).`)
	dir := addPKIDir(fs)
	name := fs.String("name", "Hodei internal CA", "common name of the CA")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	ca, err := pki.Init(*dir, *name)
	if err != nil {
		return fail("ca init", err)
	}
	fmt.Printf("CA %q created in %s (valid until %s)\n", ca.Cert.Subject.CommonName, *dir, ca.Cert.NotAfter.Format(time.DateOnly))
	return exitOK
}

func caIssue(args []string) int {
	fs := flags("ca issue", "server|agent|client NAME [flags]", `
Issue a certificate signed by the CA of --pki-dir, into NAME.crt and
NAME.key (0600) there. A server certificate serves the API and the NATS bus
(name its hosts with --dns and --ip); an agent certificate is the identity
of the agent NAME on the bus (it may use only its own subjects); a client
certificate identifies a tool.`)
	dir := addPKIDir(fs)
	dns := fs.String("dns", "", "comma-separated DNS names of a server (default: localhost and this host's name)")
	ips := fs.String("ip", "", "comma-separated IP addresses of a server (default: 127.0.0.1 and ::1)")
	days := fs.Int("days", 365, "validity in days")
	pos, code, ok := parseArgs(fs, args, 2, "want KIND (server, agent or client) and NAME")
	if !ok {
		return code
	}
	if *days <= 0 {
		return usageError(fs, "--days must be positive")
	}
	kind, name := pos[0], pos[1]
	req := pki.Request{Kind: kind, Name: name, Validity: time.Duration(*days) * 24 * time.Hour}
	switch kind {
	case pki.KindServer:
		req.DNS = commaList(*dns)
		for _, s := range commaList(*ips) {
			ip := net.ParseIP(s)
			if ip == nil {
				return usageError(fs, "--ip %q is not an IP address", s)
			}
			req.IPs = append(req.IPs, ip)
		}
		if len(req.DNS) == 0 && len(req.IPs) == 0 {
			req.DNS = []string{"localhost"}
			if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
				req.DNS = append(req.DNS, h)
			}
			req.IPs = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
		}
	case pki.KindAgent:
		if !bus.ValidToken(name) {
			return usageError(fs, "agent id %q: use letters, digits, - and _ only", name)
		}
		if *dns != "" || *ips != "" {
			return usageError(fs, "--dns and --ip are for server certificates")
		}
	case pki.KindClient:
		if *dns != "" || *ips != "" {
			return usageError(fs, "--dns and --ip are for server certificates")
		}
	default:
		return usageError(fs, "unknown kind %q: want server, agent or client", kind)
	}
	ca, err := pki.Load(*dir)
	if err != nil {
		if errors.Is(err, pki.ErrNotFound) {
			return fail("ca issue", fmt.Errorf("%v (run \"hodei ca init --pki-dir %s\" first)", err, *dir))
		}
		return fail("ca issue", err)
	}
	is, err := ca.IssueFiles(*dir, name, req)
	if err != nil {
		return fail("ca issue", err)
	}
	crt, key := pki.CertPaths(*dir, name)
	fmt.Printf("%s certificate for %s: %s, key %s (valid until %s)\n", kind, name, crt, key, is.Cert.NotAfter.Format(time.DateOnly))
	return exitOK
}

func commaList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// tlsFlags are --tls-cert, --tls-key and --ca of the server and the agent.
type tlsFlags struct{ cert, key, ca *string }

func addTLSFlags(fs *flag.FlagSet, certHelp, caHelp string) tlsFlags {
	return tlsFlags{
		cert: fs.String("tls-cert", "", certHelp),
		key:  fs.String("tls-key", "", "private key of --tls-cert"),
		ca:   fs.String("ca", "", caHelp),
	}
}

func (f tlsFlags) set() bool { return *f.cert != "" || *f.key != "" || *f.ca != "" }

// caFlags remembers the --ca flag of the commands that call the API.
var caFlags = map[*flag.FlagSet]*string{}

// addCAFlag adds --ca to a command that calls the API.
func addCAFlag(fs *flag.FlagSet) {
	caFlags[fs] = fs.String("ca", "", "CA certificate that signed the server's (for an https:// --server; default: the system's CAs)")
}

// apiHTTPClient is the HTTP client of a command that calls the API: it
// trusts the --ca of fs, if given.
func apiHTTPClient(fs *flag.FlagSet) (*http.Client, error) {
	p := caFlags[fs]
	if p == nil || *p == "" {
		return nil, nil
	}
	cfg, err := pki.ClientTLS(*p, "", "")
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}, nil
}

// certIdentity reads the agent id of an agent certificate file.
func certIdentity(file string) (kind, name string, err error) {
	cert, err := pki.ReadCert(file)
	if err != nil {
		return "", "", err
	}
	kind, name, ok := pki.Identity(cert)
	if !ok {
		return "", "", fmt.Errorf("%s was not issued by \"hodei ca issue\" (no spiffe://hodei/ URI)", filepath.Base(file))
	}
	return kind, name, nil
}

// serverTLS are the TLS configurations of a server.
type serverTLS struct{ http, nats, natsClient *tls.Config }

// serverOptions builds the server's TLS: the API over TLS with --tls-cert
// and --tls-key; with --ca too, mutual TLS on the embedded NATS (agents
// need a certificate of that CA, and get only their own subjects), or,
// with an external NATS, the server's client certificate.
func (f tlsFlags) serverOptions(externalNATS bool) (serverTLS, error) {
	var out serverTLS
	if !f.set() {
		return out, nil
	}
	if *f.cert == "" || *f.key == "" {
		return out, errors.New("--tls-cert and --tls-key go together (and --ca needs them)")
	}
	var err error
	if out.http, err = pki.ServerTLS(*f.cert, *f.key, ""); err != nil {
		return out, err
	}
	if *f.ca == "" {
		return out, nil
	}
	if externalNATS {
		out.natsClient, err = pki.ClientTLS(*f.ca, *f.cert, *f.key)
	} else {
		out.nats, err = pki.ServerTLS(*f.cert, *f.key, *f.ca)
	}
	return out, err
}

// agentTLS is the agent's connection TLS: its certificate, and the CA of
// the server's.
func (f tlsFlags) agentTLS() (*tls.Config, error) {
	if !f.set() {
		return nil, nil
	}
	if *f.cert == "" || *f.key == "" || *f.ca == "" {
		return nil, errors.New("--tls-cert, --tls-key and --ca go together")
	}
	return pki.ClientTLS(*f.ca, *f.cert, *f.key)
}
