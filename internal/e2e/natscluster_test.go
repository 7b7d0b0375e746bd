//go:build natscluster || chaos

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
	"github.com/hodei-ci/hodei/internal/pki"
)

// natsServerEnv names the nats-server binary of these tests (built by
// scripts/build-nats-server at go.mod's version; scripts/test sets it).
const natsServerEnv = "HODEI_NATS_SERVER"

// natsPKI is the internal CA of a cluster test and the certificates it
// issued: one per NATS node, the Hodei server "ci", and agents.
type natsPKI struct {
	dir, ca string
}

func (p natsPKI) cert(name string) (crt, key string) {
	return filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
}

func newNATSPKI(t *testing.T, nodes int, agents ...string) natsPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Init(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		name := fmt.Sprintf("nats-%d", i)
		if _, err := ca.IssueFiles(dir, name, pki.Request{Kind: pki.KindServer, Name: name, IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ca.IssueFiles(dir, "ci", pki.Request{Kind: pki.KindServer, Name: "ci", IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if _, err := ca.IssueFiles(dir, a, pki.Request{Kind: pki.KindAgent, Name: a}); err != nil {
			t.Fatal(err)
		}
	}
	return natsPKI{dir: dir, ca: filepath.Join(dir, "ca.crt")}
}

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	name    string
	client  string // host:port of clients
	monitor string // host:port of /healthz
	conf    string // its configuration file, for a restart
	p       *proc
}

type natsCluster struct {
	nodes []*natsNode
	pki   natsPKI
}

// urls is the --nats of the cluster: every node's client URL.
func (c *natsCluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, "nats://"+n.client)
	}
	return strings.Join(us, ",")
}

// startNATSCluster starts three nats-server processes from the
// configuration `hodei nats-config` writes for each, with the server "ci"
// and the given agents as its users, on free ports; it returns once every
// node says it is healthy (JetStream's meta group included). A port can be
// taken between its choice and the bind: then the node exits, and the whole
// cluster starts again on other ports (three tries).
func startNATSCluster(t *testing.T, p natsPKI, agents ...string) *natsCluster {
	t.Helper()
	bin := os.Getenv(natsServerEnv)
	if bin == "" {
		t.Fatalf("%s is not set: build nats-server with scripts/build-nats-server and name it there", natsServerEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v", natsServerEnv, err)
	}
	for try := 1; ; try++ {
		c, why := tryNATSCluster(t, bin, p, agents, try)
		if c != nil {
			return c
		}
		if try == 3 {
			t.Fatalf("the NATS cluster did not start in three tries: %s", why)
		}
		t.Logf("NATS cluster, try %d: %s; again on other ports", try, why)
	}
}

func tryNATSCluster(t *testing.T, bin string, p natsPKI, agents []string, try int) (*natsCluster, string) {
	t.Helper()
	const n = 3
	c := &natsCluster{pki: p}
	var routes []string
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("nats-%d", i), client: freeAddr(t), monitor: freeAddr(t)})
		routes = append(routes, freeAddr(t))
	}
	dir := t.TempDir()
	for i, node := range c.nodes {
		crt, key := p.cert(node.name)
		conf := filepath.Join(dir, node.name+".conf")
		args := []string{"nats-config", "--name", node.name, "--listen", node.client, "--monitor", node.monitor,
			"--cluster-listen", routes[i], "--routes", strings.Join(routes, ","), "--store-dir", filepath.Join(dir, node.name),
			"--tls-cert", crt, "--tls-key", key, "--ca", p.ca, "--server", "ci", "--out", conf}
		for _, a := range agents {
			args = append(args, "--agent", a)
		}
		if out, err := exec.Command(hodeiBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("hodei nats-config: %v\n%s", err, out)
		}
		node.conf = conf
		node.p = startCmd(t, fmt.Sprintf("%s.try%d.log", node.name, try), exec.Command(bin, "-c", conf))
	}
	stop := func() {
		for _, node := range c.nodes {
			node.p.kill()
		}
	}
	// A poll with a deadline: the nodes are other processes, and their
	// health is known only by asking.
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for _, node := range c.nodes {
		for {
			select {
			case <-node.p.done:
				stop()
				return nil, node.name + " exited (a port taken between its choice and the bind?)"
			default:
			}
			resp, err := hc.Get("http://" + node.monitor + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				stop()
				return nil, fmt.Sprintf("%s not healthy after 60s (last: %v)", node.name, err)
			}
			time.Sleep(100 * time.Millisecond) // a poll of an outside process's health endpoint
		}
	}
	return c, ""
}

