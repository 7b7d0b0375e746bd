//go:build docker

package dockerengine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/containers/containerstest"
)

func TestDockerJobContainer(t *testing.T) {
	d := containerstest.Docker(t)
	ctx := context.Background()
	ws := t.TempDir()
	if err := os.WriteFile(ws+"/in.txt", []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	job := "ctest-" + t.Name()
	c, err := d.StartJob(ctx, containers.JobSpec{
		Image: containerstest.Image(), Workspace: ws, CPUMilli: 500, Memory: 96 << 20,
		Labels: map[string]string{containers.LabelJob: job, containers.LabelAttempt: "1", containers.LabelAgent: "ctest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx)
	st, err := d.Inspect(ctx, c.ID())
	if err != nil || !st.Running {
		t.Fatalf("inspect: %+v %v", st, err)
	}
	if st.NanoCPUs != 500_000_000 || st.Memory != 96<<20 || st.NetworkMode != "none" {
		t.Errorf("limits: nano cpus %d, memory %d, network %q", st.NanoCPUs, st.Memory, st.NetworkMode)
	}

	var out bytes.Buffer
	code, err := c.Exec(ctx, "cat in.txt; echo out; echo err >&2; pwd; echo $GREETING; echo made > out.txt", ws, []string{"GREETING=hello"}, &out)
	if err != nil || code != 0 {
		t.Fatalf("exec: code %d, %v\n%s", code, err, out.String())
	}
	want := "from the host\nout\nerr\n" + ws + "\nhello\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if b, err := os.ReadFile(ws + "/out.txt"); err != nil || string(b) != "made\n" {
		t.Errorf("file written in the container: %q %v", b, err)
	}

	out.Reset()
	code, err = c.Exec(ctx, "echo before; false; echo after", ws, nil, &out)
	if err != nil || code != 1 || out.String() != "before\n" {
		t.Errorf("sh -e: code %d, err %v, output %q", code, err, out.String())
	}

	// Canceling a step returns at once with the cause.
	cctx, cancel := context.WithCancelCause(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(cctx, "echo started; sleep 60", ws, nil, &syncWriter{ch: make(chan struct{}, 1)})
		done <- err
	}()
	stop := errors.New("stop")
	cancel(stop)
	select {
	case err := <-done:
		if !errors.Is(err, stop) {
			t.Errorf("canceled exec: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("canceled exec did not return")
	}

	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := d.Inspect(ctx, c.ID()); err != nil || st.Exists {
		t.Errorf("after Remove: %+v %v", st, err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestDockerNetworkAndCleanup(t *testing.T) {
	d := containerstest.Docker(t)
	ctx := context.Background()
	ws := t.TempDir()
	c, err := d.StartJob(ctx, containers.JobSpec{
		Image: containerstest.Image(), Workspace: ws, Network: true, NetworkMode: "host",
		Labels: map[string]string{containers.LabelAgent: "ctest-cleanup"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := c.Exec(ctx, "cat /proc/net/dev", ws, nil, &out); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.Inspect(ctx, c.ID()); st.NetworkMode != "host" {
		t.Errorf("network mode %q, want host", st.NetworkMode)
	}
	n, err := d.RemoveLabelled(ctx, containers.LabelAgent, "ctest-cleanup")
	if err != nil || n != 1 {
		t.Errorf("RemoveLabelled = %d, %v", n, err)
	}
	if ids, err := d.ListLabelled(ctx, containers.LabelAgent, "ctest-cleanup"); err != nil || len(ids) != 0 {
		t.Errorf("left: %v %v", ids, err)
	}
	_ = c.Remove(ctx)
}

func TestDockerMissingImage(t *testing.T) {
	d := containerstest.Docker(t)
	d.Pull = false
	_, err := d.StartJob(context.Background(), containers.JobSpec{Image: "hodei-no-such-image:1", Workspace: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "hodei-no-such-image:1 is not on the docker host") {
		t.Errorf("err = %v", err)
	}
}

type syncWriter struct{ ch chan struct{} }

func (w *syncWriter) Write(p []byte) (int, error) { return len(p), nil }
