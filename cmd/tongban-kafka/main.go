// Command tongban-kafka is a development Kafka-protocol broker for end-to-end
// runs on machines without a Kafka distribution (make multinode): one broker
// on a loopback address, from franz-go's kfake, optionally persisting topics,
// records and committed offsets to a directory so that it can be restarted
// with its state. The gateway talks to it through kafka-go exactly as to a
// real cluster. It is not for production: use a real Kafka cluster there.
//
//	tongban-kafka [--addr 127.0.0.1:9092] [--data-dir DIR]
//
// It prints KAFKA_BROKERS=HOST:PORT once it listens and runs until SIGINT or
// SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "tongban-kafka: %v\n", err)
		os.Exit(1)
	}
}

// options are the parsed command line.
type options struct {
	host     string
	port     int
	dataDir  string
	minSess  time.Duration
	logLevel kfake.LogLevel
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("tongban-kafka", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9092", "listen address; the host must be 127.0.0.1 or localhost (port 0 picks a free port)")
	dataDir := fs.String("data-dir", "", "persist topics, records and offsets here (default: in memory only)")
	minSess := fs.Duration("group-min-session-timeout", time.Second, "smallest consumer-group session timeout the broker accepts")
	level := fs.String("log-level", "warn", "broker log level: none, error, warn, info, debug")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tongban-kafka [--addr 127.0.0.1:9092] [--data-dir DIR]\n\nA development Kafka-protocol broker (kfake) on loopback.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	host, portText, err := net.SplitHostPort(*addr)
	if err != nil {
		return options{}, fmt.Errorf("--addr %q: %w", *addr, err)
	}
	// kfake binds 127.0.0.1 and advertises the address it bound: it is a
	// loopback development broker only.
	if host != "127.0.0.1" && host != "localhost" {
		return options{}, fmt.Errorf("--addr %q: the development broker listens on 127.0.0.1 only", *addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return options{}, fmt.Errorf("--addr %q: %q is not a port number", *addr, portText)
	}
	if *minSess <= 0 {
		return options{}, fmt.Errorf("--group-min-session-timeout must be positive")
	}
	levels := map[string]kfake.LogLevel{
		"none": kfake.LogLevelNone, "error": kfake.LogLevelError, "warn": kfake.LogLevelWarn,
		"info": kfake.LogLevelInfo, "debug": kfake.LogLevelDebug,
	}
	lv, ok := levels[*level]
	if !ok {
		return options{}, fmt.Errorf("--log-level %q is not one of none, error, warn, info, debug", *level)
	}
	return options{host: "127.0.0.1", port: port, dataDir: *dataDir, minSess: *minSess, logLevel: lv}, nil
}

// run starts the broker, reports its address on stdout (and to ready, when
// set) and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(addr string)) error {
	o, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := []kfake.Opt{
		kfake.Ports(o.port),
		kfake.GroupMinSessionTimeout(o.minSess),
		kfake.WithLogger(slogLogger{log: log, level: o.logLevel}),
	}
	if o.dataDir != "" {
		if err := os.MkdirAll(o.dataDir, 0o750); err != nil {
			return fmt.Errorf("creating the data directory: %w", err)
		}
		opts = append(opts, kfake.DataDir(o.dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("starting the broker on %s:%d: %w", o.host, o.port, err)
	}
	defer c.Close()
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		return fmt.Errorf("broker listens on %v, want one address", addrs)
	}
	if _, err := fmt.Fprintf(stdout, "KAFKA_BROKERS=%s\n", addrs[0]); err != nil {
		return fmt.Errorf("writing the address: %w", err)
	}
	log.Info("tongban-kafka: development Kafka-protocol broker (kfake) listening; stop with Ctrl-C", "addr", addrs[0], "data_dir", o.dataDir)
	if ready != nil {
		ready(addrs[0])
	}
	<-ctx.Done()
	log.Info("tongban-kafka: stopping")
	return nil
}

// slogLogger passes kfake's log lines at or above level to slog.
type slogLogger struct {
	log   *slog.Logger
	level kfake.LogLevel
}

// Logf implements kfake.Logger.
func (l slogLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	if level == kfake.LogLevelNone || level > l.level {
		return
	}
	sl := map[kfake.LogLevel]slog.Level{
		kfake.LogLevelError: slog.LevelError, kfake.LogLevelWarn: slog.LevelWarn,
		kfake.LogLevelInfo: slog.LevelInfo, kfake.LogLevelDebug: slog.LevelDebug,
	}[level]
	l.log.Log(context.Background(), sl, fmt.Sprintf(format, args...), "component", "kfake")
}
