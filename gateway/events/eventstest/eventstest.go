// Package eventstest starts a Kafka-protocol broker for tests: kfake from
// franz-go, in process, on a loopback port, persisting to a temporary
// directory so that it can be stopped and restarted on the same port with
// its topics, records and committed offsets. The gateway talks to it only
// through kafka-go, as to a real cluster.
//
// TONGBAN_TEST_KAFKA_ADDR reuses a running broker instead (Stop and Restart
// then skip the test).
package eventstest

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tongban/tongban/schemas/testenv"
)

// Broker is a Kafka-protocol broker started for a test.
type Broker struct {
	// Addr is the broker's host:port on 127.0.0.1.
	Addr string

	t        testing.TB
	port     int
	dir      string
	external bool

	mu sync.Mutex
	c  *kfake.Cluster
}

// StartKafka starts a one-broker cluster on a free loopback port and stops
// it when the test ends.
func StartKafka(t testing.TB) *Broker {
	t.Helper()
	if addr := os.Getenv("TONGBAN_TEST_KAFKA_ADDR"); addr != "" {
		return &Broker{Addr: addr, t: t, external: true}
	}
	b := &Broker{t: t, dir: t.TempDir()}
	b.port = testenv.FreePort(t)
	b.Addr = "127.0.0.1:" + strconv.Itoa(b.port)
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// Addrs returns the bootstrap addresses.
func (b *Broker) Addrs() []string { return strings.Split(b.Addr, ",") }

func (b *Broker) start() {
	b.t.Helper()
	var (
		c   *kfake.Cluster
		err error
	)
	// The port was just released by the previous broker or by FreePort;
	// binding can briefly fail: retry a bounded number of times.
	for i := 0; i < 50; i++ {
		c, err = kfake.NewCluster(
			kfake.Ports(b.port),
			kfake.DataDir(b.dir),
			kfake.GroupMinSessionTimeout(time.Second),
		)
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("starting kfake on port %d: %v", b.port, err)
	}
	if err := testenv.WaitTCP(b.Addr, 10*time.Second); err != nil {
		b.t.Fatalf("kfake not listening: %v", err)
	}
	b.mu.Lock()
	b.c = c
	b.mu.Unlock()
}

// Stop stops the broker; its state stays on disk for Restart.
func (b *Broker) Stop() {
	if b.external {
		b.t.Skip("cannot stop an external Kafka broker")
	}
	b.mu.Lock()
	c := b.c
	b.c = nil
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Restart starts the broker again on the same port with the state it had.
func (b *Broker) Restart() {
	b.t.Helper()
	if b.external {
		b.t.Skip("cannot restart an external Kafka broker")
	}
	b.Stop()
	b.start()
}
