package pipeline

// The schedules of a pipeline (`on: schedule`): cron expressions read with
// github.com/robfig/cron/v3's standard five fields, each checked on its
// own so that an error points at the field, and a timezone from the IANA
// database (embedded: time/tzdata, so that a machine without one reads the
// same files).

import (
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // timezones do not depend on the machine

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/hodei-ci/hodei/internal/yamlpos"
)

// EventSchedule is the event of a run made by a schedule.
const EventSchedule = "schedule"

// What a schedule does with the firings missed while no server ran.
const (
	MissedRunOnce = "run_once" // one run for all of them (the default)
	MissedSkip    = "skip"     // none
)

var (
	scheduleFields = []string{"cron", "branch", "timezone", "missed"}
	cronFieldNames = []string{"minute", "hour", "day of month", "month", "day of week"}
	cronFieldHelp  = []string{
		"0-59",
		"0-23",
		"1-31",
		"1-12 or JAN-DEC",
		"0-6 or SUN-SAT (7 is not Sunday)",
	}
	cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
)

// Schedule is one entry of `on: schedule`: a run of the pipeline file, at
// the head of Branch, at each time Cron names in Timezone.
type Schedule struct {
	// Cron has five fields (minute, hour, day of month, month, day of
	// week) with ranges (1-5), steps (*/15), lists (1,15) and names (MON,
	// JAN), or a descriptor (@daily, @hourly, @weekly, @monthly,
	// @yearly).
	Cron string
	// Branch is the branch the run is made at ("" for the repository's
	// default branch).
	Branch string
	// Timezone is an IANA name (Europe/Madrid); "" is UTC.
	Timezone string
	// Missed is MissedRunOnce or MissedSkip.
	Missed string

	once  sync.Once
	sched cron.Schedule
	loc   *time.Location
}

// Key identifies a schedule among those of its file: its cron, branch and
// timezone (firings are recorded under it).
func (s *Schedule) Key() string {
	return s.Cron + "|" + s.Branch + "|" + s.Timezone
}

func (s *Schedule) compile() {
	s.once.Do(func() {
		s.loc = time.UTC
		if s.Timezone != "" {
			if l, err := time.LoadLocation(s.Timezone); err == nil {
				s.loc = l
			}
		}
		s.sched, _ = cronParser.Parse(s.Cron)
	})
}

// Next is the first firing after t (the zero time if the schedule does
// not fire in the next five years), in UTC.
func (s *Schedule) Next(t time.Time) time.Time {
	s.compile()
	if s.sched == nil {
		return time.Time{}
	}
	n := s.sched.Next(t.In(s.loc))
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// schedules reads `on: schedule`: a list of {cron, branch, timezone,
// missed}.
func (p *parser) schedules(n *yaml.Node, field string) []*Schedule {
	items, ok := p.List(n, field, "a list of schedules, each {cron: \"0 3 * * *\", branch, timezone, missed}", "")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		p.Errorf(n, field, "must list at least one schedule")
	}
	var out []*Schedule
	seen := map[string]bool{}
	for i, it := range items {
		fi := yamlpos.Index(field, i)
		m, ok := p.Map(it, fi, "a map with cron, branch, timezone and missed")
		if !ok {
			continue
		}
		s := &Schedule{Missed: MissedRunOnce}
		var cronNode *yaml.Node
		valid := true
		for _, e := range p.Fields(m, fi, scheduleFields) {
			fp := fi + "." + e.Name
			switch e.Name {
			case "cron":
				cronNode = e.Val
				c, ok := p.Text(e.Val, fp)
				if ok && !p.cronExpr(e.Val, fp, c) {
					ok = false
				}
				s.Cron, valid = c, valid && ok
			case "branch":
				b, ok := p.Text(e.Val, fp)
				if ok && (strings.ContainsAny(b, "*?[ |") || strings.HasPrefix(b, "refs/") || strings.HasPrefix(b, "-")) {
					p.Errorf(e.Val, fp, "must name one branch (no pattern, no refs/ prefix), got %q", b)
				}
				s.Branch = b
			case "timezone":
				tz, ok := p.Text(e.Val, fp)
				if !ok {
					continue
				}
				if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
					p.Errorf(e.Val, fp, "unknown timezone %q: use an IANA name such as UTC or Europe/Madrid", tz)
					continue
				}
				s.Timezone = tz
			case "missed":
				m, ok := p.Text(e.Val, fp)
				if !ok {
					continue
				}
				if m != MissedRunOnce && m != MissedSkip {
					p.Errorf(e.Val, fp, "must be %s (one run for the firings missed while no server ran) or %s, got %q", MissedRunOnce, MissedSkip, m)
					continue
				}
				s.Missed = m
			}
		}
		if cronNode == nil {
			p.Errorf(it, fi, "missing cron (five fields: minute hour day-of-month month day-of-week, such as \"0 3 * * *\")")
			continue
		}
		if !valid {
			continue
		}
		if seen[s.Key()] {
			p.Errorf(it, fi, "the same schedule (cron, branch and timezone) is listed twice")
			continue
		}
		seen[s.Key()] = true
		out = append(out, s)
	}
	return out
}

