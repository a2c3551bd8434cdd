// Package config is the gateway's configuration: plain structs with yaml tags,
// one place for defaults, validation that names the offending key, and
// environment overrides applied from a list the caller supplies (only cmd
// reads the process environment).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/connectors/host"
	"github.com/tongban/tongban/gateway/telemetry"
)

// Config is the whole gateway configuration.
type Config struct {
	// Node names this gateway node in audit entries and receipts.
	Node string `yaml:"node"`
	// Server holds listen addresses and limits.
	Server Server `yaml:"server"`
	// Identities are the member systems and staff that may call the gateway.
	Identities []Identity `yaml:"identities"`
	// Store selects where grants are kept.
	Store Store `yaml:"store"`
	// Audit configures the whole-process record.
	Audit Audit `yaml:"audit"`
	// Cache configures the record cache.
	Cache Cache `yaml:"cache"`
	// Forms configures auto-fill.
	Forms Forms `yaml:"forms"`
	// Events configures the event stream between nodes (Kafka).
	Events Events `yaml:"events"`
	// Departments configures the connector host: the department connectors
	// to launch, their breakers, deadlines and bulkheads.
	Departments host.Config `yaml:"departments"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Telemetry configures tracing: OTLP export of spans from the API edge
	// through policy, cache and the connector plugins (see
	// docs/observability.md).
	Telemetry telemetry.Config `yaml:"telemetry"`
}

// Server holds listen addresses and limits.
type Server struct {
	// GRPCAddr is the gRPC listen address.
	GRPCAddr string `yaml:"grpc_addr"`
	// RESTAddr is the REST/JSON (grpc-gateway) listen address; it also serves
	// /healthz, /readyz, /metrics and /openapi.json.
	RESTAddr string `yaml:"rest_addr"`
	// RequestTimeout bounds one request end to end.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxBodyBytes bounds a REST request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// RateLimit limits every caller (by system id), across all methods;
	// grants carry their own quotas on top.
	RateLimit RateLimit `yaml:"rate_limit"`
	// TLS, when its cert_file is set, serves both listeners over TLS and
	// optionally verifies client certificates (mutual TLS identities).
	TLS TLS `yaml:"tls"`
}

// TLS configures TLS on the gRPC and REST listeners. See docs/security.md.
type TLS struct {
	// CertFile is the server's PEM certificate chain, leaf first. Setting it
	// turns TLS on.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the server's PEM private key.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile holds the PEM certificates of the CA that signs member
	// systems' client certificates ("tongban ca init").
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "require" (every caller presents a client certificate
	// signed by the client CA), "request" (a certificate is verified when
	// sent; callers without one may use a bearer token) or "none" (no client
	// certificates). Empty means "require" with a client CA, else "none".
	ClientAuth string `yaml:"client_auth"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Mode returns the effective client authentication mode: ClientAuth, or its
// default when empty.
func (t TLS) Mode() string {
	switch {
	case t.ClientAuth != "":
		return t.ClientAuth
	case t.ClientCAFile != "":
		return "require"
	default:
		return "none"
	}
}

// RateLimit is a token bucket per caller.
type RateLimit struct {
	// PerSecond is the sustained rate; 0 means no limit.
	PerSecond float64 `yaml:"per_second"`
	// Burst is the bucket size.
	Burst int `yaml:"burst"`
}

// Identity is a caller known by a bearer token. Tokens are stored hashed:
// TokenSHA256 is the hex SHA-256 of the token.
type Identity struct {
	// TokenSHA256 is the hex-encoded SHA-256 digest of the bearer token.
	TokenSHA256 string `yaml:"token_sha256"`
	// SystemID identifies the calling system (or person, for staff).
	SystemID string `yaml:"system_id"`
	// Department is the caller's department.
	Department string `yaml:"department"`
	// Region is the caller's region code (jurisdiction of the caller).
	Region string `yaml:"region"`
	// Roles are "admin", "legal_reviewer", "auditor" or "subject"; member
	// systems have none.
	Roles []string `yaml:"roles"`
	// Subject is the identifier (credit code or resident ID) a "subject"
	// identity may read the access log of.
	Subject string `yaml:"subject"`
}

// Store selects the grant store.
type Store struct {
	// Driver is "sqlite" (embedded, one file) or "postgres".
	Driver string `yaml:"driver"`
	// Path is the SQLite file (driver sqlite).
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (driver postgres).
	DSN string `yaml:"dsn"`
}

// Audit configures the whole-process record.
type Audit struct {
	// Dir holds the log segments and checkpoints.
	Dir string `yaml:"dir"`
	// SigningKeyFile holds the node's checkpoint signing key (signed-note
	// format). It is created when missing.
	SigningKeyFile string `yaml:"signing_key_file"`
	// SubjectKeyFile holds the HMAC key that hashes subject identifiers. It
	// is created when missing.
	SubjectKeyFile string `yaml:"subject_key_file"`
	// CheckpointEvery signs a checkpoint after this many entries.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// CheckpointInterval signs a checkpoint at least this often when there
	// are new entries.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// ExportCursorFile records how far the Kafka export got (used when
	// events.kafka is configured). Keep it outside Dir.
	ExportCursorFile string `yaml:"export_cursor_file"`
}

// Cache configures the record cache.
type Cache struct {
	// MaxBytes bounds the in-process tier.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxStale is how long past its freshness a record may be served when
	// the department fails.
	MaxStale time.Duration `yaml:"max_stale"`
	// NegativeTTL is how long a not-found answer is cached.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// Freshness overrides, per dataset, how long a record may be served from
	// the cache (default: the dataset dictionary's freshness).
	Freshness map[string]time.Duration `yaml:"freshness"`
	// FetchTimeout bounds one coalesced department call.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// Redis, when Addrs is set, adds a tier shared by all gateway nodes.
	Redis Redis `yaml:"redis"`
}

// Redis configures the shared cache tier and the cross-node quota counters.
type Redis struct {
	// Addrs: one address for a standalone server, several for Sentinel
	// (with MasterName) or Cluster (with Cluster).
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Cluster    bool     `yaml:"cluster"`
	Username   string   `yaml:"username"`
	// Password; prefer the environment (TONGBAN_CACHE_REDIS_PASSWORD).
	Password  string `yaml:"password"`
	DB        int    `yaml:"db"`
	KeyPrefix string `yaml:"key_prefix"`
	// Keys are the AES-256 keys that seal cached values, "id:base64,..."
	// with the current key first. Set them through the environment
	// (TONGBAN_CACHE_KEYS), not the file.
	Keys string `yaml:"keys"`
	// Timeout bounds one Redis call.
	Timeout time.Duration `yaml:"timeout"`
	// Cooldown is how long the node skips Redis after an error.
	Cooldown time.Duration `yaml:"cooldown"`
}

// Events configures the event stream between gateway nodes.
type Events struct {
	// Kafka, when Brokers is set, carries change events, grant changes and
	// the audit export between nodes; otherwise events stay in process.
	Kafka Kafka `yaml:"kafka"`
}

// Kafka configures the Kafka brokers.
type Kafka struct {
	Brokers           []string `yaml:"brokers"`
	Partitions        int      `yaml:"partitions"`
	ReplicationFactor int      `yaml:"replication_factor"`
}

// Forms configures auto-fill of application forms.
type Forms struct {
	// CorrectionsPath is the SQLite file holding the correction queues
	// (校核纠错) of the departments when store.driver is sqlite: that
	// queue is the node's own. It is unused when store.driver is postgres:
	// the queue is then the table "corrections" in the grant store's
	// database (store.dsn), shared by every node.
	CorrectionsPath string `yaml:"corrections_path"`
}

// Log configures logging.
type Log struct {
	// Level is "debug", "info", "warn" or "error".
	Level string `yaml:"level"`
	// Format is "text" or "json".
	Format string `yaml:"format"`
}

// Default returns the configuration with every default filled in: a single
// node on loopback with the embedded store and a local audit directory.
func Default() Config {
	return Config{
		Node: "node-1",
		Server: Server{
			GRPCAddr:        "127.0.0.1:9090",
			RESTAddr:        "127.0.0.1:8080",
			RequestTimeout:  10 * time.Second,
			MaxBodyBytes:    1 << 20,
			ShutdownTimeout: 10 * time.Second,
		},
		Store: Store{Driver: "sqlite", Path: "var/grants.db"},
		Audit: Audit{
			Dir:                "var/audit",
			SigningKeyFile:     "var/audit.key",
			SubjectKeyFile:     "var/subject.key",
			CheckpointEvery:    1000,
			CheckpointInterval: 10 * time.Second,
			ExportCursorFile:   "var/audit-export.cursor",
		},
		Cache: Cache{MaxBytes: 64 << 20, MaxStale: time.Hour, NegativeTTL: 30 * time.Second},
		Forms: Forms{CorrectionsPath: "var/corrections.db"},
		Log:   Log{Level: "info", Format: "text"},
		// Tracing is off until telemetry.otlp_endpoint is set; then every
		// new trace is recorded unless sample_ratio says otherwise.
		Telemetry: telemetry.Config{SampleRatio: 1},
	}
}

// Load reads a YAML file over the defaults, applies environment overrides
// from environ (KEY=VALUE pairs), and validates the result.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("reading config: %w", err)
		}
		if err := Decode(b, &cfg); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := ApplyEnv(&cfg, environ); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Decode decodes YAML into cfg, refusing unknown keys.
