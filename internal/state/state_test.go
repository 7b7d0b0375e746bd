package state

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/quick"
)

// sm describes one state machine through the exported API only, so that the
// properties below check what callers see, not the internal tables.
type sm struct {
	name    string
	states  []string
	initial string
	finals  []string
	to      func(from, to string) error
	final   func(string) bool // nil when the package has no Final func
	table   machine
}

func machines() []sm {
	return []sm{
		{
			name: "run", states: RunStates, initial: RunQueued,
			finals: []string{RunSucceeded, RunFailed, RunCanceled},
			to:     RunTo, final: RunFinal, table: runMachine,
		},
		{
			name: "job", states: JobStates, initial: JobPending,
			finals: []string{JobSucceeded, JobFailed, JobCanceled, JobSkipped},
			to:     JobTo, final: JobFinal, table: jobMachine,
		},
		{
			name: "worker", states: WorkerStates, initial: WorkerProvisioning,
			finals: []string{WorkerGone},
			to:     WorkerTo, table: workerMachine,
		},
	}
}

// next lists the states reachable in one legal step, in a fixed order.
func (m sm) next(from string) []string {
	var out []string
	for _, s := range m.states {
		if m.to(from, s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// reach returns every state reachable from start (start included).
func (m sm) reach(start string) map[string]bool {
	seen := map[string]bool{start: true}
	stack := []string{start}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, n := range m.next(s) {
			if !seen[n] {
				seen[n] = true
				stack = append(stack, n)
			}
		}
	}
	return seen
}

func TestStateListsHaveNoDuplicates(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		seen := map[string]bool{}
		for _, s := range m.states {
			if s == "" {
				t.Errorf("%s: empty state name", m.name)
			}
			if seen[s] {
				t.Errorf("%s: state %q listed twice", m.name, s)
			}
			seen[s] = true
		}
		if !seen[m.initial] {
			t.Errorf("%s: initial state %q not in the list", m.name, m.initial)
		}
		for _, f := range m.finals {
			if !seen[f] {
				t.Errorf("%s: final state %q not in the list", m.name, f)
			}
		}
	}
}

// TestTransitionsStayInKnownStates probes every pair, including unknown
// names, and checks that nothing legal leads into or out of an unknown state.
func TestTransitionsStayInKnownStates(t *testing.T) {
	t.Parallel()
	unknown := []string{"", "bogus", "QUEUED", "Running", " queued", "queued ", "done", "gone\n"}
	for _, m := range machines() {
		all := append(slices.Clone(m.states), unknown...)
		for _, from := range all {
			for _, to := range all {
				err := m.to(from, to)
				if err == nil && (!slices.Contains(m.states, from) || !slices.Contains(m.states, to)) {
					t.Errorf("%s: %q -> %q accepted though one side is unknown", m.name, from, to)
				}
			}
		}
	}
}

func TestRandomWalksStayInKnownStates(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// The walker follows the transition table itself, so that a
			// legal move into a state missing from the state list is
			// caught, and checks that the checker agrees with every move.
			walk := func(seed uint64, steps uint8) bool {
				r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
				cur := m.initial
				for range int(steps) + 1 {
					if !slices.Contains(m.states, cur) {
						t.Logf("seed %d: left the known states at %q", seed, cur)
						return false
					}
					outs := m.table[cur]
					if len(outs) == 0 {
						// Only a final state may be a dead end.
						if !slices.Contains(m.finals, cur) {
							t.Logf("seed %d: stuck in non-final %q", seed, cur)
							return false
						}
						return true
					}
					to := outs[r.IntN(len(outs))]
					if err := m.to(cur, to); err != nil {
						t.Logf("seed %d: table move %q -> %q rejected: %v", seed, cur, to, err)
						return false
					}
					cur = to
				}
				return slices.Contains(m.states, cur)
			}
			if err := quick.Check(walk, &quick.Config{MaxCount: 500}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTablesUseKnownStates checks every source and target of the transition
// tables against the state lists.
func TestTablesUseKnownStates(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		for from, tos := range m.table {
			if !slices.Contains(m.states, from) {
				t.Errorf("%s: transitions from unknown state %q", m.name, from)
			}
			for _, to := range tos {
				if !slices.Contains(m.states, to) {
					t.Errorf("%s: transition %q -> unknown state %q", m.name, from, to)
				}
			}
		}
	}
}

func TestFinalStatesHaveNoOutgoingTransitions(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		for _, s := range m.states {
			isFinal := slices.Contains(m.finals, s)
			outs := m.next(s)
			if isFinal && len(outs) > 0 {
				t.Errorf("%s: final state %q has transitions to %v", m.name, s, outs)
			}
			if !isFinal && len(outs) == 0 {
				t.Errorf("%s: non-final state %q has no transitions", m.name, s)
			}
			if m.final != nil && m.final(s) != isFinal {
				t.Errorf("%s: Final(%q) = %v, want %v", m.name, s, m.final(s), isFinal)
			}
		}
	}
}

func TestEveryStateReachableFromInitial(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		seen := m.reach(m.initial)
		for _, s := range m.states {
			if !seen[s] {
				t.Errorf("%s: %q not reachable from %q", m.name, s, m.initial)
			}
		}
	}
}

