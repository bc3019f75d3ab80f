// Network namespaces made once and reused by later workers, never by two live ones.
//
// A new network namespace per worker costs the kernel its whole set-up (the
// loopback device, per-namespace sysctl and /proc tables, protocol state) on
// the spawn path, and its asynchronous teardown afterwards: together more than
// any other single part of a worker's start. A worker cannot change its
// namespace's configuration (it holds no capability over it: the namespace is
// owned by the host's user namespace, and its seccomp filter forbids making a
// user namespace of its own), and seccomp kills it for the two ways found to
// leave state behind without a socket (IPv6 flow labels, which linger after
// their socket, and multicast memberships, whose reports the kernel sends
// later). What is left for a worker to change is sockets, kernel-held
// connection state, and what its traffic moves. This file keeps a namespace
// only when none of that happened:
//  - the template uses it only for workers that are pid 1 of their own pid
//    namespace (template.c), so when the worker has been reaped every process
//    of its job is gone too;
//  - no socket of any family exists in it (the per-namespace counts in
//    `sockstat` and `sockstat6`, which include sockets whose fd a process
//    outside still holds), none in TIME_WAIT and no fragment queued, and
//  - every per-namespace table and counter below reads, byte for byte, as it
//    did when the namespace was made.
// Anything else, including a failure to read, closes the fd and the kernel
// destroys the namespace as before. So does any use of loopback (MCP servers,
// a test server): such a step's namespace is never handed on.
//
// Runs only on the template's serving thread: no locking.
#define _GNU_SOURCE
#include "netpool.h"
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KEPT_MAX = 64, BOUND_MAX = 1024, FILE_MAX = 16 * 1024 };

static int home_fd = -1;
static int broken;
static sk_netns_t kept[KEPT_MAX];
static int kept_n;
static struct { pid_t pid; sk_netns_t ns; } bound[BOUND_MAX];
static int bound_n;

static char buf[FILE_MAX];

// The calling thread's view of a /proc/net file into `buf`; its length, or -1.
static ssize_t read_net(const char *name) {
    char path[64] = "/proc/thread-self/net/";
    strncat(path, name, sizeof path - strlen(path) - 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { close(fd); return -1; }
        if (r == 0) break;
        n += (size_t)r;
        if (n == sizeof buf - 1) { close(fd); return -1; }  // larger than any of these files
    }
    close(fd);
    buf[n] = 0;
    return (ssize_t)n;
}

// The per-namespace tables and counters, concatenated with a NUL after each
// file. Traffic moves the counters (`dev`, `snmp`, `snmp6`, `netstat`), and the
// tables hold state that outlives sockets: multicast groups and filters, flow
// labels, IPv6 routes and their per-CPU copies. Into a malloc'd buffer, or NULL.
static char *snapshot(size_t *len) {
    static const char *const files[] = {
        "dev", "snmp", "snmp6", "netstat", "igmp", "igmp6", "mcfilter", "mcfilter6",
        "ip6_flowlabel", "rt6_stats", "ipv6_route",
    };
    size_t cap = 0, n = 0;
    char *out = NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ssize_t got = read_net(files[i]);
        if (got < 0) { free(out); return NULL; }
        if (n + (size_t)got + 1 > cap) {
            cap = (n + (size_t)got + 1) * 2;
            char *grown = realloc(out, cap);
            if (!grown) { free(out); return NULL; }
            out = grown;
        }
        memcpy(out + n, buf, (size_t)got + 1);
        n += (size_t)got + 1;
    }
    *len = n;
    return out;
}

// `sockstat` and `sockstat6` mix per-namespace counts (sockets used, inuse, tw,
// fragment memory) with host-wide ones (orphan, alloc, mem): every per-namespace
// one must be there and be zero. 1 when all are, 0 when not, -1 when unreadable.
static int no_sockets(const char *name, int expected) {
    if (read_net(name) < 0) return -1;
    static const char *const per_ns[] = { "used", "inuse", "tw", "memory" };
    char *save = NULL;
    int seen = 0;
    for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        for (size_t i = 0; i < sizeof per_ns / sizeof per_ns[0]; i++) {
            if (strcmp(tok, per_ns[i]) != 0) continue;
            char *value = strtok_r(NULL, " \n", &save);
            if (!value || strcmp(value, "0") != 0) return 0;
            seen++;
            break;
        }
    }
    // sockstat: used; inuse of TCP, UDP, UDPLITE, RAW, FRAG; tw; FRAG memory.
    // sockstat6: inuse of the five; FRAG6 memory. A kernel that prints fewer
    // is one this check was not written for.
    return seen >= expected ? 1 : -1;
}

int sk_netpool_init(void) {
    home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    return home_fd < 0 ? -errno : 0;
}

int sk_netpool_broken(void) { return broken; }

int sk_netpool_leave(void) {
    if (setns(home_fd, CLONE_NEWNET) == 0) return 0;
    broken = 1;
    return -1;
}

int sk_netpool_enter(const sk_netns_t *ns) { return setns(ns->fd, CLONE_NEWNET); }

void sk_netpool_discard(sk_netns_t ns) {
    if (ns.fd >= 0) close(ns.fd);
    free(ns.state);
}

static int make(sk_netns_t *ns, int *stage) {
    ns->fd = -1;
    ns->state = NULL;
    if (unshare(CLONE_NEWNET) < 0) { *stage = 1; return -1; }
    int r = sk_loopback_up();
    if (r == 0) {
        ns->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (ns->fd < 0) { *stage = 3; r = -1; }
        else ns->state = snapshot(&ns->state_len);
    } else {
        *stage = 2;
    }
    int saved = errno;
    if (sk_netpool_leave() < 0) {
        sk_netpool_discard(*ns);
        ns->fd = -1;
        ns->state = NULL;
        *stage = 3;
        return -1;
    }
    errno = saved;
    return r;
}

int sk_netpool_take(sk_netns_t *ns, int *stage) {
    if (broken) { *stage = 3; errno = EIO; return -1; }
    if (kept_n > 0) {
        *ns = kept[--kept_n];
        return 0;
    }
    return make(ns, stage);
}

void sk_netpool_bind(pid_t pid, sk_netns_t ns) {
    if (bound_n == BOUND_MAX) { sk_netpool_discard(ns); return; }
    bound[bound_n].pid = pid;
    bound[bound_n].ns = ns;
    bound_n++;
}

void sk_netpool_put_unused(sk_netns_t ns) {
    if (kept_n < KEPT_MAX && ns.state && !broken) kept[kept_n++] = ns; else sk_netpool_discard(ns);
}

void sk_netpool_drain(void) {
    while (kept_n > 0) sk_netpool_discard(kept[--kept_n]);
}

static int unchanged(const sk_netns_t *ns) {
    if (!ns->state || broken || sk_netpool_enter(ns) < 0) return 0;
    size_t len = 0;
    char *now = NULL;
    int ok = no_sockets("sockstat", 8) == 1 && no_sockets("sockstat6", 6) == 1 &&
             (now = snapshot(&len)) != NULL && len == ns->state_len && memcmp(now, ns->state, len) == 0;
    free(now);
    if (sk_netpool_leave() < 0) return 0;
    return ok;
}

void sk_netpool_reaped(pid_t pid) {
    for (int i = 0; i < bound_n; i++) {
        if (bound[i].pid != pid) continue;
        sk_netns_t ns = bound[i].ns;
        bound[i] = bound[--bound_n];
        if (kept_n < KEPT_MAX && unchanged(&ns)) kept[kept_n++] = ns;
        else sk_netpool_discard(ns);
        return;
    }
}
