package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/agent"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/hub"
	"github.com/hodei-ci/hodei/internal/logtest"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/secrets/sealed"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/steplog"
)

// The secrets of these tests. SEC has characters that base64 (+ and /),
// query escaping and path escaping each treat differently.
const (
	e2eSecret = "pa55 w0rd/x+y&z>~?"
	e2eMulti  = "-----BEGIN TEST KEY-----\nline-one-ABCDEFG\nline-two-HIJKLMN\n-----END TEST KEY-----"
)

// leakPipeline prints SEC in every form the agent masks, computed by the job
// itself (the file holds no value), and MULTI whole and line by line. One
// step writes the first part of SEC, waits until the file GATE exists, and
// writes the rest: the test creates GATE once the text before the secret
// has reached the server, so the agent has read the first part before the
// rest is written, and must mask a secret split across two reads.
const leakPipeline = `name: secrets
jobs:
  leak:
    secrets: [SEC, MULTI]
    steps:
      - run: |
          echo "raw: $SEC"
          echo "b64: $(printf %s "$SEC" | base64 | tr -d '\n')"
          echo "b64url: $(printf %s "$SEC" | base64 | tr -d '\n=' | tr '+/' '-_')"
          echo "hex: $(printf %s "$SEC" | od -An -v -tx1 | tr -d ' \n')"
          echo "HEX: $(printf %s "$SEC" | od -An -v -tx1 | tr -d ' \n' | tr a-f A-F)"
          echo "query: $(printf %s "$SEC" | sed -e 's/+/%2B/g' -e 's/ /+/g' -e 's|/|%2F|g' -e 's/&/%26/g' -e 's/>/%3E/g' -e 's/?/%3F/g')"
          echo "path: $(printf %s "$SEC" | sed -e 's/ /%20/g' -e 's|/|%2F|g' -e 's/>/%3E/g' -e 's/?/%3F/g')"
      - run: |
          printf 'split: %s' "$(printf %s "$SEC" | cut -c1-6)"
          until [ -e 'GATE' ]; do sleep 0.05; done
          printf '%s\n' "$(printf %s "$SEC" | cut -c7-)"
      - run: |
          printf 'whole: %s\n' "$MULTI"
          printf '%s\n' "$MULTI" | while IFS= read -r l; do echo "line: $l"; done
  others:
    steps:
      - run: echo "others see SEC=${SEC:-unset}"
  missing:
    secrets: [NOPE]
    steps:
      - run: echo never
`

var leakWant = steplog.Header(0, 3, `echo "raw: $SEC" …`) +
	"raw: ***\nb64: ***\nb64url: ***\nhex: ***\nHEX: ***\nquery: ***\npath: ***\n" +
	steplog.Footer(0, 3, steplog.Exited(0), 0) +
	steplog.Header(1, 3, `printf 'split: %s' "$(printf %s "$SEC" | cut -c1-6)" …`) +
	"split: ***\n" +
	steplog.Footer(1, 3, steplog.Exited(0), 0) +
	steplog.Header(2, 3, `printf 'whole: %s\n' "$MULTI" …`) +
	"whole: ***\nline: ***\nline: ***\nline: ***\nline: ***\n" +
	steplog.Footer(2, 3, steplog.Exited(0), 0)

// forms is every string that must never be seen: each form of each secret,
// also as it would be written inside a JSON string (where & and > are
// escaped, and so is a newline).
func forms() []string {
	var out []string
	for _, f := range append(mask.Forms(e2eSecret), mask.Forms(e2eMulti)...) {
		j, _ := json.Marshal(f)
		out = append(out, f, strings.Trim(string(j), `"`))
	}
	return out
}

func assertNoSecret(t *testing.T, where string, data []byte) {
	t.Helper()
	for _, f := range forms() {
		if bytes.Contains(data, []byte(f)) {
			t.Errorf("%s holds a secret (form %q)", where, f)
		}
	}
}

// assertNoSecretAtRest greps every file under dir.
func assertNoSecretAtRest(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		assertNoSecret(t, p, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d files under %s: the check looked at nothing", n, dir)
	}
}

// followSSE reads a run's live log stream over HTTP until its end event.
func followSSE(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out.Write(sc.Bytes())
		out.WriteByte('\n')
		if sc.Text() == "event: end" {
			break
		}
	}
	return out.Bytes(), sc.Err()
}

