package bus_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
	"github.com/hodei-ci/hodei/internal/pki"
)

type tlsFixture struct {
	e      *bus.Embedded
	dir    string
	caFile string
	admin  *nats.Conn
	subs   bus.Subjects
}

// startTLS starts the embedded NATS with mutual TLS on a loopback port, and
// issues certificates for the server, agents X and Y, and a client.
func startTLS(t *testing.T) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	ca, scfg := bustest.Certs(t, dir, "X", "Y")
	if _, err := ca.IssueFiles(dir, "alice", pki.Request{Kind: pki.KindClient, Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	e, admin := bustest.Start(t, bus.EmbeddedOptions{StoreDir: filepath.Join(dir, "js"), Port: 0, TLS: scfg}, "admin")
	bustest.Streams(t, admin)
	return &tlsFixture{e: e, dir: dir, caFile: filepath.Join(dir, "ca.crt"), admin: admin, subs: bus.DefaultSubjects}
}

// agentConn connects over TCP with the certificate of `cert`, as agent id
// (inbox prefix); errs receives the connection's asynchronous errors.
func (f *tlsFixture) agentConn(t *testing.T, id, cert string) (*nats.Conn, <-chan error, error) {
	t.Helper()
	errs := make(chan error, 64)
	var opts []nats.Option
	if cert != "" {
		cfg, err := pki.ClientTLS(f.caFile, filepath.Join(f.dir, cert+".crt"), filepath.Join(f.dir, cert+".key"))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, nats.Secure(cfg))
	} else {
		cfg, _ := pki.ClientTLS(f.caFile, "", "")
		opts = append(opts, nats.Secure(cfg))
	}
	opts = append(opts, bus.AgentOptions(id)...)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}), nats.MaxReconnects(0), nats.Timeout(5*time.Second))
	nc, err := nats.Connect(f.e.ClientURL(), opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, errs, err
}

func agentConsumer(id string, s bus.Subjects) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: "agent-" + id, FilterSubject: s.Dispatch(id), AckPolicy: jetstream.AckExplicitPolicy}
}

