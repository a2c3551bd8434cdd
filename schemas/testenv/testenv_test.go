package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestRedisStartsAndStops(t *testing.T) {
	p := Redis(t)
	c, err := net.DialTimeout("tcp", p.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PING\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "+PONG") {
		t.Fatalf("PING = %q, %v", line, err)
	}
}

func TestPostgresStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	dsn := Postgres(t)
	if !strings.HasPrefix(dsn, "postgres://") {
		t.Fatalf("dsn = %q", dsn)
	}
}

// fatalTB records Fatalf instead of failing the test, and ends the goroutine
// as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Another process listening on the port must not pass for the server.
func TestRedisAtRefusesAPortInUse(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing(t, "redis-server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for i := 0; i < 100; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		RedisAt(f, ln.Addr().(*net.TCPAddr).Port)
	}()
	<-done
	if !strings.Contains(f.msg, "in use") {
		t.Fatalf("RedisAt on a port in use: Fatalf message %q, want one saying the port is in use", f.msg)
	}
}
