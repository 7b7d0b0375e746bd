package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// parseIncluding parses files["ci.yaml"] with the other files as what it
// may include, and returns the pipeline or the error's text.
func parseIncluding(t *testing.T, files map[string]string) (*Pipeline, string) {
	t.Helper()
	m := make(map[string][]byte)
	for k, v := range files {
		m[k] = []byte(v)
	}
	p, err := ParseWith("ci.yaml", m["ci.yaml"], Limits{}, MapLoader(m))
	if err != nil {
		return nil, err.Error()
	}
	return p, ""
}

func TestInclude(t *testing.T) {
	t.Parallel()
	p, errs := parseIncluding(t, map[string]string{
		"ci.yaml": `name: ci
include: [ci/common.yaml, {file: ci/deploy.yaml}]
jobs:
  build:
    outputs: [version]
    steps: [{run: make}]
`,
		"ci/common.yaml": `x-go: &go
  timeout: 5m
include: more/lint.yaml
jobs:
  test:
    <<: *go
    needs: build
    steps: [{run: go test}]
`,
		"ci/more/lint.yaml": `x-base:
  retry: 2
jobs:
  lint:
    extends: x-base
    steps: [{run: go vet}]
`,
		"ci/deploy.yaml": `include: [common.yaml]
jobs:
  deploy:
    needs: [test, lint]
    env: {V: "${{ needs.test.result }}"}
    steps: [{run: "echo ${{ needs.lint.result }}"}]
`,
	})
	if errs != "" {
		t.Fatal(errs)
	}
	var ids []string
	for _, j := range p.Jobs {
		ids = append(ids, j.ID)
	}
	if !slices.Equal(ids, []string{"build", "test", "lint", "deploy"}) {
		t.Errorf("jobs %v", ids)
	}
	if got := slices.Sorted(maps.Keys(p.Includes)); !slices.Equal(got, []string{"ci/common.yaml", "ci/deploy.yaml", "ci/more/lint.yaml"}) {
		t.Errorf("Includes %v", got)
	}
	if p.Jobs[1].Timeout.Minutes() != 5 || p.Jobs[2].Retry != 2 {
		t.Errorf("anchors and extends of included files: timeout %v, retry %d", p.Jobs[1].Timeout, p.Jobs[2].Retry)
	}
	if _, err := Expand(p); err != nil {
		t.Fatal(err)
	}
	// What was read gives the same pipeline again.
	again, err := ParseWith("ci.yaml", []byte(`name: ci
include: [ci/common.yaml, {file: ci/deploy.yaml}]
jobs:
  build:
    outputs: [version]
    steps: [{run: make}]
`), Limits{}, MapLoader(p.Includes))
	if err != nil || len(again.Jobs) != 4 {
		t.Errorf("parse again from Includes: %v", err)
	}
}

func TestIncludeErrors(t *testing.T) {
	t.Parallel()
	job := "jobs:\n  %s:\n    steps: [{run: x}]\n"
	deep := map[string]string{"ci.yaml": "name: deep\ninclude: d1.yaml\n" + fmt.Sprintf(job, "j0")}
	for i := 1; i <= MaxIncludeDepth+1; i++ {
		deep[fmt.Sprintf("d%d.yaml", i)] = fmt.Sprintf("include: d%d.yaml\n", i+1) + fmt.Sprintf(job, fmt.Sprintf("j%d", i))
	}
	deep[fmt.Sprintf("d%d.yaml", MaxIncludeDepth+2)] = fmt.Sprintf(job, "last")
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"cycle", map[string]string{
			"ci.yaml":   "name: c\ninclude: [a/b.yaml]\n" + fmt.Sprintf(job, "x"),
			"a/b.yaml":  "include:\n  - c.yaml\n" + fmt.Sprintf(job, "y"),
			"a/c.yaml":  "include: [{file: b.yaml}]\n" + fmt.Sprintf(job, "z"),
			"self.yaml": "",
		}, []string{"a/c.yaml:1:18: include[0].file: include cycle: ci.yaml -> a/b.yaml -> a/c.yaml -> a/b.yaml"}},
		{"itself", map[string]string{"ci.yaml": "name: c\ninclude: ci.yaml\n" + fmt.Sprintf(job, "x")},
			[]string{"ci.yaml:2:10: include: include cycle: ci.yaml -> ci.yaml"}},
		{"escape and absolute", map[string]string{"ci.yaml": "name: c\ninclude: [../secret.yaml, /etc/ci.yaml, a/../../b.yaml, notes.txt]\n" + fmt.Sprintf(job, "x")},
			[]string{
				`ci.yaml:2:11: include[0]: invalid include "../secret.yaml": a path with .. leaves the including file's directory; include only files under it`,
				`ci.yaml:2:27: include[1]: invalid include "/etc/ci.yaml": an absolute path; include paths are relative to the including file's directory`,
				`ci.yaml:2:41: include[2]: invalid include "a/../../b.yaml": a path with .. leaves`,
				`ci.yaml:2:57: include[3]: invalid include "notes.txt": an included file is a .yaml or .yml file`,
			}},
		{"missing", map[string]string{
			"ci.yaml":        "name: c\ninclude: [ci/common.yaml]\n" + fmt.Sprintf(job, "x"),
			"ci/common.yaml": "include: [gone.yaml]\n" + fmt.Sprintf(job, "y"),
		}, []string{"ci/common.yaml:1:11: include[0]: included file ci/gone.yaml does not exist (paths are relative to the directory of ci/common.yaml)"}},
		{"clash", map[string]string{
			"ci.yaml":        "name: c\ninclude: [ci/common.yaml]\n" + fmt.Sprintf(job, "build"),
			"ci/common.yaml": "x-a: 1\n" + fmt.Sprintf(job, "build"),
		}, []string{`ci/common.yaml:3:3: jobs.build: job "build" is defined twice: also at ci.yaml:4 (job ids are one namespace across included files)`}},
		{"mistakes inside", map[string]string{
			"ci.yaml":        "name: c\ninclude: [ci/common.yaml]\n" + fmt.Sprintf(job, "build"),
			"ci/common.yaml": "name: nested\njobs:\n  test:\n    needs: biuld\n    steps: [{name: no run}]\n",
		}, []string{
			`ci/common.yaml:1:1: name: unknown field "name"; allowed fields: include, jobs`,
			`ci/common.yaml:4:12: jobs.test.needs: unknown job "biuld" (did you mean "build"?)`,
			`ci/common.yaml:5:13: jobs.test.steps[0].run: is required`,
		}},
		{"not a map", map[string]string{
			"ci.yaml": "name: c\ninclude: {files: [a.yaml]}\n" + fmt.Sprintf(job, "build"),
		}, []string{`ci.yaml:2:10: include: must be a file or a list of files`}},
		{"too deep", deep, []string{fmt.Sprintf("d%d.yaml:1:10: include: includes nest more than %d deep: ci.yaml -> d1.yaml", MaxIncludeDepth, MaxIncludeDepth)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := parseIncluding(t, tc.files)
			lines := strings.Split(errs, "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(tc.want), errs)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, lines[i], w)
				}
			}
		})
	}
	// Without a loader (a file given alone), include is an error.
	_, err := Parse("ci.yaml", []byte("name: c\ninclude: [a.yaml]\n"+fmt.Sprintf(job, "x")))
	if err == nil || !strings.Contains(err.Error(), "ci.yaml:2:11: include[0]: a.yaml cannot be included: this pipeline was given without the files it includes") {
		t.Errorf("Parse without a loader: %v", err)
	}
}
