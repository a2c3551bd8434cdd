package host

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Connector types. The built-in ones run the gateway binary itself in plugin
// mode ("tongban connector TYPE"); an external one runs a department's own
// binary.
const (
	TypeREST        = "rest"
	TypeOGCFeatures = "ogcfeatures"
	TypePostgres    = "postgres"
	TypeExternal    = "external"
)

// BuiltinTypes lists the connector types the gateway binary serves itself.
var BuiltinTypes = []string{TypeREST, TypeOGCFeatures, TypePostgres}

// Config is the connectors section of the gateway configuration.
type Config struct {
	// Connectors lists the department connectors to launch.
	Connectors []ConnectorConfig `yaml:"connectors"`
	// HealthInterval is how often each connector's Health is called.
	HealthInterval time.Duration `yaml:"health_interval"`
	// StatusWindow is how far back Status looks for error rate and latency.
	StatusWindow time.Duration `yaml:"status_window"`
}

// ConnectorConfig configures one connector plugin process.
type ConnectorConfig struct {
	// Name identifies the connector in configuration, logs, metrics and
	// status; lowercase letters, digits, "-" and "_".
	Name string `yaml:"name"`
	// Type is "rest", "ogcfeatures", "postgres" (built in) or "external".
	Type string `yaml:"type"`
	// Path is the connector binary of an external connector.
	Path string `yaml:"path"`
	// SHA256 is the hex SHA-256 digest the external binary at Path must
	// have; it is checked before every start and restart.
	SHA256 string `yaml:"sha256"`
	// Settings is the type-specific configuration. The host hands it to the
	// plugin process as a JSON object in $TONGBAN_CONNECTOR_CONFIG.
	Settings map[string]any `yaml:"settings"`
	// CallTimeout bounds every call to the plugin; a caller's earlier
	// deadline wins.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// StartTimeout bounds starting the plugin process and its handshake.
	StartTimeout time.Duration `yaml:"start_timeout"`
	// MaxConcurrent is the bulkhead: at most this many calls are in flight to
	// the connector; further calls wait for a slot until their deadline.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Retries configures retrying failed reads.
	Retries RetryConfig `yaml:"retries"`
	// Breaker configures the connector's circuit breaker.
	Breaker BreakerConfig `yaml:"breaker"`
	// RestartBackoff bounds the wait between restarts of a crashed plugin.
	RestartBackoff Backoff `yaml:"restart_backoff"`
}

// RetryConfig configures retries of reads (Fetch). Only UNAVAILABLE and
// ABORTED are retried: never INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED,
// a deadline, or an open breaker.
type RetryConfig struct {
	// Attempts is the total number of attempts of a read; 1 disables
	// retries.
	Attempts int `yaml:"attempts"`
	// Backoff bounds the jittered exponential wait between attempts.
	Backoff Backoff `yaml:"backoff"`
}

// BreakerConfig configures a circuit breaker (sony/gobreaker).
type BreakerConfig struct {
	// ConsecutiveFailures is the number of consecutive department failures
	// that opens the breaker.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// Interval is how often the closed breaker clears its counts; 0 never.
	Interval time.Duration `yaml:"interval"`
	// Timeout is how long the breaker stays open before it lets probe
	// requests through (half-open).
	Timeout time.Duration `yaml:"timeout"`
	// HalfOpenMaxRequests is how many probe requests a half-open breaker
	// lets through; that many successes close it.
	HalfOpenMaxRequests int `yaml:"half_open_max_requests"`
}

// Backoff bounds an exponential backoff.
type Backoff struct {
	// Min is the first wait.
	Min time.Duration `yaml:"min"`
	// Max caps the wait.
	Max time.Duration `yaml:"max"`
}

// Defaults. They are applied by SetDefaults to zero fields, and nowhere else.
const (
	DefaultHealthInterval      = 30 * time.Second
	DefaultStatusWindow        = 5 * time.Minute
	DefaultCallTimeout         = 5 * time.Second
	DefaultStartTimeout        = 10 * time.Second
	DefaultMaxConcurrent       = 16
	DefaultAttempts            = 3
	DefaultRetryMin            = 50 * time.Millisecond
	DefaultRetryMax            = time.Second
	DefaultConsecutiveFailures = 5
	DefaultBreakerInterval     = time.Minute
	DefaultBreakerTimeout      = 30 * time.Second
	DefaultHalfOpenMaxRequests = 1
	DefaultRestartMin          = 200 * time.Millisecond
	DefaultRestartMax          = 30 * time.Second
)

