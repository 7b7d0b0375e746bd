//go:build chaos

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestChaos runs 1,000 pipelines of mixed shape through real `hodei server`
// and `hodei agent` processes while the server is killed with SIGKILL (and
// restarted on the same data directory) three times and the agent once.
// Every step appends "start", "tick" and "end" lines with its run, job and
// attempt to a marker file of its job. At the end:
//
//   - every accepted run exists and succeeded (none lost, none failed
//     because of the kills: losses are the infrastructure's, retried
//     within infra_retries);
//   - every marker file agrees with the attempts the API reports: an
//     attempt that succeeded started and ended, one that was lost or
//     refused never ended after it was given up, and no attempt ran that
//     the API does not know;
//   - no two attempts of one job overlap in time (the last sign of life of
//     an attempt, its end or its last tick, comes before the next one
//     starts);
//   - no process of a finished attempt is alive 2 s after the attempt's end
//     (a scanner reads HODEI_JOB_ID and HODEI_ATTEMPT in /proc/*/environ
//     every 500 ms while the test runs).
//
// Run it with: go test -tags chaos -run TestChaos ./internal/e2e/
func TestChaos(t *testing.T) {
	began := time.Now()
	c := newCluster(t, "--workers", "2", "--worker-ttl", "2s", "--infra-retries", "6")
	a := c.api
	srv := c.server(t, "server-0.log")
	agentArgs := c.agentArgs(t, "chaos-agent")
	ag := start(t, "agent-0.log", agentArgs...)

	marks := t.TempDir()
	scan := newProcScanner()
	stopScan := make(chan struct{})
	scanDone := make(chan struct{})
	go func() { defer close(scanDone); scan.loop(stopScan, 500*time.Millisecond) }()

	const pipelines = 1000
	yamls := make([]string, pipelines)
	rng := rand.New(rand.NewSource(1))
	for i := range yamls {
		yamls[i] = chaosPipeline(i, rng, marks)
	}

	// Submitters: each pipeline is submitted until the server accepts it
	// (the server is down at times). Only accepted runs count.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	accepted := make([]string, pipelines)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= pipelines {
					return
				}
				for {
					id, err := a.submit(ctx, yamls[i])
					if err == nil {
						accepted[i] = id
						done.Add(1)
						break
					}
					if ctx.Err() != nil {
						return
					}
					time.Sleep(100 * time.Millisecond) // the server is restarting
				}
				time.Sleep(30 * time.Millisecond) // pace: the load spans the kills
			}
		}()
	}

	// The kills, while the load runs: each waits for a share of the runs
	// to be accepted, so that they fall in the middle of the load.
	waitAccepted := func(n int64) {
		eventually(t, 5*time.Minute, fmt.Sprintf("%d runs accepted", n), func() (bool, error) { return done.Load() >= n, nil })
	}
	kills := []time.Time{}
	for k, at := range []int64{200, 450, 700} {
		waitAccepted(at)
		srv.kill()
		kills = append(kills, time.Now())
		if k == 1 {
			// The agent dies too and is back (a new boot id) before the
			// server: the server's recovery finds assignments made for
			// the agent's previous incarnation (finding 3).
			ag.kill()
			ag = start(t, "agent-2.log", agentArgs...)
		}
		srv = c.server(t, fmt.Sprintf("server-%d.log", k+1))
		t.Logf("%s: server killed and restarted (%d runs accepted)", time.Since(began).Round(time.Millisecond), done.Load())
		if k == 0 {
			waitAccepted(320)
			ag.kill()
			ag = start(t, "agent-1.log", agentArgs...)
			t.Logf("%s: agent killed and restarted", time.Since(began).Round(time.Millisecond))
		}
	}
	wg.Wait()
	if done.Load() != pipelines {
		t.Fatalf("only %d of %d runs accepted", done.Load(), pipelines)
	}
	loaded := time.Since(began)

	// Every accepted run reaches a final state.
	a.waitFinal(t, ctx, 5*time.Minute, accepted...)
	finished := time.Since(began)
	// The survivor check looks 2 s past the last end: the scanner keeps
	// sampling for that window (a measurement, not a wait for an event).
	time.Sleep(2500 * time.Millisecond)
	close(stopScan)
	<-scanDone

	// Every marker file, accepted runs' and those of runs whose
	// acceptance the killed server could not answer, against the API.
	byJob := readAllMarks(t, marks)
	runs := map[string]bool{}
	for _, id := range accepted {
		runs[id] = true
	}
	for job := range byJob {
		runs[job[:strings.LastIndex(job, "-")]] = true
	}
	var failed, lostAttempts, refused, checkedJobs int
	reasons := map[string]int{}
	for id := range runs {
		r, err := a.run(ctx, id)
		if err != nil {
			t.Errorf("run %s: %v", id, err)
			continue
		}
		if r.State != "succeeded" {
			failed++
			t.Errorf("run %s ended %s", id, r.State)
		}
		jobs, err := a.jobs(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			checkedJobs++
			for _, at := range j.Attempts {
				switch at.State {
				case "lost":
					lostAttempts++
					reasons[at.Reason]++
				case "canceled":
					refused++
				}
			}
			for _, p := range checkJob(j, byJob[j.ID], scan) {
				t.Errorf("run %s job %s: %s", id, j.ID, p)
			}
			delete(byJob, j.ID)
		}
	}
	for job := range byJob {
		t.Errorf("marker file of job %s, which the API does not know", job)
	}
	msg := fmt.Sprintf("chaos: %d pipelines (%d runs incl. unanswered submissions, %d jobs), %d server kills, 2 agent kills (one with the server); "+
		"%d attempts lost %v, %d refused; %d runs failed; load %s, all final %s, total %s; %d process samples",
		pipelines, len(runs), checkedJobs, len(kills), lostAttempts, reasons, refused, failed,
		loaded.Round(time.Millisecond), finished.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), scan.samples())
	t.Log(msg)
	fmt.Println(msg)
	if lostAttempts == 0 {
		t.Error("no attempt was lost: the kills did not interrupt any job")
	}
}

