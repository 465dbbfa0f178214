package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// The Go copies of the C event structs have the C layout: same size, and every field at the
// same offset with the same size, per the compiled object's BTF. If this fails, records are
// misread (wrong pids, paths cut at the wrong place) after a change to bpf/mcpwatch.bpf.c.
func TestLayoutMatchesBTF(t *testing.T) {
	spec, err := loadMcpwatch()
	if err != nil {
		t.Fatal(err)
	}
	for name, goType := range map[string]reflect.Type{
		"event_hdr":     reflect.TypeFor[rawHeader](),
		"exec_event":    reflect.TypeFor[rawExec](),
		"exit_event":    reflect.TypeFor[rawExit](),
		"open_event":    reflect.TypeFor[rawOpen](),
		"connect_event": reflect.TypeFor[rawConnect](),
	} {
		var s *btf.Struct
		if err := spec.Types.TypeByName(name, &s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		compareLayout(t, name, s, goType)
	}
	// The egress object: its event (with the header it repeats) and its trie key.
	espec, err := loadEgress()
	if err != nil {
		t.Fatal(err)
	}
	for name, goType := range map[string]reflect.Type{
		"event_hdr":     reflect.TypeFor[rawHeader](),
		"egress_event":  reflect.TypeFor[rawEgress](),
		"egress_key":    reflect.TypeFor[egressKey](),
		"egress_cgroup": reflect.TypeFor[egressCgroup](),
	} {
		var s *btf.Struct
		if err := espec.Types.TypeByName(name, &s); err != nil {
			t.Fatalf("egress %s: %v", name, err)
		}
		compareLayout(t, "egress "+name, s, goType)
	}
}

func compareLayout(t *testing.T, name string, s *btf.Struct, g reflect.Type) {
	t.Helper()
	if int(s.Size) != int(g.Size()) {
		t.Errorf("%s: C size %d, Go %s size %d", name, s.Size, g, g.Size())
	}
	if len(s.Members) != g.NumField() {
		t.Fatalf("%s: C has %d members, Go %s has %d fields", name, len(s.Members), g, g.NumField())
	}
	for i, m := range s.Members {
		f := g.Field(i)
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatal(err)
		}
		if int(m.Offset.Bytes()) != int(f.Offset) || size != int(f.Type.Size()) {
			t.Errorf("%s.%s: C offset %d size %d; Go %s.%s offset %d size %d",
				name, m.Name, m.Offset.Bytes(), size, g, f.Name, f.Offset, f.Type.Size())
		}
		if inner, ok := btf.UnderlyingType(m.Type).(*btf.Struct); ok {
			compareLayout(t, name+"."+m.Name, inner, f.Type)
		}
	}
}

// The committed bpf2go output is what the C in bpf/ compiles to. If this fails, someone changed
// the C (or the header) without `make generate`, and the binary would load stale programs.
func TestGeneratedUpToDate(t *testing.T) {
	for _, tool := range []string{"clang-19", "llvm-strip-19"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "installed by deploy/local/stack.sh install")
		}
	}
	dir := t.TempDir()
	for _, obj := range []string{"mcpwatch", "egress"} {
		src := "../../bpf/mcpwatch.bpf.c"
		if obj == "egress" {
			src = "../../bpf/egress.bpf.c"
		}
		cmd := exec.Command("go", "tool", "bpf2go", "-cc", "clang-19", "-strip", "llvm-strip-19", "-target", "bpfel",
			"-no-global-types", "-cflags", "-O2 -g -Wall -Werror", "-output-dir", dir, "-go-package", "ebpf",
			obj, src, "--", "-I../../bpf")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpf2go %s: %v\n%s", obj, err, out)
		}
		for _, f := range []string{obj + "_bpfel.go", obj + "_bpfel.o"} {
			want, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			have, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(want, have) {
				t.Errorf("%s differs from what bpf/ compiles to: run `make generate` and commit", f)
			}
		}
	}
}

func record[T any](v T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v))...)
}

func header(typ uint32) rawHeader {
	h := rawHeader{Type: typ, PID: 42, TID: 43, PPID: 1, UID: 1000, GID: 1000, TsNs: 5e9, CgroupID: 7, WatchedCgroupID: 6}
	copy(h.Comm[:], "sh")
	return h
}