// TestSecretsReachJobsMaskedAndNeverAtRest runs a real pipeline whose job
// prints its secrets in every masked form, split across writes and line by
// line: the stored logs, the live hub notes and the SSE stream show only
// ***; a job gets only the secrets it names; a missing secret fails its job
// with an error naming it; and no file of the data directory, nor the
// server's log, holds any form of a value.
func TestSecretsReachJobsMaskedAndNeverAtRest(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs logtest.Buffer
	s := startTestServer(t, Options{
		DataDir:      dir,
		NATSListen:   "none",
		HTTPAddr:     "127.0.0.1:0",
		LocalWorkers: 2,
		WorkerTTL:    2 * time.Second,
		// The split-secret step waits on a gate file of the test's
		// directory, which a sandbox hides; masking does not depend on it.
		UnsafeSharedUser: true,
		Logger:           slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	for name, v := range map[string]string{"SEC": e2eSecret, "MULTI": e2eMulti} {
		if _, err := s.Secrets.Put(ctx, "", name, v, nil); err != nil {
			t.Fatal(err)
		}
	}

	gate := filepath.Join(t.TempDir(), "gate")
	run, sub := submitWatched(ctx, t, s, "secrets.yaml", strings.Replace(leakPipeline, "GATE", gate, 1))
	defer sub.Close()
	sse := make(chan []byte, 1)
	go func() {
		data, err := followSSE(ctx, "http://"+s.HTTPAddr()+"/api/v1/runs/"+run.ID+"/logs?follow=1")
		if err != nil {
			data = append(data, []byte("\nFOLLOW ERROR: "+err.Error())...)
		}
		sse <- data
	}()
	var live bytes.Buffer
	gateOpen := false
	for done := false; !done; {
		select {
		case n, ok := <-sub.C:
			if !ok {
				t.Fatal("hub subscription lagged")
			}
			if n.RunID != run.ID {
				continue
			}
			if n.Kind == hub.KindLog && n.Chunk != nil {
				live.Write(n.Chunk.Data)
				if !gateOpen && bytes.Contains(live.Bytes(), []byte("split: ")) {
					// The agent has read the write that ends with the
					// first part of SEC: let the step write the rest.
					if err := os.WriteFile(gate, nil, 0o644); err != nil {
						t.Fatal(err)
					}
					gateOpen = true
				}
			}
			live.WriteString(n.Error)
			done = n.Kind == hub.KindRun && n.RunState.Final()
		case <-ctx.Done():
			t.Fatal("the run did not end")
		}
	}
	r, jobs := loadRun(t, s, run.ID)
	if r.State != state.RunFailed {
		t.Errorf("run %s, want failed (the job with a missing secret fails)", r.State)
	}
	if jobs["leak"].State != state.JobSucceeded {
		t.Fatalf("leak: %s (%s)", jobs["leak"].State, jobs["leak"].Error)
	}
	if got := steplog.ZeroDurations(logsOf(t, s, jobs["leak"].ID)); got != leakWant {
		t.Errorf("stored logs of leak:\n%s\nwant:\n%s", got, leakWant)
	}
	if got := steplog.ZeroDurations(logsOf(t, s, jobs["others"].ID)); got != oneStep(`echo "others see SEC=${SEC:-unset}"`, "others see SEC=unset\n", steplog.Exited(0)) {
		t.Errorf("a job that names no secret got one: %q", got)
	}
	if j := jobs["missing"]; j.State != state.JobFailed || !strings.Contains(j.Error, "secret NOPE: secret not found") {
		t.Errorf("missing: %s %q", j.State, j.Error)
	}
	if !gateOpen {
		t.Error("the text before the split secret never reached the server on its own")
	}
	if !strings.Contains(live.String(), "split: ***\n") {
		t.Errorf("the live stream did not carry the job's output:\n%s", live.String())
	}
	assertNoSecret(t, "the live hub notes", live.Bytes())
	var followed []byte
	select {
	case followed = <-sse:
	case <-ctx.Done():
		t.Fatal("the SSE stream did not end")
	}
	if !bytes.Contains(followed, []byte(`raw: ***`)) || !bytes.Contains(followed, []byte("event: end")) {
		t.Errorf("the SSE stream did not carry the job's output:\n%s", followed)
	}
	assertNoSecret(t, "the SSE stream", followed)
	for _, j := range jobs {
		assertNoSecret(t, "the error of job "+j.Key, []byte(j.Error))
	}
	s.Close()
	assertNoSecret(t, "the server's log", logs.Bytes())
	assertNoSecretAtRest(t, dir)
}

// TestDispatchStoresSecretsSealed reads the raw dispatch message of a job
// with a secret, as JetStream stores it, for a worker that does not take
// it: the value is not in it, and only the worker's key opens it, for that
// job and attempt.
func TestDispatchStoresSecretsSealed(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{DataDir: dir, NATSListen: "none", WorkerTTL: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Secrets.Put(ctx, "", "SEC", e2eSecret, nil); err != nil {
		t.Fatal(err)
	}
	nc, err := s.embedded.Connect("fake-worker")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	key, err := sealed.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	// A worker that heartbeats (with its sealing key) but never consumes
	// its dispatch subject, so that the assignment stays in the stream.
	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	go func() {
		tk := time.NewTicker(200 * time.Millisecond)
		defer tk.Stop()
		for {
			hb := bus.Heartbeat{WorkerID: "quiet", BootID: "b1", Labels: []string{"quiet"}, CPUMilli: 4000, Memory: 8 << 30, SealKey: key.Public(), At: time.Now().UTC(), Interval: 0.2}
			data, _ := json.Marshal(hb)
			_ = nc.Publish(bus.DefaultSubjects.Heartbeat("quiet"), data)
			select {
			case <-hbCtx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	run, err := s.Submit(ctx, "s.yaml", []byte("name: s\njobs:\n  j:\n    secrets: [SEC]\n    runs-on: {labels: [quiet]}\n    steps: [{run: echo}]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	// A consumer that never acknowledges: the fetch returns the assignment
	// once it is stored, and leaves it in the stream.
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, jetstream.ConsumerConfig{
		Durable: "agent-quiet", FilterSubject: bus.DefaultSubjects.Dispatch("quiet"), AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		assertNoSecret(t, "the delivered dispatch message", m.Data())
	}
	if n != 1 {
		t.Fatalf("%d assignments for the worker", n)
	}
	stream, err := js.Stream(ctx, bus.StreamDispatch)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stream.GetLastMsgForSubject(ctx, bus.DefaultSubjects.Dispatch("quiet"))
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "the stored dispatch message", raw.Data)
	var d bus.Dispatch
	if err := json.Unmarshal(raw.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.SecretsError != "" || len(d.Sealed) == 0 || d.SealKey != key.ID() {
		t.Fatalf("dispatch: secrets error %q, %d sealed bytes, key %q", d.SecretsError, len(d.Sealed), d.SealKey)
	}
	values, err := key.Open(d.SealKey, sealed.Binding{Worker: "quiet", JobID: d.JobID, Attempt: d.Attempt}, d.Sealed)
	if err != nil || values["SEC"] != e2eSecret || len(values) != 1 {
		t.Fatalf("opened %d values, %v", len(values), err)
	}
	if _, err := key.Open(d.SealKey, sealed.Binding{Worker: "quiet", JobID: d.JobID, Attempt: d.Attempt + 1}, d.Sealed); err == nil {
		t.Error("the sealed secrets open for another attempt")
	}
	if _, err := s.Store.GetRun(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	stopHB()
	s.Close()
	assertNoSecretAtRest(t, dir)
}

// TestTLSAgentRunsJobsWithItsOwnCertificate starts a server whose NATS
// requires mutual TLS, and an agent on TCP with its own certificate (and so
// only its own permissions): it runs a job with a secret. The API answers
// over TLS to a client that trusts the CA.
func TestTLSAgentRunsJobsWithItsOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.Init(pkiDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(pkiDir, "server", pki.Request{Kind: pki.KindServer, Name: "server", DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueFiles(pkiDir, "remote-1", pki.Request{Kind: pki.KindAgent, Name: "remote-1"}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(pkiDir, "ca.crt")
	natsTLS, err := pki.ServerTLS(filepath.Join(pkiDir, "server.crt"), filepath.Join(pkiDir, "server.key"), caFile)
	if err != nil {
		t.Fatal(err)
	}
	httpTLS, err := pki.ServerTLS(filepath.Join(pkiDir, "server.crt"), filepath.Join(pkiDir, "server.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{
		DataDir: filepath.Join(dir, "data"), NATSListen: "127.0.0.1:0", NATSTLS: natsTLS,
		HTTPAddr: "127.0.0.1:0", HTTPTLS: httpTLS,
		WorkerTTL: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Secrets.Put(ctx, "", "SEC", e2eSecret, nil); err != nil {
		t.Fatal(err)
	}

	clientTLS, err := pki.ClientTLS(caFile, filepath.Join(pkiDir, "remote-1.crt"), filepath.Join(pkiDir, "remote-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(s.NATSURL, "remote agent", append(bus.AgentOptions("remote-1"), nats.Secure(clientTLS))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	a, err := agent.New(nc, agent.Config{ID: "remote-1", Labels: []string{"remote"}, CPUMilli: 2000, Memory: 2 << 30,
		WorkDir: filepath.Join(dir, "work"), HeartbeatInterval: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(agentCtx) }()
	defer func() { stopAgent(); <-agentDone }()
	if err := s.WaitForWorkers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	r, jobs := runPipeline(t, s, "name: tls\njobs:\n  j:\n    secrets: [SEC]\n    runs-on: {labels: [remote]}\n    steps: [{run: 'echo \"got $SEC\"'}]\n", 30*time.Second)
	if r.State != state.RunSucceeded {
		t.Fatalf("run %s: %+v", r.State, jobs["j"])
	}
	if jobs["j"].WorkerID != "remote-1" {
		t.Errorf("ran on %s", jobs["j"].WorkerID)
	}
	if got := steplog.ZeroDurations(logsOf(t, s, jobs["j"].ID)); got != oneStep(`echo "got $SEC"`, "got ***\n", steplog.Exited(0)) {
		t.Errorf("logs %q", got)
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: mustClientTLS(t, caFile)}}
	resp, err := hc.Get("https://" + s.HTTPAddr() + "/healthz")
	if err != nil {
		t.Fatalf("API over TLS: %v", err)
	}
	resp.Body.Close()
	if _, err := (&http.Client{}).Get("https://" + s.HTTPAddr() + "/healthz"); err == nil {
		t.Error("a client that does not trust the CA accepted the API's certificate")
	}
}

func mustClientTLS(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	c, err := pki.ClientTLS(caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