// chaosPipeline is pipeline i: a quick job, a job of 1-3 s that ticks, or
// a chain of three jobs with needs. Each step marks its start, ticks and end.
func chaosPipeline(i int, rng *rand.Rand, marks string) string {
	// The steps run in bash and take their times from $EPOCHREALTIME and
	// their pauses from a read that times out on a pipe nobody writes:
	// no date or sleep process per line, so the machine's cores go to
	// what is under test rather than to the load's own forks.
	step := func(work string) string {
		m := marks + "/$HODEI_JOB_ID"
		line := func(kind string) string {
			return `echo "` + kind + ` $HODEI_RUN_ID $HODEI_ATTEMPT ${EPOCHREALTIME/./}000" >> ` + m
		}
		return "\n      - shell: bash\n        run: |\n          " + line("start") + "\n          " + work + "\n          " + line("end")
	}
	ticks := func(n int) string {
		m := marks + "/$HODEI_JOB_ID"
		return `exec 9<> <(:); for ((i = 0; i < ` + strconv.Itoa(n) + `; i++)); do echo "tick $HODEI_RUN_ID $HODEI_ATTEMPT ${EPOCHREALTIME/./}000" >> ` + m + `; read -t 0.25 -u 9 || true; done`
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: chaos-%d\njobs:\n", i)
	switch s := rng.Intn(10); {
	case s < 4:
		b.WriteString("  quick:\n    steps:" + step("echo quick") + "\n")
	case s < 7:
		b.WriteString("  sleep:\n    steps:" + step(ticks(4+rng.Intn(9))) + "\n")
	default:
		b.WriteString("  a:\n    steps:" + step("echo a") + "\n")
		b.WriteString("  b:\n    needs: a\n    infra_retries: 10\n    steps:" + step(ticks(2+rng.Intn(4))) + "\n")
		b.WriteString("  c:\n    needs: b\n    steps:" + step("echo c") + "\n")
	}
	return b.String()
}

// attemptMarks is what the marker file says of one attempt.
type attemptMarks struct {
	starts    int
	start     time.Time
	end       time.Time // zero if it never ended
	lastAlive time.Time // its end or its last tick
}

type jobMarks struct{ attempts map[int]*attemptMarks }

// readAllMarks reads every marker file in dir, by job ID (the file's name).
func readAllMarks(t *testing.T, dir string) map[string]*jobMarks {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	byJob := map[string]*jobMarks{}
	for _, f := range files {
		m, err := readMarks(f)
		if err != nil {
			t.Fatal(err)
		}
		byJob[filepath.Base(f)] = m
	}
	return byJob
}

func readMarks(path string) (*jobMarks, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &jobMarks{attempts: map[int]*attemptMarks{}}
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		f := strings.Fields(string(l))
		if len(f) != 4 {
			continue // a line cut by a kill
		}
		n, err1 := strconv.Atoi(f[2])
		ns, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		at := time.Unix(0, ns)
		a := m.attempts[n]
		if a == nil {
			a = &attemptMarks{}
			m.attempts[n] = a
		}
		switch f[0] {
		case "start":
			a.starts++
			a.start = at
		case "end":
			a.end = at
		}
		if at.After(a.lastAlive) {
			a.lastAlive = at
		}
	}
	return m, nil
}

