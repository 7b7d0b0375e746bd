package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hodei-ci/hodei/internal/forge"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// checkoutScript puts a commit in the workspace with the job's own
// identity, as a step would run: an empty repository, a fetch of the one
// commit (of its ref when the server does not serve a commit by id), a
// detached checkout. With HODEI_CHECKOUT_CACHED=1 the agent has put the
// commit in the workspace's repository from its object cache already
// (gitcache.go): the script only checks it out. It reads everything from
// HODEI_CHECKOUT_*, so that nothing from the repository is ever parsed by
// the shell. The remote's
// URL is in .git/config; the token never is: it is in the environment of
// this script only (forge.GitAuthEnv).
const checkoutScript = `depth=
if [ "$HODEI_CHECKOUT_DEPTH" -gt 0 ]; then depth="--depth=$HODEI_CHECKOUT_DEPTH"; fi
if [ "$HODEI_CHECKOUT_CACHED" != 1 ]; then
git init -q .
git remote add origin "$HODEI_CHECKOUT_URL"
tags=--no-tags
if [ "$HODEI_CHECKOUT_TAGS" = 1 ]; then tags=--tags; fi
if ! git fetch -q $tags $depth origin "+$HODEI_CHECKOUT_COMMIT:refs/remotes/origin/hodei-checkout" 2>/dev/null; then
  git fetch -q $tags $depth origin "+$HODEI_CHECKOUT_REF:refs/remotes/origin/hodei-checkout"
fi
fi
git -c advice.detachedHead=false checkout -q --detach "$HODEI_CHECKOUT_COMMIT"
if [ "$HODEI_CHECKOUT_SUBMODULES" = 1 ]; then git submodule update -q --init --recursive $depth; fi
if [ "$HODEI_CHECKOUT_LFS" = 1 ]; then git lfs install --local >/dev/null && git lfs pull; fi
git log -1 --format='HEAD is now at %H %s'
`

// checkoutEnv is what the checkout script reads, with the token's
// Authorization header for the repository's host.
func checkoutEnv(c *pipeline.Checkout, token string) map[string]string {
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	env := map[string]string{
		"HODEI_CHECKOUT_URL":        c.URL,
		"HODEI_CHECKOUT_COMMIT":     c.Commit,
		"HODEI_CHECKOUT_REF":        c.Ref,
		"HODEI_CHECKOUT_DEPTH":      strconv.Itoa(c.Depth),
		"HODEI_CHECKOUT_TAGS":       flag(c.FetchTags),
		"HODEI_CHECKOUT_SUBMODULES": flag(c.Submodules),
		"HODEI_CHECKOUT_LFS":        flag(c.LFS),
		"GIT_TERMINAL_PROMPT":       "0",
	}
	for k, v := range forge.GitAuthEnv(c.URL, c.AuthUser, token) {
		env[k] = v
	}
	return env
}

// splitCheckoutToken takes the checkout's token out of a job's secrets:
// the steps get it only if the job names that secret itself.
func splitCheckoutToken(spec pipeline.JobSpec, secrets map[string]string) (string, map[string]string) {
	c := spec.Checkout
	if c == nil || c.TokenSecret == "" {
		return "", secrets
	}
	token := secrets[c.TokenSecret]
	for _, n := range spec.Secrets {
		if n == c.TokenSecret {
			return token, secrets
		}
	}
	rest := make(map[string]string, len(secrets))
	for k, v := range secrets {
		if k != c.TokenSecret {
			rest[k] = v
		}
	}
	return token, rest
}

// checkoutTimeout bounds the checkout (the job's own timeout bounds it
// too).
const checkoutTimeout = 30 * time.Minute

// checkout runs the checkout script before the first step, its output in
// the log as the agent's own (step -1), masked. It returns why it failed,
// or "".
//
// prime, when not nil, puts the commit in the workspace from the worker's
// object cache first; when it fails, the script fetches it itself. env
// returns the script's environment, told whether prime did.
func checkout(ctx context.Context, c *pipeline.Checkout, run func(script string, env []string, timeout time.Duration, out io.Writer) stepResult,
	env func(cached bool) []string, prime func() (cacheResult, error), b *batcher, masks *mask.Set) string {
	b.Flush(-1)
	_, _ = io.WriteString(b, masks.String(fmt.Sprintf("==> checkout %s (%s) from %s\n", c.Commit, c.Ref, c.URL)))
	started := time.Now()
	cached := false
	if prime != nil {
		res, err := prime()
		switch {
		case errors.Is(err, errShallowMiss):
			_, _ = io.WriteString(b, "object cache: the commit is not in this worker's mirror; a shallow checkout fetches directly\n")
		case err != nil:
			_, _ = io.WriteString(b, masks.String(fmt.Sprintf("object cache: %v; fetching directly\n", err)))
		case res.Hit:
			cached = true
			_, _ = io.WriteString(b, fmt.Sprintf("object cache: the commit was in this worker's mirror (%s)\n", time.Since(started).Round(time.Millisecond)))
		default:
			cached = true
			_, _ = io.WriteString(b, fmt.Sprintf("object cache: fetched into this worker's mirror (%s)\n", time.Since(started).Round(time.Millisecond)))
		}
	}
	ends := &lineEnds{w: b}
	out := mask.NewWriter(ends, masks)
	res := run(checkoutScript, env(cached), checkoutTimeout, out)
	_ = out.Flush()
	ends.close()
	if res.Err != nil {
		_, _ = io.WriteString(b, fmt.Sprintf("<== checkout failed in %s: %v\n", time.Since(started).Round(time.Millisecond), res.Err))
		return masks.String("checkout: " + res.Err.Error())
	}
	_, _ = io.WriteString(b, fmt.Sprintf("<== checkout done in %s\n", time.Since(started).Round(time.Millisecond)))
	return ""
}
