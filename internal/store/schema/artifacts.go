package schema

import (
	"strings"

	"github.com/hodei-ci/hodei/internal/store"
)

// ArtifactCols are the columns of the artifacts table, in the order both
// stores scan them.
const ArtifactCols = "id, kind, tenant, scope, run_id, job_id, job_key, attempt, name, object, size, files, created_at, expires_at"

// ArtifactWhere builds the condition (with its leading WHERE, or "") and
// the arguments of a ListArtifacts query. ph returns the placeholder of the
// nth argument (1-based); expiredAt is f.ExpiredAt as the store encodes
// times.
func ArtifactWhere(f store.ArtifactFilter, ph func(n int) string, expiredAt int64) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return ph(len(args))
	}
	if f.Kind != "" {
		where = append(where, "kind = "+arg(f.Kind))
	}
	if f.Tenant != "" {
		where = append(where, "tenant = "+arg(f.Tenant))
	}
	if f.Scope != "" {
		where = append(where, "scope = "+arg(f.Scope))
	}
	if f.RunID != "" {
		where = append(where, "run_id = "+arg(f.RunID))
	}
	if f.NamePrefix != "" {
		where = append(where, "substr(name, 1, "+arg(len(f.NamePrefix))+") = "+arg(f.NamePrefix))
	}
	if !f.ExpiredAt.IsZero() {
		where = append(where, "expires_at <= "+arg(expiredAt))
	}
	if len(where) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// ArtifactArgs are the values of a in ArtifactCols' order.
func ArtifactArgs(a store.Artifact) []any {
	return []any{a.ID, a.Kind, a.Tenant, a.Scope, a.RunID, a.JobID, a.JobKey, a.Attempt, a.Name, a.Object, a.Size, string(a.Files),
		EncTime(a.CreatedAt), EncTime(a.ExpiresAt)}
}

// ScanArtifact reads a row of ArtifactCols.
func ScanArtifact(sc Scanner) (store.Artifact, error) {
	var a store.Artifact
	var files string
	var created, expires int64
	err := sc.Scan(&a.ID, &a.Kind, &a.Tenant, &a.Scope, &a.RunID, &a.JobID, &a.JobKey, &a.Attempt, &a.Name, &a.Object, &a.Size, &files, &created, &expires)
	a.Files, a.CreatedAt, a.ExpiresAt = []byte(files), DecTime(created), DecTime(expires)
	return a, err
}
