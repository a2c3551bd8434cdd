package testenv

import (
	"bufio"
	"fmt"
	"net"
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
