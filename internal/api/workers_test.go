package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
	"github.com/hodei-ci/hodei/internal/store/sqlite"
)

// A worker lost long ago ages out of GET /workers; ?all=true still lists it.
func TestLostWorkersAgeOutOfTheList(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "hodei.db"))
	if err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour).UTC()
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for _, w := range []store.Worker{
			{ID: "old-lost", Pool: "p", State: state.WorkerLost, FirstSeen: long, LastSeen: long},
			{ID: "recent-lost", Pool: "p", State: state.WorkerLost, FirstSeen: long, LastSeen: time.Now().UTC()},
		} {
			if err := tx.UpsertWorker(w); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{
		DataDir: dir, NATSListen: "none", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c, err := client.New("http://"+srv.HTTPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(list func(context.Context) ([]client.Worker, error)) map[string]bool {
		ws, err := list(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, w := range ws {
			m[w.ID] = true
		}
		return m
	}
	if got := ids(c.Workers); got["old-lost"] || !got["recent-lost"] {
		t.Errorf("default list %v: want recent-lost, not old-lost", got)
	}
	if got := ids(c.AllWorkers); !got["old-lost"] || !got["recent-lost"] {
		t.Errorf("--all list %v: want both", got)
	}
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/api/v1/workers?all=maybe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("all=maybe: %d, want 400", resp.StatusCode)
	}
}
