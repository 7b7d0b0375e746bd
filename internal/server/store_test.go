package server

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestUnknownStoreRefused: Options.Store is sqlite, empty or a postgres://
// URL; anything else fails Start and says what it wants.
func TestUnknownStoreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, Options{
		DataDir:    t.TempDir(),
		Store:      "mysql://db",
		NATSListen: "none",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		s.Close()
		t.Fatal("Start with store mysql://db succeeded")
	}
	if !strings.Contains(err.Error(), "want sqlite or a postgres:// URL") {
		t.Errorf("Start with store mysql://db: %v, want it to name the stores it accepts", err)
	}
}
