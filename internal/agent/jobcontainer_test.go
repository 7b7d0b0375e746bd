package agent

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/mask"
	"github.com/hodei-ci/hodei/internal/pipeline"
)

// TestAwaitServices: an agent in its jobs' container (Config.JobContainer)
// starts the steps once each service takes connections on its ports at
// 127.0.0.1, saying so in the log; a service that does not answer within
// its health check's budget fails the job with its name and port.
func TestAwaitServices(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	up := ln.Addr().(*net.TCPAddr).Port
	// A port nobody listens on: one just freed.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := gone.Addr().(*net.TCPAddr).Port
	_ = gone.Close()

	run := func(svcs []pipeline.Service) (string, string) {
		rec := &recorder{}
		b := newBatcher(1<<20, 0, rec.emit)
		errMsg := (&Agent{}).awaitServices(context.Background(), pipeline.JobSpec{Image: "i", Services: svcs}, b, mask.New())
		b.Flush(-1)
		return errMsg, rec.text()
	}
	errMsg, log := run([]pipeline.Service{{Name: "web", Image: "busybox", Ports: []int{up}}})
	if errMsg != "" || !strings.Contains(log, "==> services web (busybox)") || !strings.Contains(log, "<== services ready in") {
		t.Errorf("a listening service: error %q, log:\n%s", errMsg, log)
	}
	start := time.Now()
	errMsg, log = run([]pipeline.Service{
		{Name: "web", Image: "busybox", Ports: []int{up}},
		{Name: "db", Image: "postgres", Ports: []int{down},
			Health: &pipeline.ServiceHealth{Cmd: "true", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Retries: 3}},
	})
	took := time.Since(start)
	if !strings.Contains(errMsg, "service db did not answer on port") || !strings.Contains(log, "<== services failed in") {
		t.Errorf("a service that does not listen: error %q, log:\n%s", errMsg, log)
	}
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("gave up after %s, want its budget (interval × retries + timeout = 400ms)", took)
	}
}

// TestJobContainerRefusesAnotherContainer: an agent made for one container
// runs the jobs of that container only: another image, or other services,
// is another container.
func TestJobContainerRefusesAnotherContainer(t *testing.T) {
	job := pipeline.JobSpec{Image: "busybox", Services: []pipeline.Service{{Name: "web", Image: "busybox", Ports: []int{8080}}}}
	a := &Agent{cfg: Config{ID: "w1", JobContainer: pipeline.ContainerKey(&job)}}
	if msg := a.otherContainer(&job); msg != "" {
		t.Errorf("its own job refused: %s", msg)
	}
	otherImage := job
	otherImage.Image = "alpine"
	otherPort := job
	otherPort.Services = []pipeline.Service{{Name: "web", Image: "busybox", Ports: []int{9090}}}
	for _, j := range []pipeline.JobSpec{otherImage, otherPort} {
		if msg := a.otherContainer(&j); !strings.Contains(msg, "but worker w1 runs in container "+a.cfg.JobContainer) {
			t.Errorf("job in %s with %v: %q", j.Image, j.Services, msg)
		}
	}
}
