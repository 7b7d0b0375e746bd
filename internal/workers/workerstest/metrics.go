package workerstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// ActionCount is how many actions of a kind (create, drain, terminate) the
// manager whose metrics reg holds took (hodei_pool_actions_total).
func ActionCount(t *testing.T, reg *prometheus.Registry, kind string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "hodei_pool_actions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "action" && l.GetValue() == kind {
					n += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return n
}
