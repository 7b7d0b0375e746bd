package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	labels := map[string]string{
		containers.LabelJob:     d.JobID,
		containers.LabelAttempt: strconv.Itoa(d.Attempt),
		containers.LabelAgent:   a.cfg.ID,
	}
	network, networkMode := spec.Network, a.cfg.ContainerNetwork
	var svcs containers.Services
	if len(spec.Services) > 0 {
		var errMsg string
		if svcs, errMsg = a.startServices(ctx, spec, labels, b, masks); svcs == nil {
			if cause := context.Cause(ctx); ctx.Err() != nil {
				return stopState(cause), -1, cause.Error()
			}
			return bus.StatusFailed, -1, errMsg
		}
		// Removed after the job's container (defers run last first),
		// which must leave the network before it goes.
		defer func() {
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := svcs.Remove(rctx); err != nil {
				log.Warn("remove service containers", "err", err)
			}
		}()
		network, networkMode = true, svcs.Network()
	}
	ctr, err := a.cfg.Containers.StartJob(ctx, containers.JobSpec{
		Image:       spec.Image,
		Workspace:   ws,
		CPUMilli:    spec.CPUMilli,
		Memory:      spec.Memory,
		Network:     network,
		NetworkMode: networkMode,
		Labels:      labels,
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
	state, code, errMsg := a.runStepList(ctx, spec, files, env, b, masks, func(ctx context.Context, i int, st pipeline.StepSpec, script string, env []string, out io.Writer) stepResult {
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
	if svcs != nil && state == bus.StatusFailed {
		// What the services said may explain the failure.
		b.Flush(-1)
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		out := mask.NewWriter(b, masks)
		if err := svcs.Logs(lctx, out); err != nil {
			log.Warn("service logs", "err", err)
		}
		_ = out.Flush()
	}
	return state, code, errMsg
}

// startServices starts a job's services and waits until they are ready,
// saying so in the job's log; on failure it returns nil and the job's
// error, with the services' output in the log.
func (a *Agent) startServices(ctx context.Context, spec pipeline.JobSpec, labels map[string]string, b *batcher, masks *mask.Set) (containers.Services, string) {
	started := time.Now()
	svcs := make([]containers.Service, 0, len(spec.Services))
	names := make([]string, 0, len(spec.Services))
	for _, s := range spec.Services {
		c := containers.Service{Name: s.Name, Image: s.Image, Entrypoint: s.Entrypoint, Command: s.Command, Ports: s.Ports}
		for _, k := range slices.Sorted(maps.Keys(s.Env)) {
			c.Env = append(c.Env, k+"="+s.Env[k])
		}
		if h := s.Health; h != nil {
			c.Health = &containers.Health{Cmd: h.Cmd, Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries}
		}
		svcs = append(svcs, c)
		names = append(names, s.Name+" ("+s.Image+")")
	}
	b.Flush(-1)
	_, _ = io.WriteString(b, masks.String("==> services "+strings.Join(names, ", ")+"\n"))
	set, err := a.cfg.Containers.StartServices(ctx, containers.ServicesSpec{
		Services: svcs,
		Internal: !spec.Network,
		CPUMilli: spec.CPUMilli,
		Memory:   spec.Memory,
		Labels:   labels,
	})
	took := time.Since(started).Round(time.Millisecond)
	if err != nil {
		_, _ = io.WriteString(b, masks.String(fmt.Sprintf("<== services failed in %s: %v\n", took, err)))
		if logs := containers.ServiceLogs(err); logs != "" {
			_, _ = io.WriteString(b, masks.String(logs))
		}
		return nil, masks.String(err.Error())
	}
	_, _ = io.WriteString(b, fmt.Sprintf("<== services ready in %s\n", took))
	return set, ""
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
	// The networks of services go once their containers have.
	n, err = a.cfg.Containers.RemoveLabelledNetworks(ctx, containers.LabelAgent, a.cfg.ID)
	if err != nil {
		a.log.Warn("remove leftover job networks", "err", err)
	}
	if n > 0 {
		a.log.Warn("removed job networks left by a previous run", "count", n)
	}
}

// otherContainer says why an agent that runs in its jobs' container
// (Config.JobContainer) cannot run a job of another container (its image
// or services differ): "" when the job is one of its own.
func (a *Agent) otherContainer(spec *pipeline.JobSpec) string {
	if k := pipeline.ContainerKey(spec); k != a.cfg.JobContainer {
		return fmt.Sprintf("the job runs in image %s (container %s), but worker %s runs in container %s",
			spec.Image, k, a.cfg.ID, a.cfg.JobContainer)
	}
	return ""
}

// awaitServices waits, in an agent that runs in its jobs' container
// (Config.JobContainer), until each of the job's services takes
// connections on each of its ports at 127.0.0.1 (its sidecars share the
// pod's network), saying so in the job's log as on Docker. A service is
// given its health check's budget (interval × retries + timeout), else
// the default one's; one that does not answer in time fails the job. The
// kubelet has usually waited already: it starts the agent's container
// after the sidecars' startup probes pass.
func (a *Agent) awaitServices(ctx context.Context, spec pipeline.JobSpec, b *batcher, masks *mask.Set) string {
	if len(spec.Services) == 0 {
		return ""
	}
	started := time.Now()
	names := make([]string, 0, len(spec.Services))
	for _, s := range spec.Services {
		names = append(names, s.Name+" ("+s.Image+")")
	}
	b.Flush(-1)
	_, _ = io.WriteString(b, masks.String("==> services "+strings.Join(names, ", ")+"\n"))
	for _, s := range spec.Services {
		budget := pipeline.DefaultHealthInterval*pipeline.DefaultHealthRetries + pipeline.DefaultHealthTimeout
		if h := s.Health; h != nil {
			budget = h.Interval*time.Duration(h.Retries) + h.Timeout
		}
		for _, port := range s.Ports {
			if err := awaitPort(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), budget); err != nil {
				msg := fmt.Sprintf("service %s did not answer on port %d: %v", s.Name, port, err)
				_, _ = io.WriteString(b, masks.String(fmt.Sprintf("<== services failed in %s: %s\n", time.Since(started).Round(time.Millisecond), msg)))
				return masks.String(msg)
			}
		}
	}
	_, _ = io.WriteString(b, fmt.Sprintf("<== services ready in %s\n", time.Since(started).Round(time.Millisecond)))
	return ""
}

// awaitPort connects to addr until it takes a connection, for at most
// limit.
func awaitPort(ctx context.Context, addr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		// Polled: a port nobody listens on yet refuses at once, and
		// nothing says when the service starts to listen.
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", limit, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