func Decode(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file decodes to the defaults.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decoding config: %w", err)
	}
	return nil
}

// EnvPrefix is the prefix of environment overrides.
const EnvPrefix = "TONGBAN_"

// envKeys maps environment variables to the settings they override. Only
// scalar settings are overridable; lists (identities, connectors) come from
// the file.
var envKeys = map[string]func(*Config, string) error{
	"NODE":                      func(c *Config, v string) error { c.Node = v; return nil },
	"SERVER_GRPC_ADDR":          func(c *Config, v string) error { c.Server.GRPCAddr = v; return nil },
	"SERVER_REST_ADDR":          func(c *Config, v string) error { c.Server.RESTAddr = v; return nil },
	"SERVER_REQUEST_TIMEOUT":    durationVar(func(c *Config) *time.Duration { return &c.Server.RequestTimeout }),
	"SERVER_TLS_CERT_FILE":      func(c *Config, v string) error { c.Server.TLS.CertFile = v; return nil },
	"SERVER_TLS_KEY_FILE":       func(c *Config, v string) error { c.Server.TLS.KeyFile = v; return nil },
	"SERVER_TLS_CLIENT_CA_FILE": func(c *Config, v string) error { c.Server.TLS.ClientCAFile = v; return nil },
	"SERVER_TLS_CLIENT_AUTH":    func(c *Config, v string) error { c.Server.TLS.ClientAuth = v; return nil },
	"STORE_DRIVER":              func(c *Config, v string) error { c.Store.Driver = v; return nil },
	"STORE_PATH":                func(c *Config, v string) error { c.Store.Path = v; return nil },
	"STORE_DSN":                 func(c *Config, v string) error { c.Store.DSN = v; return nil },
	"AUDIT_DIR":                 func(c *Config, v string) error { c.Audit.Dir = v; return nil },
	"AUDIT_SIGNING_KEY_FILE":    func(c *Config, v string) error { c.Audit.SigningKeyFile = v; return nil },
	"AUDIT_SUBJECT_KEY_FILE":    func(c *Config, v string) error { c.Audit.SubjectKeyFile = v; return nil },
	"AUDIT_CHECKPOINT_INTERVAL": durationVar(func(c *Config) *time.Duration { return &c.Audit.CheckpointInterval }),
	"CACHE_MAX_STALE":           durationVar(func(c *Config) *time.Duration { return &c.Cache.MaxStale }),
	"CACHE_KEYS":                func(c *Config, v string) error { c.Cache.Redis.Keys = v; return nil },
	"CACHE_REDIS_ADDRS":         func(c *Config, v string) error { c.Cache.Redis.Addrs = splitList(v); return nil },
	"CACHE_REDIS_PASSWORD":      func(c *Config, v string) error { c.Cache.Redis.Password = v; return nil },
	"EVENTS_KAFKA_BROKERS":      func(c *Config, v string) error { c.Events.Kafka.Brokers = splitList(v); return nil },
	"LOG_LEVEL":                 func(c *Config, v string) error { c.Log.Level = v; return nil },
	"LOG_FORMAT":                func(c *Config, v string) error { c.Log.Format = v; return nil },
	"TELEMETRY_OTLP_ENDPOINT":   func(c *Config, v string) error { c.Telemetry.OTLPEndpoint = v; return nil },
	"TELEMETRY_PROTOCOL":        func(c *Config, v string) error { c.Telemetry.Protocol = v; return nil },
	"TELEMETRY_SAMPLE_RATIO": func(c *Config, v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return err
		}
		c.Telemetry.SampleRatio = r
		return nil
	},
}