func TestEveryNonFinalStateCanReachAFinalState(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		for _, s := range m.states {
			if slices.Contains(m.finals, s) {
				continue
			}
			seen := m.reach(s)
			ok := false
			for _, f := range m.finals {
				if seen[f] {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s: no final state reachable from %q", m.name, s)
			}
		}
	}
}

func TestNoSelfTransitions(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		for _, s := range m.states {
			if m.to(s, s) == nil {
				t.Errorf("%s: %q -> %q accepted", m.name, s, s)
			}
		}
	}
}

func TestIllegalPairsWrapErrIllegal(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		all := append(slices.Clone(m.states), "", "nope")
		legal := 0
		for _, from := range all {
			for _, to := range all {
				err := m.to(from, to)
				if err == nil {
					legal++
					continue
				}
				if !errors.Is(err, ErrIllegal) {
					t.Errorf("%s: %q -> %q: error %v does not wrap ErrIllegal", m.name, from, to, err)
				}
				// The message names the machine and both states.
				msg := err.Error()
				if !strings.HasPrefix(msg, m.name+" ") || !strings.Contains(msg, from+" -> "+to) {
					t.Errorf("%s: %q -> %q: unhelpful message %q", m.name, from, to, msg)
				}
			}
		}
		if legal == 0 {
			t.Errorf("%s: no legal transition at all", m.name)
		}
	}
}

// TestIllegalPairsProperty feeds arbitrary strings: any pair the machine
// rejects wraps ErrIllegal, and any pair it accepts is made of known states.
func TestIllegalPairsProperty(t *testing.T) {
	t.Parallel()
	for _, m := range machines() {
		f := func(from, to string) bool {
			err := m.to(from, to)
			if err == nil {
				return slices.Contains(m.states, from) && slices.Contains(m.states, to)
			}
			return errors.Is(err, ErrIllegal)
		}
		if err := quick.Check(f, nil); err != nil {
			t.Errorf("%s: %v", m.name, err)
		}
	}
}