// SetDefaults fills zero fields with the defaults above.
func (c *Config) SetDefaults() {
	def(&c.HealthInterval, DefaultHealthInterval)
	def(&c.StatusWindow, DefaultStatusWindow)
	for i := range c.Connectors {
		cc := &c.Connectors[i]
		def(&cc.CallTimeout, DefaultCallTimeout)
		def(&cc.StartTimeout, DefaultStartTimeout)
		def(&cc.MaxConcurrent, DefaultMaxConcurrent)
		def(&cc.Retries.Attempts, DefaultAttempts)
		def(&cc.Retries.Backoff.Min, DefaultRetryMin)
		def(&cc.Retries.Backoff.Max, DefaultRetryMax)
		def(&cc.Breaker.ConsecutiveFailures, DefaultConsecutiveFailures)
		def(&cc.Breaker.Interval, DefaultBreakerInterval)
		def(&cc.Breaker.Timeout, DefaultBreakerTimeout)
		def(&cc.Breaker.HalfOpenMaxRequests, DefaultHalfOpenMaxRequests)
		def(&cc.RestartBackoff.Min, DefaultRestartMin)
		def(&cc.RestartBackoff.Max, DefaultRestartMax)
	}
}

func def[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Validate reports every problem of a defaulted configuration, each naming
// its key, e.g. "connectors[1].breaker.timeout: must be positive".
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.HealthInterval <= 0 {
		bad("health_interval", "must be positive")
	}
	if c.StatusWindow <= 0 {
		bad("status_window", "must be positive")
	}
	names := map[string]int{}
	for i, cc := range c.Connectors {
		p := fmt.Sprintf("connectors[%d].", i)
		switch {
		case cc.Name == "":
			bad(p+"name", "is required")
		case !nameRE.MatchString(cc.Name):
			bad(p+"name", "%q must be lowercase letters, digits, '-' or '_'", cc.Name)
		default:
			if j, dup := names[cc.Name]; dup {
				bad(p+"name", "%q is also the name of connectors[%d]", cc.Name, j)
			}
			names[cc.Name] = i
		}
		switch cc.Type {
		case TypeREST, TypeOGCFeatures, TypePostgres:
			if cc.Path != "" || cc.SHA256 != "" {
				bad(p+"path", "only an external connector has a path and sha256")
			}
		case TypeExternal:
			if cc.Path == "" {
				bad(p+"path", "is required for an external connector")
			}
			if b, err := hex.DecodeString(cc.SHA256); err != nil || len(b) != 32 {
				bad(p+"sha256", "must be the 64 hex digits of the binary's SHA-256 digest")
			}
		case "":
			bad(p+"type", "is required (rest, ogcfeatures, postgres or external)")
		default:
			bad(p+"type", "unknown type %q (want rest, ogcfeatures, postgres or external)", cc.Type)
		}
		for _, d := range []struct {
			key string
			v   time.Duration
		}{
			{"call_timeout", cc.CallTimeout},
			{"start_timeout", cc.StartTimeout},
			{"retries.backoff.min", cc.Retries.Backoff.Min},
			{"retries.backoff.max", cc.Retries.Backoff.Max},
			{"breaker.timeout", cc.Breaker.Timeout},
			{"restart_backoff.min", cc.RestartBackoff.Min},
			{"restart_backoff.max", cc.RestartBackoff.Max},
		} {
			if d.v <= 0 {
				bad(p+d.key, "must be positive")
			}
		}
		if cc.Breaker.Interval < 0 {
			bad(p+"breaker.interval", "must not be negative")
		}
		if cc.Retries.Backoff.Max < cc.Retries.Backoff.Min {
			bad(p+"retries.backoff.max", "must not be less than retries.backoff.min")
		}
		if cc.RestartBackoff.Max < cc.RestartBackoff.Min {
			bad(p+"restart_backoff.max", "must not be less than restart_backoff.min")
		}
		for _, n := range []struct {
			key string
			v   int
		}{
			{"max_concurrent", cc.MaxConcurrent},
			{"retries.attempts", cc.Retries.Attempts},
			{"breaker.consecutive_failures", cc.Breaker.ConsecutiveFailures},
			{"breaker.half_open_max_requests", cc.Breaker.HalfOpenMaxRequests},
		} {
			if n.v < 1 {
				bad(p+n.key, "must be at least 1")
			}
		}
	}
	return errors.Join(errs...)
}
