package wire

import (
	"time"

	"github.com/hodei-ci/hodei/internal/pipeline"
)

// PoolList is the answer of GET /api/v1/pools.
type PoolList struct {
	Pools []Pool `json:"pools"`
	// Unplaceable is the queued demand that fits no running worker and no
	// pool's shape.
	Unplaceable []Demand `json:"unplaceable,omitempty"`
}

// Pool is one pool of the worker manager, as of its last decision.
type Pool struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Min      int    `json:"min"`
	Max      int    `json:"max"`
	Size     int    `json:"size"` // workers owned, in any state
	Pending  int    `json:"pending"`
	Idle     int    `json:"idle"`
	Busy     int    `json:"busy"`
	Draining int    `json:"draining"`
	// Adopted counts the workers (of Size) that a previous run of the
	// server created and this one found again when it started.
	Adopted     int     `json:"adopted,omitempty"`
	Demand      int     `json:"demand"` // queued jobs given to this pool
	Ephemeral   bool    `json:"ephemeral"`
	CostPerHour float64 `json:"cost_per_hour"`
	// Capacity is how many more workers of the pool's shape the provider
	// said it can create (-1: no known limit).
	Capacity int `json:"capacity"`
	// Circuit is the provider's circuit breaker: closed, half-open or open.
	Circuit   string `json:"circuit"`
	LastError string `json:"last_error,omitempty"`
	// Forecast is the autoscaler's expectation of workers needed soon
	// (absent without one).
	Forecast *int `json:"forecast,omitempty"`
	// Account is what the pool's workers cost since the server started
	// (absent without an autoscaler that keeps accounts).
	Account *CostAccount `json:"account,omitempty"`
}

// CostAccount is what a pool's workers cost. Its JSON keys are the Go field
// names.
type CostAccount struct {
	WorkerHours     float64 // every worker
	IdleWorkerHours float64 // those running no job (starting, idle, draining)
	Cost            float64 // cost_per_hour × WorkerHours
}

// Demand is a group of queued jobs that ask for the same resources.
type Demand struct {
	CPUMilli int64    `json:"cpu_milli"`
	Memory   int64    `json:"memory_bytes"`
	GPU      int      `json:"gpu,omitempty"`
	Labels   []string `json:"labels,omitempty"`
	Jobs     int      `json:"jobs"`
	// Container is what the jobs run in when they have an image.
	Container *Container `json:"container,omitempty"`
}

// Container is what a group of queued jobs with an image runs in: a pool
// that makes a worker per container (Kubernetes) makes theirs from it.
type Container struct {
	Key      string             `json:"key"` // pipeline.ContainerKey
	Image    string             `json:"image"`
	Services []pipeline.Service `json:"services,omitempty"`
}

// PoolHistory is the answer of GET /api/v1/pools/{pool}/history: the
// pool's recent points, oldest first, one per step of the worker manager's
// history (an hour by default).
type PoolHistory struct {
	Pool        string      `json:"pool"`
	Max         int         `json:"max"`
	CostPerHour float64     `json:"cost_per_hour"`
	Points      []PoolPoint `json:"points"`
}

// PoolPoint is a pool at one decision of the worker manager.
type PoolPoint struct {
	At time.Time `json:"at"`
	// Demand is the queued jobs given to the pool.
	Demand int `json:"demand"`
	// Workers is the pool's size (any state); Busy those running jobs.
	Workers int `json:"workers"`
	Busy    int `json:"busy"`
	// Forecast is the workers the autoscaler's forecast asked for (absent
	// when it has none in use).
	Forecast *int `json:"forecast,omitempty"`
	// WorkerHours and Cost (cost_per_hour × worker-hours) are the pool's
	// account since the server started (absent without an autoscaler).
	WorkerHours *float64 `json:"worker_hours,omitempty"`
	Cost        *float64 `json:"cost,omitempty"`
}
