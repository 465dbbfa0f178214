// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//go:build ignore

/*
 * mcpwatch's egress enforcement: cgroup/connect4, connect6, sendmsg4 and sendmsg6 programs,
 * attached once to the sandboxes' parent cgroup, that refuse (return 0: the syscall fails with
 * EPERM) an outbound connect or UDP send of a process whose sandbox cgroup — its own cgroup or an
 * ancestor, like the tracepoints' filter — is
 *   - blocked (a quarantine or block_egress control), or
 *   - under an allow-list that no rule (CIDR and port) of it matches.
 * Loopback gets no exception: stdio MCP servers talk to the gateway over pipes, and loopback is
 * where a host's unauthenticated services (metadata proxies, admin ports, brokers) listen.
 *
 * Every refusal is a record on the probes' ring buffer (user space loads this object with the
 * `events` and `stats` maps of mcpwatch.bpf.c's object) and a per-CPU counter.
 *
 * struct event_hdr and fill_hdr repeat mcpwatch.bpf.c's; TestLayoutMatchesBTF checks both
 * objects' layouts against the same Go struct.
 */
#include "headers/kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_CGROUP_DEPTH 16
#define TASK_COMM_LEN 16
#define BPF_MAP_TYPE_LPM_TRIE 11

#define EVENT_EGRESS_DENIED 5

enum egress_rule {
	EGRESS_BLOCKED = 1,     /* the sandbox's egress is blocked */
	EGRESS_NOT_ALLOWED = 2, /* no rule of the sandbox's allow-list matches */
};

enum egress_hook {
	HOOK_CONNECT4 = 1,
	HOOK_CONNECT6 = 2,
	HOOK_SENDMSG4 = 3,
	HOOK_SENDMSG6 = 4,
};

/* Indexes of the shared stats map (mcpwatch.bpf.c's enum stat_index). */
enum stat_index {
	STAT_SUBMITTED = 0,
	STAT_RESERVE_FAILED = 1,
	STAT_MAX = 2,
};

/* Indexes of egress_stats. */
enum egress_stat_index {
	EGRESS_STAT_DENIED_BLOCKED = 0,
	EGRESS_STAT_DENIED_NOT_ALLOWED = 1,
	EGRESS_STAT_MAX = 2,
};

/* uapi/linux/bpf.h: the prefix of the context the programs read. */
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;    /* network byte order */
	__u32 user_ip6[4]; /* network byte order */
	__u32 user_port;   /* network byte order, in the low 16 bits */
	__u32 family;
	__u32 type;
	__u32 protocol;
};

struct event_hdr {
	u32 type;
	u32 pid;
	u32 tid;
	u32 ppid;
	u32 uid;
	u32 gid;
	u64 ts_ns;
	u64 cgroup_id;
	u64 watched_cgroup_id; /* here: the cgroup whose egress entry decided */
	char comm[TASK_COMM_LEN];
};

struct egress_event {
	struct event_hdr hdr;
	u16 family;
	u16 port; /* host byte order */
	u32 policy; /* the allow-list's id, 0 if none */
	u8 rule;    /* enum egress_rule */
	u8 hook;    /* enum egress_hook */
	u8 protocol; /* IPPROTO_TCP, IPPROTO_UDP, ... */
	u8 _pad;
	u8 addr[16]; /* IPv4 in the first 4 bytes */
	u32 _pad2;
};

/* What user space set for a sandbox cgroup. */
struct egress_cgroup {
	u32 blocked; /* non-zero: refuse everything */
	u32 policy;  /* non-zero: the allow-list in egress_allow that applies */
};

/*
 * An allow-list rule. LPM trie keys are matched bit by bit from `policy` on: the policy and port
 * always match in full (48 bits), then up to 128 bits of the address; IPv4 is stored and looked
 * up as ::ffff:a.b.c.d, so one trie serves both families and IPv4-mapped IPv6 destinations.
 * Port 0 means any port.
 */
struct egress_key {
	u32 prefixlen;
	u32 policy;
	u16 port; /* host byte order */
	u8 addr[16];
	u8 _pad[2]; /* never in a prefix; zeroed so the key is fully initialized */
};

#define KEY_FULL_BITS (32 + 16 + 128)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, struct egress_cgroup);
} egress_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct egress_key);
	__type(value, u32);
} egress_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EGRESS_STAT_MAX);
	__type(key, u32);
	__type(value, u64);
} egress_stats SEC(".maps");

