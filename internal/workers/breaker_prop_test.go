package workers

import (
	"testing"
	"time"
)

// breakerModel is the breaker's specification, written as plainly as
// possible.
type breakerModel struct {
	threshold int
	cooldown  time.Duration
	state     BreakerState
	failures  int
	openedAt  time.Time
	trial     bool
}

func (m *breakerModel) allow(now time.Time) bool {
	switch m.state {
	case BreakerClosed:
		return true
	case BreakerOpen:
		if now.Sub(m.openedAt) < m.cooldown {
			return false
		}
		m.state, m.trial = BreakerHalfOpen, true
		return true
	default:
		if m.trial {
			return false
		}
		m.trial = true
		return true
	}
}

func (m *breakerModel) success() { m.state, m.failures, m.trial = BreakerClosed, 0, false }

func (m *breakerModel) failure(now time.Time) {
	switch m.state {
	case BreakerClosed:
		m.failures++
		if m.failures >= m.threshold {
			m.state, m.openedAt = BreakerOpen, now
		}
	case BreakerHalfOpen:
		m.state, m.openedAt, m.trial = BreakerOpen, now, false
	default:
		m.openedAt = now
	}
}

// TestBreakerProperties drives the breaker and its model with random
// sequences of calls, outcomes and time, and checks after every step that
// they agree, and that the invariants hold: a closed breaker has seen fewer
// failures in a row than its threshold, an open one refuses every call
// until its cooldown has passed, a half-open one lets exactly one trial
// through, and every change of state is reported once.
func TestBreakerProperties(t *testing.T) {
	for seed := uint64(1); seed <= 500; seed++ {
		r := newRand(seed)
		threshold := 1 + r.intn(5)
		cooldown := time.Duration(1+r.intn(10)) * time.Second
		var changes []BreakerState
		b := NewBreaker(threshold, cooldown, func(from, to BreakerState) {
			if from == to {
				t.Fatalf("seed %d: change reported from %s to itself", seed, from)
			}
			changes = append(changes, to)
		})
		m := &breakerModel{threshold: threshold, cooldown: cooldown}
		now := t0
		outstanding := 0 // calls allowed and not yet reported
		prev := BreakerClosed
		for step := 0; step < 200; step++ {
			switch op := r.intn(10); {
			case op < 4:
				got, want := b.Allow(now), m.allow(now)
				if got != want {
					t.Fatalf("seed %d step %d: Allow = %v, model %v (state %s)", seed, step, got, want, m.state)
				}
				if got {
					outstanding++
				}
			case op < 6 && outstanding > 0:
				outstanding--
				b.Success(now)
				m.success()
			case op < 8 && outstanding > 0:
				outstanding--
				b.Failure(now)
				m.failure(now)
			case op < 9 && outstanding > 0:
				outstanding--
				b.Cancel()
				if m.state == BreakerHalfOpen {
					m.trial = false
				}
			default:
				now = now.Add(time.Duration(r.intn(3000)) * time.Millisecond)
			}
			if m.state == BreakerClosed && m.failures >= threshold {
				t.Fatalf("seed %d: model closed with %d failures", seed, m.failures)
			}
			st := b.State(now)
			want := m.state
			if want == BreakerOpen && now.Sub(m.openedAt) >= cooldown {
				want = BreakerHalfOpen
			}
			if st != want {
				t.Fatalf("seed %d step %d: State = %s, model %s", seed, step, st, want)
			}
			if st == BreakerOpen && b.Allow(now) {
				t.Fatalf("seed %d step %d: an open breaker allowed a call before its cooldown", seed, step)
			}
			if m.state != prev {
				if len(changes) == 0 || changes[len(changes)-1] != m.state {
					t.Fatalf("seed %d step %d: change to %s not reported (reported %v)", seed, step, m.state, changes)
				}
				prev = m.state
			}
		}
	}
}
