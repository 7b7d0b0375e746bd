package pipeline

import (
	"strings"
	"testing"
)

func TestConcurrencyGroup(t *testing.T) {
	p, err := Parse("c.yaml", []byte("name: deploy\nconcurrency: {group: prod, limit: 2}\njobs:\n  a:\n    steps: [{run: x}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Concurrency == nil || p.Concurrency.Group != "prod" || p.Concurrency.Limit != 2 {
		t.Fatalf("concurrency %+v", p.Concurrency)
	}
	p, err = Parse("c.yaml", []byte("name: deploy\nconcurrency: {group: prod}\njobs:\n  a:\n    steps: [{run: x}]\n"))
	if err != nil || p.Concurrency.Limit != 1 {
		t.Fatalf("default limit: %+v %v", p.Concurrency, err)
	}
	p, err = Parse("c.yaml", []byte("name: deploy\njobs:\n  a:\n    steps: [{run: x}]\n"))
	if err != nil || p.Concurrency != nil {
		t.Fatalf("no group: %+v %v", p.Concurrency, err)
	}
}

func TestConcurrencyErrors(t *testing.T) {
	for _, tc := range []struct{ conc, want string }{
		{"{limit: 2}", "c.yaml:2:14: concurrency.group: is required"},
		{"{group: prod, limit: 0}", "c.yaml:2:35: concurrency.limit: must be an integer from 1 to 1000, got 0"},
		{"{group: prod, limit: 5000}", "concurrency.limit: must be an integer from 1 to 1000, got 5000"},
		{"{group: prod, cancel: true}", `concurrency.cancel: unknown field "cancel"`},
		{"prod", "concurrency: must be a map with group and limit"},
		{`{group: ""}`, "concurrency.group: must not be empty"},
	} {
		_, err := Parse("c.yaml", []byte("name: deploy\nconcurrency: "+tc.conc+"\njobs:\n  a:\n    steps: [{run: x}]\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("concurrency %s: got %v, want %q", tc.conc, err, tc.want)
		}
	}
}
