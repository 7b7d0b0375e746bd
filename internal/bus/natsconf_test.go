package bus_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/pki"
)

// TestNodeConfigIsWhatNATSServerReads: the configuration `hodei nats-config`
// writes, read back by nats-server's own parser, gives each agent's
// certificate identity exactly bus.AgentPermissions, each Hodei server's
// every permission, all in the account HODEI with JetStream, with mutual
// TLS mapping certificates to users, and the cluster's routes over TLS.
// (The cluster of real nats-server processes that uses it is tested in
// internal/e2e, build tag natscluster.)
func TestNodeConfigIsWhatNATSServerReads(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Init(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(dir, "nats-1", pki.Request{Kind: pki.KindServer, Name: "nats-1", IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	n := bus.NodeConfig{
		Name: "nats-1", Listen: "127.0.0.1:4222", Monitor: "127.0.0.1:8222", StoreDir: filepath.Join(dir, "js"),
		Cluster: "ci", ClusterListen: "127.0.0.1:6222", Routes: []string{"127.0.0.1:6222", "127.0.0.1:6223", "127.0.0.1:6224"},
		Domain:  "hub",
		TLSCert: filepath.Join(dir, "nats-1.crt"), TLSKey: filepath.Join(dir, "nats-1.key"), CA: filepath.Join(dir, "ca.crt"),
		Servers: []string{"ci"}, Agents: []string{"builder-1", "builder_2"},
	}
	var b strings.Builder
	if err := bus.WriteNodeConfig(&b, n); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "nats-1.conf")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v\n%s", err, b.String())
	}
	if o.ServerName != "nats-1" || o.Port != 4222 || o.HTTPPort != 8222 || !o.JetStream || o.StoreDir != n.StoreDir || o.JetStreamDomain != "hub" {
		t.Errorf("node: name %q port %d http %d jetstream %v store %q domain %q", o.ServerName, o.Port, o.HTTPPort, o.JetStream, o.StoreDir, o.JetStreamDomain)
	}
	if o.TLSConfig == nil || o.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || !o.TLSMap {
		t.Fatalf("clients: tls %+v, map %v: want certificates required and mapped to users", o.TLSConfig, o.TLSMap)
	}
	if o.Cluster.Name != "ci" || o.Cluster.Port != 6222 || o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || len(o.Routes) != 3 {
		t.Fatalf("cluster: name %q port %d tls %+v routes %v; want routes with certificates both ways", o.Cluster.Name, o.Cluster.Port, o.Cluster.TLSConfig, o.Routes)
	}
	for _, r := range o.Routes {
		if r.Scheme != "tls" {
			t.Errorf("route %s: want tls://", r)
		}
	}
	users := map[string]*server.User{}
	for _, u := range o.Users {
		users[u.Username] = u
		if u.Account == nil || u.Account.Name != bus.Account {
			t.Errorf("user %s: not in the account %s", u.Username, bus.Account)
		}
	}
	if len(users) != 3 {
		t.Fatalf("users %v: want the server and two agents", users)
	}
	if u := users["spiffe://hodei/server/ci"]; u == nil || u.Permissions != nil {
		t.Errorf("server ci: %+v; want a user with every permission", u)
	}
	for _, id := range n.Agents {
		u := users["spiffe://hodei/agent/"+id]
		if u == nil || u.Permissions == nil {
			t.Fatalf("agent %s: no user or no permissions", id)
		}
		want := bus.AgentPermissions(bus.DefaultSubjects, id)
		if !reflect.DeepEqual(u.Permissions.Publish.Allow, want.Publish.Allow) || u.Permissions.Publish.Deny != nil {
			t.Errorf("agent %s may publish to %v, deny %v; want %v", id, u.Permissions.Publish.Allow, u.Permissions.Publish.Deny, want.Publish.Allow)
		}
		if !reflect.DeepEqual(u.Permissions.Subscribe.Allow, want.Subscribe.Allow) || u.Permissions.Subscribe.Deny != nil {
			t.Errorf("agent %s may subscribe to %v; want %v", id, u.Permissions.Subscribe.Allow, want.Subscribe.Allow)
		}
	}
}

// TestNodeConfigRefusesWhatCannotWork: a node without routes, store,
// certificates or a server to trust, or with an agent id that is not one
// subject token, is refused with the reason.
func TestNodeConfigRefusesWhatCannotWork(t *testing.T) {
	ok := bus.NodeConfig{Name: "n", Listen: "127.0.0.1:4222", StoreDir: "/s", ClusterListen: "127.0.0.1:6222",
		Routes: []string{"a:6222"}, TLSCert: "c", TLSKey: "k", CA: "ca", Servers: []string{"ci"}}
	if err := bus.WriteNodeConfig(new(strings.Builder), ok); err != nil {
		t.Fatalf("a complete node: %v", err)
	}
	for want, change := range map[string]func(*bus.NodeConfig){
		"no routes":              func(n *bus.NodeConfig) { n.Routes = nil },
		`route "a"`:              func(n *bus.NodeConfig) { n.Routes = []string{"a"} },
		"store directory":        func(n *bus.NodeConfig) { n.StoreDir = "" },
		"certificate":            func(n *bus.NodeConfig) { n.CA = "" },
		"no server":              func(n *bus.NodeConfig) { n.Servers = nil },
		`agent "a.b"`:            func(n *bus.NodeConfig) { n.Agents = []string{"a.b"} },
		`node name "a b"`:        func(n *bus.NodeConfig) { n.Name = "a b" },
		`listen address "4222"`:  func(n *bus.NodeConfig) { n.Listen = "4222" },
		`monitor address "8222"`: func(n *bus.NodeConfig) { n.Monitor = "8222" },
	} {
		n := ok
		change(&n)
		err := bus.WriteNodeConfig(new(strings.Builder), n)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}
