//go:build !linux

package audit

import "os"

// syncData makes f's written data durable: fsync where fdatasync is not
// available.
func syncData(f *os.File) error { return f.Sync() }
