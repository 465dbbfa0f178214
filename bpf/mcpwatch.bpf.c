// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//go:build ignore

/*
 * mcpwatch's kernel probes: process exec and exit, file opens and outbound connects of the
 * processes in watched cgroups (MCP server sandboxes) and their descendant cgroups, sent to user
 * space through one ring buffer. Every program starts with the cgroup filter, so processes
 * elsewhere cost one helper call per cgroup level and a hash lookup each.
 *
 * The layouts of the event structs are mirrored in ingest/ebpf (types.go); a test there checks
 * them against this object's BTF.
 */
#include "headers/kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_CGROUP_DEPTH 16
#define PATH_MAX_LEN 256
#define ARGS_MAX_LEN 1024
#define TASK_COMM_LEN 16

enum event_type {
	EVENT_EXEC = 1,
	EVENT_EXIT = 2,
	EVENT_OPEN = 3,
	EVENT_CONNECT = 4,
};

enum open_syscall {
	SYS_OPEN = 0,
	SYS_OPENAT = 1,
	SYS_OPENAT2 = 2,
};

/* Indexes of the per-CPU stats array. */
enum stat_index {
	STAT_SUBMITTED = 0,
	STAT_RESERVE_FAILED = 1,
	STAT_MAX = 2,
};

struct event_hdr {
	u32 type;
	u32 pid;  /* thread group id: the process id user space knows */
	u32 tid;
	u32 ppid;
	u32 uid;
	u32 gid;
	u64 ts_ns; /* bpf_ktime_get_boot_ns */
	u64 cgroup_id; /* the process's own cgroup */
	u64 watched_cgroup_id; /* the watched cgroup it is in: itself or its nearest watched ancestor */
	char comm[TASK_COMM_LEN];
};

struct exec_event {
	struct event_hdr hdr;
	u32 args_len; /* bytes of args used: NUL-separated argv */
	u32 args_truncated;
	char filename[PATH_MAX_LEN];
	char args[ARGS_MAX_LEN];
};

struct exit_event {
	struct event_hdr hdr;
	s32 exit_code; /* the wait status: code << 8 | signal */
	u32 _pad;
};

struct open_event {
	struct event_hdr hdr;
	s32 dfd;
	u32 syscall;
	u64 flags;
	char path[PATH_MAX_LEN];
};

struct connect_event {
	struct event_hdr hdr;
	u16 family;
	u16 port; /* host byte order */
	s32 fd;
	u8 addr[16]; /* IPv4 in the first 4 bytes */
};

/* Watched cgroup ids (the key) → the value user space chose (unused by the programs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, u32);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* user space may resize before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

/*
 * The ring buffer wakes the reader only when this many bytes wait; user space also polls with a
 * deadline, so a quiet ring is still drained. 0 wakes on every event.
 */
volatile const u64 wakeup_bytes = 64 << 10;

/* Anchor the event types in BTF so bpf2go and the layout test see them. */
const struct exec_event *unused_exec __attribute__((unused));
const struct exit_event *unused_exit __attribute__((unused));
const struct open_event *unused_open __attribute__((unused));
const struct connect_event *unused_connect __attribute__((unused));

