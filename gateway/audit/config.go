package audit

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied by Config.WithDefaults to zero fields.
const (
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = 10 * time.Second
	DefaultSegmentBytes       = 64 << 20
	DefaultQueueDepth         = 4096
	DefaultMaxBatch           = 1024
)

// Config configures a Log.
type Config struct {
	// Dir is the directory holding the segment files and the checkpoints
	// file. It is created if missing. One process at a time may open it.
	Dir string `yaml:"dir"`
	// Origin names the log in its checkpoints, e.g. "tongban.gov/node-1".
	// It must equal the name of the signing key.
	Origin string `yaml:"origin"`
	// SigningKey is the Ed25519 signing key in the signed-note private key
	// text format ("PRIVATE+KEY+<name>+<hash>+<key>"), as made by
	// GenerateKey. Exactly one of SigningKey and SigningKeyFile is set.
	SigningKey string `yaml:"signing_key"`
	// SigningKeyFile is a file holding SigningKey.
	SigningKeyFile string `yaml:"signing_key_file"`
	// CheckpointEvery signs a checkpoint whenever this many entries were
	// appended since the last one.
	CheckpointEvery uint64 `yaml:"checkpoint_every"`
	// CheckpointInterval signs a checkpoint this often when there are new
	// entries.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// SegmentBytes is the size after which a new segment file is started.
	// A segment may exceed it by one batch.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// QueueDepth is how many appends may wait for the writer; further
	// appenders block (backpressure), they are never dropped.
	QueueDepth int `yaml:"queue_depth"`
	// MaxBatch is the most entries written with one write and fsync.
	MaxBatch int `yaml:"max_batch"`
}

// WithDefaults returns c with every zero tunable set to its default.
func (c Config) WithDefaults() Config {
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = DefaultQueueDepth
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	return c
}

// Validate reports the first problem with c, after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("audit: dir is required"))
	}
	if c.Origin == "" {
		errs = append(errs, errors.New("audit: origin is required"))
	}
	if (c.SigningKey == "") == (c.SigningKeyFile == "") {
		errs = append(errs, errors.New("audit: exactly one of signing_key and signing_key_file is required"))
	}
	if c.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("audit: checkpoint_interval %v is negative", c.CheckpointInterval))
	}
	if c.SegmentBytes < 4096 || c.SegmentBytes > 1<<31 {
		errs = append(errs, fmt.Errorf("audit: segment_bytes %d is outside [4096, 2 GiB]", c.SegmentBytes))
	}
	if c.QueueDepth < 1 {
		errs = append(errs, fmt.Errorf("audit: queue_depth %d is below 1", c.QueueDepth))
	}
	if c.MaxBatch < 1 {
		errs = append(errs, fmt.Errorf("audit: max_batch %d is below 1", c.MaxBatch))
	}
	return errors.Join(errs...)
}
