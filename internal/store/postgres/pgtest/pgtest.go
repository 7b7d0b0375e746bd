// Package pgtest gives tests a PostgreSQL database of their own, on a real
// server.
//
// The server is the one named by HODEI_TEST_POSTGRES (a URL of a role that
// may create databases, such as postgres://hodei@127.0.0.1:5432/postgres;
// scripts/test starts one and sets it). Without it, the first test that asks
// starts a private server from the PostgreSQL binaries installed on the
// machine (Debian's /usr/lib/postgresql/N/bin, or initdb and postgres on the
// PATH), with its data in a temporary directory, and Main stops it when the
// tests end; so `go test` works on a developer's machine with PostgreSQL
// installed and nothing running. With HODEI_REQUIRE_POSTGRES set (as
// scripts/test does), a missing HODEI_TEST_POSTGRES fails the test rather
// than starting a server. With neither a URL nor the binaries, the test
// fails and says what to install: it never passes without a database.
//
// Each call of DB creates a database with a new name, dropped when the test
// ends, so tests that use it may run in parallel.
//
// Private starts a server of one test's own, whatever HODEI_TEST_POSTGRES
// says, for a test that restarts it (Server.Restart): the shared server
// must not go away under the other tests.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The variables that choose the server.
const (
	EnvURL     = "HODEI_TEST_POSTGRES"
	EnvRequire = "HODEI_REQUIRE_POSTGRES"
)

var (
	startOnce sync.Once
	private   *server // started by startOnce when EnvURL is empty
	startErr  error
)

// Main runs the tests of m, then stops the private server if one was
// started, and returns m's exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if private != nil {
		if err := private.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// AdminURL returns the URL of a role on the test server that may create
// databases, starting a private server if need be (see the package doc). It
// fails t if there is no server to be had.
func AdminURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	if os.Getenv(EnvRequire) != "" {
		t.Fatalf("%s is set but %s is not: the PostgreSQL tests need the URL of a server (scripts/test starts one)", EnvRequire, EnvURL)
	}
	startOnce.Do(func() { private, startErr = startServer() })
	if startErr != nil {
		t.Fatalf("no PostgreSQL for the tests: set %s=postgres://USER@HOST:PORT/postgres, or install PostgreSQL (Debian: apt-get install postgresql) so that a private server can be started: %v", EnvURL, startErr)
	}
	return private.url
}

// DB creates a new, empty database on the test server and returns its URL.
// The database is dropped when t ends (after the cleanups registered later,
// such as closing a store on it).
func DB(t testing.TB) string {
	t.Helper()
	return NewDB(t, AdminURL(t))
}

// NewDB creates a new, empty database on the server of admin (a URL) and
// returns its URL; it is dropped when t ends.
func NewDB(t testing.TB, admin string) string {
	t.Helper()
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: %q is not a postgres:// URL", admin)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name := "hodei_test_" + hex.EncodeToString(b)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends the sessions a test left open (a server it killed).
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	db := *u
	db.Path = "/" + name
	return db.String()
}

func adminExec(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// server is a private PostgreSQL server.
type server struct {
	bin  string // of postgres
	data string
	cred *syscall.Credential // of the postgres user, when root
	port int
	dir  string // holds data/ and the unix socket
	cmd  *exec.Cmd
	done chan struct{}
	url  string
}

// binDir finds the directory of initdb and postgres: the newest of Debian's
// versioned directories, else the one of initdb on the PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("initdb not found in /usr/lib/postgresql/*/bin nor on the PATH")
	}
	return filepath.Dir(p), nil
}

// version is N of .../postgresql/N/bin, 0 if it is not a number.
func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startServer runs initdb and postgres in a new temporary directory. As
// root, they run as the postgres user (initdb refuses root).
func startServer() (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hodei-pgtest-")
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "hodei", "--auth=trust", "--no-sync",
		"--encoding=UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// A port drawn by the kernel may be taken again before postgres binds
	// it: try a few.
	var errs []error
	for range 3 {
		s, err := startPostgres(bin, dir, data, cred, 0)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	os.RemoveAll(dir)
	return nil, errors.Join(errs...)
}

// startPostgres starts postgres on data, on port (a free one if 0), and
// waits until it takes connections.
func startPostgres(bin, dir, data string, cred *syscall.Credential, port int) (*server, error) {
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}

	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if cred != nil {
		_ = logf.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(port), "-c", "unix_socket_directories="+dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=300")
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT, PostgreSQL's immediate shutdown, if the test process dies
	// without stopping it (set after the change of user, so it holds).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &server{bin: bin, data: data, cred: cred, port: port, dir: dir, cmd: cmd, done: make(chan struct{}),
		url: fmt.Sprintf("postgres://hodei@127.0.0.1:%d/postgres?sslmode=disable", port)}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()

	// postgres is another process: poll until it accepts connections, it
	// exits, or a deadline that only a broken machine reaches.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.url)
		if err == nil {
			conn.Close(ctx)
			cancel()
			return s, nil
		}
		cancel()
		select {
		case <-s.done:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres exited before it was ready: %v\n%s", cmd.ProcessState, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stop()
			return nil, fmt.Errorf("postgres not ready after 60 s: %w", err)
		}
	}
}

// stop shuts the server down (fast shutdown: sessions are ended) and removes
// its directory.
func (s *server) stop() error {
	s.shutdown()
	return os.RemoveAll(s.dir)
}

// shutdown stops postgres (fast shutdown: sessions are ended) and keeps its
// directory.
func (s *server) shutdown() {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Server is a PostgreSQL server of one test, which the test may restart:
// for tests of what its clients do when the database goes away and comes
// back (the shared server of HODEI_TEST_POSTGRES must not be restarted).
type Server struct {
	mu sync.Mutex
	s  *server
}

// Private starts a PostgreSQL server for t alone, from the binaries
// installed on the machine (see the package doc), in a temporary directory;
// it is stopped and removed when t ends. It fails t without the binaries.
func Private(t testing.TB) *Server {
	t.Helper()
	s, err := startServer()
	if err != nil {
		t.Fatalf("pgtest: a private PostgreSQL server (install Debian's postgresql): %v", err)
	}
	p := &Server{s: s}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if err := p.s.stop(); err != nil {
			t.Errorf("pgtest: stop the private server: %v", err)
		}
	})
	return p
}

// URL is the URL of the server's role that may create databases.
func (p *Server) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.url
}

// Restart stops the server (fast shutdown: every session is ended, as in
// `pg_ctl restart -m fast`) and starts it again on the same data and port,
// and returns once it takes connections again.
func (p *Server) Restart() error {
	p.Stop()
	return p.Start()
}

// Stop stops the server (fast shutdown: every session is ended) and keeps
// its data: until Start, connections to its port are refused.
func (p *Server) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.s.shutdown()
}

// Start starts the server that Stop stopped, on the same data and port, and
// returns once it takes connections again.
func (p *Server) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.s
	s, err := startPostgres(old.bin, old.dir, old.data, old.cred, old.port)
	if err != nil {
		return fmt.Errorf("pgtest: start: %w", err)
	}
	p.s = s
	return nil
}
