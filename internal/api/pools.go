package api

import (
	"net/http"

	"github.com/hodei-ci/hodei/internal/workers"
)

// PoolLister is what serves GET /api/v1/pools: the worker manager.
type PoolLister interface {
	Pools() []workers.PoolStatus
	Unplaceable() []workers.Demand
}

// PoolList is the answer of GET /api/v1/pools.
type PoolList struct {
	Pools []workers.PoolStatus `json:"pools"`
	// Unplaceable is the queued demand that fits no running worker and no
	// pool's shape.
	Unplaceable []workers.Demand `json:"unplaceable,omitempty"`
}

// pools lists the pools of the worker manager: size, min and max, demand,
// the provider's circuit breaker and, with an autoscaler, its forecast. A
// server without a pools file has none. With security on, this is an
// administrator's endpoint (like any route the authorizer does not name).
func (a *api) pools(w http.ResponseWriter, r *http.Request) {
	out := PoolList{Pools: []workers.PoolStatus{}}
	if a.d.Pools != nil {
		out.Pools = append(out.Pools, a.d.Pools.Pools()...)
		out.Unplaceable = a.d.Pools.Unplaceable()
	}
	writeJSON(w, http.StatusOK, out)
}
