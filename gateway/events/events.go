// Package events carries the gateway's events between nodes: change events
// of department records (cache invalidation and change subscriptions), grant
// changes (policy propagation) and, later, the audit export. The Bus is
// small on purpose: publish bytes under a key, subscribe with a group.
// Memory is the single-node default; Kafka (segmentio/kafka-go) carries the
// same topics between several gateway nodes.
package events

import (
	"context"
	"time"
)

// Topics used by the gateway.
const (
	// TopicChanges carries change events of department records, protobuf
	// v1.ChangeEvent, keyed by dataset and record id.
	TopicChanges = "tongban.changes"
	// TopicGrants carries grant changes (policy.Change, JSON), keyed by
	// grant id.
	TopicGrants = "tongban.grants"
	// TopicAudit is reserved for the audit export.
	TopicAudit = "tongban.audit"
)

// Topics lists every topic the gateway uses, for creation at start.
var Topics = []string{TopicChanges, TopicGrants, TopicAudit}

// Message is one event received from a topic.
type Message struct {
	Topic string
	Key   []byte
	Value []byte
	// Time is when the event was published.
	Time time.Time
}

// Handler handles one message. An error is logged and the message is not
// retried: handlers retry what they must themselves and are idempotent,
// because delivery is at least once.
type Handler func(ctx context.Context, m Message) error

// Publisher publishes events.
type Publisher interface {
	// Publish appends one event to topic and returns once the bus holds it
	// durably (for Kafka, acknowledged by all in-sync replicas). Events with
	// the same key are delivered in publication order.
	Publish(ctx context.Context, topic string, key, value []byte) error
}

// Subscriber delivers events.
type Subscriber interface {
	// Subscribe delivers the events of topic to fn, one at a time, until
	// ctx ends or stop is called (stop waits for an fn call in progress).
	// Every group receives every event; within a group each event goes to
	// one subscriber. No event published after Subscribe returns is missed;
	// a group seen for the first time also receives the events the bus
	// still retains (Kafka: from the start of the topic), so handlers must
	// tolerate history. Use a group per node (e.g. "tongban-cache-<node>")
	// for events every node must see.
	Subscribe(ctx context.Context, topic, group string, fn Handler) (stop func(), err error)
}

// Bus is a Publisher and a Subscriber.
type Bus interface {
	Publisher
	Subscriber
	// Close stops every subscription and releases connections.
	Close() error
}
