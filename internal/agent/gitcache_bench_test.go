package agent

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// bigRepo makes o/app.git under root with n commits, each changing one of
// 300 files of about 2 KiB (git fast-import, then a gc as a forge's
// repository would have), and returns its head.
func bigRepo(b *testing.B, root string, n int) string {
	b.Helper()
	bare := filepath.Join(root, "o", "app.git")
	git(b, root, "init", "-q", "--bare", bare)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = bare
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(in)
	rnd := rand.New(rand.NewPCG(1, 2))
	const words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
	for i := 1; i <= n; i++ {
		content := make([]byte, 0, 2100)
		for len(content) < 2048 {
			k := rnd.IntN(len(words) - 8)
			content = append(content, words[k:k+8]...)
			content = append(content, byte('0'+rnd.IntN(10)), '\n')
		}
		msg := "change " + strconv.Itoa(i)
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\ncommitter t <t@example.com> %d +0000\ndata %d\n%s\n", i, 1700000000+i, len(msg), msg)
		if i > 1 {
			fmt.Fprintf(w, "from :%d\n", i-1)
		}
		fmt.Fprintf(w, "M 100644 inline src/f%03d.txt\ndata %d\n%s\n", rnd.IntN(300), len(content), content)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	git(b, bare, "gc", "-q")
	return git(b, bare, "rev-parse", "refs/heads/main")
}

// BenchmarkGitCheckout measures a checkout of a repository with a long
// history over HTTP (git http-backend on loopback): "direct" as the
// checkout script fetches without the cache, "cold" through a new object
// cache (the mirror fetched, then the workspace filled from it), "warm"
// through a cache that has the commit. HODEI_BENCH_GIT_COMMITS sets the
// history (20000 commits by default).
func BenchmarkGitCheckout(b *testing.B) {
	n := 20000
	if s := os.Getenv("HODEI_BENCH_GIT_COMMITS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	root := b.TempDir()
	head := bigRepo(b, root, n)
	var size int64
	packs, _ := filepath.Glob(filepath.Join(root, "o", "app.git", "objects", "pack", "*.pack"))
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil {
			size += fi.Size()
		}
	}
	b.Logf("repository: %d commits, %d bytes of packs", n, size)
	srv := serveGit(b, root, "tok")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for _, depth := range []int{0, 1} {
		c := srv.checkout(head, depth)
		b.Run(fmt.Sprintf("direct/depth=%d", depth), func(b *testing.B) {
			for b.Loop() {
				ws := b.TempDir()
				env := map[string]string{"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
					"GIT_CONFIG_VALUE_0": "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9r"}
				args := []string{"fetch", "-q", "--no-tags"}
				if depth > 0 {
					args = append(args, "--depth="+strconv.Itoa(depth))
				}
				args = append(args, "--", c.URL, "+"+head+":refs/remotes/origin/hodei-checkout")
				if err := runGit(ctx, nil, ws, "init", "-q", "."); err != nil {
					b.Fatal(err)
				}
				if err := runGit(ctx, env, ws, args...); err != nil {
					b.Fatal(err)
				}
			}
		})
		if depth == 0 {
			// A shallow checkout never fills a mirror: its cold case is
			// the direct one.
			b.Run(fmt.Sprintf("cold/depth=%d", depth), func(b *testing.B) {
				for b.Loop() {
					cache := newTestCache(b)
					if _, err := cache.prime(ctx, "acme", c, "tok", b.TempDir(), -1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(fmt.Sprintf("warm/depth=%d", depth), func(b *testing.B) {
			cache := newTestCache(b)
			if _, err := cache.prime(ctx, "acme", srv.checkout(head, 0), "tok", b.TempDir(), -1); err != nil {
				b.Fatal(err)
			}
			before := srv.fetches()
			for b.Loop() {
				res, err := cache.prime(ctx, "acme", c, "tok", b.TempDir(), -1)
				if err != nil || !res.Hit {
					b.Fatalf("warm checkout: hit %v, %v", res.Hit, err)
				}
			}
			if srv.fetches() != before {
				b.Fatal("a warm checkout went to the server")
			}
		})
	}
}
