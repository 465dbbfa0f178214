package mask

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// cpuThroughput reports "MB/cpu-s": bytes processed per second of CPU time of the benchmarking
// thread. On a shared, overloaded machine wall-clock MB/s measures the neighbours; this measures
// the code. Call it after setup and defer the function it returns.
func cpuThroughput(b *testing.B, size int) func() {
	runtime.LockOSThread()
	start := threadCPU()
	return func() {
		used := threadCPU() - start
		runtime.UnlockOSThread()
		if used > 0 {
			b.ReportMetric(float64(size)*float64(b.N)/used.Seconds()/1e6, "MB/cpu-s")
		}
	}
}

func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
