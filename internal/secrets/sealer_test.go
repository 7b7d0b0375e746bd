package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
	"github.com/hodei-ci/hodei/internal/secrets/sealed"
)

func TestSealerSealsForTheWorkerAndTenant(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := Static{"TOKEN": "default-value", "team-a/TOKEN": "team-a-value"}
	s := NewSealer(p, nil)
	key, _ := sealed.NewKeyPair()
	d := bus.Dispatch{Kind: bus.KindAssign, JobID: "r-1", Attempt: 1}

	// The key arrives after the assignment: Seal waits for it.
	go s.Learn("w1", key.Public())
	out := s.Seal(ctx, "w1", "team-a", []string{"TOKEN"}, d)
	if out.SecretsError != "" {
		t.Fatal(out.SecretsError)
	}
	values, err := key.Open(out.SealKey, sealed.Binding{Worker: "w1", JobID: "r-1", Attempt: 1}, out.Sealed)
	if err != nil || values["TOKEN"] != "team-a-value" {
		t.Fatalf("team-a's job got %q, %v", values["TOKEN"], err)
	}
	data, _ := json.Marshal(out)
	if strings.Contains(string(data), "team-a-value") {
		t.Error("the dispatch JSON holds the value")
	}

	out = s.Seal(ctx, "w1", "", []string{"TOKEN", "NOPE"}, d)
	if out.Sealed != nil || out.SecretsError != "secret NOPE: secret not found" {
		t.Errorf("missing secret: sealed %d bytes, error %q", len(out.Sealed), out.SecretsError)
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	if out := s.Seal(short, "w2", "", []string{"TOKEN"}, d); !strings.Contains(out.SecretsError, "announced no sealing key") {
		t.Errorf("worker without a key: %q", out.SecretsError)
	}
}

func TestSealerLearnsKeysFromHeartbeatsOfTheirOwnSubject(t *testing.T) {
	_, nc := bustest.Start(t, bus.EmbeddedOptions{Port: -1}, "test")
	s := NewSealer(Static{"A": "value-a"}, nil)
	if err := s.Watch(nc, bus.DefaultSubjects); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	real, _ := sealed.NewKeyPair()
	forged, _ := sealed.NewKeyPair()
	publish := func(subjectWorker, bodyWorker string, k *sealed.KeyPair) {
		data, _ := json.Marshal(bus.Heartbeat{WorkerID: bodyWorker, SealKey: k.Public()})
		if err := nc.Publish(bus.DefaultSubjects.Heartbeat(subjectWorker), data); err != nil {
			t.Fatal(err)
		}
	}
	// A heartbeat on w9's subject that claims to be w1's is ignored; w1's
	// own is learnt. Both are delivered in order on one connection.
	publish("w9", "w1", forged)
	publish("w1", "w1", real)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := s.Seal(ctx, "w1", "", []string{"A"}, bus.Dispatch{JobID: "j", Attempt: 1})
	if out.SecretsError != "" {
		t.Fatal(out.SecretsError)
	}
	if out.SealKey != real.ID() {
		t.Fatalf("sealed for key %s; the real one is %s (forged %s)", out.SealKey, real.ID(), forged.ID())
	}
	if _, err := forged.Open("", sealed.Binding{Worker: "w1", JobID: "j", Attempt: 1}, out.Sealed); !errors.Is(err, sealed.ErrOpen) {
		t.Errorf("the forged key opens the box: %v", err)
	}
}

func TestTenantsHaveSeparateNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	mustPut(t, ctx, st, Qualify("team-a", "K"), "a")
	mustPut(t, ctx, st, Qualify(DefaultTenant, "K"), "d")
	if _, err := st.Put(ctx, "bad tenant/K", "x"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("a tenant with a space: %v", err)
	}
	svc := &Service{Provider: st}
	for tenant, want := range map[string]string{"team-a": "1", "default": "1", "team-b": ""} {
		list, err := svc.List(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if want == "" && len(list) != 0 || want != "" && (len(list) != 1 || list[0].Name != "K" || list[0].Tenant != tenant) {
			t.Errorf("tenant %s lists %+v", tenant, list)
		}
	}
	// Vault keeps another tenant's secrets in a folder, and lists them.
	_, addr := startFakeVault(t)
	v, err := NewVault(ctx, VaultOptions{Address: addr, Token: "root-token"})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"K", "team-a/K"} {
		mustPut(t, ctx, v, q, "v-"+q)
	}
	list, err := v.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "K" || list[1].Name != "team-a/K" {
		t.Errorf("vault lists %+v", list)
	}
	if got, _ := v.Get(ctx, "team-a/K"); got.Value != "v-team-a/K" {
		t.Errorf("vault team-a/K = %q", got.Value)
	}
}
