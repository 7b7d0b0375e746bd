package dockerengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/hodei-ci/hodei/internal/containers"
)

// serviceLogTail bounds the lines of each service's output that Logs
// copies: the end of it is what explains a failure.
const serviceLogTail = "500"

// healthPoll is how often StartServices asks the engine whether a service
// is ready: the engine runs the checks, this only reads their result.
const healthPoll = 100 * time.Millisecond

// StartServices creates the attempt's network (internal unless the job
// asked for one), then creates and starts each service on it with its name
// as its alias, its health check given to the engine as the container's
// HEALTHCHECK, and waits for each to be ready in turn.
func (d *Docker) StartServices(ctx context.Context, spec containers.ServicesSpec) (containers.Services, error) {
	labels := map[string]string{"hodei": "service"}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	name := "hodei-net-" + sanitize(spec.Labels[containers.LabelJob]) + "-" + spec.Labels[containers.LabelAttempt] + "-" + randomSuffix()
	res, err := d.c.NetworkCreate(ctx, name, client.NetworkCreateOptions{
		Driver:   "bridge",
		Internal: spec.Internal,
		Labels:   labels,
	})
	if err != nil {
		return nil, fmt.Errorf("create the job's network: %w", err)
	}
	s := &dockerServices{d: d, network: name, networkID: res.ID}
	fail := func(err error) (containers.Services, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := s.Remove(rctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	for _, svc := range spec.Services {
		id, err := d.startService(ctx, spec, svc, name, labels)
		if id != "" {
			s.started = append(s.started, startedService{name: svc.Name, image: svc.Image, id: id})
		}
		if err != nil {
			return s.failWithLogs(ctx, fail, err)
		}
	}
	for _, st := range s.started {
		if err := d.waitReady(ctx, st); err != nil {
			return s.failWithLogs(ctx, fail, err)
		}
	}
	return s, nil
}

// failWithLogs keeps the services' output for the error, since removing
// them loses it.
func (s *dockerServices) failWithLogs(ctx context.Context, fail func(error) (containers.Services, error), err error) (containers.Services, error) {
	var logs strings.Builder
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	_ = s.Logs(lctx, &logs)
	cancel()
	if logs.Len() > 0 {
		err = &containers.LogsError{Err: err, Logs: logs.String()}
	}
	return fail(err)
}

func (d *Docker) startService(ctx context.Context, spec containers.ServicesSpec, svc containers.Service, netName string, labels map[string]string) (string, error) {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l[containers.LabelService] = svc.Name
	init := true
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(netName),
		Init:        &init,
		Resources: container.Resources{
			NanoCPUs: spec.CPUMilli * 1_000_000,
			Memory:   spec.Memory,
		},
	}
	if spec.Memory > 0 {
		hc.Resources.MemorySwap = spec.Memory
	}
	cfg := &container.Config{
		Image:      svc.Image,
		Env:        svc.Env,
		Entrypoint: svc.Entrypoint,
		Cmd:        svc.Command,
		Labels:     l,
		Hostname:   svc.Name,
	}
	if len(svc.Ports) > 0 {
		cfg.ExposedPorts = network.PortSet{}
		for _, p := range svc.Ports {
			port, err := network.ParsePort(strconv.Itoa(p))
			if err != nil {
				return "", &containers.ServiceError{Service: svc.Name, Reason: fmt.Sprintf("port %d: %v", p, err)}
			}
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	if h := svc.Health; h != nil {
		cfg.Healthcheck = &container.HealthConfig{
			Test:     []string{"CMD-SHELL", h.Cmd},
			Interval: h.Interval,
			Timeout:  h.Timeout,
			Retries:  h.Retries,
		}
	}
	opts := client.ContainerCreateOptions{
		Config:     cfg,
		HostConfig: hc,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			netName: {Aliases: []string{svc.Name}},
		}},
		Name: "hodei-svc-" + sanitize(spec.Labels[containers.LabelJob]) + "-" + spec.Labels[containers.LabelAttempt] + "-" + svc.Name + "-" + randomSuffix(),
	}
	id, err := d.createWith(ctx, opts)
	if err != nil {
		return "", &containers.ServiceError{Service: svc.Name, Reason: "could not be created: " + err.Error()}
	}
	if _, err := d.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return id, &containers.ServiceError{Service: svc.Name, Reason: "did not start: " + err.Error()}
	}
	return id, nil
}

