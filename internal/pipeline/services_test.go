package pipeline

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestServices reads both forms of services, with the defaults of a
// health check, folds the matrix into their images and env, and keeps them
// through the JobSpec's JSON (what is stored with the run and sent to the
// agent).
func TestServices(t *testing.T) {
	src := `name: svc
jobs:
  it:
    image: golang:1.26
    matrix: {pg: ["15", "16"]}
    services:
      db:
        image: "postgres:${{ matrix.pg }}"
        env: {POSTGRES_PASSWORD: test, PG: "${{ matrix.pg }}"}
        ports: [5432]
        command: postgres -c fsync=off
        health: {cmd: pg_isready, interval: 200ms, retries: 5}
      cache: redis:7
    steps: [{run: go test ./...}]
  short:
    image: alpine:3.20
    services: [redis:7, "registry.example.com/x/memcached:1.6@sha256:abc", mailhog]
    steps: [{run: "true"}]
`
	specs := mustExpand(t, src)
	if len(specs) != 3 {
		t.Fatalf("got %d specs", len(specs))
	}
	want := []Service{
		{Name: "db", Image: "postgres:16", Env: map[string]string{"POSTGRES_PASSWORD": "test", "PG": "16"}, Ports: []int{5432},
			Command: []string{"postgres", "-c", "fsync=off"},
			Health:  &ServiceHealth{Cmd: "pg_isready", Interval: 200 * time.Millisecond, Timeout: DefaultHealthTimeout, Retries: 5}},
		{Name: "cache", Image: "redis:7"},
	}
	if got := specs[1].Services; !reflect.DeepEqual(got, want) {
		t.Errorf("services of %s:\n got %+v\nwant %+v", specs[1].Key, got, want)
	}
	if specs[0].Services[0].Image != "postgres:15" || specs[0].Services[0].Env["PG"] != "15" {
		t.Errorf("matrix not folded: %+v", specs[0].Services[0])
	}
	var names []string
	for _, s := range specs[2].Services {
		names = append(names, s.Name)
	}
	if !reflect.DeepEqual(names, []string{"redis", "memcached", "mailhog"}) {
		t.Errorf("short form names %v", names)
	}
	data, err := json.Marshal(specs[1])
	if err != nil {
		t.Fatal(err)
	}
	var back JobSpec
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Services, want) {
		t.Errorf("services after JSON: %+v", back.Services)
	}
	// The health check given as a command takes every default.
	h := mustParse(t, "name: h\njobs:\n  j:\n    image: a\n    services: {db: {image: p, health: pg_isready}}\n    steps: [{run: x}]\n").Jobs[0].Services[0].Health
	if h == nil || *h != (ServiceHealth{Cmd: "pg_isready", Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout, Retries: DefaultHealthRetries}) {
		t.Errorf("health %+v", h)
	}
}
