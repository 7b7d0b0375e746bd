package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hodei-ci/hodei/internal/api"
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
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/pools", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got api.PoolList
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Pools) != 2 || got.Pools[0].Demand != 3 || *got.Pools[0].Forecast != 3 || got.Pools[1].Circuit != "open" || got.Pools[1].LastError == "" {
		t.Errorf("pools: %+v", got.Pools)
	}
	if len(got.Unplaceable) != 1 || got.Unplaceable[0].Jobs != 2 || got.Unplaceable[0].CPUMilli != 64000 {
		t.Errorf("unplaceable: %+v", got.Unplaceable)
	}

	// A server without pools lists none; other methods are refused.
	h = api.New(api.Deps{})
	rec = httptest.NewRecorder()
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
