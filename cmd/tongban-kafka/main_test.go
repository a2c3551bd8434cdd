package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestBrokerRoundTripAndRestart starts the broker, creates a topic, writes
// and reads a record with kafka-go (the gateway's client), stops it, starts
// it again on the same port with the same data directory and reads the
// record back.
func TestBrokerRoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	const topic = "tongban.test"

	addr, stop := startBroker(t, "127.0.0.1:0", dir)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatalf("creating topic: %v", err)
	}
	conn.Close()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond}
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("grant revoked")}); err != nil {
		t.Fatalf("writing: %v", err)
	}
	w.Close()
	if got := readFirst(ctx, t, addr, topic); got != "grant revoked" {
		t.Fatalf("read %q", got)
	}

	stop()
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	addr2, _ := startBroker(t, "127.0.0.1:"+port, dir)
	if addr2 != addr {
		t.Fatalf("restarted on %s, want %s", addr2, addr)
	}
	if got := readFirst(ctx, t, addr2, topic); got != "grant revoked" {
		t.Fatalf("after restart read %q", got)
	}
}

func readFirst(ctx context.Context, t *testing.T, addr, topic string) string {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return string(m.Value)
}

// startBroker runs the command in process until the returned stop is called
// (also at the end of the test) and returns the address it printed.
func startBroker(t *testing.T, addr, dir string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	// A port just released by a stopped broker can briefly refuse to bind:
	// retry a bounded number of times.
	go func() {
		var err error
		for i := 0; i < 50; i++ {
			err = run(ctx, []string{"--addr", addr, "--data-dir", dir}, &out, &errb, func(a string) { ready <- a })
			if err == nil || !strings.Contains(err.Error(), "starting the broker") || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		done <- err
	}()
	var got string
	select {
	case got = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("broker ended: %v\n%s", err, errb.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("broker not ready within 30s")
	}
	if !strings.Contains(out.String(), "KAFKA_BROKERS="+got+"\n") {
		t.Errorf("stdout %q lacks KAFKA_BROKERS=%s", out.String(), got)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("broker: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("broker did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return got, stop
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		want    options
	}{
		{name: "defaults", want: options{host: "127.0.0.1", port: 9092, minSess: time.Second, logLevel: 2}},
		{name: "localhost", args: []string{"--addr", "localhost:19092", "--data-dir", "/tmp/k"}, want: options{host: "127.0.0.1", port: 19092, dataDir: "/tmp/k", minSess: time.Second, logLevel: 2}},
		{name: "not loopback", args: []string{"--addr", "0.0.0.0:9092"}, wantErr: "127.0.0.1 only"},
		{name: "bad port", args: []string{"--addr", "127.0.0.1:99999"}, wantErr: "not a port"},
		{name: "no port", args: []string{"--addr", "127.0.0.1"}, wantErr: "--addr"},
		{name: "bad level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "extra", args: []string{"x"}, wantErr: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseArgs(tc.args, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