static __always_inline void count(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

/*
 * watched_cgroup returns the id of the watched cgroup the current task is in — its own cgroup or
 * the nearest watched ancestor — or 0. Ancestors are walked from the root down, so the deepest
 * match wins.
 */
static __always_inline u64 watched_cgroup(void)
{
	u64 self = bpf_get_current_cgroup_id();
	if (bpf_map_lookup_elem(&watched, &self))
		return self;
	u64 found = 0;
	for (int level = 1; level < MAX_CGROUP_DEPTH; level++) {
		u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (id == 0 || id == self)
			break;
		if (bpf_map_lookup_elem(&watched, &id))
			found = id;
	}
	return found;
}

static __always_inline void *reserve(u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		count(STAT_RESERVE_FAILED);
	return e;
}

static __always_inline void submit(void *e)
{
	u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	count(STAT_SUBMITTED);
}

static __always_inline void fill_hdr(struct event_hdr *h, u32 type, u64 watched_id)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u64 uid_gid = bpf_get_current_uid_gid();

	h->type = type;
	h->pid = pid_tgid >> 32;
	h->tid = (u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (u32)uid_gid;
	h->gid = uid_gid >> 32;
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->watched_cgroup_id = watched_id;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	u64 wid = watched_cgroup();
	if (!wid)
		return 0;
	struct exec_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr(&e->hdr, EVENT_EXEC, wid);

	u32 off = BPF_CORE_READ(ctx, __data_loc_filename) & 0xFFFF;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + off);

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	u64 len = end > start ? end - start : 0;
	e->args_truncated = len > ARGS_MAX_LEN;
	if (len > ARGS_MAX_LEN)
		len = ARGS_MAX_LEN;
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) == 0)
		e->args_len = len;
	else
		e->args_len = 0;
	submit(e);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((u32)pid_tgid != (u32)(pid_tgid >> 32))
		return 0; /* a thread, not the process */
	u64 wid = watched_cgroup();
	if (!wid)
		return 0;
	struct exit_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr(&e->hdr, EVENT_EXIT, wid);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->_pad = 0;
	submit(e);
	return 0;
}

static __always_inline int emit_open(u32 sys, s32 dfd, const char *path, u64 flags)
{
	u64 wid = watched_cgroup();
	if (!wid)
		return 0;
	struct open_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr(&e->hdr, EVENT_OPEN, wid);
	e->dfd = dfd;
	e->syscall = sys;
	e->flags = flags;
	if (bpf_probe_read_user_str(e->path, sizeof(e->path), path) < 0)
		e->path[0] = 0;
	submit(e);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int handle_open(struct trace_event_raw_sys_enter *ctx)
{
	return emit_open(SYS_OPEN, -100 /* AT_FDCWD */, (const char *)BPF_CORE_READ(ctx, args[0]),
			 BPF_CORE_READ(ctx, args[1]));
}

SEC("tracepoint/syscalls/sys_enter_openat")
int handle_openat(struct trace_event_raw_sys_enter *ctx)
{
	return emit_open(SYS_OPENAT, (s32)BPF_CORE_READ(ctx, args[0]), (const char *)BPF_CORE_READ(ctx, args[1]),
			 BPF_CORE_READ(ctx, args[2]));
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int handle_openat2(struct trace_event_raw_sys_enter *ctx)
{
	u64 flags = 0;
	/* struct open_how starts with u64 flags */
	bpf_probe_read_user(&flags, sizeof(flags), (void *)BPF_CORE_READ(ctx, args[2]));
	return emit_open(SYS_OPENAT2, (s32)BPF_CORE_READ(ctx, args[0]), (const char *)BPF_CORE_READ(ctx, args[1]),
			 flags);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int handle_connect(struct trace_event_raw_sys_enter *ctx)
{
	u64 wid = watched_cgroup();
	if (!wid)
		return 0;
	const void *uaddr = (const void *)BPF_CORE_READ(ctx, args[1]);
	u16 family = 0;
	if (bpf_probe_read_user(&family, sizeof(family), uaddr) < 0)
		return 0;
	if (family != AF_INET && family != AF_INET6)
		return 0; /* unix sockets and others: not egress */
	struct connect_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr(&e->hdr, EVENT_CONNECT, wid);
	e->family = family;
	e->fd = (s32)BPF_CORE_READ(ctx, args[0]);
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	e->port = 0;
	if (family == AF_INET) {
		struct sockaddr_in_abi sa = {};
		if (bpf_probe_read_user(&sa, sizeof(sa), uaddr) == 0) {
			e->port = __builtin_bswap16(sa.sin_port);
			__builtin_memcpy(e->addr, &sa.sin_addr, 4);
		}
	} else {
		struct sockaddr_in6_abi sa = {};
		if (bpf_probe_read_user(&sa, sizeof(sa), uaddr) == 0) {
			e->port = __builtin_bswap16(sa.sin6_port);
			__builtin_memcpy(e->addr, sa.sin6_addr, 16);
		}
	}
	submit(e);
	return 0;
}