// Records decode into the fields they carry; short and unknown records are refused, never
// misread. If this fails, the agent publishes wrong paths, arguments, ports or exit codes.
func TestDecode(t *testing.T) {
	ex := rawExec{Hdr: header(typeExec), ArgsLen: 13, ArgsTruncated: 1}
	copy(ex.Filename[:], "/bin/sh\x00junk")
	copy(ex.Args[:], "sh\x00-c\x00exit 3\x00garbage")
	op := rawOpen{Hdr: header(typeOpen), Dfd: -100, Syscall: 2, Flags: uint64(os.O_RDWR | os.O_CREATE)}
	copy(op.Path[:], "/etc/shadow")
	c4 := rawConnect{Hdr: header(typeConnect), Family: afInet, Port: 443, Fd: 3}
	copy(c4.Addr[:], []byte{10, 0, 0, 1})
	c6 := rawConnect{Hdr: header(typeConnect), Family: afInet6, Port: 8080}
	copy(c6.Addr[:], netip.MustParseAddr("2001:db8::1").AsSlice())
	exit := rawExit{Hdr: header(typeExit), ExitCode: 9} // killed by SIGKILL

	const off = int64(1e18)
	for _, tc := range []struct {
		name  string
		rec   []byte
		check func(Event) bool
	}{
		{"exec", record(ex), func(e Event) bool {
			return e.Kind == KindExec && e.Filename == "/bin/sh" && reflect.DeepEqual(e.Args, []string{"sh", "-c", "exit 3"}) &&
				e.ArgsTruncated && e.Syscall == "execve"
		}},
		{"open", record(op), func(e Event) bool {
			return e.Kind == KindOpen && e.Path == "/etc/shadow" && e.Syscall == "openat2" && e.Dfd == -100 && e.Flags == uint64(os.O_RDWR|os.O_CREATE)
		}},
		{"connect4", record(c4), func(e Event) bool { return e.Addr == netip.MustParseAddrPort("10.0.0.1:443") }},
		{"connect6", record(c6), func(e Event) bool { return e.Addr == netip.MustParseAddrPort("[2001:db8::1]:8080") }},
		{"exit", record(exit), func(e Event) bool { return e.Kind == KindExit && e.ExitSignal == 9 && e.ExitCode == 0 }},
	} {
		e, err := decode(tc.rec, off)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !tc.check(e) || e.PID != 42 || e.TID != 43 || e.PPID != 1 || e.UID != 1000 || e.CgroupID != 7 ||
			e.WatchedCgroupID != 6 || e.Comm != "sh" || !e.Time.Equal(time.Unix(0, off+5e9)) {
			t.Errorf("%s: decoded %+v", tc.name, e)
		}
		if _, err := decode(tc.rec[:len(tc.rec)-1], off); !errors.Is(err, errShortRecord) {
			t.Errorf("%s: short record: %v", tc.name, err)
		}
	}
	unknown := record(header(99))
	if _, err := decode(unknown, 0); !errors.Is(err, errUnknownType) {
		t.Errorf("unknown type: %v", err)
	}
	bad := c4
	bad.Family = 1
	if _, err := decode(record(bad), 0); err == nil {
		t.Error("connect with AF_UNIX decoded")
	}
	if _, err := decode(nil, 0); !errors.Is(err, errShortRecord) {
		t.Errorf("empty: %v", err)
	}
}

// decode never panics on arbitrary bytes (a kernel/userspace version mismatch, a corrupted
// record): it returns an error or an event.
func FuzzDecode(f *testing.F) {
	f.Add(record(rawExec{Hdr: header(typeExec), ArgsLen: 5000}))
	f.Add(record(rawConnect{Hdr: header(typeConnect), Family: afInet6}))
	f.Add(record(rawOpen{Hdr: header(typeOpen)}))
	f.Add(binary.LittleEndian.AppendUint32(nil, typeExit))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decode(b, 0)
		if err == nil && (e.Kind < KindExec || e.Kind > kindMax) {
			t.Fatalf("decoded unknown kind %d", e.Kind)
		}
	})
}
