package scheduler

import "slices"

// Admission holds runs back by concurrency group: at most limit runs of a
// group are admitted at once; the others wait, first in first out, and are
// never canceled. It is used the same way by the orchestrator and by the
// simulator. It is not safe for concurrent use.
type Admission struct {
	groups map[string]*group
	runs   map[string]string // admitted or waiting run -> group
}

type group struct {
	limit   int
	active  map[string]bool
	waiting []string
}

// NewAdmission returns an empty admission controller.
func NewAdmission() *Admission {
	return &Admission{groups: map[string]*group{}, runs: map[string]string{}}
}

// Admit registers a run in a group. It reports whether the run may start
// now; if not, the run waits until Done admits it. A run without a group is
// always admitted. The latest limit given for a group applies.
func (a *Admission) Admit(runID, groupName string, limit int) bool {
	if groupName == "" || limit <= 0 {
		return true
	}
	g := a.join(runID, groupName, limit)
	if len(g.active) < g.limit && len(g.waiting) == 0 {
		g.active[runID] = true
		return true
	}
	g.waiting = append(g.waiting, runID)
	return false
}

// Resume registers a run that was already admitted before a restart: it
// counts against its group's limit even if the limit is now lower. Call it
// for the admitted runs before Admit for the waiting ones.
func (a *Admission) Resume(runID, groupName string, limit int) {
	if groupName == "" || limit <= 0 {
		return
	}
	g := a.join(runID, groupName, limit)
	g.active[runID] = true
}

// join records that runID belongs to the group groupName, which it creates
// if needed, and gives the group the latest limit.
func (a *Admission) join(runID, groupName string, limit int) *group {
	g := a.groups[groupName]
	if g == nil {
		g = &group{active: map[string]bool{}}
		a.groups[groupName] = g
	}
	g.limit = limit
	a.runs[runID] = groupName
	return g
}

// Done removes a run (ended, or canceled while waiting) and returns the runs
// of its group admitted in its place, in the order they arrived.
func (a *Admission) Done(runID string) []string {
	name, ok := a.runs[runID]
	if !ok {
		return nil
	}
	delete(a.runs, runID)
	g := a.groups[name]
	if g.active[runID] {
		delete(g.active, runID)
	} else {
		for i, r := range g.waiting {
			if r == runID {
				g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
				break
			}
		}
	}
	var admitted []string
	for len(g.active) < g.limit && len(g.waiting) > 0 {
		r := g.waiting[0]
		g.waiting = g.waiting[1:]
		g.active[r] = true
		admitted = append(admitted, r)
	}
	if len(g.active) == 0 && len(g.waiting) == 0 {
		delete(a.groups, name)
	}
	return admitted
}

// Waiting reports whether a run is held back by its group.
func (a *Admission) Waiting(runID string) bool {
	name, ok := a.runs[runID]
	if !ok {
		return false
	}
	return !a.groups[name].active[runID]
}

// Holders returns, for a run held back by its group, the group's name, its
// limit and the runs admitted in it now (sorted); ok is false for a run
// that is not held back.
func (a *Admission) Holders(runID string) (groupName string, limit int, running []string, ok bool) {
	name, known := a.runs[runID]
	if !known {
		return "", 0, nil, false
	}
	g := a.groups[name]
	if g.active[runID] {
		return "", 0, nil, false
	}
	for r := range g.active {
		running = append(running, r)
	}
	slices.Sort(running)
	return name, g.limit, running, true
}