func durationVar(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// EnvNames returns the environment variables that override settings.
func EnvNames() []string {
	names := make([]string, 0, len(envKeys))
	for k := range envKeys {
		names = append(names, EnvPrefix+k)
	}
	return names
}

// ApplyEnv applies TONGBAN_* overrides from environ. An unknown TONGBAN_
// variable is an error, so a typo is never silently ignored.
func ApplyEnv(cfg *Config, environ []string) error {
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		name := strings.TrimPrefix(k, EnvPrefix)
		set, known := envKeys[name]
		if !known {
			if ignoredEnv[name] {
				continue
			}
			return fmt.Errorf("environment %s: not a configuration setting", k)
		}
		if err := set(cfg, v); err != nil {
			return fmt.Errorf("environment %s: %w", k, err)
		}
	}
	return nil
}

// ignoredEnv are TONGBAN_ variables with other uses (plugin mode, tests).
var ignoredEnv = map[string]bool{
	"CONNECTOR_CONFIG": true, "CONNECTOR_NAME": true,
	"TEST_POSTGRES_DSN": true, "TEST_REDIS_ADDR": true, "TEST_SKIP_MISSING": true,
	"TOKEN": true, "URL": true, "CONNECTOR_LOG_LEVEL": true,
}

// Validate checks the configuration; errors name the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Node == "" {
		bad("node", "must not be empty")
	}
	for key, addr := range map[string]string{"server.grpc_addr": c.Server.GRPCAddr, "server.rest_addr": c.Server.RESTAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q is not host:port", addr)
		}
	}
	if c.Server.RequestTimeout <= 0 {
		bad("server.request_timeout", "must be positive")
	}
	if c.Server.RateLimit.PerSecond < 0 {
		bad("server.rate_limit.per_second", "must not be negative")
	}
	if c.Server.RateLimit.PerSecond > 0 && c.Server.RateLimit.Burst <= 0 {
		bad("server.rate_limit.burst", "must be positive when per_second is set")
	}
	if c.Server.MaxBodyBytes <= 0 {
		bad("server.max_body_bytes", "must be positive")
	}
	validateTLS(c.Server.TLS, bad)
	seen := map[string]bool{}
	for i, id := range c.Identities {
		key := fmt.Sprintf("identities[%d]", i)
		if len(id.TokenSHA256) != 64 || strings.Trim(id.TokenSHA256, "0123456789abcdef") != "" {
			bad(key+".token_sha256", "must be 64 lower-case hex digits (the SHA-256 of the token)")
		}
		if seen[id.TokenSHA256] {
			bad(key+".token_sha256", "duplicate token")
		}
		seen[id.TokenSHA256] = true
		if id.SystemID == "" {
			bad(key+".system_id", "must not be empty")
		}
		for j, r := range id.Roles {
			if !knownRoles[r] {
				bad(fmt.Sprintf("%s.roles[%d]", key, j), "%q is not one of admin, legal_reviewer, auditor, subject", r)
			}
			if r == "subject" && id.Subject == "" {
				bad(key+".subject", "a subject identity must name its subject")
			}
		}
	}
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			bad("store.path", "must not be empty for driver sqlite")
		}
	case "postgres":
		if c.Store.DSN == "" {
			bad("store.dsn", "must not be empty for driver postgres")
		}
	default:
		bad("store.driver", "%q is not one of sqlite, postgres", c.Store.Driver)
	}
	if c.Audit.Dir == "" {
		bad("audit.dir", "must not be empty")
	}
	if c.Audit.CheckpointEvery <= 0 {
		bad("audit.checkpoint_every", "must be positive")
	}
	if c.Audit.CheckpointInterval <= 0 {
		bad("audit.checkpoint_interval", "must be positive")
	}
	if c.Forms.CorrectionsPath == "" {
		bad("forms.corrections_path", "must not be empty")
	}
	if c.Cache.MaxBytes < 0 {
		bad("cache.max_bytes", "must not be negative")
	}
	if c.Cache.MaxStale < 0 {
		bad("cache.max_stale", "must not be negative")
	}
	for name, d := range c.Cache.Freshness {
		if d <= 0 {
			bad("cache.freshness."+name, "must be positive")
		}
	}
	for i, a := range c.Cache.Redis.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad(fmt.Sprintf("cache.redis.addrs[%d]", i), "%q is not host:port", a)
		}
	}
	if len(c.Cache.Redis.Addrs) > 0 && c.Cache.Redis.Keys == "" {
		bad("cache.redis.keys", "the Redis tier needs sealing keys (set TONGBAN_CACHE_KEYS to \"id:base64-of-32-bytes\"): Redis never holds plain text")
	}
	if c.Cache.Redis.MasterName != "" && c.Cache.Redis.Cluster {
		bad("cache.redis.cluster", "a Sentinel master_name and cluster mode exclude each other")
	}
	for i, b := range c.Events.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad(fmt.Sprintf("events.kafka.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if len(c.Events.Kafka.Brokers) > 0 && c.Audit.ExportCursorFile == "" {
		bad("audit.export_cursor_file", "must not be empty when events.kafka is configured")
	}
	deps := c.Departments
	deps.SetDefaults()
	if err := deps.Validate(); err != nil {
		bad("departments", "%v", err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if err := c.Telemetry.Validate(); err != nil {
		errs = append(errs, err) // names telemetry.<key>
	}
	return errors.Join(errs...)
}

// validateTLS checks server.tls: all or nothing of the server key pair, and a
// client CA exactly when client certificates are asked for.
func validateTLS(t TLS, bad func(key, format string, args ...any)) {
	if !t.Enabled() {
		if t.KeyFile != "" || t.ClientCAFile != "" || t.ClientAuth != "" {
			bad("server.tls.cert_file", "must be set when any other server.tls key is")
		}
		return
	}
	if t.KeyFile == "" {
		bad("server.tls.key_file", "must be set with server.tls.cert_file")
	}
	switch t.Mode() {
	case "require", "request":
		if t.ClientCAFile == "" {
			bad("server.tls.client_ca_file", "must be set with client_auth %q", t.Mode())
		}
	case "none":
		if t.ClientCAFile != "" {
			bad("server.tls.client_auth", `is "none" but client_ca_file is set: use "require" or "request", or remove client_ca_file`)
		}
	default:
		bad("server.tls.client_auth", "%q is not one of require, request, none", t.ClientAuth)
	}
}

var knownRoles = map[string]bool{"admin": true, "legal_reviewer": true, "auditor": true, "subject": true}
