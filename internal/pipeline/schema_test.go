package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

const schemaPath = "../../docs/pipeline.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	sch, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatalf("compiling %s: %v", schemaPath, err)
	}
	return sch
}

// yamlToJSON converts a YAML document into the value a JSON parser would
// give for the equivalent JSON file.
func yamlToJSON(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(j))
}

func TestSchemaDeclaresDraft2020(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema               string          `json:"$schema"`
		AdditionalProperties json.RawMessage `json:"additionalProperties"`
		Defs                 map[string]struct {
			AdditionalProperties json.RawMessage `json:"additionalProperties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %q", doc.Schema)
	}
	if string(doc.AdditionalProperties) != "false" {
		t.Error("the top level allows unknown fields")
	}
	for _, name := range []string{"job", "step", "runsOn"} {
		if d, ok := doc.Defs[name]; !ok || string(d.AdditionalProperties) != "false" {
			t.Errorf("$defs.%s allows unknown fields (or is missing)", name)
		}
	}
}

func TestExamples(t *testing.T) {
	sch := compileSchema(t)
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseWith(f, data, Limits{}, FileLoader(0))
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			specs, err := Expand(p)
			if err != nil {
				t.Fatalf("Expand:\n%v", err)
			}
			assertTopological(t, specs)
			v, err := yamlToJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(v); err != nil {
				t.Errorf("schema rejects the example:\n%v", err)
			}
		})
	}
}

// TestSchemaOnInvalidFiles runs the invalid cases through the schema. Each
// is either not convertible to JSON at all (a YAML-level problem), rejected
// by the schema, or one of the few rules only Hodei can check.
func TestSchemaOnInvalidFiles(t *testing.T) {
	const (
		yamlLevel  = "not convertible"
		schemaRej  = "rejected by the schema"
		parserOnly = "accepted by the schema"
	)
	want := map[string]string{
		"bad-artifacts.yaml":       schemaRej,
		"bad-cache.yaml":           schemaRej,
		"outputs.yaml":             schemaRej,
		"include.yaml":             schemaRej,
		"bad-needs-artifacts.yaml": schemaRej,
		"bad-durations.yaml":       schemaRej,
		"bad-env-names.yaml":       schemaRej,
		"bad-if.yaml":              schemaRej,
		"bad-job-ids.yaml":         schemaRej,
		"bad-resources.yaml":       schemaRej,
		"bad-services.yaml":        schemaRej,
		"control-character.yaml":   yamlLevel,
		"control-chars.yaml":       schemaRej,
		"cycle.yaml":               parserOnly, // cycles are beyond JSON Schema
		"duplicate-key.yaml":       yamlLevel,
		"empty-jobs.yaml":          schemaRej,
		"empty.yaml":               schemaRej,  // null is not an object
		"expr-contexts.yaml":       parserOnly, // expressions are text to the schema
		"extends.yaml":             schemaRej,
		"expr-github.yaml":         parserOnly,
		"expr-needs.yaml":          parserOnly,
		"expr-secrets.yaml":        parserOnly,
		"expr-syntax.yaml":         parserOnly,
		"inputs-invalid.yaml":      schemaRej,
		"step-options.yaml":        schemaRej,
		"matrix-invalid.yaml":      schemaRej,
		"matrix-outside-job.yaml":  parserOnly, // expressions are text to the schema
		"matrix-too-large.yaml":    parserOnly, // the product of lengths is beyond JSON Schema
		"matrix-unknown-key.yaml":  parserOnly,
		"merge-key.yaml":           yamlLevel, // <<: 5m cannot be merged
		"missing-required.yaml":    schemaRej,
		"missing-run.yaml":         schemaRej,
		"missing-steps.yaml":       schemaRej,
		"multi-document.yaml":      parserOnly, // a JSON file holds one value anyway
		"not-a-map.yaml":           schemaRej,
		"only-comments.yaml":       schemaRej,
		"out-of-range.yaml":        schemaRej,
		"schedule.yaml":            schemaRej,
		"self-need.yaml":           parserOnly,
		"syntax-first-line.yaml":   yamlLevel,
		"syntax.yaml":              yamlLevel,
		"unknown-anchor.yaml":      yamlLevel,
		"unknown-fields.yaml":      schemaRej,
		"unknown-need.yaml":        parserOnly,
		"wrong-types.yaml":         schemaRej,
	}
	sch := compileSchema(t)
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rejected := 0
	for _, f := range files {
		name := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got := schemaRej
		if v, err := yamlToJSON(data); err != nil {
			got = yamlLevel
		} else if err := sch.Validate(v); err == nil {
			got = parserOnly
		}
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("%s: %s; add it to the table", name, got)
		case got != w:
			t.Errorf("%s: %s, want %s", name, got, w)
		}
		if got == schemaRej {
			rejected++
		}
	}
	if rejected < 10 {
		t.Errorf("the schema rejects only %d invalid files", rejected)
	}
}

// TestSchemaAgreesWithParser checks, rule by rule, that the schema accepts
// exactly what Parse accepts.
func TestSchemaAgreesWithParser(t *testing.T) {
	sch := compileSchema(t)
	tests := []struct {
		job   string // body of job "j" in flow style
		valid bool
	}{
		{`steps: [{run: x}]`, true},
		{`outputs: [version, notes], steps: [{run: x}]`, true},
		{`outputs: [], steps: [{run: x}]`, true},
		{`outputs: [version, version], steps: [{run: x}]`, false},
		{`outputs: [1version], steps: [{run: x}]`, false},
		{`outputs: {version: x}, steps: [{run: x}]`, false},
		{`outputs: version, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: postgres:16}}, steps: [{run: x}]`, true},
		{`image: a, services: {db: postgres:16}, steps: [{run: x}]`, true},
		{`image: a, services: [redis:7, "registry.example.com/x/memcached:1"], steps: [{run: x}]`, true},
		{`services: {db: postgres:16}, steps: [{run: x}]`, false},
		{`image: a, services: {}, steps: [{run: x}]`, false},
		{`image: a, services: [], steps: [{run: x}]`, false},
		{`image: a, services: "redis:7", steps: [{run: x}]`, false},
		{`image: a, services: {DB: postgres:16}, steps: [{run: x}]`, false},
		{`image: a, services: {db-: postgres:16}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {env: {A: b}}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: "p q"}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, env: {A: b}, ports: [5432], command: [a, 1], entrypoint: "sh -c"}}, steps: [{run: x}]`, true},
		{`image: a, services: {db: {image: p, ports: [0]}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, ports: [80, 80]}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, command: []}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, health: pg_isready}}, steps: [{run: x}]`, true},
		{`image: a, services: {db: {image: p, health: {cmd: x, interval: 1s, timeout: 5s, retries: 3}}}, steps: [{run: x}]`, true},
		{`image: a, services: {db: {image: p, health: {interval: 1s}}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, health: {cmd: x, retries: 0}}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, health: {cmd: x, interval: 0s}}}, steps: [{run: x}]`, false},
		{`image: a, services: {db: {image: p, port: 5}}, steps: [{run: x}]`, false},
		{`steps: []`, false},
		{`steps: [{name: x}]`, false},
		{`steps: [{run: " "}]`, false},
		{`steps: [{run: x, shell: bash}]`, true},
		{`steps: [{run: x, shell: "perl {0}"}]`, true},
		{`steps: [{run: x, shell: zsh}]`, false},
		{`steps: [{run: x, working-directory: src/app}]`, true},
		{`steps: [{run: x, working-directory: /src}]`, false},
		{`steps: [{run: x, working-directory: ../src}]`, false},
		{`steps: [{run: x, continue-on-error: true}]`, true},
		{`steps: [{run: x, continue-on-error: yes}]`, false},
		{`steps: [{run: x, if: always()}]`, true},
		{`continue-on-error: true, steps: [{run: x}]`, true},
		{`extends: a, steps: [{run: x}]`, true},
		{`extends: [a], steps: [{run: x}]`, true},
		{`extends: {a: 1}, steps: [{run: x}]`, false},
		{`extends: a`, true},
		{`name: "", steps: [{run: x}]`, false},
		{`name: 3, steps: [{run: x}]`, false},
		{`uses: x, steps: [{run: x}]`, false},
		{`needs: a, steps: [{run: x}]`, true},
		{`needs: [a], steps: [{run: x}]`, true},
		{`needs: [a, a], steps: [{run: x}]`, false},
		{`needs: {a: 1}, steps: [{run: x}]`, false},
		{`if: success(), steps: [{run: x}]`, true},
		{`if: "${{ always() }}", steps: [{run: x}]`, true},
		{`if: "${{failure()}}", steps: [{run: x}]`, true},
		{`if: cancelled(), steps: [{run: x}]`, true},
		{`if: "hodei.branch == 'main' && success()", steps: [{run: x}]`, true},
		{`if: true, steps: [{run: x}]`, true},
		{`if: [a], steps: [{run: x}]`, false},
		{`timeout: 1h30m, steps: [{run: x}]`, true},
		{`timeout: 1.5s, steps: [{run: x}]`, true},
		{`timeout: 500ms, steps: [{run: x}]`, true},
		{`timeout: 0s, steps: [{run: x}]`, false},
		{`timeout: 0.0m0s, steps: [{run: x}]`, false},
		{`timeout: -1s, steps: [{run: x}]`, false},
		{`timeout: 10, steps: [{run: x}]`, false},
		{`timeout: 1d, steps: [{run: x}]`, false},
		{`retry: 0, steps: [{run: x}]`, true},
		{`retry: 10, steps: [{run: x}]`, true},
		{`retry: 11, steps: [{run: x}]`, false},
		{`retry: -1, steps: [{run: x}]`, false},
		{`priority: 100, steps: [{run: x}]`, true},
		{`priority: 101, steps: [{run: x}]`, false},
		{`runs-on: {}, steps: [{run: x}]`, true},
		{`runs-on: linux, steps: [{run: x}]`, false},
		{`runs-on: {labels: linux}, steps: [{run: x}]`, true},
		{`runs-on: {labels: [a, b]}, steps: [{run: x}]`, true},
		{`runs-on: {labels: [a, ""]}, steps: [{run: x}]`, false},
		{`runs-on: {os: linux}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: 2}, steps: [{run: x}]`, true},
		{`runs-on: {cpu: 0.5}, steps: [{run: x}]`, true},
		{`runs-on: {cpu: "0.5"}, steps: [{run: x}]`, true},
		{`runs-on: {cpu: .25}, steps: [{run: x}]`, true},
		{`runs-on: {cpu: 250m}, steps: [{run: x}]`, true},
		{`runs-on: {cpu: 0}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: 0m}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: "0.000"}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: -1}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: 0.0001}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: 1.5m}, steps: [{run: x}]`, false},
		{`runs-on: {cpu: two}, steps: [{run: x}]`, false},
		{`runs-on: {memory: 512Mi}, steps: [{run: x}]`, true},
		{`runs-on: {memory: 1G}, steps: [{run: x}]`, true},
		{`runs-on: {memory: 1048576}, steps: [{run: x}]`, true},
		{`runs-on: {memory: 0}, steps: [{run: x}]`, false},
		{`runs-on: {memory: 0Mi}, steps: [{run: x}]`, false},
		{`runs-on: {memory: 1.5Gi}, steps: [{run: x}]`, false},
		{`runs-on: {memory: 1.5}, steps: [{run: x}]`, false},
		{`runs-on: {memory: 1mi}, steps: [{run: x}]`, false},
		{`runs-on: {gpu: 64}, steps: [{run: x}]`, true},
		{`runs-on: {gpu: 65}, steps: [{run: x}]`, false},
		{`env: {A: 1, B: true, C: x, _D: 1.5}, steps: [{run: x}]`, true},
		{`env: {A: null}, steps: [{run: x}]`, false},
		{`env: {A: [1]}, steps: [{run: x}]`, false},
		{`env: {1A: x}, steps: [{run: x}]`, false},
		{`env: {A-B: x}, steps: [{run: x}]`, false},
		{`env: {HODEI_X: x}, steps: [{run: x}]`, false},
		{`env: [A], steps: [{run: x}]`, false},
		{`steps: [{run: x, env: {HODEI_Y: x}}]`, false},
		{`steps: [{run: x, timeout: 0s}]`, false},
		{`matrix: {os: [linux, mac], v: [1, 2.5, true]}, steps: [{run: x}]`, true},
		{`matrix: {}, steps: [{run: x}]`, false},
		{`matrix: {os: []}, steps: [{run: x}]`, false},
		{`matrix: {os: linux}, steps: [{run: x}]`, false},
		{`matrix: {os: [a, a]}, steps: [{run: x}]`, false},
		{`matrix: {os: [[a]]}, steps: [{run: x}]`, false},
		{`matrix: {os: [null]}, steps: [{run: x}]`, false},
		{`matrix: {include: [a]}, steps: [{run: x}]`, false},
		{`matrix: {"a b": [a]}, steps: [{run: x}]`, false},
	}
	for _, tt := range tests {
		checkAgree(t, sch, "name: agree\njobs:\n  a: {steps: [{run: x}]}\n  j: {"+tt.job+"}\n", tt.valid)
	}

	top := []struct {
		doc   string
		valid bool
	}{
		{`{name: x, jobs: {a: {steps: [{run: x}]}}}`, true},
		{`{name: x, priority: 0, env: {}, jobs: {a: {steps: [{run: x}]}}}`, true},
		{`{jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x}`, false},
		{`{name: x, jobs: {}}`, false},
		{`{name: x, jobs: []}`, false},
		{`{name: x, inputs: {env: {type: choice, options: [a, b], required: true}, n: {type: number, default: 1}}, jobs: {a: {steps: [{run: x}]}}}`, true},
		{`{name: x, inputs: {env: {type: choice}}, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, inputs: {env: {type: enum}}, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, inputs: {a-b: {}}, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, on: push, jobs: {a: {steps: [{run: x}]}}}`, true},
		{`{name: x, on: [push, manual], jobs: {a: {steps: [{run: x}]}}}`, true},
		{`{name: x, on: {push: {branches: [main, "!wip/*"], paths: "src/**"}, pull_request: null}, jobs: {a: {steps: [{run: x}]}}}`, true},
		{`{name: x, on: {push: {branch: main}}, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, on: schedul, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, triggers: push, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, jobs: {a: {checkout: false, steps: [{run: x}]}}}`, true},
		{`{name: x, jobs: {a: {checkout: {depth: 0, lfs: true}, steps: [{run: x}]}}}`, true},
		{`{name: x, jobs: {a: {checkout: true, steps: [{run: x}]}}}`, true},
		{`{name: x, jobs: {a: {checkout: yes-please, steps: [{run: x}]}}}`, false},
		{`{name: x, jobs: {a: {checkout: {depth: -1}, steps: [{run: x}]}}}`, false},
		{`{name: x, priority: -101, jobs: {a: {steps: [{run: x}]}}}`, false},
		{`{name: x, jobs: {1a: {steps: [{run: x}]}}}`, false},
		{`{name: x, jobs: {a-b_c: {steps: [{run: x}]}}}`, true},
		{`[]`, false},
	}
	for _, tt := range top {
		checkAgree(t, sch, tt.doc, tt.valid)
	}
}

// checkAgree checks that Parse and the schema both accept doc, or both
// refuse it, as valid says.
func checkAgree(t *testing.T, sch *jsonschema.Schema, doc string, valid bool) {
	t.Helper()
	_, perr := Parse("agree.yaml", []byte(doc))
	v, err := yamlToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	serr := sch.Validate(v)
	if (perr == nil) != valid || (serr == nil) != valid {
		t.Errorf("%s: Parse valid = %v (%v), schema valid = %v (%v), want %v", doc, perr == nil, perr, serr == nil, firstLine(serr), valid)
	}
}

func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := fmt.Sprint(err)
	lines := strings.Split(s, "\n")
	sort.Strings(lines[1:])
	return strings.Join(lines, " | ")
}
