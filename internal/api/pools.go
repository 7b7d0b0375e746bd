package api

import (
	"net/http"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/workers"
)

// PoolLister is what serves GET /api/v1/pools: the worker manager.
type PoolLister interface {
	Pools() []workers.PoolStatus
	Unplaceable() []workers.Demand
	History(pool string) ([]workers.HistoryPoint, bool)
}

// pools lists the pools of the worker manager: size, min and max, demand,
// the provider's circuit breaker and, with an autoscaler, its forecast. A
// server without a pools file has none. With security on, this is an
// administrator's endpoint (like any route the authorizer does not name).
func (a *api) pools(w http.ResponseWriter, r *http.Request) {
	out := wire.PoolList{Pools: []wire.Pool{}}
	if a.d.Pools != nil {
		for _, p := range a.d.Pools.Pools() {
			out.Pools = append(out.Pools, PoolJSON(p))
		}
		for _, d := range a.d.Pools.Unplaceable() {
			out.Unplaceable = append(out.Unplaceable, wire.Demand{CPUMilli: d.CPUMilli, Memory: d.Memory, GPU: d.GPU, Labels: d.Labels, Jobs: d.Jobs})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// PoolJSON converts a pool's status to its API shape.
func PoolJSON(p workers.PoolStatus) wire.Pool {
	out := wire.Pool{
		Name: p.Name, Provider: p.Provider, Min: p.Min, Max: p.Max, Size: p.Size,
		Pending: p.Pending, Idle: p.Idle, Busy: p.Busy, Draining: p.Draining, Adopted: p.Adopted,
		Demand: p.Demand, Ephemeral: p.Ephemeral, CostPerHour: p.CostPerHour, Capacity: p.Capacity,
		Circuit: p.Circuit, LastError: p.LastError, Forecast: p.Forecast,
	}
	if p.Account != nil {
		a := wire.CostAccount(*p.Account)
		out.Account = &a
	}
	return out
}

// poolHistory answers a pool's recent points (demand, workers, forecast,
// cost) for the pools page's plot. Like the pool list, it is an
// administrator's endpoint when security is on.
func (a *api) poolHistory(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	var pts []workers.HistoryPoint
	ok := false
	if a.d.Pools != nil {
		pts, ok = a.d.Pools.History(name)
	}
	if !ok {
		writeError(w, wire.CodeNotFound, "no pool "+name+" (GET /api/v1/pools lists them)")
		return
	}
	if pts == nil {
		pts = []workers.HistoryPoint{} // [] in the answer, not null
	}
	out := wire.PoolHistory{Pool: name, Points: pts}
	for _, p := range a.d.Pools.Pools() {
		if p.Name == name {
			out.Max, out.CostPerHour = p.Max, p.CostPerHour
		}
	}
	writeJSON(w, http.StatusOK, out)
}
