package testenv

import "testing"

// CPUPerOp starts counting the CPU time (user and system, every thread) the
// process uses; the function it returns reports what was used since per
// operation of b, as the metric cpu-ns/op. Unlike ns/op, it counts the work
// of helper goroutines (an audit writer) and holds up on a machine shared
// with other load. Where the process's CPU time is not available it reports
// nothing.
func CPUPerOp(b *testing.B) (report func()) {
	cpu0, ok0 := processCPU()
	return func() {
		if cpu1, ok1 := processCPU(); ok0 && ok1 && b.N > 0 {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		}
	}
}
