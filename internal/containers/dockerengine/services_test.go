//go:build docker

package dockerengine_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/containers"
	"github.com/hodei-ci/hodei/internal/containers/containerstest"
)

// TestDockerServicesStart starts two services on an attempt's network and
// a job container on it: the job reaches them by name, the network is
// internal and labelled, and Remove leaves nothing.
func TestDockerServicesStart(t *testing.T) {
	d := containerstest.Docker(t)
	ctx := context.Background()
	img := containerstest.Image()
	labels := map[string]string{containers.LabelJob: "svc-" + t.Name(), containers.LabelAttempt: "2", containers.LabelAgent: "ctest-svc"}
	set, err := d.StartServices(ctx, containers.ServicesSpec{
		Internal: true, CPUMilli: 300, Memory: 64 << 20, Labels: labels,
		Services: []containers.Service{
			{Name: "one", Image: img, Env: []string{"WORD=first"}, Command: []string{"sh", "-c", `echo "$WORD" > /tmp/index.html; exec httpd -f -p 81 -h /tmp`}, Ports: []int{81},
				Health: &containers.Health{Cmd: "nc 127.0.0.1 81 </dev/null", Interval: 50 * time.Millisecond, Timeout: 5 * time.Second, Retries: 200}},
			{Name: "two", Image: img, Entrypoint: []string{"sh", "-c"}, Command: []string{"echo second > /tmp/index.html; exec httpd -f -p 82 -h /tmp"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Remove(ctx)
	net, err := d.InspectNetwork(ctx, set.Network())
	if err != nil || !net.Internal || net.Labels[containers.LabelAgent] != "ctest-svc" || net.Labels[containers.LabelAttempt] != "2" {
		t.Errorf("network %+v %v", net, err)
	}
	c, err := d.StartJob(ctx, containers.JobSpec{Image: img, Workspace: t.TempDir(), Network: true, NetworkMode: set.Network(), Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove(ctx)
	var out bytes.Buffer
	// two has no health check: it is ready once it runs, and may not
	// listen yet.
	script := `printf 'GET / HTTP/1.0\r\n\r\n' | nc one 81 | tail -n 1
until printf 'GET / HTTP/1.0\r\n\r\n' | nc two 82 > two.txt 2>/dev/null && [ -s two.txt ]; do sleep 0.05; done; tail -n 1 two.txt`
	if code, err := c.Exec(ctx, script, "/tmp", nil, &out); err != nil || code != 0 {
		t.Fatalf("exec: %d %v\n%s", code, err, out.String())
	}
	if out.String() != "first\nsecond\n" {
		t.Errorf("reached %q", out.String())
	}
	var logs bytes.Buffer
	if err := set.Logs(ctx, &logs); err != nil || !strings.Contains(logs.String(), "==> service one ("+img+") output\n") || !strings.Contains(logs.String(), "<== service two\n") {
		t.Errorf("logs %q %v", logs.String(), err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if err := set.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, err := d.ListLabelled(ctx, containers.LabelAgent, "ctest-svc"); err != nil || len(ids) != 0 {
		t.Errorf("containers left: %v %v", ids, err)
	}
	if ids, err := d.ListLabelledNetworks(ctx, containers.LabelAgent, "ctest-svc"); err != nil || len(ids) != 0 {
		t.Errorf("networks left: %v %v", ids, err)
	}
}

// TestDockerServicesFail checks the failures of StartServices: a service
// that exits, a missing image; each removes what was made and keeps the
// output of the services.
func TestDockerServicesFail(t *testing.T) {
	d := containerstest.Docker(t)
	d.Pull = false
	ctx := context.Background()
	img := containerstest.Image()
	labels := map[string]string{containers.LabelJob: "svcfail", containers.LabelAttempt: "1", containers.LabelAgent: "ctest-svcfail"}
	for _, tc := range []struct {
		name     string
		services []containers.Service
		want     string
		logs     string
	}{
		{"exits", []containers.Service{{Name: "quick", Image: img, Command: []string{"sh", "-c", "echo bye; exit 7"}, Health: &containers.Health{Cmd: "true", Interval: time.Second, Timeout: time.Second, Retries: 3}}},
			"service quick stopped (exit code 7) before it became ready", "bye\n"},
		{"missing image", []containers.Service{{Name: "ok", Image: img, Command: []string{"sleep", "300"}}, {Name: "gone", Image: "hodei-no-such-image:1"}},
			"service gone could not be created: image hodei-no-such-image:1 is not on the docker host", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.StartServices(ctx, containers.ServicesSpec{Internal: true, Labels: labels, Services: tc.services})
			var se *containers.ServiceError
			if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !strings.Contains(containers.ServiceLogs(err), tc.logs) {
				t.Errorf("logs %q lack %q", containers.ServiceLogs(err), tc.logs)
			}
			if ids, err := d.ListLabelled(ctx, containers.LabelAgent, "ctest-svcfail"); err != nil || len(ids) != 0 {
				t.Errorf("containers left: %v %v", ids, err)
			}
			if ids, err := d.ListLabelledNetworks(ctx, containers.LabelAgent, "ctest-svcfail"); err != nil || len(ids) != 0 {
				t.Errorf("networks left: %v %v", ids, err)
			}
		})
	}
}
