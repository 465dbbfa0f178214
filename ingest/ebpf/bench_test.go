package ebpf

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRingBuffer measures events per second from a watched cgroup through the ring buffer
// and the reader into the queue's consumer: a workload process does b.N file opens from two
// threads; the benchmark drains until every event the kernel produced is accounted for. It
// reports events/s and the losses at each point (reserve failures, queue drops), and fails if
// any event is unaccounted for.
//
//	go test -run '^$' -bench RingBuffer -benchtime 2000000x ./ingest/ebpf
func BenchmarkRingBuffer(b *testing.B) {
	root := requireKernelB(b)
	p, err := Load(Config{RingBytes: 32 << 20, QueueLen: 1 << 18})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	cg := mkCgroupB(b, root)
	var st syscall.Stat_t
	if err := syscall.Stat(cg, &st); err != nil {
		b.Fatal(err)
	}
	if err := p.Watch(st.Ino); err != nil {
		b.Fatal(err)
	}
	exe, _ := os.Executable()
	dir, err := os.Open(cg)
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	cmd := newHelper(exe, "open-loop", "/nonexistent/mcpwatch-bench", strconv.Itoa(b.N), int(dir.Fd()))

	done := make(chan uint64)
	stop := make(chan struct{})
	go func() {
		var n uint64
		for {
			select {
			case <-p.Events():
				n++
			case <-stop:
				for {
					select {
					case <-p.Events():
						n++
					default:
						done <- n
						return
					}
				}
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("workload: %v %s", err, out)
	}
	// Drain: wait until the ring is empty and everything produced is read or counted.
	var s Stats
	for {
		if s, err = p.Stats(); err != nil {
			b.Fatal(err)
		}
		if s.Read+s.QueueDropped+s.DecodeErrors >= s.Submitted {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	consumed := <-done
	if s.Submitted+s.ReserveFailed < uint64(b.N) {
		b.Fatalf("kernel saw %d events (+%d lost) for %d opens", s.Submitted, s.ReserveFailed, b.N)
	}
	if unaccounted := s.Submitted - s.Read - s.QueueDropped - s.DecodeErrors; unaccounted != 0 || consumed != s.Read {
		b.Fatalf("unaccounted events: %d; consumed %d of %d read (%+v)", unaccounted, consumed, s.Read, s)
	}
	b.ReportMetric(float64(s.Submitted+s.ReserveFailed)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(s.ReserveFailed), "reserve_lost")
	b.ReportMetric(float64(s.QueueDropped), "queue_dropped")
}

// BenchmarkOpenOutsideWatched measures what the probes cost a process outside every watched
// cgroup: one failing open(2) with no probes loaded, and with the probes loaded and another
// cgroup watched.
//
//	go test -run '^$' -bench OpenOutsideWatched ./ingest/ebpf
func BenchmarkOpenOutsideWatched(b *testing.B) {
	root := requireKernelB(b)
	open := func(b *testing.B) {
		for b.Loop() {
			if fd, err := syscall.Open("/nonexistent/mcpwatch-bench", syscall.O_RDONLY, 0); err == nil {
				syscall.Close(fd)
			}
		}
	}
	b.Run("no-probes", open)
	p, err := Load(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(mkCgroupB(b, root), &st); err != nil {
		b.Fatal(err)
	}
	if err := p.Watch(st.Ino); err != nil {
		b.Fatal(err)
	}
	b.Run("probes-unwatched", open)
}

func requireKernelB(b *testing.B) string {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	root, err := findCgroup2()
	if err != nil {
		b.Skip(err)
	}
	return root
}

func mkCgroupB(b *testing.B, root string) string {
	b.Helper()
	path := root + "/mcpwatch-ebpf-bench-" + strconv.Itoa(os.Getpid())
	if err := os.Mkdir(path, 0o755); err != nil && !os.IsExist(err) {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for range 100 {
			if syscall.Rmdir(path) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return path
}