// checkJob compares a job's attempts in the API with its marker file and
// with the processes seen alive.
func checkJob(j jobJSON, m *jobMarks, scan *procScanner) []string {
	var problems []string
	if m == nil {
		m = &jobMarks{attempts: map[int]*attemptMarks{}}
	}
	known := map[int]attemptJSON{}
	for _, at := range j.Attempts {
		known[at.N] = at
	}
	for n, am := range m.attempts {
		if _, ok := known[n]; !ok {
			problems = append(problems, fmt.Sprintf("attempt %d ran (marker) but the API does not know it", n))
		}
		if am.starts > 1 {
			problems = append(problems, fmt.Sprintf("attempt %d started %d times", n, am.starts))
		}
	}
	for _, at := range j.Attempts {
		am := m.attempts[at.N]
		switch at.State {
		case "succeeded":
			if am == nil || am.start.IsZero() || am.end.IsZero() {
				problems = append(problems, fmt.Sprintf("attempt %d succeeded in the API, but the marker lacks its start or end", at.N))
			}
		case "lost", "canceled":
			// Given up: it may have started, and ended only if it was
			// done before it was given up (then a late report would
			// have said succeeded: a lost attempt that ended is one whose
			// report died with its server).
			if am != nil && !am.end.IsZero() && at.State == "canceled" {
				problems = append(problems, fmt.Sprintf("attempt %d was refused (canceled) but its step ran to its end", at.N))
			}
		default:
			problems = append(problems, fmt.Sprintf("attempt %d is %s (%s) in a final run", at.N, at.State, at.Reason))
		}
		if at.FinishedAt != nil {
			if seen := scan.lastSeen(j.ID, at.N); seen.After(at.FinishedAt.Add(2 * time.Second)) {
				problems = append(problems, fmt.Sprintf("attempt %d ended at %s but a process of it was alive at %s", at.N, at.FinishedAt.Format(time.RFC3339Nano), seen.Format(time.RFC3339Nano)))
			}
		}
	}
	// No overlap: in the order of their starts, each attempt's last sign
	// of life comes before the next one's start.
	ns := make([]int, 0, len(m.attempts))
	for n, am := range m.attempts {
		if !am.start.IsZero() {
			ns = append(ns, n)
		}
	}
	sort.Slice(ns, func(i, k int) bool { return m.attempts[ns[i]].start.Before(m.attempts[ns[k]].start) })
	for i := 1; i < len(ns); i++ {
		prev, cur := m.attempts[ns[i-1]], m.attempts[ns[i]]
		if !prev.lastAlive.Before(cur.start) {
			problems = append(problems, fmt.Sprintf("attempts %d and %d overlap: %d alive at %s, %d started at %s",
				ns[i-1], ns[i], ns[i-1], prev.lastAlive.Format(time.RFC3339Nano), ns[i], cur.start.Format(time.RFC3339Nano)))
		}
	}
	if n := len(j.Attempts); n > 0 && j.Attempts[n-1].State != "succeeded" {
		problems = append(problems, fmt.Sprintf("last attempt %d is %s (%s)", n, j.Attempts[n-1].State, j.Attempts[n-1].Reason))
	}
	return problems
}

// procScanner records, for every attempt, the last time a process with its
// HODEI_JOB_ID and HODEI_ATTEMPT was seen alive.
type procScanner struct {
	mu   sync.Mutex
	seen map[string]time.Time // "job/attempt"
	n    int
}

func newProcScanner() *procScanner { return &procScanner{seen: map[string]time.Time{}} }

func (s *procScanner) loop(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.scan()
		select {
		case <-stop:
			s.scan()
			return
		case <-t.C:
		}
	}
}

func (s *procScanner) scan() {
	dirs, _ := filepath.Glob("/proc/[0-9]*/environ")
	now := time.Now()
	for _, p := range dirs {
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte("HODEI_JOB_ID=")) {
			continue
		}
		var job, attempt string
		for _, kv := range bytes.Split(data, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("HODEI_JOB_ID=")); ok {
				job = string(v)
			}
			if v, ok := bytes.CutPrefix(kv, []byte("HODEI_ATTEMPT=")); ok {
				attempt = string(v)
			}
		}
		if job == "" || attempt == "" {
			continue
		}
		s.mu.Lock()
		s.seen[job+"/"+attempt] = now
		s.n++
		s.mu.Unlock()
	}
}

func (s *procScanner) lastSeen(job string, attempt int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[job+"/"+strconv.Itoa(attempt)]
}

func (s *procScanner) samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
