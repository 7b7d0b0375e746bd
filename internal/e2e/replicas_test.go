//go:build replicas || chaos

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/bus"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

type leaderJSON struct {
	ID    string `json:"id"`
	Epoch int64  `json:"epoch"`
	Known bool   `json:"known"`
	Self  bool   `json:"self"`
}

func (a api) leader(ctx context.Context) (leaderJSON, error) {
	var l leaderJSON
	code, err := a.do(ctx, "GET", "/api/v1/leader", "", nil, &l)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("leader: HTTP %d", code)
	}
	return l, err
}

// submitKey submits yaml with an Idempotency-Key, trying again while the
// server answers 503 (a failover) for up to 2 minutes, as the CLI does.
func (a api) submitKey(ctx context.Context, yaml, key string) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, "POST", a.base+"/api/v1/runs?file=e2e.yaml", strings.NewReader(yaml))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/yaml")
		req.Header.Set("Idempotency-Key", key)
		resp, err := a.hc.Do(req)
		if err == nil {
			var r runJSON
			code := resp.StatusCode
			derr := json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if code == http.StatusCreated && derr == nil {
				return r.ID, nil
			}
			if code != http.StatusServiceUnavailable && code != http.StatusBadGateway && code != http.StatusGatewayTimeout {
				return "", fmt.Errorf("submit: HTTP %d", code)
			}
			err = fmt.Errorf("submit: HTTP %d", code)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startNATS starts the NATS with JetStream that the servers share and
// returns its address: the nats-server binary HODEI_NATS_SERVER names, or
// else a NATS server inside the test process, listening on TCP.
func startNATS(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	host, portS, _ := strings.Cut(addr, ":")
	if bin := os.Getenv("HODEI_NATS_SERVER"); bin != "" {
		p := startCmd(t, "nats-server.log", exec.Command(bin, "-js", "-sd", filepath.Join(t.TempDir(), "nats"), "-a", host, "-p", portS))
		// A process of its own: poll its port until it answers.
		eventually(t, 30*time.Second, "nats-server listening", func() (bool, error) {
			select {
			case <-p.done:
				t.Fatal("nats-server exited")
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil, err
		})
		return addr
	}
	port, _ := strconv.Atoi(portS)
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{StoreDir: filepath.Join(t.TempDir(), "nats"), Host: host, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return addr
}

// TestReplicasFailover: three `hodei server` processes on one PostgreSQL
// database and one NATS (a NATS server of the test process, on TCP), one
// agent process. A run submitted to a follower completes; an Idempotency-Key
// gives the same run on every server. Then the leader is killed with
// SIGKILL while jobs run: another server leads (a higher epoch), every run
// reaches a final state, a run submitted after the kill is scheduled, and
// the marker files the steps write show that no two attempts of a job ran
// at the same time. The time from the kill to the new leader's first
// placement is printed, never asserted.
func TestReplicasFailover(t *testing.T) {
	natsAddr := startNATS(t)
	admin := os.Getenv(storeEnv)
	if admin == "" {
		admin = pgtest.AdminURL(t)
	}
	db := pgtest.NewDB(t, admin)

	type replica struct {
		p   *proc
		api api
		dir string
	}
	var reps []*replica
	for i := range 3 {
		httpAddr := freeAddr(t)
		r := &replica{dir: t.TempDir(), api: api{base: "http://" + httpAddr, hc: &http.Client{Timeout: 30 * time.Second}}}
		r.p = start(t, fmt.Sprintf("server-%d.log", i), "server", "--data-dir", r.dir, "--http", httpAddr,
			"--nats", "nats://"+natsAddr, "--store", db, "--workers", "0", "--auth", "off", "--worker-ttl", "3s")
		reps = append(reps, r)
	}
	for _, r := range reps {
		waitReady(t, r.api, r.p)
	}
	start(t, "agent.log", "agent", "--nats", "nats://"+natsAddr, "--id", "agent-1",
		"--work-dir", filepath.Join(t.TempDir(), "agent"), "--heartbeat", "250ms", "--unsafe-shared-user", "--cpu", "8")

	ctx := context.Background()
	leaderOf := func(among []*replica) (*replica, leaderJSON) {
		t.Helper()
		var lead *replica
		var info leaderJSON
		eventually(t, 60*time.Second, "one server leads", func() (bool, error) {
			lead = nil
			for _, r := range among {
				l, err := r.api.leader(ctx)
				if err != nil {
					return false, err
				}
				if l.Self {
					if lead != nil {
						return false, fmt.Errorf("two servers say they lead")
					}
					lead, info = r, l
				}
			}
			return lead != nil, fmt.Errorf("no server leads")
		})
		return lead, info
	}
	lead, info := leaderOf(reps)
	var followers []*replica
	for _, r := range reps {
		if r != lead {
			followers = append(followers, r)
		}
	}
	t.Logf("leader %s at epoch %d", info.ID, info.Epoch)

	// A run submitted to a follower completes; its key gives the same run
	// on the other follower and on the leader.
	id1, err := followers[0].api.submitKey(ctx, quickJob, "key-quick")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*replica{followers[1], lead} {
		again, err := r.api.submitKey(ctx, quickJob, "key-quick")
		if err != nil {
			t.Fatal(err)
		}
		if again != id1 {
			t.Fatalf("Idempotency-Key key-quick: run %s on %s, %s on the first follower", again, r.api.base, id1)
		}
	}
	followers[1].api.waitFinal(t, ctx, 2*time.Minute, id1)
	if r, _ := followers[1].api.run(ctx, id1); r.State != "succeeded" {
		t.Fatalf("run %s submitted to a follower: %s, want succeeded", id1, r.State)
	}

	// Jobs that run for a few seconds, then the leader's SIGKILL.
	marks := t.TempDir()
	slow := func(i int) string {
		m := marks + "/$HODEI_JOB_ID"
		line := func(kind string) string {
			return `echo "` + kind + ` $HODEI_ATTEMPT $(date +%s%N)" >> ` + m
		}
		return fmt.Sprintf("name: slow-%d\njobs:\n  a:\n    steps:\n      - run: |\n          %s\n          echo visible-output\n          sleep 3\n          %s\n  b:\n    needs: a\n    steps:\n      - run: |\n          %s\n          sleep 1\n          %s\n",
			i, line("start"), line("end"), line("start"), line("end"))
	}
	var ids []string
	for i := range 6 {
		id, err := followers[i%2].api.submitKey(ctx, slow(i), fmt.Sprintf("slow-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// A live stream of the first slow run's output on a follower: its
	// work is placed by the leader, and the stream goes on through the
	// failover.
	streamed := make(chan string, 1)
	go func() {
		var out strings.Builder
		defer func() { streamed <- out.String() }()
		req, err := http.NewRequest("GET", followers[1].api.base+"/api/v1/runs/"+ids[0]+"/logs?follow=1", nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if sc.Text() == "event: end" {
				return
			}
		}
	}()
	eventually(t, 60*time.Second, "a job running", func() (bool, error) {
		for _, id := range ids {
			jobs, err := followers[0].api.jobs(ctx, id)
			if err != nil {
				return false, err
			}
			for _, j := range jobs {
				if j.State == "running" {
					return true, nil
				}
			}
		}
		return false, nil
	})
	lead.p.kill()
	killed := time.Now()

	// A run submitted after the kill, to a survivor (503 while there is
	// no leader: submitKey tries again).
	after, err := followers[0].api.submitKey(ctx, quickJob, "after-kill")
	if err != nil {
		t.Fatal(err)
	}
	var placed time.Duration
	eventually(t, 2*time.Minute, "the run submitted after the kill placed", func() (bool, error) {
		jobs, err := followers[1].api.jobs(ctx, after)
		if err != nil || len(jobs) == 0 {
			return false, err
		}
		if s := jobs[0].State; s != "queued" && s != "pending" {
			placed = time.Since(killed) // polled every 50ms: an upper bound
			return true, nil
		}
		return false, fmt.Errorf("job is %s", jobs[0].State)
	})
	newLead, newInfo := leaderOf(followers)
	fmt.Printf("replicas: leader %s killed; %s leads at epoch %d; first placement by the new leader %.2fs after the kill\n",
		info.ID, newInfo.ID, newInfo.Epoch, placed.Seconds())
	if newInfo.Epoch <= info.Epoch {
		t.Fatalf("new leader's epoch %d, want more than %d", newInfo.Epoch, info.Epoch)
	}
	all := append(ids, after)
	newLead.api.waitFinal(t, ctx, 3*time.Minute, all...)
	for _, id := range all {
		r, err := newLead.api.run(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != "succeeded" {
			t.Errorf("run %s: %s, want succeeded (a server's loss is no job's failure)", id, r.State)
		}
	}
	checkNoOverlap(t, marks)
	select {
	case out := <-streamed:
		if !strings.Contains(out, "visible-output") || !strings.Contains(out, "event: end") {
			t.Fatalf("the follower's live stream of run %s lacks the job's output or its end:\n%s", ids[0], out)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the follower's live stream did not end 60s after its run")
	}
}

// checkNoOverlap reads the marker files (one per job: "start|end ATTEMPT
// NANOS" lines) and fails if two attempts of a job ran at the same time.
func checkNoOverlap(t *testing.T, dir string) {
	t.Helper()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no marker file: no step ran")
	}
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		type span struct{ start, end int64 }
		spans := map[int]*span{}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var kind string
			var att int
			var at int64
			if _, err := fmt.Sscanf(sc.Text(), "%s %d %d", &kind, &att, &at); err != nil {
				t.Fatalf("%s: bad marker line %q", f.Name(), sc.Text())
			}
			s := spans[att]
			if s == nil {
				s = &span{}
				spans[att] = s
			}
			if kind == "start" {
				if s.start != 0 {
					t.Errorf("job %s: attempt %d started twice", f.Name(), att)
				}
				s.start = at
			} else {
				s.end = at
			}
		}
		fh.Close()
		var list []span
		for _, s := range spans {
			if s.end == 0 {
				s.end = 1<<63 - 1 // never ended: open to the end
			}
			list = append(list, *s)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].start < list[j].start })
		for i := 1; i < len(list); i++ {
			if list[i].start < list[i-1].end {
				t.Errorf("job %s: two attempts ran at the same time", f.Name())
			}
		}
	}
}
