//go:build unix

package audit

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has used,
// on every thread: benchmarks report it per operation, which counts the
// work of helper goroutines (the audit writer) and holds up better than
// wall time on a machine shared with other load.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
