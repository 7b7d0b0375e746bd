package audit

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Level is how much of a request the trail keeps, after Kubernetes' audit
// levels.
type Level int

const (
	// LevelNone records nothing (denials are still recorded at
	// LevelMetadata: see Policy.LevelOf).
	LevelNone Level = iota
	// LevelMetadata records who (principal, its name, tenant), the action, the
	// resource, the decision, the answer's status, the remote address and
	// the request id; a denial's reason too.
	LevelMetadata
	// LevelRequest adds the reason of every decision,
	// the method, path and query, and the size and SHA-256 of the request
	// body the server read.
	LevelRequest
)

var levelNames = []string{"none", "metadata", "request"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel reads "none", "metadata" or "request".
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("audit level %q: want none, metadata or request", s)
}

// Policy chooses the level of each request: by action class (reads are GET
// and HEAD, writes every other method), and by action where one is named.
// The zero value records nothing but denials; DefaultPolicy is what a
// server uses unless told.
type Policy struct {
	Read, Write Level
	// Actions overrides the class level for these actions ("readLogs",
	// "authenticate", …).
	Actions map[string]Level
}

// DefaultPolicy records reads at LevelMetadata and writes at LevelRequest.
func DefaultPolicy() Policy { return Policy{Read: LevelMetadata, Write: LevelRequest} }

// ParsePolicy reads a policy: one level for every request ("metadata"), or
// comma-separated CLASS=LEVEL pairs where CLASS is "read", "write" or an
// action name ("read=metadata,write=request,readLogs=none"). Classes not
// named keep DefaultPolicy's level.
func ParsePolicy(s string) (Policy, error) {
	p := DefaultPolicy()
	s = strings.TrimSpace(s)
	if s == "" {
		return p, nil
	}
	if !strings.Contains(s, "=") {
		l, err := ParseLevel(s)
		if err != nil {
			return Policy{}, err
		}
		return Policy{Read: l, Write: l}, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		l, err := ParseLevel(strings.TrimSpace(v))
		if err != nil {
			return Policy{}, fmt.Errorf("%s: %w", part, err)
		}
		switch k = strings.TrimSpace(k); k {
		case "":
			return Policy{}, fmt.Errorf("audit policy %q: a class is missing before =", part)
		case "read":
			p.Read = l
		case "write":
			p.Write = l
		default:
			if p.Actions == nil {
				p.Actions = map[string]Level{}
			}
			p.Actions[k] = l
		}
	}
	return p, nil
}

// String is the policy in ParsePolicy's syntax.
func (p Policy) String() string {
	parts := []string{"read=" + p.Read.String(), "write=" + p.Write.String()}
	var acts []string
	for a, l := range p.Actions {
		acts = append(acts, a+"="+l.String())
	}
	sort.Strings(acts)
	return strings.Join(append(parts, acts...), ",")
}

// LevelOf is the level of a decision on action by a request of method. A
// denial is kept at LevelMetadata at least: the trail of refusals is what
// an investigation needs, whatever the volume of allowed reads.
func (p Policy) LevelOf(action, method, decision string) Level {
	l, ok := p.Actions[action]
	if !ok {
		l = p.Write
		if method == http.MethodGet || method == http.MethodHead {
			l = p.Read
		}
	}
	if decision == Deny && l < LevelMetadata {
		l = LevelMetadata
	}
	return l
}

// Trim keeps the fields of e that level l records.
func (e Entry) Trim(l Level) Entry {
	if l >= LevelRequest {
		return e
	}
	e.Method, e.Path, e.Query, e.BodyBytes, e.BodySHA256 = "", "", "", 0, ""
	if e.Decision != Deny {
		e.Reason = ""
	}
	return e
}

// BodyAt reports whether some request may be recorded at level l or above:
// whether the API must digest request bodies.
func (p Policy) BodyAt(l Level) bool {
	if p.Read >= l || p.Write >= l {
		return true
	}
	for _, al := range p.Actions {
		if al >= l {
			return true
		}
	}
	return false
}