// cronExpr checks a cron expression, field by field, so that an error
// points at the field at fault; false if it is not valid.
func (p *parser) cronExpr(n *yaml.Node, field, c string) bool {
	v := yamlpos.Deref(n)
	// col is the column of the character at offset off of the value, when
	// the value sits on its node's line as written.
	col := func(off int) (int, int) {
		switch v.Style {
		case 0, yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
			base := v.Column
			if v.Style != 0 {
				base++
			}
			if !strings.ContainsAny(c, "\\'\"\n") {
				return v.Line, base + off
			}
		}
		return v.Line, v.Column
	}
	trimmed := strings.TrimSpace(c)
	if strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=") {
		p.Errorf(n, field, "a timezone is given with timezone:, not in the cron expression")
		return false
	}
	if strings.HasPrefix(trimmed, "@") {
		if strings.HasPrefix(trimmed, "@every") {
			p.Errorf(n, field, "@every is not a cron schedule: use five fields, such as \"*/15 * * * *\"")
			return false
		}
		if _, err := cronParser.Parse(trimmed); err != nil {
			p.Errorf(n, field, "unknown descriptor %q: use @yearly, @monthly, @weekly, @daily, @hourly, or five fields", trimmed)
			return false
		}
		return true
	}
	fields, offs := splitFields(c)
	if len(fields) != 5 {
		p.Errorf(n, field, "a cron expression has 5 fields (minute hour day-of-month month day-of-week), got %d in %q", len(fields), c)
		return false
	}
	ok := true
	for i, f := range fields {
		probe := []string{"*", "*", "*", "*", "*"}
		probe[i] = f
		if _, err := cronParser.Parse(strings.Join(probe, " ")); err != nil {
			line, cl := col(offs[i])
			msg, _, _ := strings.Cut(err.Error(), ": strconv.")
			p.ErrorAt(line, cl, field, "%s field %q: %s (allowed: %s, with *, ranges a-b, steps /n and lists a,b)", cronFieldNames[i], f, msg, cronFieldHelp[i])
			ok = false
		}
	}
	if !ok {
		return false
	}
	// A day that never comes (30 2 = February 30th) would never fire.
	s := &Schedule{Cron: c}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		p.Errorf(n, field, "%q never fires (no such day)", c)
		return false
	}
	return true
}

// splitFields splits s at spaces and tabs, with the offset of each field.
func splitFields(s string) ([]string, []int) {
	var fields []string
	var offs []int
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' || s[i] == '\t' {
			if start >= 0 {
				fields = append(fields, s[start:i])
				offs = append(offs, start)
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return fields, offs
}
