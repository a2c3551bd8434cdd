package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// apiClient calls the gateway's REST API, as the admin CLI commands do.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags adds --url and --token to fs. Defaults come from TONGBAN_URL
// and TONGBAN_TOKEN.
func clientFlags(fs *flag.FlagSet) func() *apiClient {
	url := fs.String("url", envOr("TONGBAN_URL", "http://127.0.0.1:8080"), "gateway REST base URL (env TONGBAN_URL)")
	token := fs.String("token", os.Getenv("TONGBAN_TOKEN"), "bearer token (env TONGBAN_TOKEN)")
	return func() *apiClient {
		return &apiClient{base: strings.TrimRight(*url, "/"), token: *token, http: &http.Client{Timeout: 30 * time.Second}}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// apiError is an error answer of the REST API.
type apiError struct {
	Status  int
	Reason  string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Reason)
}

// call sends in (nil for none) as JSON and decodes the answer into out.
func (c *apiClient) call(ctx context.Context, method, path string, in, out proto.Message) error {
	var body io.Reader
	if in != nil {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Error struct {
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
			return &apiError{Status: resp.StatusCode, Reason: eb.Error.Reason, Message: eb.Error.Message}
		}
		return &apiError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	if out == nil {
		return nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding answer of %s %s: %w", method, path, err)
	}
	return nil
}
