// Package authz decides what an authenticated principal may do, with Cedar
// policies evaluated in-process (cedar-go), or optionally by Amazon
// Verified Permissions. The schema and the default policies are embedded
// (defaults/); a directory of policies replaces them (LoadDir). Anything no
// policy permits is denied.
//
// Entity model (namespace Hodei): the principal is a User, member of its
// Roles, Groups and Tenant. Resources are Pipelines (what is submitted),
// Runs, Secrets, Repositories (all in a Tenant), Workers and the Cluster (the server
// itself: the workers list, the audit trail, tokens, administration).
package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hodei-ci/hodei/internal/auth"
)

// Actions: one per API operation.
const (
	ActSubmit        = "submit"
	ActRead          = "read"
	ActReadLogs      = "readLogs"
	ActReadArtifacts = "readArtifacts"
	ActCancel        = "cancel"
	ActApproveJob    = "approveJob"
	ActReadWorkers   = "readWorkers"
	ActManageWorkers = "manageWorkers"
	ActListSecrets   = "listSecrets"
	ActManageSecrets = "manageSecrets"
	ActListRepos     = "listRepos"
	ActManageRepos   = "manageRepos"
	ActRunRepo       = "runRepo"
	ActReadAudit     = "readAudit"
	ActReadMetrics   = "readMetrics"
	ActManageTokens  = "manageTokens"
	ActAdmin         = "admin"
)

// Actions lists every action, in the order of the schema.
var Actions = []string{ActSubmit, ActRead, ActReadLogs, ActReadArtifacts, ActCancel, ActApproveJob, ActReadWorkers, ActManageWorkers,
	ActListSecrets, ActManageSecrets, ActListRepos, ActManageRepos, ActRunRepo, ActReadAudit, ActReadMetrics, ActManageTokens, ActAdmin}

// Resource types.
const (
	TypeCluster  = "Cluster"
	TypeTenant   = "Tenant"
	TypePipeline = "Pipeline"
	TypeRun      = "Run"
	TypeWorker   = "Worker"
	TypeSecret   = "Secret"
	TypeRepo     = "Repository"
)

// ClusterID is the id of the one Cluster entity.
const ClusterID = "hodei"

// Resource is what a request acts on.
type Resource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	// Tenant is the tenant of a Pipeline, Run or Secret (for a Tenant, its
	// own id).
	Tenant string `json:"tenant,omitempty"`
	// Attrs are the other attributes the schema gives the type (Run:
	// pipeline, state; Pipeline: file; Worker: pool); missing ones are "".
	Attrs map[string]string `json:"attrs,omitempty"`
}

// String is the resource as a Cedar entity uid: Hodei::Run::"01…".
func (r Resource) String() string { return fmt.Sprintf("Hodei::%s::%q", r.Type, r.ID) }

// Cluster is the resource of cluster-wide operations.
func Cluster() Resource { return Resource{Type: TypeCluster, ID: ClusterID} }

// Tenant is the resource of operations on a whole tenant (listing its runs).
func Tenant(t string) Resource { return Resource{Type: TypeTenant, ID: t, Tenant: t} }

// Request asks whether a principal may do an action on a resource.
type Request struct {
	Principal auth.Principal `json:"principal"`
	Action    string         `json:"action"`
	Resource  Resource       `json:"resource"`
}

// Decision is the answer.
type Decision struct {
	Allow bool `json:"allow"`
	// Reasons are the ids of the policies that decided (the permits that
	// allowed, or the forbids that denied); empty when nothing permitted.
	Reasons []string `json:"reasons,omitempty"`
	// Errors are policies that failed to evaluate (they count as not
	// applying).
	Errors []string `json:"errors,omitempty"`
}

// Word is "allow" or "deny".
func (d Decision) Word() string {
	if d.Allow {
		return "allow"
	}
	return "deny"
}

// Explain says briefly why.
func (d Decision) Explain() string {
	var b strings.Builder
	switch {
	case len(d.Reasons) > 0 && d.Allow:
		b.WriteString("permitted by " + strings.Join(d.Reasons, ", "))
	case len(d.Reasons) > 0:
		b.WriteString("forbidden by " + strings.Join(d.Reasons, ", "))
	case !d.Allow:
		b.WriteString("no policy permits it")
	}
	if len(d.Errors) > 0 {
		b.WriteString("; evaluation errors: " + strings.Join(d.Errors, "; "))
	}
	return b.String()
}

// Authorizer decides requests. Implementations are safe for concurrent
// use. An error means no decision could be made (the caller denies).
type Authorizer interface {
	Authorize(ctx context.Context, req Request) (Decision, error)
}

// ErrUnknownAction is returned for an action outside Actions.
var ErrUnknownAction = errors.New("unknown action")

// RoleLister is an Authorizer that knows every role its policies give
// permissions to; tokens with other roles are refused where they are made.
// (Amazon Verified Permissions keeps its policies remotely: it is not one.)
type RoleLister interface {
	Roles() []string
}

// Scoped narrows a backend by API token scopes: a principal with scopes
// may do only the actions they name ("*" for all), whatever its roles
// allow. Scopes are checked before the policies, so that the same limit
// holds with every backend.
type Scoped struct{ Next Authorizer }

// Authorize implements Authorizer.
func (s Scoped) Authorize(ctx context.Context, req Request) (Decision, error) {
	if sc := req.Principal.Scopes; len(sc) > 0 && !slices.Contains(sc, "*") && !slices.Contains(sc, req.Action) {
		return Decision{Reasons: []string{"token-scopes"}}, nil
	}
	return s.Next.Authorize(ctx, req)
}
