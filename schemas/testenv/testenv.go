// Package testenv starts the real servers that integration tests need —
// PostgreSQL and Redis — as processes on loopback, and stops them when the
// test ends. It imports nothing of the project so that every package may use
// it from its tests.
//
// An address in the environment is reused instead of starting a server:
// TONGBAN_TEST_POSTGRES_DSN and TONGBAN_TEST_REDIS_ADDR. When neither a
// server binary nor an address is available the test fails (it does not
// skip): `make test` must exercise the real parts. Set TONGBAN_TEST_SKIP_MISSING=1
// to skip instead, for a quick local run.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts TCP connections or the timeout passes.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("TONGBAN_TEST_SKIP_MISSING") == "1" {
		t.Skipf("%s not available", what)
	}
	t.Fatalf("%s not available: install it (see .ci/run) or set its address in the environment", what)
}

// Process is a server process started for a test.
type Process struct {
	cmd    *exec.Cmd
	Addr   string
	Dir    string
	out    *syncBuffer
	done   chan struct{}
	exited atomic.Bool
}

// syncBuffer is a bytes.Buffer safe for the process's output copier and a
// reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func start(t testing.TB, name string, args []string, dir string, env []string, creds *syscall.Credential) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	buf := &syncBuffer{}
	cmd.Stdout = buf
	cmd.Stderr = buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: creds, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Process{cmd: cmd, out: buf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); p.exited.Store(true); close(p.done) }()
	return p
}

// Stop stops the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (p *Process) Stop() {
	if p.exited.Load() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// Redis starts redis-server on a free loopback port with persistence off and
// returns it. The server is stopped when the test ends; tests may stop it
// earlier with Stop (and start another on the same address with RedisAt).
func Redis(t testing.TB) *Process {
	t.Helper()
	if addr := os.Getenv("TONGBAN_TEST_REDIS_ADDR"); addr != "" {
		return &Process{Addr: addr, done: make(chan struct{})}
	}
	// A port found free may be taken by another process before the server
	// binds it: try another.
	var p *Process
	for range startAttempts {
		var busy bool
		if p, busy = startRedis(t, FreePort(t)); !busy {
			return p
		}
	}
	t.Fatalf("redis-server found its port in use %d times\n%s", startAttempts, p.Output())
	return nil
}

// RedisAt starts redis-server on 127.0.0.1:port.
func RedisAt(t testing.TB, port int) *Process {
	t.Helper()
	p, busy := startRedis(t, port)
	if busy {
		t.Fatalf("redis-server: 127.0.0.1:%d is in use\n%s", port, p.Output())
	}
	return p
}

// startAttempts bounds the ports tried by Redis and Postgres.
const startAttempts = 3

// startRedis starts redis-server on 127.0.0.1:port and waits until it is
// ready. It reports busy, with the exited process, when the port was in use.
func startRedis(t testing.TB, port int) (p *Process, busy bool) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server")
	}
	dir := t.TempDir()
	p = start(t, bin, []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, dir, nil, nil)
	p.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	p.Dir = dir
	t.Cleanup(p.Stop)
	// The server's own log line, not only an open port: another process
	// listening on the port must not pass for the server.
	if err := p.waitFor("Ready to accept connections", 10*time.Second); err != nil {
		if portInUse(p.Output()) {
			return p, true
		}
		t.Fatalf("redis-server did not start: %v\n%s", err, p.Output())
	}
	if err := WaitTCP(p.Addr, 10*time.Second); err != nil {
		t.Fatalf("redis-server did not start: %v\n%s", err, p.Output())
	}
	return p, false
}

// waitFor waits until the process has printed marker. It fails early when
// the process exits.
func (p *Process) waitFor(marker string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Output(), marker) {
		if p.exited.Load() {
			return fmt.Errorf("exited before printing %q", marker)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("did not print %q within %v", marker, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// portInUse reports whether a server's output says its port was taken.
func portInUse(out string) bool { return strings.Contains(out, "Address already in use") }

// postgresBin finds Debian's PostgreSQL server binaries.
func postgresBin() (string, bool) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), true
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", false
	}
	return filepath.Dir(matches[len(matches)-1]), true
}

// Postgres starts a throwaway PostgreSQL cluster (initdb in a temporary
// directory) on a free loopback port and returns a DSN for its "postgres"
// database. When running as root the cluster runs as the "postgres" user.
func Postgres(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv("TONGBAN_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	bin, ok := postgresBin()
	if !ok {
		missing(t, "PostgreSQL (initdb)")
	}
	var creds *syscall.Credential
	dir, err := os.MkdirTemp("", "tongban-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		creds = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	init := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: creds}
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// The port accepts before the server takes queries; callers retry their
	// first connection briefly (pgx does not), so wait for the log line. A
	// port found free may be taken before the server binds it: try another.
	var port int
	for attempt := 1; ; attempt++ {
		port = FreePort(t)
		p := start(t, filepath.Join(bin, "postgres"), []string{
			"-D", data, "-p", strconv.Itoa(port), "-k", dir, "-h", "127.0.0.1",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		}, dir, nil, creds)
		p.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		t.Cleanup(p.Stop)
		err := p.waitFor("ready to accept connections", 30*time.Second)
		if err == nil {
			break
		}
		if !portInUse(p.Output()) || attempt >= startAttempts {
			t.Fatalf("postgres did not start: %v\n%s", err, p.Output())
		}
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}
