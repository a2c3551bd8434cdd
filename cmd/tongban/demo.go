package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/tongban/tongban/gateway/config"
	"github.com/tongban/tongban/gateway/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--dir DIR] [--rest ADDR] [--grpc ADDR]", stderr)
	dir := fs.String("dir", ".demo", "directory for the demo's grant store, audit log and keys")
	rest := fs.String("rest", "127.0.0.1:8080", "REST listen address")
	grpcAddr := fs.String("grpc", "127.0.0.1:9090", "gRPC listen address")
	level := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(config.Log{Level: *level, Format: "text"}, stderr)
	slog.SetDefault(log)
	tuneGC()
	return demo.Run(ctx, demo.Options{Dir: *dir, RESTAddr: *rest, GRPCAddr: *grpcAddr, Logger: log, Out: stdout})
}
