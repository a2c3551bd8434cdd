package reqctx

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestHandlerAddsRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler{slog.NewTextHandler(&buf, nil)})
	log.InfoContext(With(context.Background(), "abc123"), "hello")
	if !strings.Contains(buf.String(), "request_id=abc123") {
		t.Fatalf("log line %q lacks the request id", buf.String())
	}
}

func TestValid(t *testing.T) {
	for id, want := range map[string]bool{
		"abc-123_x.y":           true,
		"":                      false,
		"has space":             false,
		"new\nline":             false,
		strings.Repeat("a", 65): false,
	} {
		if got := Valid(id); got != want {
			t.Errorf("Valid(%q) = %v, want %v", id, got, want)
		}
	}
}
