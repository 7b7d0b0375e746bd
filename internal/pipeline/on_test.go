package pipeline

import (
	"strings"
	"testing"
	"time"
)

func TestMatchGlobs(t *testing.T) {
	cases := []struct {
		patterns []string
		s        string
		want     bool
	}{
		{[]string{"main"}, "main", true},
		{[]string{"main"}, "mainline", false},
		{[]string{"release/*"}, "release/1.0", true},
		{[]string{"release/*"}, "release/1.0/hotfix", false},
		{[]string{"release/**"}, "release/1.0/hotfix", true},
		{[]string{"**/*.go"}, "main.go", true},
		{[]string{"**/*.go"}, "cmd/hodei/main.go", true},
		{[]string{"docs/**", "!docs/drafts/**"}, "docs/drafts/x.md", false},
		{[]string{"docs/**", "!docs/drafts/**"}, "docs/api.md", true},
		{[]string{"!wip/*"}, "main", true},
		{[]string{"!wip/*"}, "wip/x", false},
		{[]string{"v?.*"}, "v1.2", true},
		{[]string{"v?.*"}, "v12.2", false},
		{[]string{"a.b"}, "axb", false},
	}
	for _, c := range cases {
		if got := MatchGlobs(c.patterns, c.s); got != c.want {
			t.Errorf("MatchGlobs(%q, %q) = %v, want %v", c.patterns, c.s, got, c.want)
		}
	}
}

const onPipeline = `name: p
on:
  push:
    branches: [main, "release/**", "!release/old"]
    paths: ["src/**", "!src/**/*.md"]
  pull_request:
    branches: main
  manual: false
jobs:
  build:
    checkout: {depth: 0, submodules: true, fetch_tags: true}
    steps: [{run: make}]
  lint:
    checkout: false
    steps: [{run: lint}]
`

func TestOnFilters(t *testing.T) {
	p, err := Parse("p.yaml", []byte(onPipeline))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ev   Event
		want bool
	}{
		{"push to main touching src", Event{Kind: EventPush, Branch: "main", Changed: []string{"src/a.go"}}, true},
		{"push to main touching only docs", Event{Kind: EventPush, Branch: "main", Changed: []string{"README.md"}}, false},
		{"push to main touching only markdown under src", Event{Kind: EventPush, Branch: "main", Changed: []string{"src/x/y.md"}}, false},
		{"push to main, changes unknown", Event{Kind: EventPush, Branch: "main"}, true},
		{"push to a release branch", Event{Kind: EventPush, Branch: "release/2/x", Changed: []string{"src/a.go"}}, true},
		{"push to an excluded branch", Event{Kind: EventPush, Branch: "release/old", Changed: []string{"src/a.go"}}, false},
		{"push to another branch", Event{Kind: EventPush, Branch: "dev", Changed: []string{"src/a.go"}}, false},
		{"tag with branches only", Event{Kind: EventTag, Tag: "v1"}, false},
		{"pull request to main", Event{Kind: EventPullRequest, Branch: "main"}, true},
		{"pull request to dev", Event{Kind: EventPullRequest, Branch: "dev"}, false},
		{"manual off", Event{Kind: EventManual}, false},
	}
	for _, c := range cases {
		if got := p.On.Matches(c.ev); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", c.name, got, c.want)
		}
	}
	specs, err := Expand(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := specs[0].Checkout; c == nil || c.Depth != 0 || !c.Submodules || !c.FetchTags || c.Disabled {
		t.Errorf("build checkout = %+v", c)
	}
	if c := specs[1].Checkout; c == nil || !c.Disabled {
		t.Errorf("lint checkout = %+v, want disabled", c)
	}
}