func TestSpecificTransitions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind     string
		from, to string
		legal    bool
	}{
		// Runs.
		{"run", RunQueued, RunRunning, true},
		{"run", RunQueued, RunCanceled, true},
		{"run", RunQueued, RunFailed, true}, // e.g. expansion failure
		{"run", RunRunning, RunSucceeded, true},
		{"run", RunRunning, RunFailed, true},
		{"run", RunRunning, RunCanceled, true},
		{"run", RunRunning, RunQueued, false},
		{"run", RunSucceeded, RunRunning, false},
		{"run", RunFailed, RunQueued, false},
		{"run", RunCanceled, RunSucceeded, false},
		{"run", RunSucceeded, RunFailed, false},

		// Jobs.
		{"job", JobPending, JobQueued, true},
		{"job", JobPending, JobSkipped, true},
		{"job", JobPending, JobCanceled, true},
		{"job", JobPending, JobAssigned, false},
		{"job", JobPending, JobRunning, false},
		{"job", JobPending, JobSucceeded, false},
		{"job", JobQueued, JobAssigned, true},
		{"job", JobQueued, JobCanceled, true},
		{"job", JobQueued, JobRunning, false},
		{"job", JobQueued, JobPending, false},
		{"job", JobQueued, JobSkipped, false},
		{"job", JobAssigned, JobRunning, true},
		{"job", JobAssigned, JobQueued, true}, // worker lost before start
		{"job", JobAssigned, JobPending, false},
		{"job", JobRunning, JobSucceeded, true},
		{"job", JobRunning, JobFailed, true},
		{"job", JobRunning, JobCanceled, true},
		{"job", JobRunning, JobQueued, true}, // retry
		{"job", JobRunning, JobAssigned, false},
		{"job", JobRunning, JobPending, false},
		{"job", JobRunning, JobSkipped, false},
		{"job", JobSucceeded, JobRunning, false},
		{"job", JobSucceeded, JobQueued, false},
		{"job", JobFailed, JobQueued, false},
		{"job", JobCanceled, JobQueued, false},
		{"job", JobSkipped, JobQueued, false},

		// Workers.
		{"worker", WorkerProvisioning, WorkerIdle, true},
		{"worker", WorkerProvisioning, WorkerGone, true},
		{"worker", WorkerProvisioning, WorkerDraining, false},
		{"worker", WorkerIdle, WorkerBusy, true},
		{"worker", WorkerIdle, WorkerDraining, true},
		{"worker", WorkerIdle, WorkerProvisioning, false},
		{"worker", WorkerBusy, WorkerIdle, true},
		{"worker", WorkerBusy, WorkerLost, true},
		{"worker", WorkerDraining, WorkerGone, true},
		{"worker", WorkerDraining, WorkerBusy, false}, // drained workers get no new jobs
		{"worker", WorkerLost, WorkerIdle, true},      // came back
		{"worker", WorkerLost, WorkerGone, true},
		{"worker", WorkerGone, WorkerIdle, false},
		{"worker", WorkerGone, WorkerLost, false},
	}
	fn := map[string]func(string, string) error{"run": RunTo, "job": JobTo, "worker": WorkerTo}
	for _, tt := range tests {
		err := fn[tt.kind](tt.from, tt.to)
		if tt.legal && err != nil {
			t.Errorf("%s %s -> %s: unexpected error %v", tt.kind, tt.from, tt.to, err)
		}
		if !tt.legal {
			if err == nil {
				t.Errorf("%s %s -> %s: accepted, want illegal", tt.kind, tt.from, tt.to)
			} else if !errors.Is(err, ErrIllegal) {
				t.Errorf("%s %s -> %s: %v does not wrap ErrIllegal", tt.kind, tt.from, tt.to, err)
			}
		}
	}
}

func TestFinalFalseForUnknownStrings(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "bogus", "Succeeded", "SUCCEEDED", " succeeded", "succeeded\n", "done", "gone"} {
		if RunFinal(s) {
			t.Errorf("RunFinal(%q) = true", s)
		}
		if JobFinal(s) {
			t.Errorf("JobFinal(%q) = true", s)
		}
	}
	f := func(s string) bool {
		return (!RunFinal(s) || slices.Contains(RunStates, s)) && (!JobFinal(s) || slices.Contains(JobStates, s))
	}
	if err := quick.Check(f, nil); err != nil {
		t.Error(err)
	}
}

func TestFinalKnownStates(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		RunQueued: false, RunRunning: false, RunSucceeded: true, RunFailed: true, RunCanceled: true,
	} {
		if RunFinal(s) != want {
			t.Errorf("RunFinal(%q) = %v, want %v", s, !want, want)
		}
	}
	for s, want := range map[string]bool{
		JobPending: false, JobQueued: false, JobAssigned: false, JobRunning: false,
		JobSucceeded: true, JobFailed: true, JobCanceled: true, JobSkipped: true,
	} {
		if JobFinal(s) != want {
			t.Errorf("JobFinal(%q) = %v, want %v", s, !want, want)
		}
	}
}

func TestJobActive(t *testing.T) {
	t.Parallel()
	for _, s := range append(slices.Clone(JobStates), "", "bogus") {
		want := s == JobAssigned || s == JobRunning
		if JobActive(s) != want {
			t.Errorf("JobActive(%q) = %v, want %v", s, !want, want)
		}
		// An active job is never final.
		if JobActive(s) && JobFinal(s) {
			t.Errorf("%q is both active and final", s)
		}
	}
}