/* Replaced by mcpwatch.bpf.c's maps of the same names at load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

const struct egress_event *unused_egress __attribute__((unused));
const struct egress_key *unused_egress_key __attribute__((unused));

static __always_inline void count_in(void *map, u32 idx)
{
	u64 *v = bpf_map_lookup_elem(map, &idx);
	if (v)
		*v += 1;
}

static __always_inline void fill_hdr(struct event_hdr *h, u64 watched_id)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u64 uid_gid = bpf_get_current_uid_gid();

	h->type = EVENT_EGRESS_DENIED;
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

static __always_inline int deny(struct bpf_sock_addr *ctx, u8 hook, u8 rule, u64 cg, u32 policy, u16 port,
				const u8 *addr16)
{
	count_in(&egress_stats, rule == EGRESS_BLOCKED ? EGRESS_STAT_DENIED_BLOCKED : EGRESS_STAT_DENIED_NOT_ALLOWED);
	struct egress_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_in(&stats, STAT_RESERVE_FAILED);
		return 0;
	}
	fill_hdr(&e->hdr, cg);
	e->family = hook == HOOK_CONNECT4 || hook == HOOK_SENDMSG4 ? AF_INET : AF_INET6;
	e->port = port;
	e->policy = policy;
	e->rule = rule;
	e->hook = hook;
	e->protocol = (u8)ctx->protocol;
	e->_pad = 0;
	e->_pad2 = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	if (e->family == AF_INET)
		__builtin_memcpy(e->addr, addr16 + 12, 4);
	else
		__builtin_memcpy(e->addr, addr16, 16);
	/* Refusals are rare and an operator waits for them: wake the reader now. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	count_in(&stats, STAT_SUBMITTED);
	return 0;
}

/*
 * decide returns 1 to let the connect or send through and 0 to refuse it. The current task's
 * cgroup and its ancestors are looked up; a blocked one refuses, and the deepest one with an
 * allow-list decides by it.
 */
static __always_inline int decide(struct bpf_sock_addr *ctx, u8 hook, const u8 *addr16)
{
	u64 self = bpf_get_current_cgroup_id();
	u64 blocked_cg = 0, policy_cg = 0;
	u32 policy = 0;

	for (int level = 1; level <= MAX_CGROUP_DEPTH; level++) {
		u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (id == 0)
			break;
		struct egress_cgroup *c = bpf_map_lookup_elem(&egress_cgroups, &id);
		if (c) {
			if (c->blocked)
				blocked_cg = id;
			if (c->policy) {
				policy = c->policy;
				policy_cg = id;
			}
		}
		if (id == self)
			break;
	}
	if (!blocked_cg && !policy_cg)
		return 1;

	u16 port = __builtin_bswap16((u16)ctx->user_port);
	if (blocked_cg)
		return deny(ctx, hook, EGRESS_BLOCKED, blocked_cg, policy, port, addr16);

	struct egress_key key = {.prefixlen = KEY_FULL_BITS, .policy = policy, .port = port};
	__builtin_memcpy(key.addr, addr16, 16);
	if (bpf_map_lookup_elem(&egress_allow, &key))
		return 1;
	key.port = 0;
	if (bpf_map_lookup_elem(&egress_allow, &key))
		return 1;
	return deny(ctx, hook, EGRESS_NOT_ALLOWED, policy_cg, policy, port, addr16);
}

static __always_inline int decide4(struct bpf_sock_addr *ctx, u8 hook)
{
	u8 addr[16] = {};
	addr[10] = 0xff;
	addr[11] = 0xff;
	u32 ip4 = ctx->user_ip4;
	__builtin_memcpy(&addr[12], &ip4, 4);
	return decide(ctx, hook, addr);
}

static __always_inline int decide6(struct bpf_sock_addr *ctx, u8 hook)
{
	u32 ip6[4];
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	return decide(ctx, hook, (const u8 *)ip6);
}

SEC("cgroup/connect4")
int egress_connect4(struct bpf_sock_addr *ctx)
{
	return decide4(ctx, HOOK_CONNECT4);
}

SEC("cgroup/connect6")
int egress_connect6(struct bpf_sock_addr *ctx)
{
	return decide6(ctx, HOOK_CONNECT6);
}

SEC("cgroup/sendmsg4")
int egress_sendmsg4(struct bpf_sock_addr *ctx)
{
	return decide4(ctx, HOOK_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int egress_sendmsg6(struct bpf_sock_addr *ctx)
{
	return decide6(ctx, HOOK_SENDMSG6);
}
