package api

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store"
)

// runsCollector gives hodei_runs{state} from the store at scrape time.
type runsCollector struct {
	st   store.Store
	desc *prometheus.Desc
}

func newRunsCollector(st store.Store) *runsCollector {
	return &runsCollector{st: st, desc: prometheus.NewDesc("hodei_runs", "Runs in the store, by state.", []string{"state"}, nil)}
}

func (c *runsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *runsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.st.CountRuns(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range state.RunStates {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	// States in the store that are not in state.RunStates are counted
	// too, in a stable order.
	var other []state.RunState
	for s := range counts {
		if !s.Valid() {
			other = append(other, s)
		}
	}
	slices.Sort(other)
	for _, s := range other {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
