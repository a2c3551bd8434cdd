package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestStreamsOutliveRequestDeadline checks that a route in Options.Streams
// gets no request deadline and survives the server's read and write
// timeouts (request timeout + 5s), while other routes keep the deadline,
// and that shutdown ends an open stream.
func TestStreamsOutliveRequestDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("holds a stream open past the server's 5s write timeout")
	}
	release := make(chan struct{})
	ended := make(chan struct{})
	report := func(w http.ResponseWriter, r *http.Request) {
		_, has := r.Context().Deadline()
		fmt.Fprintf(w, "deadline=%v\n", has)
		w.(http.Flusher).Flush()
	}
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		report(w, r)
		select {
		case <-release:
			fmt.Fprintln(w, "still open")
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
		<-r.Context().Done()
	})
	s, err := New(Options{
		GRPCAddr:        "127.0.0.1:0",
		RESTAddr:        "127.0.0.1:0",
		RequestTimeout:  time.Millisecond,
		MaxBodyBytes:    1 << 20,
		ShutdownTimeout: 30 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handlers:        map[string]http.Handler{"GET /plain": http.HandlerFunc(report)},
		Streams:         map[string]http.Handler{"GET /stream": stream},
	}, Services{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	served := false
	defer func() {
		cancel()
		if !served {
			<-done
		}
	}()
	base := "http://" + s.RESTAddr()

	resp, err := http.Get(base + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(b)); got != "deadline=true" {
		t.Fatalf("/plain: %q, want deadline=true", got)
	}

	tctx, tcancel := context.WithTimeout(context.Background(), time.Minute)
	defer tcancel()
	req, _ := http.NewRequestWithContext(tctx, http.MethodGet, base+"/stream", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	if l, err := lines.ReadString('\n'); err != nil || l != "deadline=false\n" {
		t.Fatalf("stream first line %q, %v; want deadline=false", l, err)
	}
	// Past the server's read and write timeouts (request timeout + 5s).
	time.Sleep(5*time.Second + 500*time.Millisecond)
	close(release)
	if l, err := lines.ReadString('\n'); err != nil || l != "still open\n" {
		t.Fatalf("stream after the server's timeouts: %q, %v; want still open", l, err)
	}
	// Shutdown ends the stream (rather than waiting for it).
	cancel()
	select {
	case <-ended:
	case <-tctx.Done():
		t.Fatal("shutdown did not end the open stream")
	}
	served = true
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
