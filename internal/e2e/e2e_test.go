// Package e2e tests Hodei as its users run it: real `hodei` processes,
// killed with SIGKILL at awkward moments.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-ci/hodei/internal/porttest"
	"github.com/hodei-ci/hodei/internal/state"
	"github.com/hodei-ci/hodei/internal/store/postgres/pgtest"
)

var hodeiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hodei-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hodeiBin = filepath.Join(dir, "hodei")
	build := exec.Command("go", "build", "-o", hodeiBin, "github.com/hodei-ci/hodei/cmd/hodei")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hodei:", err)
		os.Exit(1)
	}
	code := pgtest.Main(m) // stops the private PostgreSQL, if a test started one
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr is porttest.FreeAddr.
func freeAddr(t *testing.T) string { t.Helper(); return porttest.FreeAddr(t) }

// proc is a hodei process whose output goes to a file in the test's dir.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func start(t *testing.T, logName string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(hodeiBin, withStore(t, args)...)
	cmd.Env = append(os.Environ(), "HODEI_LOG_LEVEL=debug")
	return startCmd(t, logName, cmd)
}

// startCmd starts cmd with its output in a file of the test's directory,
// kills it when the test ends and shows the file's end if the test failed.
func startCmd(t *testing.T, logName string, cmd *exec.Cmd) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), logName)
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s (last 3000 bytes)\n%s", logName, tail(b, 3000))
		}
	})
	return p
}

// storeEnv names the PostgreSQL server that the servers of these tests keep
// their state in: the URL of a role that may create databases (scripts/test
// sets it for one run of the package). Unset, they use SQLite. The servers
// of the hostile-job tests (hostileEnv.start) keep SQLite whatever it says:
// they check that a job cannot reach the database file in the data
// directory.
const storeEnv = "HODEI_E2E_STORE"

var (
	storeMu  sync.Mutex
	storeDBs = map[string]string{} // --data-dir -> database URL
)

// withStore adds --store to the arguments of `hodei server` when storeEnv is
// set: a new database for each --data-dir, the same one when a server is
// restarted on the same directory, so that what it stored survives as it
// does in SQLite.
func withStore(t *testing.T, args []string) []string {
	t.Helper()
	admin := os.Getenv(storeEnv)
	if admin == "" || len(args) == 0 || args[0] != "server" || slices.Contains(args, "--store") {
		return args
	}
	dataDir := "./hodei-data" // the flag's default
	if i := slices.Index(args, "--data-dir"); i >= 0 && i+1 < len(args) {
		dataDir = args[i+1]
	}
	storeMu.Lock()
	defer storeMu.Unlock()
	db, ok := storeDBs[dataDir]
	if !ok {
		db = pgtest.NewDB(t, admin)
		storeDBs[dataDir] = db
		t.Cleanup(func() {
			storeMu.Lock()
			defer storeMu.Unlock()
			delete(storeDBs, dataDir)
		})
	}
	return append(slices.Clone(args), "--store", db)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits for the process to exit, for at most
// timeout (then it is killed, and term reports false).
func (p *proc) term(timeout time.Duration) bool {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		p.kill()
		return false
	}
}

// api is a minimal client of the REST API for these tests.
type api struct {
	base string
	hc   *http.Client
}

func (a api) do(ctx context.Context, method, path, ctype string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return 0, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

type runJSON struct {
	ID    string    `json:"id"`
	State string    `json:"state"`
	Jobs  []jobJSON `json:"jobs"`
}

type jobJSON struct {
	ID      string `json:"id"`
	Key     string `json:"key"`
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker"`
	Error   string `json:"error"`
	// Attempts: every try of the job, how it ended and why.
	Attempts []attemptJSON `json:"attempts"`
}

type attemptJSON struct {
	N          int        `json:"n"`
	Worker     string     `json:"worker"`
	State      string     `json:"state"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	ExitCode   *int       `json:"exit_code"`
	Reason     string     `json:"reason"`
}

func (a api) submit(ctx context.Context, yaml string) (string, error) {
	var r runJSON
	code, err := a.do(ctx, "POST", "/api/v1/runs?file=e2e.yaml", "application/yaml", strings.NewReader(yaml), &r)
	if err != nil {
		return "", err
	}
	if code != http.StatusCreated {
		return "", fmt.Errorf("submit: HTTP %d", code)
	}
	return r.ID, nil
}

func (a api) run(ctx context.Context, id string) (runJSON, error) {
	var r runJSON
	code, err := a.do(ctx, "GET", "/api/v1/runs/"+id, "", nil, &r)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("get run %s: HTTP %d", id, code)
	}
	return r, err
}

// mustRun is run for a test that cannot go on without the run.
func (a api) mustRun(ctx context.Context, t *testing.T, id string) runJSON {
	t.Helper()
	r, err := a.run(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s (last error: %v)", what, timeout, lastErr)
		}
		<-tick.C
	}
}

// waitReady waits for /readyz to answer 200.
func waitReady(t *testing.T, a api, p *proc) {
	t.Helper()
	eventually(t, 30*time.Second, "server ready", func() (bool, error) {
		select {
		case <-p.done:
			t.Fatal("server exited before it was ready")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		code, err := a.do(ctx, "GET", "/readyz", "", nil, nil)
		return code == http.StatusOK, err
	})
}

// final reports whether s, decoded from the API, is a final run state.
func final[S ~string](s S) bool { return state.RunState(s).Final() }

// lines reads a file's lines (for pid files written by steps).
func lines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
