// Package httpc is the HTTP client shared by the rest and ogcfeatures
// connector types: bearer or client-certificate authentication, a per-call
// timeout, a response size limit, no redirects to another host, and the
// translation of HTTP outcomes to apierr errors naming the department.
package httpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/schemas/apierr"
)

// Defaults of Settings.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 8 << 20
	maxRedirects            = 5
)

// Auth says how the connector authenticates to the department system.
type Auth struct {
	// BearerToken is sent as "Authorization: Bearer <token>".
	BearerToken string `yaml:"bearer_token"`
	// BearerTokenEnv names an environment variable holding the bearer token.
	BearerTokenEnv string `yaml:"bearer_token_env"`
	// CertFile and KeyFile are a PEM client certificate and key for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile is a PEM bundle of the authorities that sign the department's
	// server certificate; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
}

// Settings is the HTTP part of a connector's settings.
type Settings struct {
	// BaseURL is the department system's URL, e.g. "https://scjg.example.gov.cn/api".
	BaseURL string `yaml:"base_url"`
	// Auth is the authentication; empty means none.
	Auth Auth `yaml:"auth"`
	// Timeout bounds each HTTP request (default 10s); a shorter deadline of
	// the caller wins.
	Timeout time.Duration `yaml:"timeout"`
	// MaxResponseBytes is the largest response body accepted (default 8 MiB);
	// larger responses fail with reason RESPONSE_TOO_LARGE.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
}

