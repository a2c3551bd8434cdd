package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the host's Prometheus metrics, labelled by connector name.
type metrics struct {
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	breaker  *prometheus.GaugeVec
	restarts *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
	up       *prometheus.GaugeVec
	healthy  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tongban_connector_calls_total",
			Help: "Fetch calls to department connectors by connector, dataset and outcome (ok or the error reason in lowercase).",
		}, []string{"connector", "dataset", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tongban_connector_call_duration_seconds",
			Help:    "Duration of fetch calls to department connectors, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"connector", "dataset"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tongban_connector_breaker_state",
			Help: "Circuit breaker state per connector: 0 closed, 1 half-open, 2 open.",
		}, []string{"connector"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tongban_connector_restarts_total",
			Help: "Connector plugin processes found dead and restarted.",
		}, []string{"connector"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tongban_connector_in_flight",
			Help: "Calls in flight to each connector (bulkhead slots in use).",
		}, []string{"connector"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tongban_connector_up",
			Help: "1 when the connector's plugin process is running.",
		}, []string{"connector"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tongban_connector_healthy",
			Help: "1 when the connector's last health check passed.",
		}, []string{"connector"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.calls, m.latency, m.breaker, m.restarts, m.inFlight, m.up, m.healthy} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering connector metrics: %w", err)
		}
	}
	return m, nil
}

// window keeps the most recent calls of one connector for Status.
type window struct {
	span time.Duration

	mu        sync.Mutex
	samples   []sample // ring buffer
	next      int
	calls     uint64
	lastErr   string
	lastErrAt time.Time
}

type sample struct {
	at     time.Time
	took   time.Duration
	failed bool
}

const windowSize = 1024

func newWindow(span time.Duration) *window {
	return &window{span: span, samples: make([]sample, 0, windowSize)}
}

func (w *window) add(s sample, errText string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if len(w.samples) < windowSize {
		w.samples = append(w.samples, s)
	} else {
		w.samples[w.next] = s
		w.next = (w.next + 1) % windowSize
	}
	if errText != "" {
		w.lastErr, w.lastErrAt = errText, s.at
	}
}

func (w *window) setLastError(at time.Time, errText string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr, w.lastErrAt = errText, at
}

// stats returns the share of failed calls and the latency quantiles over the
// calls of the last span before now, and the totals.
func (w *window) stats(now time.Time) (errRate float64, p50, p99 time.Duration, calls uint64, lastErr string, lastErrAt time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var took []time.Duration
	failed := 0
	for _, s := range w.samples {
		if now.Sub(s.at) > w.span {
			continue
		}
		took = append(took, s.took)
		if s.failed {
			failed++
		}
	}
	if len(took) > 0 {
		slices.Sort(took)
		errRate = float64(failed) / float64(len(took))
		p50 = took[quantileIndex(len(took), 0.50)]
		p99 = took[quantileIndex(len(took), 0.99)]
	}
	return errRate, p50, p99, w.calls, w.lastErr, w.lastErrAt
}

// quantileIndex is the nearest-rank index of quantile q in n sorted values.
func quantileIndex(n int, q float64) int {
	i := int(q*float64(n)+0.999999) - 1
	return min(max(i, 0), n-1)
}

// hclogAdapter returns an hclog.Logger for go-plugin that writes to l at
// level and above. go-plugin relays the plugin's own log lines through it.
func hclogAdapter(l *slog.Logger, level slog.Level, name string) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   name,
		Level:  toHCLevel(level),
		Output: io.Discard,
	})
	il.RegisterSink(slogSink{l: l, level: level})
	return il
}

type slogSink struct {
	l     *slog.Logger
	level slog.Level
}

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	sl := fromHCLevel(level)
	if sl < s.level {
		return
	}
	s.l.Log(context.Background(), sl, msg, append([]any{"logger", name}, args...)...)
}

func toHCLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func fromHCLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
