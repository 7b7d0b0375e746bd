// Package schema holds what the SQL stores (sqlite, postgres) know alike of
// the tables their migrations create: the column lists in the order their
// scan functions read them, and the condition that selects the runs that
// are not final, spelled as the partial index runs_active spells it (both
// databases use a partial index only for a query whose condition matches
// the index's).
package schema

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hodei-ci/hodei/internal/state"
)

// Column lists, in the order the stores' scan functions read them.
const (
	RunCols     = "id, pipeline, file, tenant, priority, state, source, created_at, started_at, finished_at, error, concurrency_group, concurrency_limit, inputs"
	JobCols     = "id, run_id, job_key, name, idx, state, spec, attempt, max_attempts, worker_id, queued_at, started_at, finished_at, exit_code, error, infra_lost"
	AttemptCols = "job_id, n, worker_id, state, assigned_at, started_at, finished_at, exit_code, error, reason, peak_memory, cpu_time"
	LogCols     = "job_id, attempt, seq, step, data, at"
	WorkerCols  = "id, pool, state, labels, cpu_milli, memory_bytes, gpu, boot_id, first_seen, last_seen"
)

// ActiveRunsWhere selects the runs that are not final. It spells the final
// states as literals, in the order of state.RunStates, as the WHERE clause
// of the partial index runs_active in both stores' 0001_init.sql does.
var ActiveRunsWhere = func() string {
	var final []string
	for _, s := range state.RunStates {
		if s.Final() {
			final = append(final, "'"+strings.ReplaceAll(string(s), "'", "''")+"'")
		}
	}
	return "state NOT IN (" + strings.Join(final, ", ") + ")"
}()

// PrefixCols qualifies every column of a comma-separated list with prefix
// ("j." for a join).
func PrefixCols(prefix, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = prefix + parts[i]
	}
	return strings.Join(parts, ", ")
}

// EncodeInputs is the inputs column of a run: its inputs as a JSON object,
// or "" for none.
func EncodeInputs(in map[string]string) string {
	if len(in) == 0 {
		return ""
	}
	data, err := json.Marshal(in)
	if err != nil {
		return "" // a map of strings always encodes
	}
	return string(data)
}

// DecodeInputs reads the inputs column of a run.
func DecodeInputs(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	var in map[string]string
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, fmt.Errorf("inputs of a run: %w", err)
	}
	return in, nil
}
