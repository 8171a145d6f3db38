// Package pgtest runs a real, throw-away PostgreSQL server for tests:
// Debian's binaries (/usr/lib/postgresql/<ver>/bin, installed by `make
// deps`), initdb in a temporary folder, a free loopback port, and, when
// the tests run as root (CI does; PostgreSQL refuses root), the server
// runs as the `postgres` user. One server is shared by a test binary
// (started on first use, stopped by Main); every caller of NewDatabase
// gets its own empty database on it.
//
// The server runs with fsync off (-F): a test database does not need to
// survive a power cut, and the durability tests kill the server process
// (which fsync does not change), not the machine. synchronous_commit
// stays on, as in production.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is one running PostgreSQL.
type Server struct {
	dir  string // data directory
	bin  string
	port int
	cred *syscall.Credential
	log  string
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
	dbCounter atomic.Int64
)

// Main runs the tests of a package and stops the shared server after
// them, then runs cleanups (a package's own, such as removing a binary
// its tests built): call it from TestMain.
func Main(m *testing.M, cleanups ...func()) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	for _, c := range cleanups {
		c()
	}
	os.Exit(code)
}

// Bin returns the folder holding initdb and postgres, or an error saying
// how to get them.
func Bin() (string, error) {
	if b := os.Getenv("LANYARD_PG_BIN"); b != "" {
		return b, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: run `make deps` (installs Debian's postgresql)")
}

// Shared returns the test binary's server, starting it on first use.
func Shared(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		t.Fatalf("start PostgreSQL: %v", sharedErr)
	}
	return shared
}

// Start initialises and starts a new server in a temporary folder.
func Start() (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lanyard-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: filepath.Join(dir, "data"), bin: bin, log: filepath.Join(dir, "server.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if out, err := s.cmd("initdb", "-D", s.dir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			return nil, err
		}
		if err = s.startServer(); err == nil {
			return s, nil
		}
		if attempt == 3 {
			return nil, err
		}
	}
}

func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(s.bin, name), args...)
	c.Env = append(os.Environ(), "LC_ALL=C")
	c.Dir = filepath.Dir(s.dir)
	if s.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return c
}

// startServer starts postgres on s.port and waits until it accepts
// connections.
func (s *Server) startServer() error {
	opts := fmt.Sprintf("-F -p %d -h 127.0.0.1 -k '' -c max_connections=300 -c shared_buffers=32MB", s.port)
	out, err := s.cmd("pg_ctl", "-D", s.dir, "-l", s.log, "-w", "-t", "60", "-o", opts, "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(s.log)
		return fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return nil
}

// PID returns the postmaster's process ID (its backends are its
// children), from postmaster.pid.
func (s *Server) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("postmaster pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("postmaster pid %q: %w", first, err)
	}
	return pid, nil
}

// Stop stops the server (fast shutdown) and removes its files.
func (s *Server) Stop() {
	_ = s.cmd("pg_ctl", "-D", s.dir, "-m", "fast", "-w", "stop").Run()
	os.RemoveAll(filepath.Dir(s.dir))
}

// Restart stops the server immediately (as a crash would: clients lose
// their connections, uncommitted work is lost, recovery replays the WAL)
// and starts it again on the same port.
func (s *Server) Restart() error {
	if err := s.Crash(); err != nil {
		return err
	}
	return s.Resume()
}

// Crash stops the server immediately, as Restart does, and leaves it
// down (its files kept) until Resume.
func (s *Server) Crash() error {
	if out, err := s.cmd("pg_ctl", "-D", s.dir, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Resume starts a crashed server again on the same port.
func (s *Server) Resume() error { return s.startServer() }

// DSN returns a URL for database db on the server.
func (s *Server) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: fmt.Sprintf("127.0.0.1:%d", s.port), Path: "/" + db}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// CreateDatabase creates the empty database name (an SQL identifier the
// caller chose: it is not quoted).
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// NewDatabase creates an empty database on the shared server and returns
// its URL. It is dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := Shared(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return // the server may be gone (a test that stopped it)
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return s.DSN(name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
