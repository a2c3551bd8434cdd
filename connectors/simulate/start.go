package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Config configures Start.
type Config struct {
	// Seed of the generated data; 0 means DefaultSeed. Ignored when Data is
	// set.
	Seed uint64 `yaml:"seed"`
	// Data, when set, is served instead of generating from Seed.
	Data *Data `yaml:"-"`
	// Ports on 127.0.0.1; 0 picks a free port.
	MarketPort    int `yaml:"market_port"`
	ApprovalPort  int `yaml:"approval_port"`
	ResourcesPort int `yaml:"resources_port"`
	// Faults applied to all three departments at start; each can be changed
	// later through the department's Control.
	Faults Faults `yaml:"faults"`
	// Logger receives start and stop messages; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	for _, p := range []struct {
		name string
		port int
	}{{"market_port", c.MarketPort}, {"approval_port", c.ApprovalPort}, {"resources_port", c.ResourcesPort}} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("%s %d is not a port number", p.name, p.port)
		}
	}
	if c.Faults.Latency < 0 || c.Faults.Jitter < 0 {
		return errors.New("faults: latency and jitter must not be negative")
	}
	if c.Faults.FailureRate < 0 || c.Faults.FailureRate > 1 {
		return fmt.Errorf("faults: failure_rate %v is not between 0 and 1", c.Faults.FailureRate)
	}
	return nil
}

// Departments are the three simulated departments served on loopback.
type Departments struct {
	Data      *Data
	Market    *Market
	Approval  *Approval
	Resources *Resources
	// Base URLs, e.g. "http://127.0.0.1:41234", without a trailing slash.
	MarketURL, ApprovalURL, ResourcesURL string

	servers []*http.Server
	cancel  context.CancelFunc
	stop    func() bool
	once    sync.Once
	err     error
	log     *slog.Logger
}

// Start generates (or takes) the data and serves the three departments on
// 127.0.0.1. They stop on Close or when ctx ends.
func Start(ctx context.Context, cfg Config) (*Departments, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simulated departments: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	data := cfg.Data
	if data == nil {
		seed := cfg.Seed
		if seed == 0 {
			seed = DefaultSeed
		}
		data = Generate(seed)
	}
	d := &Departments{
		Data:      data,
		Market:    NewMarket(data, cfg.Faults),
		Approval:  NewApproval(data, cfg.Faults),
		Resources: NewResources(data, cfg.Faults),
		log:       log,
	}
	// Requests, long polls included, end when the departments stop.
	baseCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	var lc net.ListenConfig
	for _, s := range []struct {
		name string
		port int
		h    http.Handler
		url  *string
	}{
		{"market", cfg.MarketPort, d.Market, &d.MarketURL},
		{"approval", cfg.ApprovalPort, d.Approval, &d.ApprovalURL},
		{"resources", cfg.ResourcesPort, d.Resources, &d.ResourcesURL},
	} {
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
		if err != nil {
			_ = d.Close()
			return nil, fmt.Errorf("simulated %s department: listening: %w", s.name, err)
		}
		srv := &http.Server{
			Handler:           s.h,
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return baseCtx },
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		d.servers = append(d.servers, srv)
		*s.url = "http://" + ln.Addr().String()
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("simulated department stopped", "department", s.name, "err", err)
			}
		}()
		log.Info("simulated department listening", "department", s.name, "url", *s.url)
	}
	d.stop = context.AfterFunc(ctx, func() { _ = d.Close() })
	return d, nil
}

// Close stops the three servers, ending requests in flight. It is safe to
// call more than once.
func (d *Departments) Close() error {
	d.once.Do(func() {
		if d.stop != nil {
			d.stop()
		}
		d.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		for _, s := range d.servers {
			if err := s.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				_ = s.Close()
			}
		}
		if d.err = errors.Join(errs...); d.err != nil {
			d.err = fmt.Errorf("stopping simulated departments: %w", d.err)
		}
	})
	return d.err
}