// TestAgentCredentialsConfineAnAgentToItsSubjects runs, on a real NATS
// server with TLS, what agent X may and may not do with its certificate.
func TestAgentCredentialsConfineAnAgentToItsSubjects(t *testing.T) {
	f := startTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ajs, _ := jetstream.New(f.admin)

	// Y takes its consumer; a message waits for it.
	ync, _, err := f.agentConn(t, "Y", "Y")
	if err != nil {
		t.Fatal(err)
	}
	yjs, _ := jetstream.New(ync)
	ycons, err := yjs.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, agentConsumer("Y", f.subs))
	if err != nil {
		t.Fatalf("Y creates its own consumer: %v", err)
	}
	if _, err := ajs.Publish(ctx, f.subs.Dispatch("Y"), []byte("for-Y-only")); err != nil {
		t.Fatal(err)
	}

	xnc, xerrs, err := f.agentConn(t, "X", "X")
	if err != nil {
		t.Fatal(err)
	}
	xjs, _ := jetstream.New(xnc)

	t.Run("X works normally", func(t *testing.T) {
		hb, err := f.admin.SubscribeSync(f.subs.Heartbeat("X"))
		if err != nil {
			t.Fatal(err)
		}
		defer hb.Unsubscribe()
		if err := f.admin.Flush(); err != nil {
			t.Fatal(err)
		}
		cons, err := xjs.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, agentConsumer("X", f.subs))
		if err != nil {
			t.Fatalf("X creates its consumer: %v", err)
		}
		if _, err := ajs.Publish(ctx, f.subs.Dispatch("X"), []byte("for-X")); err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range batch.Messages() {
			got = append(got, string(m.Data()))
			if err := m.DoubleAck(ctx); err != nil {
				t.Errorf("X acks its message: %v", err)
			}
		}
		if len(got) != 1 || got[0] != "for-X" {
			t.Fatalf("X fetched %q", got)
		}
		if _, err := cons.Info(ctx); err != nil {
			t.Errorf("X reads its consumer's info: %v", err)
		}
		if _, err := xjs.Publish(ctx, f.subs.Status("X"), []byte(`{"worker_id":"X"}`)); err != nil {
			t.Errorf("X publishes its status: %v", err)
		}
		if _, err := xjs.Publish(ctx, f.subs.Logs("X", "job-1"), []byte("output")); err != nil {
			t.Errorf("X publishes its logs: %v", err)
		}
		if err := xnc.Publish(f.subs.Heartbeat("X"), []byte("hb")); err != nil {
			t.Fatal(err)
		}
		if m, err := hb.NextMsg(10 * time.Second); err != nil || string(m.Data) != "hb" {
			t.Errorf("X's heartbeat: %v, %v", m, err)
		}
	})

	t.Run("X cannot subscribe to Y's dispatch subject", func(t *testing.T) {
		for _, subj := range []string{f.subs.Dispatch("Y"), "hodei.dispatch.*", ">", bus.InboxPrefix("Y") + ".>"} {
			bustest.ExpectDenied(t, xerrs, "Subscription", subj, func(ctx context.Context) error {
				sub, err := xnc.SubscribeSync(subj)
				if err != nil {
					return err
				}
				_, err = sub.NextMsgWithContext(ctx)
				return err
			})
		}
	})

	t.Run("X cannot read Y's messages through JetStream", func(t *testing.T) {
		bustest.ExpectDenied(t, xerrs, "Publish", "$JS.API.CONSUMER.MSG.NEXT.HODEI_DISPATCH.agent-Y", func(ctx context.Context) error {
			_, err := xnc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.HODEI_DISPATCH.agent-Y", []byte(`{"batch":1}`))
			return err
		})
		for _, subj := range []string{"$JS.API.STREAM.MSG.GET.HODEI_DISPATCH", "$JS.API.DIRECT.GET.HODEI_DISPATCH"} {
			bustest.ExpectDenied(t, xerrs, "Publish", subj, func(ctx context.Context) error {
				_, err := xnc.RequestWithContext(ctx, subj, []byte(`{"last_by_subj":"hodei.dispatch.Y"}`))
				return err
			})
		}
		bustest.ExpectDenied(t, xerrs, "Publish", "$JS.API.STREAM.INFO.HODEI_DISPATCH", func(ctx context.Context) error {
			_, err := xjs.Stream(ctx, bus.StreamDispatch)
			return err
		})
		bustest.ExpectDenied(t, xerrs, "Publish", "$JS.API.CONSUMER.CREATE.HODEI_DISPATCH.agent-Y.hodei.dispatch.Y", func(ctx context.Context) error {
			_, err := xjs.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, agentConsumer("Y", f.subs))
			return err
		})
		// Its own consumer's name, on Y's subject.
		bustest.ExpectDenied(t, xerrs, "Publish", "$JS.API.CONSUMER.CREATE.HODEI_DISPATCH.agent-X.hodei.dispatch.Y", func(ctx context.Context) error {
			_, err := xjs.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, jetstream.ConsumerConfig{Durable: "agent-X", FilterSubject: f.subs.Dispatch("Y"), AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
		bustest.ExpectDenied(t, xerrs, "Publish", "$JS.API.CONSUMER.CREATE.HODEI_DISPATCH.agent-X", func(ctx context.Context) error {
			_, err := xjs.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, jetstream.ConsumerConfig{Durable: "agent-X", FilterSubjects: []string{f.subs.Dispatch("Y"), "hodei.dispatch.Z"}, AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
		// Y's message is still there, for Y.
		batch, err := ycons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if string(m.Data()) != "for-Y-only" {
				t.Errorf("Y fetched %q", m.Data())
			}
		}
		if n != 1 {
			t.Errorf("Y fetched %d messages, want its 1", n)
		}
	})

	t.Run("X cannot publish status as Y", func(t *testing.T) {
		bustest.ExpectDenied(t, xerrs, "Publish", f.subs.Status("Y"), func(ctx context.Context) error {
			_, err := xjs.Publish(ctx, f.subs.Status("Y"), []byte(`{"worker_id":"Y","state":"succeeded"}`))
			return err
		})
		bustest.ExpectDenied(t, xerrs, "Publish", f.subs.Logs("Y", "job-1"), func(ctx context.Context) error {
			_, err := xjs.Publish(ctx, f.subs.Logs("Y", "job-1"), []byte("fake output"))
			return err
		})
		bustest.ExpectDenied(t, xerrs, "Publish", f.subs.Heartbeat("Y"), func(ctx context.Context) error {
			if err := xnc.Publish(f.subs.Heartbeat("Y"), []byte("hb")); err != nil {
				return err
			}
			<-ctx.Done() // a core publish has no answer: the violation is the outcome
			return ctx.Err()
		})
		s, err := ajs.Stream(ctx, bus.StreamReports)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetLastMsgForSubject(ctx, f.subs.Status("Y")); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("a status of Y is in the stream: %v", err)
		}
	})
}

func TestConnectionsWithoutAnAgentOrServerCertificateAreRefused(t *testing.T) {
	f := startTLS(t)
	if _, _, err := f.agentConn(t, "X", ""); err == nil {
		t.Error("a client without a certificate connected")
	}
	if _, _, err := f.agentConn(t, "alice", "alice"); err == nil {
		t.Error("a client certificate (not an agent's) connected to NATS")
	}
	// Another CA's agent certificate.
	other := t.TempDir()
	oca, err := pki.Init(other, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oca.IssueFiles(other, "X", pki.Request{Kind: pki.KindAgent, Name: "X"}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := pki.ClientTLS(f.caFile, filepath.Join(other, "X.crt"), filepath.Join(other, "X.key"))
	if nc, err := nats.Connect(f.e.ClientURL(), nats.Secure(cfg), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("an agent certificate of another CA connected")
	}
	// Over TCP, the in-process credentials are refused even when right:
	// they are for in-process connections only. The client shows agent
	// X's certificate, so that the TLS handshake passes and the server
	// has the password to judge.
	user, password := bus.ServerCredentials(f.e)
	xcfg, err := pki.ClientTLS(f.caFile, filepath.Join(f.dir, "X.crt"), filepath.Join(f.dir, "X.key"))
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(user, password string) error {
		nc, err := nats.Connect(f.e.ClientURL(), nats.Secure(xcfg), nats.UserInfo(user, password), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := tcp(user, password); err == nil {
		t.Error("the server's in-process user and password connected over TCP")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("in-process credentials over TCP: %v, want an authorization error", err)
	}
	if err := tcp(user, "guess"); err == nil {
		t.Error("a wrong password connected over TCP")
	}
	// An in-process agent connection has the agent's permissions only.
	nc, err := f.e.ConnectAgent("Z")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	errs := make(chan error, 8)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	bustest.ExpectDenied(t, errs, "Publish", f.subs.Status("Y"), func(ctx context.Context) error {
		js, _ := jetstream.New(nc)
		_, err := js.Publish(ctx, f.subs.Status("Y"), []byte("x"))
		return err
	})
}
