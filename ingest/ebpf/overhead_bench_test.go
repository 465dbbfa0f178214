package ebpf

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Two workloads of an MCP server's tools in its sandbox, as shell scripts (the shell is the
// server). "tools" reads and parses files in the shell itself, opening one per round and spawning
// a process every tenth: what a file or query tool does. "exec-storm" spawns three processes per
// round and little else: each exec also opens the dynamic linker's libraries, so every round is
// dozens of traced events — the worst case for the probes.
var sandboxWorkloads = []struct{ name, script string }{
	{"tools", `i=0; while [ $i -lt 300 ]; do n=0; while read -r l; do n=$((n+1)); done < /etc/services; ` +
		`[ $((i % 10)) -eq 0 ] && /bin/true; i=$((i+1)); done`},
	{"exec-storm", `i=0; while [ $i -lt 200 ]; do cat /etc/passwd /etc/hostname >/dev/null; /bin/true; (: ); i=$((i+1)); done`},
}

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
	run := func(script string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command("/bin/sh", "-c", script)
				cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("workload: %v %s", err, out)
				}
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
	for _, w := range sandboxWorkloads {
		for range 2 { // alternate, so drift of a shared machine hits both alike
			b.Run(w.name+"/unwatched", run(w.script))
			if err := p.Watch(st.Ino); err != nil {
				b.Fatal(err)
			}
			b.Run(w.name+"/watched", run(w.script))
			if err := p.Unwatch(st.Ino); err != nil {
				b.Fatal(err)
			}
		}
	}
	close(stop)
	if n := <-drained; n == 0 {
		b.Fatal("no events read while watched: the benchmark measured nothing")
	}
}
