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

// TestNewID: ids are 16 lowercase hex digits, valid, and do not repeat;
// every digit position takes more than one value.
func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	var varies [16]map[byte]bool
	for i := range varies {
		varies[i] = map[byte]bool{}
	}
	for range 10000 {
		id := NewID()
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || !Valid(id) {
			t.Fatalf("id %q is not 16 lowercase hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
		for i := range id {
			varies[i][id[i]] = true
		}
	}
	for i, v := range varies {
		if len(v) < 16 {
			t.Errorf("digit %d took only %d values", i, len(v))
		}
	}
}
