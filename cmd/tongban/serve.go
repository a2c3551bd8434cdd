package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/tongban/tongban/gateway/app"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/config"
	"github.com/tongban/tongban/gateway/demo"
	"github.com/tongban/tongban/gateway/reqctx"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve --config FILE", stderr)
	path := fs.String("config", "", "YAML configuration file (TONGBAN_* environment variables override single settings)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return usagef("--config is required (see deploy/tongban.yaml for an example)")
	}
	cfg, err := config.Load(*path, os.Environ())
	if err != nil {
		return err
	}
	if err := refuseDemoTokens(cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	tuneGC()
	return app.Run(ctx, cfg, app.Options{Logger: log})
}

// tuneGC lets the heap grow to three times the live data between
// collections (GOGC=200) unless GOGC is set: the gateway's live heap is
// small, and collections were a fifth of its CPU under load
// (docs/performance.md).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
}

// refuseDemoTokens refuses identities holding a fixed token of `tongban
// demo` (demo.Tokens).
func refuseDemoTokens(cfg config.Config) error {
	demoTokens := demo.Tokens()
	for i, id := range cfg.Identities {
		for _, t := range demoTokens {
			if id.TokenSHA256 == auth.Digest(t) {
				return fmt.Errorf("identities[%d].token_sha256: is the digest of the demo token %q, which serve refuses; issue a real token", i, t)
			}
		}
	}
	return nil
}

// newLogger returns the node's logger: text or JSON on w, at the configured
// level, with the request id of the context on every line.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(reqctx.Handler{Handler: h})
}
