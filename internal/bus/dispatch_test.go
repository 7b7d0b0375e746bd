package bus_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
)

// TestDispatchStreamTakesMoreThanAThousandAgents: each agent has a
// consumer of its own on the dispatch stream, and nats-server gives a
// stream without a limit of its own 1,000 consumers: agent 1,001 was
// refused its consumer and took no job, for ever. A stream made by an
// earlier release gets the limit when the server starts again.
func TestDispatchStreamTakesMoreThanAThousandAgents(t *testing.T) {
	_, nc := bustest.Start(t, bus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "js"), Port: -1}, "test")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The stream as the previous release made it: no consumer limit.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.StreamDispatch, Subjects: []string{bus.DefaultSubjects.Prefix + ".dispatch.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(ctx, js, bus.DefaultSubjects, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 1001 {
		id := fmt.Sprintf("w%d", i)
		cfg := jetstream.ConsumerConfig{Durable: "agent-" + id, FilterSubject: bus.DefaultSubjects.Dispatch(id), AckPolicy: jetstream.AckExplicitPolicy}
		if _, err := js.CreateOrUpdateConsumer(ctx, bus.StreamDispatch, cfg); err != nil {
			t.Fatalf("consumer %d: %v", i+1, err)
		}
	}
}
