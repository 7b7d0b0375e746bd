package artifact_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/artifact"
	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
	"github.com/hodei-ci/hodei/internal/pipeline"
	"github.com/hodei-ci/hodei/internal/pki"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/sqlite"
)

// fixture is a real embedded NATS with mutual TLS and per-agent
// permissions, a SQLite store, and the artifact service on JetStream's
// object store. Agents connect over TCP with their own certificates.
type fixture struct {
	e     *bus.Embedded
	dir   string
	st    *sqlite.Store
	svc   *artifact.Service
	blobs *artifact.JetStreamBlobs
	admin *nats.Conn

	mu  sync.Mutex
	now time.Time
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newFixture(t testing.TB, lim artifact.Limits, agents ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	_, scfg := bustest.Certs(t, dir, agents...)
	e, admin := bustest.Start(t, bus.EmbeddedOptions{StoreDir: filepath.Join(dir, "js"), Port: 0, TLS: scfg}, "server")
	st, err := sqlite.Open(filepath.Join(dir, "hodei.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, _ := jetstream.New(admin)
	blobs, err := artifact.NewJetStreamBlobs(ctx, js, t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{e: e, dir: dir, st: st, blobs: blobs, admin: admin, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.svc = artifact.NewService(admin, st, blobs, artifact.ServiceOptions{Limits: lim, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: f.clock})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- f.svc.Run(runCtx, ready) }()
	t.Cleanup(func() { stop(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	return f
}

// agent connects as agent id with its certificate; errs gets the
// connection's asynchronous errors (permission violations).
func (f *fixture) agent(t testing.TB, id string) (*artifact.Client, *nats.Conn, <-chan error) {
	t.Helper()
	cfg, err := pki.ClientTLS(filepath.Join(f.dir, "ca.crt"), filepath.Join(f.dir, id+".crt"), filepath.Join(f.dir, id+".key"))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 64)
	opts := append(bus.AgentOptions(id), nats.Secure(cfg), nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	nc, err := nats.Connect(f.e.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return artifact.NewClient(nc, bus.DefaultSubjects, id), nc, errs
}

// job is a job of the store, on a worker, in a state.
type job struct {
	id, key, worker string
	st              state.JobState
	spec            pipeline.JobSpec
}

// addRun stores a run of tenant with its jobs (attempt 1 each).
func (f *fixture) addRun(t testing.TB, runID, tenant string, jobs ...job) {
	t.Helper()
	err := f.st.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.InsertRun(store.Run{ID: runID, Pipeline: "p", Tenant: tenant, State: state.RunRunning, CreatedAt: f.clock()}); err != nil {
			return err
		}
		var js []store.Job
		for i, j := range jobs {
			j.spec.Key = j.key
			spec, _ := json.Marshal(j.spec)
			js = append(js, store.Job{ID: j.id, RunID: runID, Key: j.key, Name: j.key, Index: i, State: j.st, Spec: spec, Attempt: 1, MaxAttempts: 1, WorkerID: j.worker})
		}
		return tx.InsertJobs(js)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) setState(t *testing.T, id string, st state.JobState) {
	t.Helper()
	j, err := f.st.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	j.State = st
	if err := f.st.Update(context.Background(), func(tx store.Tx) error { return tx.UpdateJob(j) }); err != nil {
		t.Fatal(err)
	}
}

func workspace(t *testing.T, files map[string]string) artifact.Roots {
	t.Helper()
	ws := t.TempDir()
	for name, content := range files {
		p := filepath.Join(ws, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return artifact.Roots{Workspace: ws, Home: t.TempDir()}
}

func upload(t *testing.T, c *artifact.Client, ref artifact.AttemptRef, kind, name string, r artifact.Roots, patterns ...string) error {
	t.Helper()
	files, err := artifact.Collect(r, patterns)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = c.Upload(context.Background(), ref, kind, name, r, files)
	return err
}

var buildSpec = pipeline.JobSpec{Artifacts: &pipeline.Artifacts{Name: "bin", Paths: []string{"dist"}, When: pipeline.OnSuccess}}

// TestAgentsReachOnlyTheirOwnArtifacts is the hostile agent: a worker
// running a job of another tenant cannot list, open or read the artifacts of
// acme's run through the service (whatever ids it names), cannot speak on
// another worker's subjects, cannot use another worker's download session,
// and cannot reach the object store's stream through JetStream.
func TestAgentsReachOnlyTheirOwnArtifacts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, artifact.Limits{}, "wa", "wb")
	f.addRun(t, "run-a", "acme",
		job{id: "a-build", key: "build", worker: "wa", st: state.JobRunning, spec: buildSpec},
		job{id: "a-test", key: "test", worker: "wa", st: state.JobQueued, spec: pipeline.JobSpec{Needs: []string{"build"}}},
	)
	// The other tenant's job is named like acme's consumer and needs a
	// job named build too.
	f.addRun(t, "run-b", "globex",
		job{id: "b-test", key: "test", worker: "wb", st: state.JobRunning, spec: pipeline.JobSpec{Needs: []string{"build"}}},
	)
	ca, _, _ := f.agent(t, "wa")
	cb, ncb, errsB := f.agent(t, "wb")
	ctx := context.Background()

	src := workspace(t, map[string]string{"dist/app": "acme's secret build"})
	if err := upload(t, ca, artifact.AttemptRef{JobID: "a-build", Attempt: 1}, store.KindArtifact, "bin", src, "dist"); err != nil {
		t.Fatal(err)
	}
	f.setState(t, "a-build", state.JobSucceeded)
	f.setState(t, "a-test", state.JobRunning)
	refA := artifact.AttemptRef{JobID: "a-test", Attempt: 1}
	entries, err := ca.List(ctx, refA)
	if err != nil || len(entries) != 1 {
		t.Fatalf("acme's consumer lists %v, %v; want build's artifact", entries, err)
	}
	dst := artifact.Roots{Workspace: t.TempDir()}
	if err := ca.Download(ctx, refA, entries[0], dst, -1); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst.Workspace, "dist/app")); string(got) != "acme's secret build" {
		t.Fatalf("downloaded %q", got)
	}

	refB := artifact.AttemptRef{JobID: "b-test", Attempt: 1}
	if got, err := cb.List(ctx, refB); err != nil || len(got) != 0 {
		t.Errorf("globex's job lists %v, %v; want nothing", got, err)
	}
	if _, err := cb.List(ctx, refA); !errors.Is(err, artifact.ErrForbidden) {
		t.Errorf("wb names acme's attempt: %v, want forbidden", err)
	}
	if err := cb.Download(ctx, refB, entries[0], artifact.Roots{Workspace: t.TempDir()}, -1); !errors.Is(err, artifact.ErrForbidden) {
		t.Errorf("wb opens acme's artifact by id: %v, want forbidden", err)
	}
	if err := upload(t, cb, refB, store.KindArtifact, "bin", src, "dist"); !errors.Is(err, artifact.ErrForbidden) {
		t.Errorf("wb uploads an artifact its job does not declare: %v, want forbidden", err)
	}

	// A download session of wa's, used by wb on its own subject.
	var open artifact.OpenReply
	data, _ := json.Marshal(artifact.OpenRequest{AttemptRef: refA, ID: entries[0].ID})
	m, err := f.admin.Request(artifact.Subject(bus.DefaultSubjects, "wa", "open"), data, 10*time.Second)
	if err != nil || json.Unmarshal(m.Data, &open) != nil || open.Session == "" {
		t.Fatalf("open as wa: %v %q", err, m.Header)
	}
	hdr := nats.Header{artifact.HdrSession: []string{open.Session}}
	reply, err := ncb.RequestMsg(&nats.Msg{Subject: artifact.Subject(bus.DefaultSubjects, "wb", "read"), Header: hdr}, 10*time.Second)
	if err != nil || reply.Header.Get(artifact.HdrCode) != artifact.CodeForbidden || len(reply.Data) != 0 {
		t.Errorf("wb reads wa's session: %v, code %q, %d bytes; want forbidden and nothing", err, reply.Header.Get(artifact.HdrCode), len(reply.Data))
	}

	// On the bus itself: another worker's subjects and the object store.
	for _, subject := range []string{
		artifact.Subject(bus.DefaultSubjects, "wa", "list"),
		"$JS.API.STREAM.INFO.OBJ_" + artifact.Bucket,
		"$JS.API.DIRECT.GET.OBJ_" + artifact.Bucket,
		"$JS.API.STREAM.MSG.GET.OBJ_" + artifact.Bucket,
		"$JS.API.CONSUMER.CREATE.OBJ_" + artifact.Bucket,
	} {
		bustest.ExpectDenied(t, errsB, "Publish", subject, func(ctx context.Context) error {
			_, err := ncb.RequestWithContext(ctx, subject, []byte(`{"job_id":"a-test","attempt":1}`))
			return err
		})
	}
	bustest.ExpectDenied(t, errsB, "Subscription", "$O."+artifact.Bucket+".>", func(ctx context.Context) error {
		sub, err := ncb.SubscribeSync("$O." + artifact.Bucket + ".>")
		if err != nil {
			return err
		}
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
}

// TestCachesPerTenantExactThenPrefix: a miss, a save, an exact hit, a
// restore key's newest entry, no second save of a key, nothing of another
// tenant's; the lookups are counted by result.
func TestCachesPerTenantExactThenPrefix(t *testing.T) {
	t.Parallel()
	f := newFixture(t, artifact.Limits{}, "wa", "wb")
	cacheSpec := pipeline.JobSpec{Cache: []pipeline.Cache{{Key: "go-x", Paths: []string{"~/.cache"}}}}
	f.addRun(t, "run-1", "acme", job{id: "j1", key: "build", worker: "wa", st: state.JobRunning, spec: cacheSpec})
	f.addRun(t, "run-2", "globex", job{id: "j2", key: "build", worker: "wb", st: state.JobRunning, spec: cacheSpec})
	ca, _, _ := f.agent(t, "wa")
	cb, _, _ := f.agent(t, "wb")
	ctx := context.Background()
	ref1 := artifact.AttemptRef{JobID: "j1", Attempt: 1}
	ref2 := artifact.AttemptRef{JobID: "j2", Attempt: 1}

	if r, err := ca.LookupCache(ctx, ref1, "go-aaa", []string{"go-"}); err != nil || r.Entry != nil {
		t.Fatalf("first lookup: %+v %v; want a miss", r, err)
	}
	r := workspace(t, nil)
	writeHome := func(name, content string) {
		p := filepath.Join(r.Home, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeHome(".cache/mod", "old")
	if err := upload(t, ca, ref1, store.KindCache, "go-aaa", r, "~/.cache"); err != nil {
		t.Fatal(err)
	}
	f.advance(time.Second)
	writeHome(".cache/mod", "new")
	if err := upload(t, ca, ref1, store.KindCache, "go-bbb", r, "~/.cache"); err != nil {
		t.Fatal(err)
	}
	files, _ := artifact.Collect(r, []string{"~/.cache"})
	if _, _, exists, err := ca.Upload(ctx, ref1, store.KindCache, "go-aaa", r, files); err != nil || !exists {
		t.Errorf("second save of go-aaa: exists %v, %v; want exists", exists, err)
	}
	hit, err := ca.LookupCache(ctx, ref1, "go-aaa", []string{"go-"})
	if err != nil || !hit.Exact || hit.Entry == nil || hit.Entry.Name != "go-aaa" {
		t.Fatalf("exact lookup: %+v %v", hit, err)
	}
	dst := artifact.Roots{Workspace: t.TempDir(), Home: t.TempDir()}
	if err := ca.Download(ctx, ref1, *hit.Entry, dst, -1); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dst.Home, ".cache/mod")); string(got) != "old" {
		t.Errorf("go-aaa restored %q, want old", got)
	}
	partial, err := ca.LookupCache(ctx, ref1, "go-ccc", []string{"nope-", "go-"})
	if err != nil || partial.Exact || partial.Entry == nil || partial.Entry.Name != "go-bbb" {
		t.Fatalf("restore key lookup: %+v %v; want the newest go- entry, go-bbb", partial, err)
	}
	if other, err := cb.LookupCache(ctx, ref2, "go-aaa", []string{"go-"}); err != nil || other.Entry != nil {
		t.Errorf("globex looks up acme's key: %+v %v; want a miss", other, err)
	}
	if err := cb.Download(ctx, ref2, *hit.Entry, artifact.Roots{Workspace: t.TempDir(), Home: t.TempDir()}, -1); !errors.Is(err, artifact.ErrForbidden) {
		t.Errorf("globex opens acme's cache by id: %v, want forbidden", err)
	}
	for res, want := range map[string]float64{"miss": 2, "hit": 1, "partial": 1} {
		if got := f.svc.CacheLookups(res); got != want {
			t.Errorf("lookups %s = %v, want %v", res, got, want)
		}
	}
}

// TestLimitsAndRetention: an upload over the job's limit, then one over the
// tenant's, are refused with errors that name the limit, and leave nothing
// stored; an expired artifact is swept, record and object.
func TestLimitsAndRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t, artifact.Limits{MaxJobBytes: 3 << 20, MaxTenantBytes: 5 << 20, ExpireIn: time.Hour}, "wa")
	f.addRun(t, "run-1", "acme",
		job{id: "j1", key: "build", worker: "wa", st: state.JobRunning, spec: buildSpec},
		job{id: "j2", key: "build2", worker: "wa", st: state.JobRunning, spec: buildSpec},
		job{id: "j3", key: "build3", worker: "wa", st: state.JobRunning, spec: buildSpec},
	)
	ca, _, _ := f.agent(t, "wa")
	random := func(n int) string {
		b := make([]byte, n)
		f, _ := os.Open("/dev/urandom")
		defer f.Close()
		_, _ = io.ReadFull(f, b)
		return string(b)
	}
	big := workspace(t, map[string]string{"dist/big": random(4 << 20)})
	err := upload(t, ca, artifact.AttemptRef{JobID: "j1", Attempt: 1}, store.KindArtifact, "bin", big, "dist")
	if !errors.Is(err, artifact.ErrTooLarge) || !strings.Contains(err.Error(), "over the limit of 3.0 MiB per job") {
		t.Fatalf("4 MiB with a 3 MiB job limit: %v", err)
	}
	mid := workspace(t, map[string]string{"dist/mid": random(3000 << 10)})
	if err := upload(t, ca, artifact.AttemptRef{JobID: "j2", Attempt: 1}, store.KindArtifact, "bin", mid, "dist"); err != nil {
		t.Fatal(err)
	}
	err = upload(t, ca, artifact.AttemptRef{JobID: "j3", Attempt: 1}, store.KindArtifact, "bin", mid, "dist")
	if !errors.Is(err, artifact.ErrTooLarge) || !strings.Contains(err.Error(), "tenant acme's limit of 5.0 MiB") {
		t.Fatalf("a second 2.9 MiB with a 5 MiB tenant limit: %v", err)
	}
	recs, _ := f.st.ListArtifacts(context.Background(), store.ArtifactFilter{})
	if len(recs) != 1 || recs[0].JobID != "j2" {
		t.Fatalf("records after the refusals: %+v", recs)
	}
	if n, err := f.svc.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep before expiry: %d, %v", n, err)
	}
	f.advance(time.Hour)
	if n, err := f.svc.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep after expiry: %d, %v", n, err)
	}
	if _, err := f.blobs.Get(context.Background(), recs[0].Object); !errors.Is(err, artifact.ErrNoObject) {
		t.Errorf("the swept object: %v, want ErrNoObject", err)
	}
	if recs, _ := f.st.ListArtifacts(context.Background(), store.ArtifactFilter{}); len(recs) != 0 {
		t.Errorf("records after the sweep: %+v", recs)
	}
}
