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
	final   func(string) bool // nil when the machine has no Final method
	table   map[string][]string
}

// view describes one typed machine through strings, so that the properties
// below can probe it with any string.
func view[S ~string](name string, states []S, initial S, finals []S, to func(from, to S) error, final func(S) bool, table machine[S]) sm {
	m := sm{name: name, initial: string(initial), table: map[string][]string{}}
	for _, s := range states {
		m.states = append(m.states, string(s))
	}
	for _, s := range finals {
		m.finals = append(m.finals, string(s))
	}
	m.to = func(from, t string) error { return to(S(from), S(t)) }
	if final != nil {
		m.final = func(s string) bool { return final(S(s)) }
	}
	for from, tos := range table {
		for _, t := range tos {
			m.table[string(from)] = append(m.table[string(from)], string(t))
		}
	}
	return m
}

func machines() []sm {
	return []sm{
		view("run", RunStates, RunQueued, []RunState{RunSucceeded, RunFailed, RunCanceled}, RunTo, RunState.Final, runMachine),
		view("job", JobStates, JobPending, []JobState{JobSucceeded, JobFailed, JobCanceled, JobSkipped}, JobTo, JobState.Final, jobMachine),
		view("worker", WorkerStates, WorkerProvisioning, []WorkerState{WorkerGone}, WorkerTo, WorkerState.Final, workerMachine),
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
		{"run", string(RunQueued), string(RunRunning), true},
		{"run", string(RunQueued), string(RunCanceled), true},
		{"run", string(RunQueued), string(RunFailed), true}, // e.g. expansion failure
		{"run", string(RunRunning), string(RunSucceeded), true},
		{"run", string(RunRunning), string(RunFailed), true},
		{"run", string(RunRunning), string(RunCanceled), true},
		{"run", string(RunRunning), string(RunQueued), false},
		{"run", string(RunSucceeded), string(RunRunning), false},
		{"run", string(RunFailed), string(RunQueued), false},
		{"run", string(RunCanceled), string(RunSucceeded), false},
		{"run", string(RunSucceeded), string(RunFailed), false},

		// Jobs.
		{"job", string(JobPending), string(JobQueued), true},
		{"job", string(JobPending), string(JobSkipped), true},
		{"job", string(JobPending), string(JobCanceled), true},
		{"job", string(JobPending), string(JobAssigned), false},
		{"job", string(JobPending), string(JobRunning), false},
		{"job", string(JobPending), string(JobSucceeded), false},
		{"job", string(JobPending), string(JobWaitingApproval), true},
		{"job", string(JobWaitingApproval), string(JobQueued), true},   // approved
		{"job", string(JobWaitingApproval), string(JobFailed), true},   // rejected, timed out
		{"job", string(JobWaitingApproval), string(JobCanceled), true}, // its run canceled
		{"job", string(JobWaitingApproval), string(JobAssigned), false},
		{"job", string(JobWaitingApproval), string(JobSucceeded), false},
		{"job", string(JobWaitingApproval), string(JobPending), false},
		{"job", string(JobQueued), string(JobWaitingApproval), false},
		{"job", string(JobQueued), string(JobAssigned), true},
		{"job", string(JobQueued), string(JobCanceled), true},
		{"job", string(JobQueued), string(JobFailed), true}, // no worker and no pool can run it
		{"job", string(JobQueued), string(JobRunning), false},
		{"job", string(JobQueued), string(JobPending), false},
		{"job", string(JobQueued), string(JobSkipped), false},
		{"job", string(JobAssigned), string(JobRunning), true},
		{"job", string(JobAssigned), string(JobQueued), true}, // worker lost before start
		{"job", string(JobAssigned), string(JobPending), false},
		{"job", string(JobRunning), string(JobSucceeded), true},
		{"job", string(JobRunning), string(JobFailed), true},
		{"job", string(JobRunning), string(JobCanceled), true},
		{"job", string(JobRunning), string(JobQueued), true}, // retry
		{"job", string(JobRunning), string(JobAssigned), false},
		{"job", string(JobRunning), string(JobPending), false},
		{"job", string(JobRunning), string(JobSkipped), false},
		{"job", string(JobSucceeded), string(JobRunning), false},
		{"job", string(JobSucceeded), string(JobQueued), false},
		{"job", string(JobFailed), string(JobQueued), false},
		{"job", string(JobCanceled), string(JobQueued), false},
		{"job", string(JobSkipped), string(JobQueued), false},

		// Workers.
		{"worker", string(WorkerProvisioning), string(WorkerIdle), true},
		{"worker", string(WorkerProvisioning), string(WorkerGone), true},
		{"worker", string(WorkerProvisioning), string(WorkerDraining), false},
		{"worker", string(WorkerIdle), string(WorkerBusy), true},
		{"worker", string(WorkerIdle), string(WorkerDraining), true},
		{"worker", string(WorkerIdle), string(WorkerProvisioning), false},
		{"worker", string(WorkerBusy), string(WorkerIdle), true},
		{"worker", string(WorkerBusy), string(WorkerLost), true},
		{"worker", string(WorkerDraining), string(WorkerGone), true},
		{"worker", string(WorkerDraining), string(WorkerBusy), false}, // drained workers get no new jobs
		{"worker", string(WorkerLost), string(WorkerIdle), true},      // came back
		{"worker", string(WorkerLost), string(WorkerGone), true},
		{"worker", string(WorkerGone), string(WorkerIdle), false},
		{"worker", string(WorkerGone), string(WorkerLost), false},
	}
	fn := map[string]func(string, string) error{}
	for _, m := range machines() {
		fn[m.name] = m.to
	}
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
	for _, s := range []string{"", "bogus", "Succeeded", "SUCCEEDED", " succeeded", "succeeded\n", "done", "gone\n"} {
		if RunState(s).Final() {
			t.Errorf("RunState(%q).Final() = true", s)
		}
		if JobState(s).Final() {
			t.Errorf("JobState(%q).Final() = true", s)
		}
		if AttemptState(s).Final() {
			t.Errorf("AttemptState(%q).Final() = true", s)
		}
		if WorkerState(s).Final() {
			t.Errorf("WorkerState(%q).Final() = true", s)
		}
	}
	f := func(s string) bool {
		return (!RunState(s).Final() || RunState(s).Valid()) && (!JobState(s).Final() || JobState(s).Valid()) &&
			(!AttemptState(s).Final() || AttemptState(s).Valid())
	}
	if err := quick.Check(f, nil); err != nil {
		t.Error(err)
	}
}