func TestOnDefaultsAndForms(t *testing.T) {
	var none *On
	for _, ev := range []Event{{Kind: EventPush, Branch: "x"}, {Kind: EventTag, Tag: "v1"}, {Kind: EventManual}} {
		if !none.Matches(ev) {
			t.Errorf("no on: does not match %+v", ev)
		}
	}
	if none.Matches(Event{Kind: EventPullRequest, Branch: "main"}) {
		t.Error("no on: matches a pull request")
	}
	p, err := Parse("p.yaml", []byte("name: p\non: [pull_request, manual]\njobs: {a: {steps: [{run: x}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.On.Matches(Event{Kind: EventPush, Branch: "main"}) || !p.On.Matches(Event{Kind: EventPullRequest, Branch: "x"}) || !p.On.Matches(Event{Kind: EventManual}) {
		t.Errorf("list form: %+v", p.On)
	}
	p, err = Parse("p.yaml", []byte("name: p\non:\n  push: {tags: ['v*']}\njobs: {a: {steps: [{run: x}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.On.Matches(Event{Kind: EventPush, Branch: "main"}) || !p.On.Matches(Event{Kind: EventTag, Tag: "v1.0"}) || p.On.Matches(Event{Kind: EventTag, Tag: "x1"}) {
		t.Errorf("tags only: %+v", p.On.Push)
	}
}

func TestOnErrorsNamePositions(t *testing.T) {
	src := "name: p\non:\n  psuh: {}\n  push: {branchs: [main]}\njobs:\n  a:\n    checkout: {depth: -1}\n    steps: [{run: x}]\n"
	_, err := Parse(".hodei/ci.yaml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`.hodei/ci.yaml:3:3: on.psuh: unknown field "psuh" (did you mean "push"?)`,
		`.hodei/ci.yaml:4:10: on.push.branchs: unknown field "branchs"`,
		`.hodei/ci.yaml:7:23: jobs.a.checkout.depth: must be an integer from 0 to`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestSchedules: on.schedule is read with its defaults, and each schedule
// fires at the times its cron names in its timezone.
func TestSchedules(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `
name: nightly
on:
  push: {branches: [main]}
  schedule:
    - cron: "0 3 * * *"
      branch: release
      timezone: Europe/Madrid
    - {cron: "*/15 9-17 * JAN,FEB MON-FRI", missed: skip}
    - {cron: "@daily"}
jobs:
  a: {steps: [{run: x}]}
`)
	s := p.On.Schedules
	if len(s) != 3 {
		t.Fatalf("read %d schedules, want 3", len(s))
	}
	if s[0].Branch != "release" || s[0].Timezone != "Europe/Madrid" || s[0].Missed != MissedRunOnce || s[0].Key() != "0 3 * * *|release|Europe/Madrid" {
		t.Errorf("first schedule = %+v (key %q)", s[0], s[0].Key())
	}
	if s[1].Missed != MissedSkip || s[1].Branch != "" || s[1].Timezone != "" {
		t.Errorf("second schedule = %+v", s[1])
	}
	cases := []struct {
		s     *Schedule
		after string
		want  string
	}{
		// 03:00 in Madrid is 02:00 UTC in winter (CET), 01:00 in summer.
		{s[0], "2026-12-07T01:00:00Z", "2026-12-07T02:00:00Z"},
		{s[0], "2026-12-07T02:00:00Z", "2026-12-08T02:00:00Z"},
		{s[0], "2026-07-01T00:00:00Z", "2026-07-01T01:00:00Z"},
		// Weekdays of January and February, every quarter hour from 9 to 17.
		{s[1], "2027-01-01T17:50:00Z", "2027-01-04T09:00:00Z"}, // Friday evening to Monday
		{s[1], "2027-01-04T09:00:00Z", "2027-01-04T09:15:00Z"},
		{s[1], "2027-02-26T17:45:00Z", "2028-01-03T09:00:00Z"},
		{s[2], "2026-12-07T10:00:00Z", "2026-12-08T00:00:00Z"},
	}
	for _, c := range cases {
		after, _ := time.Parse(time.RFC3339, c.after)
		if got := c.s.Next(after).Format(time.RFC3339); got != c.want {
			t.Errorf("%q after %s = %s, want %s", c.s.Cron, c.after, got, c.want)
		}
	}
	if !p.On.Matches(Event{Kind: EventSchedule}) || mustParse(t, "name: x\njobs: {a: {steps: [{run: x}]}}\n").On.Matches(Event{Kind: EventSchedule}) {
		t.Error("Matches(schedule) should hold only for a pipeline with schedules")
	}
}
