//go:build docker

package deploy_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/containers/containerstest"
	"github.com/hodei-ci/hodei/internal/state"
)

// dockerCLI is the docker command of the tests' engine (DOCKER_HOST):
// Debian's /usr/bin/docker when there is one, whose build speaks BuildKit
// without the buildx plugin.
func dockerCLI(t *testing.T) string {
	t.Helper()
	if os.Getenv("DOCKER_HOST") == "" {
		t.Fatal("DOCKER_HOST is not set: the docker tests need the engine that scripts/test starts")
	}
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker"
	}
	p, err := exec.LookPath("docker")
	if err != nil {
		t.Fatal("no docker command: install the Debian package docker.io (scripts/test does)")
	}
	return p
}

// docker runs the docker command and returns its output, failing the test
// if it fails.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerErr(t, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func dockerErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(dockerCLI(t), args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func randomName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// buildImage builds the Dockerfile at the top of the repository into a new
// image and returns its tag. The build stage's Go image cannot be pulled
// here: the root file system comes from an image imported from the output
// of deploy/container/rootfs.sh run on the static binary of the tests
// (containerstest.HodeiBinary), the host's static busybox and CA
// certificates, given as the build argument BUILD.
func buildImage(t *testing.T) string {
	t.Helper()
	cli := dockerCLI(t)
	dir := t.TempDir()
	rootfs := exec.Command(filepath.Join(repoRoot(), "deploy", "container", "rootfs.sh"),
		filepath.Join(dir, "var", "tmp", "hodei-image", "rootfs"), containerstest.HodeiBinary(t), "/bin/busybox", "/etc/ssl/certs/ca-certificates.crt")
	if out, err := rootfs.CombinedOutput(); err != nil {
		t.Fatalf("rootfs.sh: %v\n%s (it needs root, busybox-static and ca-certificates)", err, out)
	}
	artifacts, tag := randomName("hodei-test-rootfs-"), randomName("hodei-test-image:")
	tar := exec.Command("tar", "-C", dir, "-c", "var")
	imp := exec.Command(cli, "import", "-", artifacts)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	var impOut bytes.Buffer
	imp.Stdout, imp.Stderr = &impOut, &impOut
	if err := tar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := imp.Run(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, impOut.String())
	}
	if err := tar.Wait(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	t.Cleanup(func() { _, _ = dockerErr(t, "rmi", "-f", tag, artifacts) })
	start := time.Now()
	docker(t, "build", "--build-arg", "BUILD="+artifacts, "-t", tag, repoRoot())
	t.Logf("image %s built in %s", tag, time.Since(start).Round(time.Millisecond))
	return tag
}

