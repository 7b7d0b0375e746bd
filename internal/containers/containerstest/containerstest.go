// Package containerstest gives tests a Docker engine: the one that
// scripts/test starts (DOCKER_HOST) and the image it imports. Tests that use
// it are built with the "docker" tag only; without an engine they fail, they
// never skip.
package containerstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/containers/dockerengine"
)

// Image is the image tests run: busybox imported by scripts/test
// (HODEI_TEST_IMAGE overrides it).
func Image() string {
	if s := os.Getenv("HODEI_TEST_IMAGE"); s != "" {
		return s
	}
	return "hodei-test-busybox"
}

// Docker returns a client of the test engine, or fails the test.
func Docker(t testing.TB) *dockerengine.Docker {
	t.Helper()
	if os.Getenv("DOCKER_HOST") == "" {
		t.Fatal("DOCKER_HOST is not set: the docker tests need the engine that scripts/test starts " +
			"(run ./scripts/test, or start dockerd as it does and export DOCKER_HOST)")
	}
	d, err := dockerengine.NewDocker("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Ping(ctx); err != nil {
		t.Fatalf("docker engine at %s: %v", os.Getenv("DOCKER_HOST"), err)
	}
	t.Cleanup(d.Close)
	return d
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// HodeiBinary returns a static hodei binary that runs inside a container:
// $HODEI_BIN (scripts/test builds bin/hodei), else one built once per test
// process.
func HodeiBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HODEI_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hodei-bin-")
		if err != nil {
			binErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		binPath = filepath.Join(dir, "hodei")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/hodei")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build hodei: %v\n%s", binErr, binPath)
	}
	return binPath
}

// WaitFor polls cond every 20ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
