package bus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hodei-ci/hodei/internal/pki"
)

// Account is the NATS account of Hodei's connections in a configuration
// written by WriteNodeConfig: Hodei's streams and subjects live there, apart
// from whatever else the cluster carries.
const Account = "HODEI"

// NodeConfig is one nats-server of an external cluster, as `hodei
// nats-config` writes it: the same permissions as the embedded server's
// (AgentPermissions), given to the identities of the certificates of the
// internal CA (pki) by nats-server's verify_and_map.
type NodeConfig struct {
	Name     string // server_name, unique in the cluster
	Listen   string // client address, host:port
	Monitor  string // monitoring address (/healthz), host:port; "" for none
	StoreDir string // JetStream's storage

	Cluster       string   // cluster name
	ClusterListen string   // route address, host:port
	Routes        []string // every node's route address, host:port (this one's may be among them)

	Domain string // JetStream domain; "" for none

	// TLSCert and TLSKey are the node's certificate ("hodei ca issue
	// server", naming the node's hosts and addresses), CA the internal
	// CA's certificate: clients and routes must present a certificate of
	// that CA.
	TLSCert, TLSKey, CA string

	Servers  []string // names of the Hodei servers' certificates: every permission
	Agents   []string // ids of the agents' certificates: AgentPermissions each
	Subjects Subjects // DefaultSubjects when empty
}

// check reports the first thing that keeps n from being a working node.
func (n NodeConfig) check() error {
	if n.Name == "" || strings.ContainsAny(n.Name, " \t\n\"") {
		return fmt.Errorf("node name %q: want a name without spaces or quotes", n.Name)
	}
	for what, addr := range map[string]string{"listen": n.Listen, "cluster listen": n.ClusterListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s address %q: want host:port", what, addr)
		}
	}
	if n.Monitor != "" {
		if _, _, err := net.SplitHostPort(n.Monitor); err != nil {
			return fmt.Errorf("monitor address %q: want host:port", n.Monitor)
		}
	}
	if len(n.Routes) == 0 {
		return errors.New("no routes: name every node's route address")
	}
	for _, r := range n.Routes {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("route %q: want host:port", r)
		}
	}
	if n.StoreDir == "" {
		return errors.New("no JetStream store directory")
	}
	if n.TLSCert == "" || n.TLSKey == "" || n.CA == "" {
		return errors.New("a certificate, its key and the CA are required: the agents' permissions hang on their certificates")
	}
	if len(n.Servers) == 0 {
		return errors.New("no server: name the certificate of at least one Hodei server")
	}
	for _, s := range n.Servers {
		if !pki.ValidName(s) {
			return fmt.Errorf("server %q: not a certificate name", s)
		}
	}
	for _, a := range n.Agents {
		if !ValidToken(a) || !pki.ValidName(a) {
			return fmt.Errorf("agent %q: use letters, digits, - and _ only", a)
		}
	}
	if slices.ContainsFunc([]string{n.Cluster, n.Domain}, func(s string) bool { return strings.ContainsAny(s, " \t\n\".") }) {
		return fmt.Errorf("cluster %q or domain %q: want names without spaces, dots or quotes", n.Cluster, n.Domain)
	}
	return nil
}

// WriteNodeConfig writes the nats-server configuration of node n: its
// listeners, JetStream, the cluster's routes (TLS both ways), and the
// account Account whose users are the certificates' identities
// (verify_and_map on their spiffe://hodei/... URI): a server has every
// permission, agent X those of AgentPermissions(X) and nothing else.
func WriteNodeConfig(w io.Writer, n NodeConfig) error {
	if err := n.check(); err != nil {
		return fmt.Errorf("nats config: %w", err)
	}
	if n.Subjects.Prefix == "" {
		n.Subjects = DefaultSubjects
	}
	if n.Cluster == "" {
		n.Cluster = "hodei"
	}
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "# nats-server configuration of node %s, written by `hodei nats-config`.\n", n.Name)
	fmt.Fprintf(&b, "server_name: %s\nlisten: %s\n", q(n.Name), q(n.Listen))
	if n.Monitor != "" {
		fmt.Fprintf(&b, "http: %s\n", q(n.Monitor))
	}
	b.WriteString("# Hodei's largest message: a log chunk or status (bus.MaxReportSize), an artifact's chunk.\n")
	fmt.Fprintf(&b, "max_payload: %d\n", 8<<20)
	fmt.Fprintf(&b, "\njetstream {\n  store_dir: %s\n", q(n.StoreDir))
	if n.Domain != "" {
		fmt.Fprintf(&b, "  domain: %s\n", q(n.Domain))
	}
	b.WriteString("}\n")
	tlsBlock := func(indent string, verify string) {
		fmt.Fprintf(&b, "%stls {\n%s  cert_file: %s\n%s  key_file: %s\n%s  ca_file: %s\n%s  %s: true\n%s  timeout: 5\n%s}\n",
			indent, indent, q(n.TLSCert), indent, q(n.TLSKey), indent, q(n.CA), indent, verify, indent, indent)
	}
	b.WriteString("\n# Clients present a certificate of the internal CA; its spiffe://hodei/ URI is the user.\n")
	tlsBlock("", "verify_and_map")
	fmt.Fprintf(&b, "\ncluster {\n  name: %s\n  listen: %s\n", q(n.Cluster), q(n.ClusterListen))
	tlsBlock("  ", "verify")
	b.WriteString("  routes: [\n")
	for _, r := range n.Routes {
		fmt.Fprintf(&b, "    %s\n", q("tls://"+r))
	}
	b.WriteString("  ]\n}\n")
	fmt.Fprintf(&b, "\naccounts {\n  %s {\n    jetstream: enabled\n    users: [\n", Account)
	for _, s := range n.Servers {
		fmt.Fprintf(&b, "      # Hodei server %s: every permission.\n      {user: %s}\n", s, q(pki.IdentityURI(pki.KindServer, s).String()))
	}
	for _, a := range n.Agents {
		p := AgentPermissions(n.Subjects, a)
		fmt.Fprintf(&b, "      # Agent %s: its own subjects only.\n      {user: %s, permissions: {\n", a, q(pki.IdentityURI(pki.KindAgent, a).String()))
		writeSubjects(&b, "publish", p.Publish)
		writeSubjects(&b, "subscribe", p.Subscribe)
		b.WriteString("      }}\n")
	}
	b.WriteString("    ]\n  }\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSubjects(b *strings.Builder, what string, p *server.SubjectPermission) {
	if p == nil {
		return
	}
	fmt.Fprintf(b, "        %s: {allow: [", what)
	for i, s := range p.Allow {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(s))
	}
	b.WriteString("]}\n")
}
