package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// runContainerSteps runs the steps of a job that names an image: one
// container per attempt, with the workspace mounted at the same path, the
// job's cpu and memory as limits and no network unless the job asks for
// one; each step is an exec of `sh -e -c` in it. The container is removed
// when the attempt ends, however it ends; if the agent dies first, the
// container stops by itself (see dockerengine.Docker.StartJob), and the next
// start of the agent removes whatever carries its label.
func (a *Agent) runContainerSteps(ctx context.Context, d bus.Dispatch, spec pipeline.JobSpec, ws string, hodeiEnv map[string]string, b *batcher, masks *mask.Set, log *slog.Logger, outputs map[string]string) (string, int, string) {
	if a.cfg.Containers == nil {
		return bus.StatusFailed, -1, fmt.Sprintf("the job runs in image %s, but worker %s has no container engine: "+
			"give its agent access to a Docker engine (DOCKER_HOST or /var/run/docker.sock); agents that reach one get the label %q",
			spec.Image, a.cfg.ID, pipeline.DockerLabel)
	}
	ctr, err := a.cfg.Containers.StartJob(ctx, containers.JobSpec{
		Image:       spec.Image,
		Workspace:   ws,
		CPUMilli:    spec.CPUMilli,
		Memory:      spec.Memory,
		Network:     spec.Network,
		NetworkMode: a.cfg.ContainerNetwork,
		Labels: map[string]string{
			containers.LabelJob:     d.JobID,
			containers.LabelAttempt: strconv.Itoa(d.Attempt),
			containers.LabelAgent:   a.cfg.ID,
		},
	})
	if err != nil {
		if cause := context.Cause(ctx); ctx.Err() != nil {
			return stopState(cause), -1, cause.Error()
		}
		return bus.StatusFailed, -1, "container: " + err.Error()
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ctr.Remove(rctx); err != nil {
			log.Warn("remove job container", "container", ctr.ID(), "err", err)
		}
	}()
	// The container sees the workspace only: the files shared with its
	// steps live in a directory of it.
	shared := filepath.Join(ws, ".hodei")
	if err := os.Mkdir(shared, 0o700); err != nil {
		return bus.StatusFailed, -1, fmt.Sprintf("workspace: %v", err)
	}
	files := stepFiles{host: shared, step: shared, uid: -1}
	// The host's environment is not the image's: only what Hodei and the
	// file set is added to the image's own.
	env := jobEnv{start: layer(hodeiEnv, d.Env), secrets: d.Secrets, dispatch: d, outputs: outputs}
	return a.runStepList(ctx, spec, files, env, b, masks, func(ctx context.Context, i int, st pipeline.StepSpec, script string, env []string, out io.Writer) stepResult {
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if st.Timeout > 0 {
			sctx, cancel = context.WithTimeoutCause(ctx, st.Timeout, fmt.Errorf("step %w after %s", errTimeout, st.Timeout))
		}
		defer cancel()
		code, err := ctr.Exec(sctx, script, ws, env, out)
		switch {
		case err != nil:
			return stepResult{ExitCode: -1, Err: err}
		case code != 0:
			return stepResult{ExitCode: code, Err: fmt.Errorf("exit status %d", code)}
		}
		return stepResult{}
	})
}

// removeLeftoverContainers removes the job containers a previous run of
// this agent left behind (normally they stopped and removed themselves when
// it died).
func (a *Agent) removeLeftoverContainers() {
	if a.cfg.Containers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := a.cfg.Containers.RemoveLabelled(ctx, containers.LabelAgent, a.cfg.ID)
	if err != nil {
		a.log.Warn("remove leftover job containers", "err", err)
	}
	if n > 0 {
		a.log.Warn("removed job containers left by a previous run", "count", n)
	}
}
