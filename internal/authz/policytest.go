package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hodei-ci/hodei/internal/auth"
)

// TestCase is one request of "hodei policy test", with the decision it
// should get. In JSON:
//
//	{"name": "viewers cannot submit",
//	 "principal": {"name": "vera", "tenant": "acme", "roles": ["viewer"]},
//	 "action": "submit",
//	 "resource": {"type": "Pipeline", "id": "ci.yaml", "tenant": "acme"},
//	 "expect": "deny"}
//
// A principal without an id is "user:<name>"; without a kind, a user.
type TestCase struct {
	Name      string         `json:"name,omitempty"`
	Principal auth.Principal `json:"principal"`
	Action    string         `json:"action"`
	Resource  Resource       `json:"resource"`
	Expect    string         `json:"expect,omitempty"` // "allow", "deny", or "" to only show the decision
}

// TestResult is the outcome of a TestCase.
type TestResult struct {
	Case     TestCase
	Decision Decision
	Err      error
}

// Pass reports whether the case got what it expects (always, if it
// expects nothing and did not fail).
func (r TestResult) Pass() bool {
	return r.Err == nil && (r.Case.Expect == "" || r.Case.Expect == r.Decision.Word())
}

// ParseTestCases reads one case, a JSON array of cases, or a stream of
// cases (JSON lines).
func ParseTestCases(data []byte) ([]TestCase, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("no test case")
	}
	var cases []TestCase
	if data[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cases); err != nil {
			return nil, fmt.Errorf("test cases: %w", err)
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		for i := 1; ; i++ {
			var c TestCase
			err := dec.Decode(&c)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("test case %d: %w", i, err)
			}
			cases = append(cases, c)
		}
	}
	for i := range cases {
		c := &cases[i]
		if c.Principal.ID == "" {
			c.Principal.ID = "user:" + c.Principal.Name
		}
		if c.Principal.Kind == "" {
			c.Principal.Kind = auth.KindUser
		}
		if c.Resource.Type == TypeTenant && c.Resource.Tenant == "" {
			c.Resource.Tenant = c.Resource.ID
		}
		if c.Resource.Type == TypeCluster && c.Resource.ID == "" {
			c.Resource.ID = ClusterID
		}
		switch c.Expect = strings.ToLower(c.Expect); c.Expect {
		case "", "allow", "deny":
		default:
			return nil, fmt.Errorf("test case %d: expect %q: want allow or deny", i+1, c.Expect)
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("%s %s %s", c.Principal.ID, c.Action, c.Resource)
		}
	}
	return cases, nil
}

// RunTests evaluates every case with a (token scopes applied first, as the
// server does).
func RunTests(ctx context.Context, a Authorizer, cases []TestCase) []TestResult {
	s := Scoped{Next: a}
	out := make([]TestResult, len(cases))
	for i, c := range cases {
		d, err := s.Authorize(ctx, Request{Principal: c.Principal, Action: c.Action, Resource: c.Resource})
		out[i] = TestResult{Case: c, Decision: d, Err: err}
	}
	return out
}