// Validate checks the settings without touching files or the environment.
func (s *Settings) Validate() error {
	if s.BaseURL == "" {
		return errors.New("base_url: must be set")
	}
	u, err := url.Parse(s.BaseURL)
	if err != nil {
		return fmt.Errorf("base_url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("base_url: %q must be an absolute http or https URL", s.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("base_url: %q must not carry a query, fragment or user info", s.BaseURL)
	}
	if s.Timeout < 0 {
		return errors.New("timeout: must not be negative")
	}
	if s.MaxResponseBytes < 0 {
		return errors.New("max_response_bytes: must not be negative")
	}
	a := s.Auth
	if a.BearerToken != "" && a.BearerTokenEnv != "" {
		return errors.New("auth: give bearer_token or bearer_token_env, not both")
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return errors.New("auth: cert_file and key_file go together")
	}
	if (a.CertFile != "" || a.CAFile != "" || a.ServerName != "") && u.Scheme != "https" {
		return errors.New("auth: client certificates and CA files need an https base_url")
	}
	return nil
}

// Client talks to one department system.
type Client struct {
	dept    string
	base    *url.URL
	hc      *http.Client
	token   string
	timeout time.Duration
	max     int64
}

// New builds a client: it reads the token variable and the certificate files.
func New(dept string, s Settings) (*Client, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	base, _ := url.Parse(strings.TrimRight(s.BaseURL, "/"))
	c := &Client{dept: dept, base: base, timeout: s.Timeout, max: s.MaxResponseBytes, token: s.Auth.BearerToken}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.max == 0 {
		c.max = DefaultMaxResponseBytes
	}
	if env := s.Auth.BearerTokenEnv; env != "" {
		c.token = os.Getenv(env)
		if c.token == "" {
			return nil, fmt.Errorf("auth.bearer_token_env: environment variable %s is empty or unset", env)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if base.Scheme == "https" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.Auth.ServerName}
		if s.Auth.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(s.Auth.CertFile, s.Auth.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("auth.cert_file: loading client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if s.Auth.CAFile != "" {
			pem, err := os.ReadFile(s.Auth.CAFile)
			if err != nil {
				return nil, fmt.Errorf("auth.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("auth.ca_file: %s holds no PEM certificate", s.Auth.CAFile)
			}
			tc.RootCAs = pool
		}
		tr.TLSClientConfig = tc
	}
	c.hc = &http.Client{Transport: tr, CheckRedirect: c.checkRedirect}
	return c, nil
}

// checkRedirect refuses redirects to another scheme or host, and long chains.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	if !c.SameOrigin(req.URL) {
		return fmt.Errorf("redirect to another host %q refused", req.URL.Host)
	}
	return nil
}

// SameOrigin reports whether u has the base URL's scheme and host.
func (c *Client) SameOrigin(u *url.URL) bool {
	return u.Scheme == c.base.Scheme && strings.EqualFold(u.Host, c.base.Host)
}

// Department returns the department identifier used in errors.
func (c *Client) Department() string { return c.dept }

// URL joins the base URL with an escaped path (which may carry a query) and
// adds the query parameters q.
func (c *Client) URL(escapedPath string, q url.Values) (*url.URL, error) {
	if escapedPath != "" && !strings.HasPrefix(escapedPath, "/") {
		escapedPath = "/" + escapedPath
	}
	u, err := url.Parse(c.base.String() + escapedPath)
	if err != nil {
		return nil, fmt.Errorf("building URL for %q: %w", escapedPath, err)
	}
	if len(q) > 0 {
		merged := u.Query()
		for k, vs := range q {
			for _, v := range vs {
				merged.Add(k, v)
			}
		}
		u.RawQuery = merged.Encode()
	}
	return u, nil
}

// Resolve resolves a link (e.g. a "next" link) against the URL of the page
// it came from, refusing links to another host.
func (c *Client) Resolve(from *url.URL, link string) (*url.URL, error) {
	ref, err := url.Parse(link)
	if err != nil {
		return nil, fmt.Errorf("parsing link %q: %w", link, err)
	}
	u := from.ResolveReference(ref)
	if !c.SameOrigin(u) {
		return nil, fmt.Errorf("link to another host %q refused", u.Host)
	}
	return u, nil
}

// ErrNotFound is returned by Get when the department answers with one of the
// not-found statuses.
var ErrNotFound = errors.New("department has no such record")

// Get sends a GET request and returns the body, at most the size limit.
// Statuses in notFound give ErrNotFound; 400 and 422 give INVALID_ARGUMENT;
// other failures give UNAVAILABLE naming the department.
func (c *Client) Get(ctx context.Context, u *url.URL, accept string, notFound []int) ([]byte, error) {
	if err := conn.CtxErr(ctx, c.dept); err != nil {
		return nil, err
	}
	if !c.SameOrigin(u) {
		return nil, apierr.Unavailable(c.dept, fmt.Errorf("request to another host %q refused", u.Host))
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("building request for %s: %w", u.Path, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, conn.Unavailable(ctx, c.dept, fmt.Errorf("GET %s: %w", u.Path, err))
	}
	defer resp.Body.Close()
	for _, s := range notFound {
		if resp.StatusCode == s {
			return nil, ErrNotFound
		}
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		return nil, apierr.Newf(codes.InvalidArgument, apierr.ReasonInvalidArgument,
			"department %q rejected the request", c.dept).With("department", c.dept).
			WithCause(fmt.Errorf("GET %s: status %d", u.Path, resp.StatusCode))
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, apierr.Unavailable(c.dept, fmt.Errorf("GET %s: status %d", u.Path, resp.StatusCode))
	}
	if resp.ContentLength > c.max {
		return nil, conn.TooLarge(c.dept, c.max)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return nil, conn.Unavailable(ctx, c.dept, fmt.Errorf("reading GET %s: %w", u.Path, err))
	}
	if int64(len(body)) > c.max {
		return nil, conn.TooLarge(c.dept, c.max)
	}
	return body, nil
}

// GetJSON is Get followed by decoding the body as JSON, numbers kept as
// json.Number.
func (c *Client) GetJSON(ctx context.Context, u *url.URL, accept string, notFound []int) (any, error) {
	body, err := c.Get(ctx, u, accept, notFound)
	if err != nil {
		return nil, err
	}
	return DecodeJSON(c.dept, body)
}

// DecodeJSON decodes a department's JSON body; malformed JSON is the
// department's fault.
func DecodeJSON(dept string, body []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, conn.BadData(dept, fmt.Errorf("decoding JSON: %w", err))
	}
	return doc, nil
}

// Health sends a GET and expects a 2xx answer.
func (c *Client) Health(ctx context.Context, escapedPath string) error {
	u, err := c.URL(escapedPath, nil)
	if err != nil {
		return err
	}
	_, err = c.Get(ctx, u, "", nil)
	return err
}
