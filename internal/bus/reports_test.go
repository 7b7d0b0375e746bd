package bus_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hodei-ci/hodei/internal/bus"
)

// TestReportsStreamRefusesOversizedMessages: the orchestrator reads the
// reports stream with a byte limit per pull, which a larger message would
// stall forever; the stream refuses such messages at publish instead.
func TestReportsStreamRefusesOversizedMessages(t *testing.T) {
	e, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "js"), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.DefaultSubjects, 1); err != nil {
		t.Fatal(err)
	}
	publish := func(n int) error {
		m := nats.NewMsg(bus.DefaultSubjects.Status("w1"))
		m.Data = make([]byte, n)
		_, err := js.PublishMsg(ctx, m)
		return err
	}
	if err := publish(64 << 10); err != nil {
		t.Fatalf("a 64 KiB report: %v", err)
	}
	if err := publish(bus.MaxReportSize + 1); err == nil {
		t.Fatalf("a report of %d bytes was stored", bus.MaxReportSize+1)
	}
}
