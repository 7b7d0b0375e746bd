// Package bus is Hodei's use of NATS JetStream: the embedded server, the
// connection, the streams and subjects, and the messages that travel on them.
//
// Streams (all file-backed):
//
//	HODEI_DISPATCH  hodei.dispatch.<worker>        work queue: assignments and cancels for one worker
//	HODEI_REPORTS   hodei.status.<worker>          work queue: job status from workers
//	                hodei.logs.<worker>.<job>      work queue: log chunks from workers
//
// Heartbeats are core NATS on hodei.hb.<worker>: a lost heartbeat is
// replaced by the next one, so it needs no persistence.
//
// Status and logs share one stream on purpose: a worker publishes a job's last
// log chunk (and waits for its ack) before the job's final status, and the
// orchestrator reads the stream in order, so a job's logs are stored no later
// than its final state. Subjects carry the worker id so that per-worker NATS
// permissions can confine a worker to its own subjects.
package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamDispatch = "HODEI_DISPATCH"
	StreamReports  = "HODEI_REPORTS"
)

// Subjects builds subject names under a prefix ("hodei" by default).
type Subjects struct{ Prefix string }

// DefaultSubjects uses the prefix "hodei".
var DefaultSubjects = Subjects{Prefix: "hodei"}

// Dispatch is the subject of assignments and cancels for one worker.
func (s Subjects) Dispatch(worker string) string { return s.Prefix + ".dispatch." + worker }

// Status is the subject on which a worker reports job status.
func (s Subjects) Status(worker string) string { return s.Prefix + ".status." + worker }

// Logs is the subject on which a worker sends a job's output.
func (s Subjects) Logs(worker, job string) string { return s.Prefix + ".logs." + worker + "." + job }

// Heartbeat is the subject of a worker's heartbeats.
func (s Subjects) Heartbeat(worker string) string { return s.Prefix + ".hb." + worker }

// Control is the subject on which the leader of several servers takes a
// command (kind: submit, cancel, view, ping) that another server forwards.
func (s Subjects) Control(kind string) string { return s.Prefix + ".control." + kind }

// Notes is the subject on which the leader of several servers publishes
// what its orchestrator stored (hub notes), for the live streams of the
// others.
func (s Subjects) Notes() string { return s.Prefix + ".notes" }

// IsLogs reports whether a subject carries log chunks.
func (s Subjects) IsLogs(subject string) bool { return strings.HasPrefix(subject, s.Prefix+".logs.") }

// WorkerOf returns the worker token of a status, logs or dispatch subject.
func (s Subjects) WorkerOf(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// ValidToken reports whether s can be used as one subject token (a worker or
// job id): non-empty, and no dots, spaces or wildcards.
func ValidToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv  *server.Server
	auth *authenticator // nil: no authentication (no TLS)
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	StoreDir string // JetStream storage; required
	Host     string // default 127.0.0.1
	Port     int    // 0 = a random port; -1 = no TCP listener (in-process only)
	// TLS, when set, makes the listener require TLS and a client
	// certificate verified against TLS.ClientCAs (mutual TLS), and turns
	// on authorization: an agent's certificate (pki) confines it to its
	// own subjects (AgentPermissions), a server's certificate allows
	// everything, and in-process connections must come from Connect or
	// ConnectAgent.
	TLS *tls.Config
	// Subjects are those the agents' permissions name (DefaultSubjects).
	Subjects Subjects
}