// TestDockerImageRunsAPipeline builds the image of the Dockerfile and runs
// it as users are told to (docs/deploy.md): read-only root file system, uid
// 65532, a volume for the data directory, a tmpfs on /tmp. Without the
// namespaces of the step sandbox (the engine's default seccomp profile
// refuses them), a server with local workers refuses to start and says
// which flag runs steps without isolation; with that flag given, a
// pipeline submitted through the API completes, its step running as 65532
// on the read-only root. A new container on the same volume, with the
// image's default settings (a server without local workers), still has the
// run and accepts the same admin token, and an agent in a container of the
// same image runs the next pipeline.
func TestDockerImageRunsAPipeline(t *testing.T) {
	image := buildImage(t)
	cfg := docker(t, "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Volumes}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}", image)
	for _, want := range []string{"65532:65532 ", `"/var/lib/hodei"`, `["/usr/local/bin/hodei"]`, `["server"]`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("image config %q lacks %s", strings.TrimSpace(cfg), want)
		}
	}
	vol := randomName("hodei-test-data-")
	docker(t, "volume", "create", vol)
	t.Cleanup(func() { _, _ = dockerErr(t, "volume", "rm", "-f", vol) })
	base := []string{"run", "--read-only", "--tmpfs", "/tmp", "--user", "65532", "-v", vol + ":/var/lib/hodei"}

	// Local workers without isolation: refused, with the way out named.
	out, err := dockerErr(t, append(base, "--rm", "--network", "none", "-e", "HODEI_WORKERS=1",
		"-e", "HODEI_HTTP=127.0.0.1:0", "-e", "HODEI_NATS_LISTEN=none", image)...)
	if err == nil || !strings.Contains(out, "steps cannot be isolated") || !strings.Contains(out, "--unsafe-shared-user") {
		t.Fatalf("a server with local workers that cannot isolate started, or did not say why (err %v):\n%s", err, out)
	}

	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	// start runs a container of the image on the host's network (the
	// engine has no bridge) with env, and waits until its output says
	// ready.
	start := func(name, ready string, args ...string) string {
		docker(t, append(append(slices.Clone(base), "-d", "--name", name, "--network", "host"), args...)...)
		t.Cleanup(func() { _, _ = dockerErr(t, "rm", "-f", name) })
		var logs string
		waitFor(t, 90*time.Second, "container "+name+" to be ready", func() bool {
			logs, _ = dockerErr(t, "logs", name)
			if st, _ := dockerErr(t, "inspect", "--format", "{{.State.Running}}", name); strings.TrimSpace(st) == "false" {
				t.Fatalf("container %s stopped:\n%s", name, logs)
			}
			return strings.Contains(logs, ready)
		})
		return logs
	}
	server := func(name string, env ...string) string {
		args := []string{"-e", "HODEI_HTTP=" + httpAddr, "-e", "HODEI_NATS_LISTEN=" + natsAddr}
		for _, e := range env {
			args = append(args, "-e", e)
		}
		return start(name, "hodei server ready", append(args, image)...)
	}
	first := randomName("hodei-test-server-")
	logs := server(first, "HODEI_WORKERS=1", "HODEI_UNSAFE_SHARED_USER=true")
	token := adminToken(logs)
	if token == "" {
		t.Fatalf("no admin token in the server's output:\n%s", logs)
	}
	run, output := runPipeline(t, "http://"+httpAddr, token, `name: in-the-image
jobs:
  hello:
    steps:
      - run: echo "hello as $(id -u)"
      - run: 'if touch /etc/x 2>/dev/null; then echo "root writable"; else echo "root read-only"; fi'
`)
	if run.State != state.RunSucceeded {
		t.Fatalf("run %s ended %s: %s\n%s", run.ID, run.State, run.Error, output)
	}
	for _, want := range []string{"hello as 65532", "root read-only"} {
		if !strings.Contains(output, want) {
			t.Errorf("output lacks %q:\n%s", want, output)
		}
	}

	// The state is in the volume: a new container, with the image's
	// default settings (no local worker), finds the run and the token made
	// at the first start; an agent in a container of the same image runs
	// the next job.
	docker(t, "rm", "-f", first)
	server(randomName("hodei-test-server-"))
	c := mustClient(t, "http://"+httpAddr, token)
	if r, err := c.GetRun(t.Context(), run.ID); err != nil || r.State != state.RunSucceeded {
		t.Fatalf("after a restart on the same volume, run %s: %+v, %v", run.ID, r, err)
	}
	agent := randomName("hodei-test-agent-")
	start(agent, "hodei agent started", "-e", "HODEI_NATS=nats://"+natsAddr, "-e", "HODEI_ID="+agent,
		image, "agent", "--unsafe-shared-user", "--docker", "off", "--labels", "image-agent")
	again, output := runPipeline(t, "http://"+httpAddr, token, `name: on-an-agent
jobs:
  again:
    runs-on: {labels: [image-agent]}
    steps: [{run: 'echo "on $HODEI_WORKER as $(id -u)"'}]
`)
	if again.State != state.RunSucceeded || !strings.Contains(output, "on "+agent+" as 65532") {
		t.Fatalf("on the agent container, run %s ended %s:\n%s", again.ID, again.State, output)
	}
}
