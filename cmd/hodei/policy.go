package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/cedar-policy/cedar-go/x/exp/schema"

	"github.com/hodei-ci/hodei/internal/authz"
	"github.com/hodei-ci/hodei/internal/cli"
)

const policyUsage = `Usage: hodei policy check|test|show|schema [flags]

Work on the Cedar policies that decide what each caller of the API may do.

  hodei policy check [--policies DIR]      validate policies against the schema
  hodei policy test  [--policies DIR] (--request JSON | --requests FILE)
                                           evaluate requests, compare with expected decisions
  hodei policy show                        print the embedded default policies
  hodei policy schema [--json]             print the schema (JSON: for Verified Permissions)

Without --policies, the embedded defaults are used. Run "hodei policy test
--help" for the format of requests.
`

func policyCmd(args []string) int {
	return runSubUsage("policy", policyUsage, args, []sub{{"check", policyCheck}, {"test", policyTest}, {"show", policyShow}, {"schema", policySchema}})
}

func loadPolicies(dir string) (*authz.Policies, error) {
	if dir == "" {
		return authz.Default()
	}
	return authz.LoadDir(dir)
}

func policyCheck(args []string) int {
	fs := flags("policy check", "[--policies DIR]", `
Validate policies against the schema, as the server does at start. Problems
are listed as file:line:column.`)
	dir := fs.String("policies", "", "directory of *.cedar files (and optionally a *.cedarschema)")
	asJSON := addJSONFlag(fs)
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	p, err := loadPolicies(*dir)
	if *asJSON {
		out := policyCheckResult{Valid: err == nil}
		if err != nil {
			out.Error = err.Error()
		} else {
			out.Source, out.Policies = p.Source, p.IDs()
		}
		if code := printJSON(out); code != exitOK || err == nil {
			return code
		}
		return exitFailed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitFailed
	}
	fmt.Printf("%d policies valid (%s)\n", len(p.IDs()), p.Source)
	return exitOK
}

// policyCheckResult is the result of "hodei policy check --json": the ids
// of the valid policies and where they came from, or the problems.
type policyCheckResult struct {
	Valid    bool     `json:"valid"`
	Source   string   `json:"source,omitempty"`
	Policies []string `json:"policies,omitempty"`
	Error    string   `json:"error,omitempty"`
}

func policyTest(args []string) int {
	fs := flags("policy test", "[--policies DIR] (--request JSON | --requests FILE)", `
Evaluate authorization requests against policies, as the server would, and
print each decision with the policies behind it. A request that names the
decision it expects ("expect": "allow" or "deny") fails when it gets the
other; the exit status is then 1.

A request (--request, or in --requests FILE: one, a JSON array, or one per
line; FILE "-" is the standard input):

  {"name": "viewers cannot submit",
   "principal": {"name": "vera", "tenant": "acme", "roles": ["viewer"], "groups": [], "scopes": []},
   "action": "submit",
   "resource": {"type": "Pipeline", "id": "ci.yaml", "tenant": "acme"},
   "expect": "deny"}

Actions: submit, read, readLogs, cancel, approveJob, readWorkers, manageWorkers,
listSecrets, manageSecrets, listRepos, manageRepos, runRepo, readAudit,
readMetrics, manageTokens, admin.
Resource types: Pipeline, Run, Tenant, Secret and Repository (with a
tenant), Worker, Cluster.

Example:
  hodei policy test --policies ./policies --requests policies/tests.json`)
	dir := fs.String("policies", "", "directory of *.cedar files (and optionally a *.cedarschema); default: the embedded policies")
	one := fs.String("request", "", "one request, as JSON")
	file := fs.String("requests", "", "a file of requests")
	asJSON := addJSONFlag(fs)
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	var data []byte
	switch {
	case *one != "" && *file != "":
		return usageError(fs, "give --request or --requests, not both")
	case *one != "":
		data = []byte(*one)
	case *file == "-":
		var err error
		if data, err = io.ReadAll(os.Stdin); err != nil {
			return fail("policy test", err)
		}
	case *file != "":
		var err error
		if data, err = os.ReadFile(*file); err != nil {
			return usageError(fs, "%v", err)
		}
	default:
		return usageError(fs, "give --request JSON or --requests FILE")
	}
	cases, err := authz.ParseTestCases(data)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	p, err := loadPolicies(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitFailed
	}
	results := authz.RunTests(context.Background(), authz.NewCedar(p), cases)
	failed := 0
	for _, r := range results {
		if !r.Pass() {
			failed++
		}
	}
	if *asJSON {
		type out struct {
			Name     string         `json:"name"`
			Decision authz.Decision `json:"decision"`
			Expect   string         `json:"expect,omitempty"`
			Pass     bool           `json:"pass"`
			Error    string         `json:"error,omitempty"`
			Request  authz.TestCase `json:"request"`
		}
		var list []out
		for _, r := range results {
			o := out{Name: r.Case.Name, Decision: r.Decision, Expect: r.Case.Expect, Pass: r.Pass(), Request: r.Case}
			if r.Err != nil {
				o.Error = r.Err.Error()
			}
			list = append(list, o)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(list)
	} else {
		rows := make([][]string, len(results))
		for i, r := range results {
			status := "ok"
			switch {
			case r.Err != nil:
				status = "ERROR"
			case !r.Pass():
				status = "FAIL"
			case r.Case.Expect == "":
				status = "-"
			}
			why := r.Decision.Explain()
			if r.Err != nil {
				why = r.Err.Error()
			}
			rows[i] = []string{status, r.Case.Name, r.Decision.Word(), why}
		}
		_ = cli.Table(os.Stdout, []string{"", "REQUEST", "DECISION", "WHY"}, rows)
		fmt.Printf("\n%d requests, %d failed (policies: %s)\n", len(results), failed, p.Source)
	}
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

func policySchema(args []string) int {
	fs := flags("policy schema", "[--json]", `
Print Hodei's Cedar schema: in Cedar's own syntax, or in its JSON form (what
an Amazon Verified Permissions policy store takes).`)
	asJSON := fs.Bool("json", false, "print the JSON form")
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	if !*asJSON {
		os.Stdout.Write(authz.DefaultSchema())
		return exitOK
	}
	var s schema.Schema
	if err := s.UnmarshalCedar(authz.DefaultSchema()); err != nil {
		return fail("policy schema", err)
	}
	b, err := s.MarshalJSON()
	if err != nil {
		return fail("policy schema", err)
	}
	var v any
	_ = json.Unmarshal(b, &v)
	return printJSON(v)
}

func policyShow(args []string) int {
	fs := flags("policy show", "", `
Print the default policies: the ones a server without --policies uses.`)
	if code, ok := parseNoArgs(fs, args); !ok {
		return code
	}
	if _, err := os.Stdout.Write(authz.DefaultPolicyText()); err != nil {
		return fail("policy show", err)
	}
	return exitOK
}