// waitReady returns when the service is healthy, or runs and has no
// health check; it fails when it stops, or the engine finds it unhealthy.
func (d *Docker) waitReady(ctx context.Context, st startedService) error {
	// The engine runs the health checks; their result is read from it
	// until it says (an outside process: a poll, bounded by ctx).
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		res, err := d.c.ContainerInspect(ctx, st.id, client.ContainerInspectOptions{})
		if err != nil {
			if cause := context.Cause(ctx); ctx.Err() != nil {
				return cause
			}
			return &containers.ServiceError{Service: st.name, Reason: "is gone: " + err.Error()}
		}
		c := res.Container
		if c.State == nil {
			return &containers.ServiceError{Service: st.name, Reason: "has no state"}
		}
		h := c.State.Health
		switch {
		case !c.State.Running:
			return &containers.ServiceError{Service: st.name, Reason: fmt.Sprintf("stopped (exit code %d) before it became ready", c.State.ExitCode)}
		case h == nil || h.Status == container.NoHealthcheck || h.Status == container.Healthy:
			return nil
		case h.Status == container.Unhealthy:
			return &containers.ServiceError{Service: st.name, Reason: "did not become healthy: " + lastOutput(h)}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// lastOutput is the output of the last health check, on one line.
func lastOutput(h *container.Health) string {
	if len(h.Log) == 0 || h.Log[len(h.Log)-1] == nil {
		return "no check has run"
	}
	r := h.Log[len(h.Log)-1]
	out := strings.Join(strings.Fields(r.Output), " ")
	if out == "" {
		out = "(no output)"
	}
	return fmt.Sprintf("%s (exit code %d)", out, r.ExitCode)
}

// RemoveLabelledNetworks removes the networks whose label key is value.
func (d *Docker) RemoveLabelledNetworks(ctx context.Context, key, value string) (int, error) {
	ids, err := d.ListLabelledNetworks(ctx, key, value)
	if err != nil {
		return 0, err
	}
	return removeEach(ctx, ids, d.removeNetwork)
}

// ListLabelledNetworks returns the ids of the networks whose label key is
// value.
func (d *Docker) ListLabelledNetworks(ctx context.Context, key, value string) ([]string, error) {
	res, err := d.c.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", key+"="+value)})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, n := range res.Items {
		ids = append(ids, n.ID)
	}
	return ids, nil
}

func (d *Docker) removeNetwork(ctx context.Context, id string) error {
	_, err := d.c.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("remove network %s: %w", short(id), err)
}

// dockerServices are the services of one attempt and their network.
type dockerServices struct {
	d         *Docker
	network   string
	networkID string
	started   []startedService
}

type startedService struct {
	name, image, id string
}

func (s *dockerServices) Network() string { return s.network }

// Logs copies the end of each service's output to w, under a header.
func (s *dockerServices) Logs(ctx context.Context, w io.Writer) error {
	var errs []error
	for _, st := range s.started {
		fmt.Fprintf(w, "==> service %s (%s) output\n", st.name, st.image)
		r, err := s.d.c.ContainerLogs(ctx, st.id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: serviceLogTail})
		if err != nil {
			errs = append(errs, fmt.Errorf("logs of service %s: %w", st.name, err))
			continue
		}
		ends := &lineEnd{w: w}
		_, err = stdcopy.StdCopy(ends, ends, r)
		r.Close()
		ends.finish()
		if err != nil {
			errs = append(errs, fmt.Errorf("logs of service %s: %w", st.name, err))
		}
		fmt.Fprintf(w, "<== service %s\n", st.name)
	}
	return errors.Join(errs...)
}

// Remove removes the service containers, then their network.
func (s *dockerServices) Remove(ctx context.Context) error {
	var errs []error
	for _, st := range s.started {
		if err := s.d.Remove(ctx, st.id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.d.removeNetwork(ctx, s.networkID); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// lineEnd ends what it copied with a newline, if it did not.
type lineEnd struct {
	w    io.Writer
	last byte
	n    int
}

func (l *lineEnd) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.last = p[len(p)-1]
		l.n += len(p)
	}
	return l.w.Write(p)
}

func (l *lineEnd) finish() {
	if l.n > 0 && l.last != '\n' {
		_, _ = l.w.Write([]byte{'\n'})
	}
}

// NetworkState is what the engine says of a network.
type NetworkState struct {
	Exists   bool
	Name     string
	Internal bool
	Labels   map[string]string
}

// InspectNetwork returns the state of a network (by id or name); one that
// does not exist has Exists false and no error.
func (d *Docker) InspectNetwork(ctx context.Context, id string) (NetworkState, error) {
	res, err := d.c.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return NetworkState{}, nil
		}
		return NetworkState{}, fmt.Errorf("inspect network %s: %w", short(id), err)
	}
	n := res.Network
	return NetworkState{Exists: true, Name: n.Name, Internal: n.Internal, Labels: n.Labels}, nil
}
