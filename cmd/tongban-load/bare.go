package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// bareHandler answers every request with body as JSON, after reading the
// request body as the gateway does: the least an HTTP server can do for
// the same exchange.
func bareHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// cmdBare is the hidden subcommand "bare": a bare net/http server on
// loopback answering every request with the bytes of a file. It prints
// "listening on ADDR" once it listens and serves until SIGTERM or SIGINT.
// The harness runs it as its own process, as the gateway is, so that both
// servers have a Go runtime of their own next to the load generator.
func cmdBare(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (loopback)")
	file := fs.String("body", "", "file whose bytes every answer carries")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("reading the answer body: %w", err)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	srv := &http.Server{Handler: bareHandler(body), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(stdout, "listening on %s\n", l.Addr())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// bareServer is a running bare server process.
type bareServer struct {
	URL  string
	PID  int
	stop func() error
}

// startBare runs this executable as "bare --body FILE" and waits for its
// address.
func startBare(ctx context.Context, bodyFile string) (*bareServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the harness executable: %w", err)
	}
	cmd := exec.Command(exe, "bare", "--body", bodyFile)
	cmd.Stderr = os.Stderr
	setPdeathsig(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the bare server: %w", err)
	}
	done := make(chan error, 1)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				addr <- a
			}
		}
		done <- cmd.Wait()
	}()
	stopFn := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return errors.New("bare server did not stop within 10s; killed")
		}
	}
	select {
	case a := <-addr:
		return &bareServer{URL: "http://" + a, PID: cmd.Process.Pid, stop: stopFn}, nil
	case err := <-done:
		return nil, fmt.Errorf("bare server exited early: %v", err)
	case <-time.After(10 * time.Second):
		_ = stopFn()
		return nil, errors.New("bare server did not listen within 10s")
	case <-ctx.Done():
		_ = stopFn()
		return nil, ctx.Err()
	}
}
