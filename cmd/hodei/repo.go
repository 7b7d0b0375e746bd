package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/hodei-ci/hodei/internal/api/wire"
	"github.com/hodei-ci/hodei/internal/client"
	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/repos"
)

func repoCmd(args []string) int {
	fs := flags("repo", "add|list|show|remove [NAME] [flags]", `
Manage the repositories runs come from. A push, a tag or a pull request
delivered by the forge's webhook runs the pipeline files of the commit
(.hodei.yaml and every .hodei/*.yaml), each job with the commit checked
out, and posts the commit status of each (see docs/triggers.md).

  hodei repo add NAME --url URL --forge github|gitlab|gitea|forgejo|git [--token-secret S] [--webhook-secret-secret S]
  hodei repo list
  hodei repo show NAME      with the webhook path to give the forge
  hodei repo remove NAME
  hodei repo run NAME [--ref main]   a manual run of the pipelines that take one (on: manual)

Secrets are named, not given: store them first with "hodei secret set".

Examples:
  printf %s "$GITHUB_TOKEN" | hodei secret set GH_TOKEN
  openssl rand -hex 32 | hodei secret set GH_HOOK
  hodei repo add app --url https://github.com/acme/app.git --forge github --token-secret GH_TOKEN --webhook-secret-secret GH_HOOK`)
	return runSubFlags(fs, args, []sub{
		{"add", repoAdd}, {"list", repoList}, {"show", repoShow}, {"remove", repoRemove}, {"run", repoRun},
	}, "add, list, show, remove or run")
}

func newRepoFlags(name, synopsis, help string) (*flag.FlagSet, tenantFlags) {
	return newTenantFlags("repo", "repository", name, synopsis, help)
}

// repoClient parses the arguments of a subcommand that names want
// repositories (0 or 1).
func repoClient(fs *flag.FlagSet, f tenantFlags, args []string, want int) (*client.Client, []string, int, bool) {
	return namedClient(fs, f.server, args, want, "repository", repos.ValidName, "letters, digits, '.', '_' and '-'")
}

func repoAdd(args []string) int {
	fs, f := newRepoFlags("add", "NAME --url URL --forge KIND [flags]", `
Add a repository. Its webhook is then served at
/api/v1/hooks/KIND/NAME (with ?tenant=T outside the default tenant): give
that URL and the webhook secret to the forge.`)
	u := fs.String("url", "", "the repository's clone URL (https://...)")
	kind := fs.String("forge", "", "github, gitlab, gitea, forgejo or git (a plain git server: no webhooks, no statuses)")
	token := fs.String("token-secret", "", "secret holding a token that reads the repository and posts commit statuses")
	hook := fs.String("webhook-secret-secret", "", "secret holding the webhook secret the forge signs with")
	branch := fs.String("default-branch", "main", "the repository's default branch")
	apiURL := fs.String("api-url", "", "the forge's API root when it is not the one the URL implies (GitHub Enterprise: https://HOST/api/v3)")
	c, pos, code, ok := repoClient(fs, f, args, 1)
	if !ok {
		return code
	}
	if *u == "" {
		return usageError(fs, "--url is required")
	}
	if _, err := forge.ParseKind(*kind); err != nil {
		return usageError(fs, "--forge: %v", err)
	}
	add := client.Repo{Name: pos[0], URL: *u, Forge: *kind, TokenSecret: *token,
		WebhookSecret: *hook, DefaultBranch: *branch, APIURL: *apiURL}
	return callAPI("repo add", *f.json, func(ctx context.Context) (client.Repo, error) { return c.AddRepo(ctx, *f.tenant, add) },
		printRepo)
}

func repoList(args []string) int {
	fs, f := newRepoFlags("list", "[flags]", "List the repositories of a tenant.")
	c, _, code, ok := repoClient(fs, f, args, 0)
	if !ok {
		return code
	}
	return callAPI("repo list", *f.json, func(ctx context.Context) ([]client.Repo, error) { return c.ListRepos(ctx, *f.tenant) },
		func(rs []client.Repo) int {
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFORGE\tURL\tDEFAULT BRANCH")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Forge, r.URL, r.DefaultBranch)
			}
			_ = tw.Flush()
			return exitOK
		})
}

func repoShow(args []string) int {
	fs, f := newRepoFlags("show", "NAME [flags]", "Show a repository and the path of its webhook.")
	c, pos, code, ok := repoClient(fs, f, args, 1)
	if !ok {
		return code
	}
	return callAPI("repo show", *f.json, func(ctx context.Context) (client.Repo, error) { return c.GetRepo(ctx, *f.tenant, pos[0]) },
		printRepo)
}

func repoRemove(args []string) int {
	fs, f := newRepoFlags("remove", "NAME [flags]", "Remove a repository: its webhooks start nothing any more; its runs stay.")
	c, pos, code, ok := repoClient(fs, f, args, 1)
	if !ok {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	if err := c.RemoveRepo(ctx, *f.tenant, pos[0]); err != nil {
		return apiFail("repo remove", err)
	}
	fmt.Printf("repository %s removed\n", pos[0])
	return exitOK
}

func repoRun(args []string) int {
	fs, f := newRepoFlags("run", "NAME [--ref REF] [flags]", `
Start a manual run of the repository's pipeline files at a branch or tag
(the default branch without --ref): one run per file whose on: takes manual
runs (a file without on: does).`)
	ref := fs.String("ref", "", "branch, tag or full ref (default: the repository's default branch)")
	c, pos, code, ok := repoClient(fs, f, args, 1)
	if !ok {
		return code
	}
	return callAPI("repo run", *f.json, func(ctx context.Context) (wire.HookResult, error) { return c.RunRepo(ctx, *f.tenant, pos[0], *ref) },
		func(res wire.HookResult) int {
			for _, e := range res.Errors {
				fmt.Fprintln(os.Stderr, e)
			}
			if len(res.RunIDs) == 0 {
				fmt.Printf("commit %s: no pipeline file takes manual runs (files: %v)\n", res.Commit, res.Files)
				return exitOK
			}
			fmt.Printf("commit %s, pipeline files %v\n", res.Commit, res.Matched)
			for _, id := range res.RunIDs {
				fmt.Printf("run %s\n", id)
			}
			return exitOK
		})
}

func printRepo(r client.Repo) int {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("name", r.Name)
	row("tenant", r.Tenant)
	row("forge", r.Forge)
	row("url", r.URL)
	row("api url", r.APIURL)
	row("default branch", r.DefaultBranch)
	row("token secret", r.TokenSecret)
	row("webhook secret", r.WebhookSecret)
	row("webhook", r.HookPath)
	_ = tw.Flush()
	return exitOK
}