// connect opens a connection to the cluster with the certificate of name,
// as agent name when it is one (its inbox prefix); errs gets the
// connection's asynchronous errors (permission violations).
func (c *natsCluster) connect(t *testing.T, name string, agent bool) (*nats.Conn, <-chan error) {
	t.Helper()
	crt, key := c.pki.cert(name)
	cfg, err := pki.ClientTLS(c.pki.ca, crt, key)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	opts := []nats.Option{nats.Secure(cfg), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	})}
	if agent {
		opts = append(opts, bus.AgentOptions(name)...)
	}
	nc, err := bus.Connect(c.urls(), "test "+name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// tlsAPI is the API of a server that serves it over TLS with a certificate
// of p's CA.
func tlsAPI(t *testing.T, p natsPKI, addr string) api {
	t.Helper()
	cfg, err := pki.ClientTLS(p.ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return api{base: "https://" + addr, hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}}
}

// replicas returns the replica count of a stream and its leader's name.
func replicas(t *testing.T, js jetstream.JetStream, stream string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	return info.Config.Replicas, leader
}

// clusterJobs is a pipeline of n parallel jobs; each appends "start",
// "tick" (every 0.25 s for about 2 s) and "end" lines with its attempt and
// the time to a marker file of its job in marks.
func clusterJobs(name string, n int, marks string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\njobs:\n", name)
	m := marks + `/$HODEI_JOB_ID`
	line := func(kind string) string {
		return `echo "` + kind + ` $HODEI_ATTEMPT $(date +%s%N)" >> ` + m
	}
	for i := range n {
		fmt.Fprintf(&b, "  j%d:\n    steps:\n      - run: '%s; for i in $(seq 8); do %s; sleep 0.25; done; %s'\n", i, line("start"), line("tick"), line("end"))
	}
	return b.String()
}

// markerSpans reads a job's marker file: per attempt, its first and last
// line's times (ns) and whether it ended.
func markerSpans(t *testing.T, path string) map[int][3]int64 {
	t.Helper()
	spans := map[int][3]int64{} // attempt -> first, last, ended (1)
	for _, l := range lines(path) {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("%s: bad line %q", path, l)
		}
		n, err1 := strconv.Atoi(f[1])
		ts, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: bad line %q", path, l)
		}
		s, ok := spans[n]
		if !ok {
			s = [3]int64{ts, ts, 0}
		}
		s[0], s[1] = min(s[0], ts), max(s[1], ts)
		if f[0] == "end" {
			s[2] = 1
		}
		spans[n] = s
	}
	return spans
}