// StartEmbedded starts a NATS server with JetStream on dir and waits until it
// accepts connections.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	opts := &server.Options{
		ServerName:             "hodei-embedded",
		Host:                   o.Host,
		Port:                   o.Port,
		JetStream:              true,
		StoreDir:               o.StoreDir,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
		MaxPayload:             8 << 20,
	}
	switch o.Port {
	case 0:
		opts.Port = server.RANDOM_PORT
	case -1:
		opts.DontListen = true
	}
	var auth *authenticator
	if o.TLS != nil {
		if o.TLS.ClientCAs == nil {
			return nil, errors.New("embedded nats: tls needs the CA of client certificates (ClientCAs)")
		}
		if o.Subjects.Prefix == "" {
			o.Subjects = DefaultSubjects
		}
		cfg := o.TLS.Clone()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		opts.TLS, opts.TLSVerify, opts.TLSConfig, opts.TLSTimeout = true, true, cfg, 5
		auth = newAuthenticator(o.Subjects)
		opts.CustomClientAuthentication = auth
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	// The server reports a port it cannot listen on only to its logger
	// (and would otherwise be waited for until the timeout): catch it.
	fatal := &fatalCatcher{failed: make(chan struct{})}
	srv.SetLoggerV2(fatal, false, false, false)
	go srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !srv.ReadyForConnections(50 * time.Millisecond) { // it polls every 25ms above 25ms
		select {
		case <-fatal.failed:
			srv.Shutdown()
			if fatal.listen != nil {
				return nil, fmt.Errorf("embedded nats: %w", ListenError(net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), fatal.listen))
			}
			return nil, fmt.Errorf("embedded nats: %s", fatal.msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, errors.New("embedded nats: not ready after 30s")
		}
	}
	return &Embedded{srv: srv, auth: auth}, nil
}

// fatalCatcher is the embedded server's logger: it keeps the first fatal
// error (a port it cannot listen on, a JetStream store it cannot open) and
// drops the rest, as NoLog did.
type fatalCatcher struct {
	once   sync.Once
	failed chan struct{}
	msg    string
	listen error // the error of a failed listen, if that was it
}

func (f *fatalCatcher) Fatalf(format string, v ...any) {
	f.once.Do(func() {
		f.msg = fmt.Sprintf(format, v...)
		if strings.HasPrefix(format, "Error listening") {
			for _, x := range v {
				if err, ok := x.(error); ok {
					f.listen = err
				}
			}
		}
		close(f.failed)
	})
}
func (*fatalCatcher) Noticef(string, ...any) {}
func (*fatalCatcher) Warnf(string, ...any)   {}
func (*fatalCatcher) Errorf(string, ...any)  {}
func (*fatalCatcher) Debugf(string, ...any)  {}
func (*fatalCatcher) Tracef(string, ...any)  {}

// ListenError is the error of a failed listen on addr as a person wants to
// read it: "listen 127.0.0.1:8080: address already in use".
func ListenError(addr string, err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	return fmt.Errorf("listen %s: %w", addr, err)
}

// ClientURL is the URL agents on this machine use to connect.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Connect opens an in-process connection (no TCP) to the embedded server,
// with every permission: the server's own.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	var opts []nats.Option
	if e.auth != nil {
		opts = append(opts, nats.UserInfo(serverUser, e.auth.password(serverUser)))
	}
	return e.connect(name, opts...)
}

// ConnectAgent opens an in-process connection for agent id: with TLS on,
// it has the permissions of that agent only.
func (e *Embedded) ConnectAgent(id string) (*nats.Conn, error) {
	opts := AgentOptions(id)
	if e.auth != nil {
		opts = append(opts, nats.UserInfo(agentPrefix+id, e.auth.password(agentPrefix+id)))
	}
	return e.connect("hodei-agent "+id, opts...)
}

func (e *Embedded) connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits for it to finish.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect dials an external NATS server by URL, retrying forever on lost
// connections. With TLS (tlsConfig from pki.ClientTLS, as an option
// nats.Secure), the connection is authenticated by its client certificate.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				slog.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { slog.Info("nats reconnected", "url", c.ConnectedUrl()) }),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	return nc, nil
}

// PullOptions are the options of every long-lived pull (the orchestrator's
// reports, each agent's dispatch): a pull that asks for 5 s at a time
// with a heartbeat every second. When the node that leads the consumer
// dies (a NATS cluster), the client sees its heartbeats stop within about
// 2 s and pulls again from the consumer's new leader; with the defaults
// (30 s pulls, 15 s heartbeats) the consumer stood still for up to 30 s,
// long enough for the orchestrator to give up attempts whose reports
// waited in the stream.
func PullOptions() []jetstream.PullConsumeOpt {
	return []jetstream.PullConsumeOpt{jetstream.PullExpiry(5 * time.Second), jetstream.PullHeartbeat(time.Second)}
}

