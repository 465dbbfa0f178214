package ebpf

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// sandboxWorkload is what an MCP server's tools do in its sandbox, exec- and file-heavy: each round
// spawns processes (`cat`, `true`, a subshell) and reads files — the events the probes trace.
const sandboxWorkload = `i=0; while [ $i -lt 200 ]; do cat /etc/passwd /etc/hostname >/dev/null; /bin/true; (: ); i=$((i+1)); done`

// BenchmarkSandboxOverhead runs the same sandboxWorkload in a sandbox-like cgroup unwatched and watched
// (probes loaded, the cgroup in the watched map, the events read off the ring buffer), side by side
// in one run. The goal is ≤ 3 % overhead; compare the two ns/op figures (run with -count
// to see the noise of a shared machine).
func BenchmarkSandboxOverhead(b *testing.B) {
	root := requireKernelB(b)
	cg := mkCgroupB(b, root)
	var st syscall.Stat_t
	if err := syscall.Stat(cg, &st); err != nil {
		b.Fatal(err)
	}
	dir, err := os.Open(cg)
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	run := func(b *testing.B) {
		for b.Loop() {
			cmd := exec.Command("/bin/sh", "-c", sandboxWorkload)
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("sandboxWorkload: %v %s", err, out)
			}
		}
	}
	p, err := Load(Config{RingBytes: 8 << 20, QueueLen: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	stop := make(chan struct{})
	drained := make(chan uint64)
	go func() { // the agent's side: read every event
		var n uint64
		for {
			select {
			case <-p.Events():
				n++
			case <-stop:
				drained <- n
				return
			}
		}
	}()
	for range 2 { // alternate, so drift of a shared machine hits both alike
		b.Run("unwatched", run)
		if err := p.Watch(st.Ino); err != nil {
			b.Fatal(err)
		}
		b.Run("watched", run)
		if err := p.Unwatch(st.Ino); err != nil {
			b.Fatal(err)
		}
	}
	close(stop)
	if n := <-drained; n == 0 {
		b.Fatal("no events read while watched: the benchmark measured nothing")
	}
}
