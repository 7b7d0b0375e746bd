package api_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/audit"
)

// TestPermissionsAnswerAsTheAPIDecides: GET /api/v1/permissions answers,
// action by action, what the same requests would get from the API (and
// audits the query); POST /api/v1/runs/{id}/rerun is decided as a read of
// the run and a submission in its tenant.
func TestPermissionsAnswerAsTheAPIDecides(t *testing.T) {
	e := startSecure(t)
	run := e.submit("bob", "")

	perms := func(user, query string) (int, wire.Permissions) {
		t.Helper()
		a := e.as(user, "GET", "/api/v1/permissions"+query)
		var p wire.Permissions
		if a.status == http.StatusOK {
			if err := json.Unmarshal(a.body, &p); err != nil {
				t.Fatal(err)
			}
		}
		return a.status, p
	}
	for _, c := range []struct {
		user string
		want map[string]bool
	}{
		{"bob", map[string]bool{"read": true, "readLogs": true, "cancel": true, "approveJob": true, "submit": true}},
		{"vera", map[string]bool{"read": true, "readLogs": true, "cancel": false, "approveJob": false, "submit": false}},
		{"alice", map[string]bool{"read": true, "readLogs": true, "cancel": true, "approveJob": true, "submit": true}},
	} {
		st, p := perms(c.user, "?run="+run.ID)
		if st != http.StatusOK || !reflect.DeepEqual(p.Actions, c.want) || p.Resource != `Hodei::Run::"`+run.ID+`"` {
			t.Errorf("%s on bob's run: %d %+v, want %v", c.user, st, p, c.want)
		}
		// The answers hold: cancel is refused exactly where it says so.
		if !c.want["cancel"] {
			e.want(e.as(c.user, "POST", "/api/v1/runs/"+run.ID+"/cancel"), 403, wire.CodeForbidden, c.user+" cancels")
		}
	}
	// Another tenant's run is not found, as when reading it.
	if st, _ := perms("carol", "?run="+run.ID); st != http.StatusNotFound {
		t.Errorf("carol on bob's run: %d, want 404", st)
	}
	e.want(e.as("carol", "GET", "/api/v1/runs/"+run.ID), 404, wire.CodeNotFound, "carol reads bob's run")

	// Without a run: the cluster's actions and submitting in one's tenant.
	st, p := perms("vera", "")
	if st != http.StatusOK || p.Actions["readWorkers"] != true || p.Actions["admin"] || p.Actions["submit"] {
		t.Errorf("vera on the cluster: %d %+v", st, p)
	}
	st, p = perms("alice", "")
	if st != http.StatusOK || !p.Actions["admin"] || !p.Actions["manageTokens"] {
		t.Errorf("alice on the cluster: %d %+v", st, p)
	}
	e.want(e.call("", "GET", "/api/v1/permissions", "", nil), 401, wire.CodeUnauthenticated, "anonymous permissions")

	e.srv.Audit().Flush() // records are written behind the answers
	recs, err := e.srv.Audit().Query(audit.Filter{Action: "permissions", Principal: "user:u-vera"})
	if err != nil || len(recs) == 0 {
		t.Fatalf("the permissions queries are not audited: %v %v", recs, err)
	}

	// Re-runs: bob may, vera may not, carol does not see the run.
	a := e.as("bob", "POST", "/api/v1/runs/"+run.ID+"/rerun")
	var again wire.Run
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &again) != nil || again.ID == run.ID ||
		again.Pipeline != run.Pipeline || again.Tenant != run.Tenant || again.File != run.File {
		t.Errorf("bob re-runs: %d %s", a.status, a.body)
	}
	e.want(e.as("vera", "POST", "/api/v1/runs/"+run.ID+"/rerun"), 403, wire.CodeForbidden, "vera re-runs")
	e.want(e.as("carol", "POST", "/api/v1/runs/"+run.ID+"/rerun"), 404, wire.CodeNotFound, "carol re-runs")
}