// MaxReportSize is the largest message the reports stream takes (a status
// or a log chunk; agents send chunks of 64 KiB): the orchestrator's reads
// of the stream are bounded in bytes, and a pull that allows fewer bytes
// than a message holds would never deliver it.
const MaxReportSize = 1 << 20

// MaxAgents is the most agents the dispatch stream takes: each has a
// consumer of its own on it. Without a limit of its own, a stream gets
// nats-server's default of 1,000 consumers, and agent 1,001 would be
// refused its consumer for ever.
const MaxAgents = 100_000

// MaxReplicas is the most copies of a stream JetStream keeps.
const MaxReplicas = 5

// EnsureStreams creates or updates the streams Hodei uses, each kept by
// replicas servers of a NATS cluster (0 means 1; a single server takes
// only 1). An existing stream gets the new count: JetStream adds or
// removes its copies while it serves.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s Subjects, replicas int) error {
	replicas = max(replicas, 1)
	cfgs := []jetstream.StreamConfig{
		{
			Name:         StreamDispatch,
			Subjects:     []string{s.Prefix + ".dispatch.>"},
			Retention:    jetstream.WorkQueuePolicy,
			Storage:      jetstream.FileStorage,
			Duplicates:   2 * time.Minute,
			MaxAge:       24 * time.Hour,
			Replicas:     replicas,
			MaxConsumers: MaxAgents,
		},
		{
			Name:       StreamReports,
			Subjects:   []string{s.Prefix + ".status.>", s.Prefix + ".logs.>"},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Duplicates: 2 * time.Minute,
			MaxAge:     7 * 24 * time.Hour,
			MaxMsgSize: MaxReportSize,
			Replicas:   replicas,
		},
	}
	for _, c := range cfgs {
		st, err := js.CreateOrUpdateStream(ctx, c)
		if err != nil {
			return fmt.Errorf("stream %s: %w", c.Name, err)
		}
		if err := waitReplicas(ctx, st, replicas); err != nil {
			return fmt.Errorf("stream %s: %w", c.Name, err)
		}
		if err := scaleConsumers(ctx, st, replicas); err != nil {
			return fmt.Errorf("stream %s: %w", c.Name, err)
		}
	}
	return nil
}

// ScaleTimeout bounds how long EnsureStreams waits for nats-server to give
// a stream the replicas it was asked for (it moves copies in the
// background: about 10 s from 1 to 3 in the tests).
const ScaleTimeout = 2 * time.Minute

// waitReplicas waits until st has a leader and replicas copies (at once
// on a single server, or when the count did not change).
func waitReplicas(ctx context.Context, st jetstream.Stream, replicas int) error {
	ctx, cancel := context.WithTimeout(ctx, ScaleTimeout)
	defer cancel()
	// A poll: nats-server announces no end of a reconfiguration.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := st.Info(ctx)
		if err == nil {
			cl := info.Cluster
			if cl == nil || cl.Leader != "" && cl.Desired == nil && 1+len(cl.Replicas) == replicas {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not on %d servers after %s (last error: %v): see nats stream info", replicas, ScaleTimeout, err)
		case <-tick.C:
		}
	}
}

// scaleConsumers gives every consumer of st (the orchestrator's, the
// agents') replicas copies. A consumer made with Replicas 0 takes its
// stream's count when it is made, but nats-server does not move it when
// the stream's count changes later: the consumer would stay on one node,
// and die with it, while its stream lives on.
func scaleConsumers(ctx context.Context, st jetstream.Stream, replicas int) error {
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		have := ci.Config.Replicas
		if have == 0 {
			have = 1
			if ci.Cluster != nil {
				have += len(ci.Cluster.Replicas)
			}
		}
		if have == replicas {
			continue
		}
		cfg := ci.Config
		cfg.Replicas = replicas
		if _, err := st.UpdateConsumer(ctx, cfg); err != nil {
			return fmt.Errorf("consumer %s to %d replicas: %w", ci.Name, replicas, err)
		}
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	return nil
}
