package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/hodei-ci/hodei/internal/api/wire"
)

// Repo is a repository runs come from.
type Repo = wire.Repo

func repoQuery(tenant string) url.Values {
	if tenant == "" {
		return nil
	}
	return url.Values{"tenant": {tenant}}
}

// ListRepos lists the repositories of a tenant ("" for the caller's).
func (c *Client) ListRepos(ctx context.Context, tenant string) ([]Repo, error) {
	var l wire.RepoList
	err := c.JSON(ctx, http.MethodGet, "/api/v1/repos", repoQuery(tenant), nil, &l)
	return l.Repos, err
}

// GetRepo returns one repository.
func (c *Client) GetRepo(ctx context.Context, tenant, name string) (Repo, error) {
	var r Repo
	err := c.JSON(ctx, http.MethodGet, "/api/v1/repos/"+url.PathEscape(name), repoQuery(tenant), nil, &r)
	return r, err
}

// AddRepo adds a repository (an *Error with Code "conflict" if the tenant
// has one of that name) and returns it as stored.
func (c *Client) AddRepo(ctx context.Context, tenant string, r Repo) (Repo, error) {
	var out Repo
	err := c.JSON(ctx, http.MethodPost, "/api/v1/repos", repoQuery(tenant), r, &out)
	return out, err
}

// RemoveRepo removes a repository.
func (c *Client) RemoveRepo(ctx context.Context, tenant, name string) error {
	return c.JSON(ctx, http.MethodDelete, "/api/v1/repos/"+url.PathEscape(name), repoQuery(tenant), nil, nil)
}

// RunRepo starts the manual runs of a repository at ref ("" for its
// default branch): one per pipeline file whose on: takes manual runs.
func (c *Client) RunRepo(ctx context.Context, tenant, name, ref string) (wire.HookResult, error) {
	var out wire.HookResult
	err := c.JSON(ctx, http.MethodPost, "/api/v1/repos/"+url.PathEscape(name)+"/runs", repoQuery(tenant), map[string]string{"ref": ref}, &out)
	return out, err
}
