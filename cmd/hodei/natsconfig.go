package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/hodei-ci/hodei/internal/bus"
)

func natsConfigCmd(args []string) int {
	fs := flags("nats-config", "[flags]", `
Write the configuration of one nats-server of an external NATS cluster for
Hodei: JetStream, the routes to the other nodes, mutual TLS with the
certificates of "hodei ca", and the account HODEI where each Hodei server's
certificate has every permission and each agent's certificate only its own
subjects (the permissions of the embedded NATS). Run it once per node, then
start the nodes with "nats-server -c FILE" and the servers with
"hodei server --nats nats://a:4222,nats://b:4222,nats://c:4222 --nats-replicas 3"
(see docs/deploy.md#nats-cluster).

Example:
  hodei nats-config --name nats-1 --store-dir /var/lib/nats \
    --routes nats-1:6222,nats-2:6222,nats-3:6222 \
    --tls-cert nats-1.crt --tls-key nats-1.key --ca ca.crt \
    --server ci --agent builder-1 --agent builder-2 --out nats-1.conf`)
	name := fs.String("name", "", "this node's name, unique in the cluster (required)")
	listen := fs.String("listen", "0.0.0.0:4222", "address of the node's clients (Hodei servers and agents)")
	clusterListen := fs.String("cluster-listen", "0.0.0.0:6222", "address of the routes from the other nodes")
	routes := fs.String("routes", "", "comma-separated route addresses (host:port) of every node of the cluster (required)")
	monitor := fs.String("monitor", "", `monitoring address of the node (its /healthz), host:port ("" for none)`)
	storeDir := fs.String("store-dir", "", "directory of the node's JetStream storage (required)")
	clusterName := fs.String("cluster-name", "hodei", "name of the cluster")
	domain := fs.String("domain", "", "JetStream domain of the cluster (none by default)")
	var servers, agents listFlag
	fs.Var(&servers, "server", "name of a Hodei server's certificate (\"hodei ca issue server NAME\"), allowed everything (repeatable; at least one)")
	fs.Var(&agents, "agent", "id of an agent's certificate (\"hodei ca issue agent ID\"), confined to its own subjects (repeatable)")
	out := fs.String("out", "", "file to write (default: standard output)")
	tf := addTLSFlags(fs, "the node's certificate (\"hodei ca issue server NAME --dns HOST --ip ADDR\"): to clients and to the other nodes (required)",
		"the internal CA's certificate: clients and other nodes must present a certificate it signed (required)")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	var rs []string
	for _, r := range strings.Split(*routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rs = append(rs, r)
		}
	}
	var buf bytes.Buffer
	err := bus.WriteNodeConfig(&buf, bus.NodeConfig{
		Name: *name, Listen: *listen, Monitor: *monitor, StoreDir: *storeDir,
		Cluster: *clusterName, ClusterListen: *clusterListen, Routes: rs, Domain: *domain,
		TLSCert: *tf.cert, TLSKey: *tf.key, CA: *tf.ca,
		Servers: servers, Agents: agents,
	})
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if *out == "" {
		if _, err := os.Stdout.Write(buf.Bytes()); err != nil {
			return fail("nats-config", err)
		}
		return exitOK
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return fail("nats-config", fmt.Errorf("write %s: %w", *out, err))
	}
	return exitOK
}
