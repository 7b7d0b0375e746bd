package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/bus/bustest"
)

// TestReportsStreamRefusesOversizedMessages: the orchestrator reads the
// reports stream with a byte limit per pull, which a larger message would
// stall forever; the stream refuses such messages at publish instead.
func TestReportsStreamRefusesOversizedMessages(t *testing.T) {
	_, nc := bustest.Start(t, bus.EmbeddedOptions{Port: -1}, "test")
	js := bustest.Streams(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