// TestPipelineThroughANATSClusterSurvivesANodeKill: three nats-server
// processes from `hodei nats-config`, a `hodei server --nats <3 URLs>` and a
// `hodei agent` on them, both over mutual TLS with their certificates'
// permissions. The server first starts with --nats-replicas 1, then again
// with 3: the streams, the artifacts' bucket and the consumers move to
// three copies. While three runs of four jobs run, the node of the
// server's own connection, made the leader of the orchestrator's consumer
// of the reports, is killed with SIGKILL (the server's worker TTL is 2 s):
// every run still succeeds, every job succeeded once, no attempt was lost
// (the server's reconnection is not its agent's silence), and no two
// attempts of a job overlapped (the marker files). How long the server
// took to move on after the kill is printed, not asserted.
func TestPipelineThroughANATSClusterSurvivesANodeKill(t *testing.T) {
	p := newNATSPKI(t, 3, "agent-a")
	c := startNATSCluster(t, p, "agent-a")
	admin, _ := c.connect(t, "ci", false)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	crt, key := p.cert("ci")
	dataDir, httpAddr := t.TempDir(), freeAddr(t)
	a := tlsAPI(t, p, httpAddr)
	serverArgs := []string{"server", "--data-dir", dataDir, "--http", httpAddr, "--nats", c.urls(),
		"--tls-cert", crt, "--tls-key", key, "--ca", p.ca, "--workers", "0", "--auth", "off", "--unsafe-shared-user"}

	// A first start with one replica (the orchestrator's consumer made on
	// it too), then the server again with three: the streams, the bucket
	// and the consumers move.
	first := start(t, "server-r1.log", append(slices.Clip(serverArgs), "--nats-replicas", "1")...)
	waitReady(t, a, first)
	if n, _ := replicas(t, js, bus.StreamReports); n != 1 {
		t.Fatalf("%s: %d replicas with --nats-replicas 1", bus.StreamReports, n)
	}
	if !first.term(60 * time.Second) {
		t.Fatal("the first server did not stop on SIGTERM")
	}
	// TestChaos's worker TTL: shorter than the default, so that a
	// leader that took its own reconnection for its workers' silence
	// would lose them.
	srv := start(t, "server.log", append(slices.Clip(serverArgs), "--nats-replicas", "3", "--worker-ttl", "2s")...)
	waitReady(t, a, srv)
	for _, s := range []string{bus.StreamDispatch, bus.StreamReports, "OBJ_" + artifact.Bucket} {
		if n, _ := replicas(t, js, s); n != 3 {
			t.Fatalf("%s: %d replicas with --nats-replicas 3", s, n)
		}
		waitReplicated(t, js, s)
	}

	acrt, akey := p.cert("agent-a")
	start(t, "agent.log", "agent", "--nats", c.urls(), "--tls-cert", acrt, "--tls-key", akey, "--ca", p.ca,
		"--work-dir", filepath.Join(t.TempDir(), "work"), "--heartbeat", "250ms", "--cpu", "4", "--unsafe-shared-user")

	marks := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var ids []string
	for i := range 3 {
		id, err := a.submit(ctx, clusterJobs(fmt.Sprintf("cluster-%d", i), 4, marks))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// The kill comes while jobs run: once a marker file has a line.
	eventually(t, 2*time.Minute, "a job running", func() (bool, error) {
		es, err := os.ReadDir(marks)
		return len(es) > 0, err
	})
	// The victim is the node of the server's own connection, made the
	// leader of the orchestrator's consumer of the reports: its death
	// cuts the server off its workers' heartbeats until it reconnects,
	// and stops both the consumer and, until the client notices, the
	// orchestrator's pull.
	victim := c.nodeOf(t, "hodei-server")
	c.moveConsumerLeader(t, js, bus.StreamReports, "orchestrator", victim.name)
	snapshot := func() string {
		var b strings.Builder
		for _, id := range ids {
			js, err := a.jobs(ctx, id)
			if err != nil {
				return ""
			}
			for _, j := range js {
				fmt.Fprintf(&b, "%s=%s/%d ", j.ID, j.State, j.Attempt)
			}
		}
		return b.String()
	}
	before := snapshot()
	killed := time.Now()
	if err := victim.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.p.done
	t.Logf("killed %s, the node of the server's connection and the leader of the orchestrator's consumer, with SIGKILL", victim.name)
	// How long until the server applies a change again (a job taken,
	// finished): measured, printed, never asserted.
	var resumed time.Duration
	eventually(t, 3*time.Minute, "a job's state changed after the kill", func() (bool, error) {
		s := snapshot()
		if s != "" && s != before {
			resumed = time.Since(killed)
			return true, nil
		}
		return false, nil
	})
	fmt.Printf("NATS node %s killed: the server applied a job's change again %.2fs later\n", victim.name, resumed.Seconds())

	a.waitFinal(t, ctx, 3*time.Minute, ids...)
	for _, id := range ids {
		r := a.mustRun(ctx, t, id)
		if r.State != "succeeded" {
			t.Errorf("run %s: %s; want succeeded", id, r.State)
		}
		jobs := a.mustJobs(ctx, t, id)
		if len(jobs) != 4 {
			t.Fatalf("run %s: %d jobs", id, len(jobs))
		}
		for _, j := range jobs {
			ok := 0
			for _, at := range j.Attempts {
				if at.State == "succeeded" {
					ok++
				}
				if at.State == "lost" {
					// Nothing was lost: the agent ran throughout, and
					// what the kill cut off was only delayed.
					t.Errorf("job %s/%s: attempt %d on %s lost (%s) at the node kill", id, j.Key, at.N, at.Worker, at.Reason)
				}
			}
			if j.State != "succeeded" || ok != 1 {
				t.Errorf("job %s/%s: %s with %d succeeded attempts (%+v); want succeeded once", id, j.Key, j.State, ok, j.Attempts)
			}
			spans := markerSpans(t, filepath.Join(marks, j.ID))
			var prev [3]int64
			prevN := 0
			for n := 1; n <= j.Attempt; n++ {
				s, ran := spans[n]
				if !ran {
					continue
				}
				if prevN > 0 && s[0] <= prev[1] {
					t.Errorf("job %s/%s: attempt %d started before attempt %d's last line", id, j.Key, n, prevN)
				}
				prev, prevN = s, n
			}
			if spans[j.Attempt][2] != 1 {
				t.Errorf("job %s/%s: its succeeded attempt %d did not write its end", id, j.Key, j.Attempt)
			}
			if len(spans) > j.Attempt {
				t.Errorf("job %s/%s: markers of %d attempts, the API knows %d", id, j.Key, len(spans), j.Attempt)
			}
		}
	}
	if n, _ := replicas(t, js, bus.StreamReports); n != 3 {
		t.Errorf("%s: %d replicas after the kill", bus.StreamReports, n)
	}
}

// nodeOf returns the node where the client connection named name is
// (from each node's /connz).
func (c *natsCluster) nodeOf(t *testing.T, name string) *natsNode {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	var found *natsNode
	// A poll: a client that reconnects is on no node for a moment.
	eventually(t, 30*time.Second, "the node of the connection "+name, func() (bool, error) {
		for _, n := range c.nodes {
			resp, err := hc.Get("http://" + n.monitor + "/connz?limit=1024")
			if err != nil {
				return false, err
			}
			var cz struct {
				Connections []struct {
					Name string `json:"name"`
				} `json:"connections"`
			}
			err = json.NewDecoder(resp.Body).Decode(&cz)
			resp.Body.Close()
			if err != nil {
				return false, fmt.Errorf("%s /connz: %w", n.name, err)
			}
			for _, cn := range cz.Connections {
				if cn.Name == name {
					found = n
					return true, nil
				}
			}
		}
		return false, nil
	})
	return found
}

// moveConsumerLeader makes node the leader of a consumer with three
// copies: a leader step-down that prefers it (JetStream's API), until the
// consumer's info names it.
func (c *natsCluster) moveConsumerLeader(t *testing.T, js jetstream.JetStream, stream, consumer, node string) {
	t.Helper()
	nc := js.Conn()
	// A poll: the step-down is an election, and its result is known by
	// asking; a step-down to a replica still catching up is refused, and
	// asked again.
	eventually(t, time.Minute, "node "+node+" leading consumer "+consumer, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			return false, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false, fmt.Errorf("consumer %s: %+v; want three copies", consumer, info.Cluster)
		}
		if info.Cluster.Leader == node {
			return true, nil
		}
		_, err = nc.RequestWithContext(ctx, fmt.Sprintf("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s", stream, consumer),
			[]byte(`{"placement":{"preferred":"`+node+`"}}`))
		return false, err
	})
}

