package pipeline

import (
	"slices"
	"strings"
	"testing"
)

func TestImageJob(t *testing.T) {
	src := `name: img
jobs:
  unit:
    image: "busybox:${{ matrix.v }}"
    network: true
    matrix: {v: ["1.36", "1.37"]}
    runs-on: {labels: [linux], cpu: 500m, memory: 128Mi}
    steps: [{run: echo hi}]
  plain:
    runs-on: {labels: [docker]}
    image: alpine
    steps: [{run: echo hi}]
`
	specs := mustExpand(t, src)
	if len(specs) != 3 {
		t.Fatalf("got %d specs", len(specs))
	}
	if specs[0].Image != "busybox:1.36" || specs[1].Image != "busybox:1.37" || !specs[0].Network {
		t.Errorf("matrix image = %q, %q (network %v)", specs[0].Image, specs[1].Image, specs[0].Network)
	}
	if !slices.Equal(specs[0].Labels, []string{"linux", DockerLabel}) {
		t.Errorf("labels = %v, want the docker label added", specs[0].Labels)
	}
	if specs[2].Network || !slices.Equal(specs[2].Labels, []string{DockerLabel}) {
		t.Errorf("plain job: network %v labels %v (docker must not be added twice)", specs[2].Network, specs[2].Labels)
	}
}

func TestImageErrors(t *testing.T) {
	tests := []struct{ job, want string }{
		{`network: true, steps: [{run: x}]`, `img.yaml:3:16: jobs.j.network: only applies to a job with an image`},
		{`image: "", steps: [{run: x}]`, `jobs.j.image: must not be empty`},
		{`image: "a b", steps: [{run: x}]`, `jobs.j.image: invalid image "a b"`},
		{`image: [a], steps: [{run: x}]`, `jobs.j.image: must be a string, got a list`},
		{`image: a, network: "yes", steps: [{run: x}]`, `jobs.j.network: must be true or false, got "yes"`},
		{`image: "${{ matrix.os }}", steps: [{run: x}]`, `unknown matrix key "os"`},
	}
	for _, tt := range tests {
		src := "name: img\njobs:\n  j: {" + tt.job + "}\n"
		_, err := Parse("img.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.job, err, tt.want)
		}
	}
}

// TestImageSchemaAgrees checks that the schema accepts exactly what Parse
// accepts for the image and network fields.
func TestImageSchemaAgrees(t *testing.T) {
	sch := compileSchema(t)
	for _, tt := range []struct {
		job   string
		valid bool
	}{
		{`image: alpine, steps: [{run: x}]`, true},
		{`image: alpine, network: false, steps: [{run: x}]`, true},
		{`image: registry.example.com/a/b:1.2@sha256:00, network: true, steps: [{run: x}]`, true},
		{`network: true, steps: [{run: x}]`, false},
		{`image: "a b", steps: [{run: x}]`, false},
		{`image: 3, steps: [{run: x}]`, false},
		{`image: "go:${{ matrix.v }}", matrix: {v: [1]}, steps: [{run: x}]`, true},
		{`image: alpine, network: 1, steps: [{run: x}]`, false},
	} {
		checkAgree(t, sch, "name: agree\njobs:\n  j: {"+tt.job+"}\n", tt.valid)
	}
}
