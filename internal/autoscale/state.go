package autoscale

import (
	"fmt"
	"slices"
	"time"
)

// State is what a Scaler has learned that is worth keeping across a
// restart: each pool's demand series. Without it a restarted server would
// forecast nothing for two days (the daily season needs two days of
// history) and scale reactively meanwhile.
type State struct {
	// Bucket is the step of the series; a Scaler with another step
	// refuses the State.
	Bucket time.Duration        `json:"bucket"`
	Pools  map[string]PoolState `json:"pools"`
}

// PoolState is one pool's demand series.
type PoolState struct {
	// First is the index of the bucket of History[0], counted in Buckets
	// from the Unix epoch.
	First   int64     `json:"first"`
	History []float64 `json:"history"`
}

// State returns a copy of the Scaler's demand series (closed buckets only).
func (s *Scaler) State() State {
	st := State{Bucket: s.o.Bucket, Pools: make(map[string]PoolState, len(s.pools))}
	for name, p := range s.pools {
		if len(p.history) > 0 {
			st.Pools[name] = PoolState{First: p.first, History: slices.Clone(p.history)}
		}
	}
	return st
}

// Restore loads the demand series of a State; call it before the first
// Decide. The buckets between the end of a restored series and the first
// snapshot (the time the server was down) are filled with the value of the
// same bucket a day before, or the last value when there is none; a series
// that ended longer ago than Options.History is dropped.
func (s *Scaler) Restore(st State) error {
	if st.Bucket != s.o.Bucket {
		return fmt.Errorf("autoscaler state: buckets of %s, this scaler uses %s", st.Bucket, s.o.Bucket)
	}
	if !s.last.IsZero() {
		return fmt.Errorf("autoscaler state: restore after the first decision")
	}
	for name, ps := range st.Pools {
		if len(ps.History) == 0 {
			continue
		}
		p := s.pools[name]
		if p == nil {
			p = &pool{}
			s.pools[name] = p
		}
		p.history, p.first = slices.Clone(ps.History), ps.First
	}
	return nil
}

// resume continues a restored series of p up to bucket b (exclusive): the
// missing buckets get the value a day before, or the last one.
func (s *Scaler) resume(p *pool, b int64) {
	keep := int64(s.o.History / s.o.Bucket)
	end := p.first + int64(len(p.history)) // the bucket after the last
	switch {
	case b < end:
		// The clock is behind the restored series: drop what is ahead.
		p.history = p.history[:max(0, b-p.first)]
	case b-end > keep:
		p.history = nil
	}
	if len(p.history) == 0 {
		p.history, p.first = nil, b
		return
	}
	day := int(24 * time.Hour / s.o.Bucket)
	for k := p.first + int64(len(p.history)); k < b; k++ {
		v := p.history[len(p.history)-1]
		if i := len(p.history) - day; i >= 0 {
			v = p.history[i]
		}
		p.history = append(p.history, v)
	}
	if drop := len(p.history) - int(keep); drop > 0 {
		p.history = slices.Clone(p.history[drop:])
		p.first += int64(drop)
	}
}
