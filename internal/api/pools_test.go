package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api"
	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/workers"
)

type fakePools []workers.PoolStatus

func (f fakePools) Pools() []workers.PoolStatus { return f }

func (f fakePools) Unplaceable() []workers.Demand {
	return []workers.Demand{{CPUMilli: 64000, Memory: 1 << 30, Labels: []string{"gpu"}, Jobs: 2}}
}

func TestPoolsEndpoint(t *testing.T) {
	three := 3
	h := api.New(api.Deps{Pools: fakePools{
		{Name: "builders", Provider: "docker", Min: 0, Max: 4, Size: 2, Busy: 1, Pending: 1, Demand: 3, Circuit: "closed", Forecast: &three},
		{Name: "gpu", Provider: "local", Max: 1, Circuit: "open", LastError: "create: engine down"},
	}})
	var got wire.PoolList
	getOK(t, h, "/api/v1/pools", &got)
	if len(got.Pools) != 2 || got.Pools[0].Demand != 3 || *got.Pools[0].Forecast != 3 || got.Pools[1].Circuit != "open" || got.Pools[1].LastError == "" {
		t.Errorf("pools: %+v", got.Pools)
	}
	if len(got.Unplaceable) != 1 || got.Unplaceable[0].Jobs != 2 || got.Unplaceable[0].CPUMilli != 64000 {
		t.Errorf("unplaceable: %+v", got.Unplaceable)
	}

	// A server without pools lists none; other methods are refused.
	h = api.New(api.Deps{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/pools", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "{\"pools\":[]}\n" {
		t.Errorf("no pools: %d %q", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/pools", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

// TestPoolsWireUnchanged checks that GET /api/v1/pools answers the same JSON
// as the worker manager's own types encode to, and that the typed client
// reads it back.
func TestPoolsWireUnchanged(t *testing.T) {
	three := 3
	pools := fakePools{
		{Name: "builders", Provider: "docker", Max: 4, Size: 3, Pending: 1, Idle: 1, Busy: 1, Adopted: 1, Demand: 3,
			Ephemeral: true, CostPerHour: 0.5, Capacity: -1, Circuit: "closed", Forecast: &three,
			Account: &workers.CostAccount{WorkerHours: 2.5, IdleWorkerHours: 1, Cost: 1.25}},
		{Name: "gpu", Provider: "local", Max: 1, Circuit: "open", LastError: "create: engine down"},
	}
	want, err := json.Marshal(struct {
		Pools       []workers.PoolStatus `json:"pools"`
		Unplaceable []workers.Demand     `json:"unplaceable,omitempty"`
	}{pools.Pools(), pools.Unplaceable()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{Pools: pools}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/pools")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(body)); got != string(want) {
		t.Errorf("pools JSON\n got %s\nwant %s", got, want)
	}

	c, err := client.New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Pools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Pools) != 2 || got.Pools[0].Account == nil || got.Pools[0].Account.Cost != 1.25 || *got.Pools[0].Forecast != 3 ||
		got.Pools[1].LastError != "create: engine down" || len(got.Unplaceable) != 1 || got.Unplaceable[0].Labels[0] != "gpu" {
		t.Errorf("client.Pools = %+v", got)
	}
}

func (f fakePools) History(pool string) ([]workers.HistoryPoint, bool) {
	for _, p := range f {
		if p.Name == pool {
			two, hours, cost := 2, 0.5, 1.0
			at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
			return []workers.HistoryPoint{
				{At: at, Demand: 3, Workers: 1, Busy: 1},
				{At: at.Add(15 * time.Second), Demand: 1, Workers: 2, Busy: 2, Forecast: &two, WorkerHours: &hours, Cost: &cost},
			}, true
		}
	}
	return nil, false
}

// TestPoolHistoryEndpoint: a pool's points come back in order with their
// forecast and cost; an unknown pool is not_found.
func TestPoolHistoryEndpoint(t *testing.T) {
	h := api.New(api.Deps{Pools: fakePools{{Name: "builders", Provider: "docker", Max: 4, CostPerHour: 2, Circuit: "closed"}}})
	var got wire.PoolHistory
	getOK(t, h, "/api/v1/pools/builders/history", &got)
	if got.Pool != "builders" || got.Max != 4 || got.CostPerHour != 2 || len(got.Points) != 2 ||
		got.Points[0].Demand != 3 || got.Points[0].Forecast != nil || *got.Points[1].Forecast != 2 || *got.Points[1].Cost != 1 {
		t.Errorf("history: %+v", got)
	}
	for _, path := range []string{"/api/v1/pools/nope/history"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		var e wire.Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusNotFound || e.Code != wire.CodeNotFound {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
	// Without a worker manager no pool has a history.
	rec := httptest.NewRecorder()
	api.New(api.Deps{}).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/pools/builders/history", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no pools: %d", rec.Code)
	}
}

// getOK serves a GET of path with h, fails the test unless it answers 200,
// and decodes the JSON answer into v.
func getOK(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatal(err)
	}
}
