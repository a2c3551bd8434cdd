package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaOptions configure the Kafka bus.
type KafkaOptions struct {
	// Brokers are bootstrap addresses, host:port.
	Brokers []string
	// Topics are created at start when missing (default: Topics).
	Topics []string
	// Partitions of a created topic (default 3). Events with the same key
	// stay in order.
	Partitions int
	// ReplicationFactor of a created topic (default 1; use 3 on a
	// production cluster so that acks=all means something).
	ReplicationFactor int
	// SessionTimeout of the consumer groups (default 10s): how long a dead
	// node keeps its partitions before the group rebalances.
	SessionTimeout time.Duration
	// Logger receives delivery problems (slog.Default when nil).
	Logger *slog.Logger
}

// Kafka is a Bus on Kafka through segmentio/kafka-go. Publish waits for the
// acknowledgement of all in-sync replicas (acks=all). Each Subscribe runs a
// consumer-group reader; the caller chooses the group id, and the gateway
// uses one group per node for the topics every node must see (so every node
// gets every event, and a restarted node resumes from its committed offset).
// Kafka's own retries carry it over broker restarts.
type Kafka struct {
	opts KafkaOptions
	log  *slog.Logger
	w    *kafka.Writer

	mu     sync.Mutex
	closed bool
	stops  map[int]func()
	next   int
}

var _ Bus = (*Kafka)(nil)

// NewKafka connects to the brokers, creates the missing topics and returns
// the bus.
func NewKafka(ctx context.Context, o KafkaOptions) (*Kafka, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers configured")
	}
	if o.Topics == nil {
		o.Topics = Topics
	}
	if o.Partitions <= 0 {
		o.Partitions = 3
	}
	if o.ReplicationFactor <= 0 {
		o.ReplicationFactor = 1
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	k := &Kafka{opts: o, log: o.Logger, stops: map[int]func(){}}
	if err := k.createTopics(ctx); err != nil {
		return nil, err
	}
	k.w = &kafka.Writer{
		Addr:                   kafka.TCP(o.Brokers...),
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           5 * time.Millisecond,
		MaxAttempts:            5,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
		ErrorLogger:            kafkaLogger(o.Logger, "kafka writer"),
	}
	return k, nil
}

func (k *Kafka) createTopics(ctx context.Context) error {
	c := &kafka.Client{Addr: kafka.TCP(k.opts.Brokers...), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range k.opts.Topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: k.opts.Partitions, ReplicationFactor: k.opts.ReplicationFactor})
	}
	resp, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("kafka: creating topics at %v: %w", k.opts.Brokers, err)
	}
	for topic, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("kafka: creating topic %s: %w", topic, err)
		}
	}
	return nil
}

// Publish implements Publisher.
func (k *Kafka) Publish(ctx context.Context, topic string, key, value []byte) error {
	if err := k.w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: key, Value: value, Time: time.Now()}); err != nil {
		return fmt.Errorf("publishing to %s: %w", topic, err)
	}
	return nil
}

// Subscribe implements Subscriber. A group with no committed offset starts
// at the beginning of the topic; offsets are committed after fn returns.
func (k *Kafka) Subscribe(ctx context.Context, topic, group string, fn Handler) (func(), error) {
	if group == "" {
		return nil, errors.New("subscribing: a group is required")
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           k.opts.Brokers,
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		MinBytes:          1,
		MaxBytes:          10 << 20,
		MaxWait:           250 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    k.opts.SessionTimeout,
		RebalanceTimeout:  k.opts.SessionTimeout,
		JoinGroupBackoff:  200 * time.Millisecond,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		ErrorLogger:       kafkaLogger(k.log, "kafka reader "+topic+"/"+group),
	})
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		cancel()
		r.Close()
		return nil, errClosed
	}
	k.next++
	id := k.next
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			if err := r.Close(); err != nil {
				k.log.Warn("closing kafka reader", "topic", topic, "group", group, "err", err)
			}
			k.mu.Lock()
			delete(k.stops, id)
			k.mu.Unlock()
		})
	}
	k.stops[id] = stop
	k.mu.Unlock()
	go func() {
		defer close(done)
		k.consume(sctx, r, topic, group, fn)
	}()
	// A subscription whose context ends is released as if stopped: its
	// reader (and the consumer-group membership it holds) is closed.
	context.AfterFunc(sctx, stop)
	return stop, nil
}

func (k *Kafka) consume(ctx context.Context, r *kafka.Reader, topic, group string, fn Handler) {
	backoff := 50 * time.Millisecond
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.WarnContext(ctx, "reading events", "topic", topic, "group", group, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if err := fn(ctx, Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Time: m.Time}); err != nil {
			k.log.WarnContext(ctx, "event handler failed", "topic", topic, "group", group,
				"partition", m.Partition, "offset", m.Offset, "err", err)
		}
		if err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil {
			// The event was handled; it may be delivered again after a
			// rebalance (at least once).
			k.log.WarnContext(ctx, "committing event offset", "topic", topic, "group", group, "err", err)
		}
	}
}

// Close implements Bus: it stops every subscription and the writer.
func (k *Kafka) Close() error {
	k.mu.Lock()
	k.closed = true
	stops := make([]func(), 0, len(k.stops))
	for _, s := range k.stops {
		stops = append(stops, s)
	}
	k.mu.Unlock()
	for _, s := range stops {
		s()
	}
	if err := k.w.Close(); err != nil {
		return fmt.Errorf("closing kafka writer: %w", err)
	}
	return nil
}

// Healthy reports whether a broker answers, for /readyz detail.
func (k *Kafka) Healthy(ctx context.Context) error {
	var d net.Dialer
	var last error
	for _, b := range k.opts.Brokers {
		c, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
	}
	return fmt.Errorf("kafka: no broker reachable: %w", last)
}

// kafkaLogger adapts kafka-go's printf logger to slog at debug level: its
// errors are retried internally and surface through our own logs.
func kafkaLogger(log *slog.Logger, who string) kafka.LoggerFunc {
	return func(format string, args ...any) {
		log.Debug(who+": "+fmt.Sprintf(format, args...), "component", "kafka-go")
	}
}

// partitionKey is the key of a change event: ordered per record.
func partitionKey(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, p...)
	}
	return b
}
