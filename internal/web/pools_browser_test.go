package web_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/autoscale"
	"github.com/hodei-ci/hodei/internal/server"
	"github.com/hodei-ci/hodei/internal/workers"
	"github.com/hodei-ci/hodei/internal/workers/local"
	"github.com/hodei-ci/hodei/internal/workers/poolsfile"
)

// TestPoolsPagePlotsHistory: the workers page of a server with a pool and
// the predictive autoscaler plots the pool's demand, workers and forecast,
// and its cost, from GET /api/v1/pools/{pool}/history, and follows them as
// a queued job makes the pool grow.
func TestPoolsPagePlotsHistory(t *testing.T) {
	cfg, err := poolsfile.ParseConfig("pools.yaml", []byte(`
pools:
  builders:
    provider: local
    min: 1
    max: 2
    cost_per_hour: 0.5
    idle_timeout: 1h
    shape: {cpu: 1, memory: 256Mi, labels: [builders]}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg := workers.NewRegistry()
	reg.Register("local", local.New)
	e := startUIWith(t, func(o *server.Options) {
		o.LocalWorkers = 0
		o.Pools, o.Providers = cfg, reg
		o.PoolInterval, o.PoolHistoryStep = 50*time.Millisecond, 100*time.Millisecond
		// Buckets of 100ms: the forecast is in use within a second.
		o.Scaler = autoscale.New(autoscale.Options{Predictive: true, Bucket: 100 * time.Millisecond, Horizon: 1, MinErrorSamples: 2})
	})
	admin := e.browser()
	e.signInToken(admin, e.admin)
	e.open(admin, "#/workers")
	// Each series' polylines, and how many points each has (legend).
	pointsOf := func(series string) string {
		return fmt.Sprintf(`+(document.querySelector('#pool-plots section[data-pool="builders"] g.legend[data-legend=%q]') || {dataset: {points: 0}}).dataset.points`, series)
	}
	e.until(admin, "demand, workers and forecast plotted",
		pointsOf("demand")+` >= 3 && `+pointsOf("workers")+` >= 3 && `+pointsOf("forecast")+` >= 3 && `+pointsOf("cost")+` >= 3`)
	for _, series := range []string{"demand", "workers", "forecast", "cost"} {
		pts := e.eval(admin, fmt.Sprintf(`[...document.querySelectorAll('#pool-plots polyline[data-series=%q]')].map(p => p.getAttribute('points')).join(' ')`, series))
		if strings.Count(pts, ",") < 2 {
			t.Errorf("%s: polyline points %q, want several", series, pts)
		}
	}
	e.shot(admin, "pools")

	// Three jobs that each take a whole worker: the pool grows to its max
	// of two, and the plot follows (the page polls the history); the third
	// waits, and the queue page says the pool is at its max.
	dir := t.TempDir()
	job := `
    runs-on: {labels: [builders], cpu: 1}
    steps: [{run: 'while [ ! -f "` + filepath.Join(dir, "gate") + `" ]; do sleep 0.05; done'}]`
	e.submit(e.admin, "name: grow\njobs:\n  a:"+job+"\n  b:"+job+"\n  c:"+job+"\n")
	e.until(admin, "two workers in the plot",
		`[...document.querySelectorAll('#pool-plots polyline[data-series="workers"]')].some(p => p.dataset.values.split(' ').includes('2'))`)
	var hist wire.PoolHistory
	if st := e.call(e.admin, "GET", "/api/v1/pools/builders/history", "", nil, &hist); st != http.StatusOK {
		t.Fatalf("history: %d", st)
	}
	grew, forecast, cost := false, false, false
	for _, p := range hist.Points {
		grew = grew || p.Workers == 2
		forecast = forecast || p.Forecast != nil
		cost = cost || p.Cost != nil && *p.Cost > 0
	}
	if !grew || !forecast || !cost || hist.Max != 2 || hist.CostPerHour != 0.5 {
		t.Errorf("history: grew %v, forecast %v, cost %v, max %d, cost/h %v", grew, forecast, cost, hist.Max, hist.CostPerHour)
	}
	e.shot(admin, "pools-grown")
	e.open(admin, "#/queue")
	e.until(admin, "a job waiting for the pool at its max",
		`[...document.querySelectorAll('#queue tbody tr')].some(r => r.textContent.includes('pool_at_max') && r.textContent.includes('pool builders is at its max of 2 workers'))`)
	e.shot(admin, "queue-pool-at-max")
	gate(t, filepath.Join(dir, "gate"))
}
