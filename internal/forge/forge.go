// Package forge speaks to the forges that host repositories (GitHub,
// GitLab, Gitea, Forgejo): it checks the signature of their webhooks,
// reads the events out of the bodies (push, tag push, pull or merge
// request) and posts commit statuses through their APIs. It holds no
// state: what repository a webhook is for, and what to run, is decided by
// package repos.
package forge

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Kind is a forge's type.
type Kind string

// The forges Hodei knows. Git is a plain git server: it sends no webhook
// and takes no status.
const (
	GitHub  Kind = "github"
	GitLab  Kind = "gitlab"
	Gitea   Kind = "gitea"
	Forgejo Kind = "forgejo"
	Git     Kind = "git"
)

// Kinds lists every forge kind.
var Kinds = []Kind{GitHub, GitLab, Gitea, Forgejo, Git}

// ParseKind checks a forge's name.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown forge %q: use one of github, gitlab, gitea, forgejo, git", s)
}

// Errors of webhook handling.
var (
	// ErrSignature: the webhook's signature (or token) is missing or wrong.
	ErrSignature = errors.New("bad webhook signature")
	// ErrIgnored: the event is not one that starts runs.
	ErrIgnored = errors.New("event ignored")
	// ErrMalformed: the body is not the JSON the event should carry.
	ErrMalformed = errors.New("malformed webhook body")
	// ErrNoWebhooks: the forge kind sends no webhooks (Git).
	ErrNoWebhooks = errors.New("this forge kind has no webhooks")
)

// AuthUser is the user name a forge expects beside a token in HTTP basic
// authentication of git over HTTPS.
func AuthUser(k Kind) string {
	switch k {
	case GitHub:
		return "x-access-token"
	case GitLab:
		return "oauth2"
	}
	return "hodei"
}

// RepoPath is the owner/name path of a repository URL ("owner/repo" of
// https://github.com/owner/repo.git; GitLab's groups included).
func RepoPath(repoURL string) (string, error) {
	u, err := url.Parse(repoURL)
	if err != nil {
		return "", fmt.Errorf("repository url: %w", err)
	}
	p := strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git")
	if !strings.Contains(p, "/") {
		return "", fmt.Errorf("repository url %q: want a path with owner and name", repoURL)
	}
	return p, nil
}

// APIBase is the root of a forge's API for a repository URL: GitHub's
// public API for github.com and /api/v3 on other hosts (GitHub
// Enterprise), /api/v4 for GitLab, /api/v1 for Gitea and Forgejo.
func APIBase(k Kind, repoURL string) (string, error) {
	u, err := url.Parse(repoURL)
	if err != nil {
		return "", fmt.Errorf("repository url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("repository url %q: the forge's API is only known for http and https urls (set the api url)", repoURL)
	}
	root := u.Scheme + "://" + u.Host
	switch k {
	case GitHub:
		if u.Host == "github.com" {
			return "https://api.github.com", nil
		}
		return root + "/api/v3", nil
	case GitLab:
		return root + "/api/v4", nil
	case Gitea, Forgejo:
		return root + "/api/v1", nil
	}
	return "", fmt.Errorf("forge %s has no status API", k)
}

// GitAuthEnv is the environment that gives git an Authorization header
// for the HTTP requests to the host of repoURL only, without writing it
// anywhere (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_0, GIT_CONFIG_VALUE_0: an
// http.<url>.extraHeader that lives as long as the process): a basic
// authorization of user and token, as forges take a token for git over
// HTTPS. Empty without a token.
func GitAuthEnv(repoURL, user, token string) map[string]string {
	if token == "" {
		return nil
	}
	key := "http.extraHeader"
	if u, err := url.Parse(repoURL); err == nil && u.Host != "" {
		key = "http." + u.Scheme + "://" + u.Host + "/.extraHeader"
	}
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + token))
	return map[string]string{"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": key, "GIT_CONFIG_VALUE_0": "Authorization: Basic " + cred}
}
