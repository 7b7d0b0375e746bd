package schema

import "github.com/hodei-ci/hodei/internal/store"

// FiringCols are the columns of schedule_firings, in ScanFiring's order.
const FiringCols = "tenant, repo, file, schedule, at, kind, run_id, error, recorded_at"

// PendingFirings is the condition of the partial index
// schedule_firings_pending, spelled as it is there so that the query
// uses it (kind is store.FiringRun).
const PendingFirings = "kind = 'run' AND run_id = '' AND error = ''"

// The queries of the schedule firings, in SQLite's placeholders (Rebind
// them for PostgreSQL).
const (
	ClaimFiringSQL = "INSERT INTO schedule_firings (" + FiringCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
	LastFiringSQL  = "SELECT " + FiringCols + " FROM schedule_firings WHERE tenant = ? AND repo = ? AND file = ? AND schedule = ? ORDER BY at DESC LIMIT 1"
	// PendingFiringsSQL reads the firings whose run was not made.
	PendingFiringsSQL = "SELECT " + FiringCols + " FROM schedule_firings WHERE " + PendingFirings + " ORDER BY at"
	ListFiringsSQL    = "SELECT " + FiringCols + " FROM schedule_firings WHERE tenant = ? AND repo = ? ORDER BY at, file, schedule"
	// SetFiringErrorSQL and SetFiringRunSQL take the value set, then
	// FiringKey's arguments.
	SetFiringErrorSQL = "UPDATE schedule_firings SET error = ? WHERE tenant = ? AND repo = ? AND file = ? AND schedule = ? AND at = ?"
	SetFiringRunSQL   = "UPDATE schedule_firings SET run_id = ? WHERE tenant = ? AND repo = ? AND file = ? AND schedule = ? AND at = ?"
)

// ScanFiring reads a row of FiringCols.
func ScanFiring(sc Scanner) (store.Firing, error) {
	var f store.Firing
	var at, rec int64
	err := sc.Scan(&f.Tenant, &f.Repo, &f.File, &f.Schedule, &at, &f.Kind, &f.RunID, &f.Error, &rec)
	f.At, f.RecordedAt = DecTime(at), DecTime(rec)
	return f, err
}

// FiringArgs are the values of f in FiringCols' order.
func FiringArgs(f store.Firing) []any {
	return []any{f.Tenant, f.Repo, f.File, f.Schedule, EncTime(f.At), f.Kind, f.RunID, f.Error, EncTime(f.RecordedAt)}
}

// FiringKey is v followed by the key of f: the arguments of
// SetFiringErrorSQL and SetFiringRunSQL.
func FiringKey(v string, f store.Firing) []any {
	return []any{v, f.Tenant, f.Repo, f.File, f.Schedule, EncTime(f.At)}
}
