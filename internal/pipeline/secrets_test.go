package pipeline

import (
	"slices"
	"strings"
	"testing"
)

func TestSecretsFieldParsesAndExpands(t *testing.T) {
	t.Parallel()
	src := `name: s
env: {TOKEN_URL: https://x}
jobs:
  deploy:
    secrets: [DEPLOY_TOKEN, _Other1]
    matrix: {region: [eu, us]}
    steps: [{run: ./deploy}]
`
	specs := mustExpand(t, src)
	if len(specs) != 2 {
		t.Fatalf("%d specs", len(specs))
	}
	for _, s := range specs {
		if !slices.Equal(s.Secrets, []string{"DEPLOY_TOKEN", "_Other1"}) {
			t.Errorf("%s: secrets %v", s.Key, s.Secrets)
		}
	}
	specs[0].Secrets[0] = "CHANGED"
	if specs[1].Secrets[0] != "DEPLOY_TOKEN" {
		t.Error("matrix jobs share their secrets slice")
	}
}

func TestSecretsFieldErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ job, want string }{
		{`secrets: TOKEN`, `jobs.j.secrets: must be a list of secret names, got a string`},
		{`secrets: [1TOKEN]`, `jobs.j.secrets[0]: invalid secret name "1TOKEN"`},
		{`secrets: [A-B]`, `jobs.j.secrets[0]: invalid secret name "A-B"`},
		{`secrets: [HODEI_X]`, `jobs.j.secrets[0]: secret names starting with HODEI_ are reserved`},
		{`secrets: [A, B, A]`, `jobs.j.secrets[2]: secret "A" is named twice`},
		{`secrets: [X, A]
    env: {A: "1"}`, `jobs.j.secrets[1]: A is a secret of the job and is also set in jobs.j.env`},
		{`secrets: [A]
    steps: [{run: x}, {run: y, env: {A: "1"}}]`, `jobs.j.secrets[0]: A is a secret of the job and is also set in jobs.j.steps[1].env`},
	} {
		steps := "\n    steps: [{run: x}]"
		if strings.Contains(tc.job, "steps:") {
			steps = ""
		}
		src := "name: s\njobs:\n  j:\n    " + tc.job + steps + "\n"
		_, err := Parse("s.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\ngot  %v\nwant %s", tc.job, err, tc.want)
		}
	}
}

// TestSecretsSchemaAgrees checks the JSON Schema against the parser on the
// secrets field (the env-conflict rule is the parser's alone).
func TestSecretsSchemaAgrees(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	for _, tc := range []struct {
		job   string
		valid bool
	}{
		{`secrets: [A, _b2]`, true},
		{`secrets: []`, true},
		{`secrets: A`, false},
		{`secrets: [9A]`, false},
		{`secrets: [HODEI_A]`, false},
		{`secrets: [A, A]`, false},
		{`secrets: [{a: 1}]`, false},
	} {
		checkAgree(t, sch, "name: s\njobs:\n  j: {"+tc.job+", steps: [{run: x}]}\n", tc.valid)
	}
}