// TestAgentsAreConfinedOnTheNATSCluster: on a cluster configured by `hodei
// nats-config`, with streams and the artifacts' bucket at three replicas,
// a certificate it does not name, or none, cannot connect, and agent B
// (its certificate) cannot subscribe to agent A's dispatch subject,
// publish A's status or heartbeats, create a consumer on A's subject, or
// reach the object store of artifacts (its subjects, its stream's API, a
// direct get); its own heartbeats reach the server. Its connection and the
// server's may sit on different nodes, where a subscription's interest
// arrives some time after it was made: the heartbeat is published again
// until it is received.
func TestAgentsAreConfinedOnTheNATSCluster(t *testing.T) {
	p := newNATSPKI(t, 3, "agent-a", "agent-b", "agent-c")
	c := startNATSCluster(t, p, "agent-a", "agent-b") // not agent-c
	admin, _ := c.connect(t, "ci", false)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.DefaultSubjects, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "HODEI_ARTIFACTS", Storage: jetstream.FileStorage, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{bus.StreamDispatch, bus.StreamReports, "OBJ_" + artifact.Bucket} {
		if n, _ := replicas(t, js, s); n != 3 {
			t.Fatalf("%s: %d replicas; want 3", s, n)
		}
	}
	// A certificate of the CA that the configuration does not name, and a
	// connection without a certificate, are refused.
	ccrt, ckey := p.cert("agent-c")
	for name, certs := range map[string][2]string{"agent-c (not in the configuration)": {ccrt, ckey}, "no certificate": {}} {
		cfg, err := pki.ClientTLS(p.ca, certs[0], certs[1])
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(c.urls(), nats.Secure(cfg), nats.MaxReconnects(0), nats.Timeout(10*time.Second))
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected to the cluster; want refused", name)
			continue
		}
		if certs[0] != "" && !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v; want an authorization violation", name, err)
		}
		t.Logf("%s: %v", name, err)
	}

	s := bus.DefaultSubjects
	b, errs := c.connect(t, "agent-b", true)

	// What B may do: its heartbeat reaches the server's connection.
	hb, err := admin.SubscribeSync(s.Heartbeat("agent-b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := b.Publish(s.Heartbeat("agent-b"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := hb.NextMsg(200 * time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("agent-b's heartbeat never reached the server's connection")
		}
	}

	bustest.ExpectDenied(t, errs, "Subscription", s.Dispatch("agent-a"), func(ctx context.Context) error {
		sub, err := b.SubscribeSync(s.Dispatch("agent-a"))
		if err != nil {
			return err
		}
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
	bjs, err := jetstream.New(b)
	if err != nil {
		t.Fatal(err)
	}
	bustest.ExpectDenied(t, errs, "Publish", s.Status("agent-a"), func(ctx context.Context) error {
		_, err := bjs.Publish(ctx, s.Status("agent-a"), []byte(`{"worker_id":"agent-a","state":"succeeded"}`))
		return err
	})
	bustest.ExpectDenied(t, errs, "Publish", s.Heartbeat("agent-a"), func(ctx context.Context) error {
		if err := b.Publish(s.Heartbeat("agent-a"), []byte("{}")); err != nil {
			return err
		}
		<-ctx.Done() // a core publish has no answer: the violation is the outcome
		return ctx.Err()
	})
	create := "$JS.API.CONSUMER.CREATE." + bus.StreamDispatch + ".agent-agent-a." + s.Dispatch("agent-a")
	bustest.ExpectDenied(t, errs, "Publish", create, func(ctx context.Context) error {
		_, err := b.RequestWithContext(ctx, create, []byte(`{"stream_name":"HODEI_DISPATCH"}`))
		return err
	})
	bustest.ExpectDenied(t, errs, "Subscription", "$O.HODEI_ARTIFACTS.>", func(ctx context.Context) error {
		sub, err := b.SubscribeSync("$O.HODEI_ARTIFACTS.>")
		if err != nil {
			return err
		}
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
	for _, api := range []string{"$JS.API.STREAM.INFO.OBJ_HODEI_ARTIFACTS", "$JS.API.DIRECT.GET.OBJ_HODEI_ARTIFACTS", "$JS.API.STREAM.MSG.GET.OBJ_HODEI_ARTIFACTS"} {
		bustest.ExpectDenied(t, errs, "Publish", api, func(ctx context.Context) error {
			_, err := b.RequestWithContext(ctx, api, []byte(`{"seq":1}`))
			return err
		})
	}
}

// TestStreamsMoveToTheReplicasAskedOnTheNATSCluster: streams and the
// artifacts' bucket made with one replica on the cluster are updated when
// Hodei asks for three (bus.EnsureStreams, artifact.NewJetStreamBlobs as
// the server calls them), nats-server places the two new copies on the
// other nodes, and the durable consumer of a stream moves with it.
func TestStreamsMoveToTheReplicasAskedOnTheNATSCluster(t *testing.T) {
	p := newNATSPKI(t, 3)
	c := startNATSCluster(t, p)
	admin, _ := c.connect(t, "ci", false)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	streams := []string{bus.StreamDispatch, bus.StreamReports, "OBJ_" + artifact.Bucket}
	for _, n := range []int{1, 3} {
		if err := bus.EnsureStreams(ctx, js, bus.DefaultSubjects, n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			// A durable consumer made with the stream's count, as the
			// orchestrator's and the agents' are.
			if _, err := js.CreateOrUpdateConsumer(ctx, bus.StreamReports, jetstream.ConsumerConfig{Durable: "orchestrator", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := artifact.NewJetStreamBlobs(ctx, js, t.TempDir(), n); err != nil {
			t.Fatal(err)
		}
		for _, s := range streams {
			if got, _ := replicas(t, js, s); got != n {
				t.Fatalf("%s: %d replicas configured; want %d", s, got, n)
			}
		}
	}
	for _, s := range streams {
		waitReplicated(t, js, s)
	}
	// The consumer moved with its stream (bus.EnsureStreams waits for the
	// stream, then scales its consumers): on one node it would die with it.
	st, err := js.Stream(ctx, bus.StreamReports)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.Consumer(ctx, "orchestrator")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the consumer on three nodes", func() (bool, error) {
		ci, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		// 0: the stream's count, which nats-server may have applied itself.
		return (ci.Config.Replicas == 3 || ci.Config.Replicas == 0) && ci.Cluster != nil && len(ci.Cluster.Replicas) == 2, fmt.Errorf("%d replicas configured, %+v", ci.Config.Replicas, ci.Cluster)
	})
}

// waitReplicated waits until the stream has a leader and its two other
// copies are current. nats-server moves copies in the background: a poll
// with a deadline of what it reports.
func waitReplicated(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eventually(t, 90*time.Second, stream+" on three nodes", func() (bool, error) {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return false, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false, err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return false, fmt.Errorf("no leader")
		}
		current := 0
		for _, r := range info.Cluster.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
		return current == 2, fmt.Errorf("leader %s and %d current replicas", info.Cluster.Leader, current)
	})
}
