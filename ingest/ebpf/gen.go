package ebpf

// The C programs live in bpf/; bpf2go compiles them with the clang and llvm-strip that
// deploy/local/stack.sh installs (Debian's clang-19, llvm-19) and writes mcpwatch_bpfel.go and
// mcpwatch_bpfel.o here. Both are committed; `make generate` reruns this, and
// TestGeneratedUpToDate fails when they drift from the C.
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -no-global-types -cflags "-O2 -g -Wall -Werror" mcpwatch ../../bpf/mcpwatch.bpf.c -- -I../../bpf

// egress.bpf.c is a second object: its cgroup programs need CAP_NET_ADMIN rather than
// CAP_PERFMON, so they load only when egress enforcement is asked for ([NewEgress]).
//go:generate go tool bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -no-global-types -cflags "-O2 -g -Wall -Werror" egress ../../bpf/egress.bpf.c -- -I../../bpf