func TestFinalKnownStates(t *testing.T) {
	t.Parallel()
	for s, want := range map[RunState]bool{
		RunQueued: false, RunRunning: false, RunSucceeded: true, RunFailed: true, RunCanceled: true,
	} {
		if s.Final() != want {
			t.Errorf("%q.Final() = %v, want %v", s, !want, want)
		}
	}
	for s, want := range map[JobState]bool{
		JobPending: false, JobWaitingApproval: false, JobQueued: false, JobAssigned: false, JobRunning: false,
		JobSucceeded: true, JobFailed: true, JobCanceled: true, JobSkipped: true,
	} {
		if s.Final() != want {
			t.Errorf("%q.Final() = %v, want %v", s, !want, want)
		}
	}
	for s, want := range map[AttemptState]bool{
		AttemptAssigned: false, AttemptRunning: false,
		AttemptSucceeded: true, AttemptFailed: true, AttemptCanceled: true, AttemptLost: true,
	} {
		if s.Final() != want {
			t.Errorf("%q.Final() = %v, want %v", s, !want, want)
		}
	}
	if len(AttemptStates) != 6 {
		t.Errorf("AttemptStates = %v, want the 6 states above", AttemptStates)
	}
}

// TestAttemptStatesShareJobNames checks that an attempt state other than
// lost is spelled like the job state of the same name, as the API documents.
func TestAttemptStatesShareJobNames(t *testing.T) {
	t.Parallel()
	for _, a := range AttemptStates {
		if a == AttemptLost {
			if JobState(a).Valid() {
				t.Errorf("%q is also a job state", a)
			}
			continue
		}
		if !JobState(a).Valid() {
			t.Errorf("attempt state %q is not a job state", a)
		}
	}
}

func TestJobActive(t *testing.T) {
	t.Parallel()
	for _, s := range append(slices.Clone(JobStates), "", "bogus") {
		want := s == JobAssigned || s == JobRunning
		if s.Active() != want {
			t.Errorf("%q.Active() = %v, want %v", s, !want, want)
		}
		// An active job is never final.
		if s.Active() && s.Final() {
			t.Errorf("%q is both active and final", s)
		}
	}
}

func TestWorkerServing(t *testing.T) {
	t.Parallel()
	for _, s := range append(slices.Clone(WorkerStates), "", "bogus") {
		want := s == WorkerIdle || s == WorkerBusy
		if s.Serving() != want {
			t.Errorf("%q.Serving() = %v, want %v", s, !want, want)
		}
	}
}
