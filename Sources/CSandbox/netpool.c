// Network namespaces made once and reused by later workers, never by two live ones.
//
// A new network namespace per worker costs the kernel its whole set-up (the
// loopback device, per-namespace sysctl and /proc tables, protocol state) on
// the spawn path, and its asynchronous teardown afterwards: together more than
// any other single part of a worker's start. A worker cannot change its
// namespace's configuration (it holds no capability over it: the namespace is
// owned by the host's user namespace, and its seccomp filter forbids making a
// user namespace of its own), so what one worker can leave behind is sockets,
// kernel-held connection state, and counters that its traffic moved. This file
// keeps a namespace only when none of that happened:
//  - it comes back only once its worker was reaped; the worker is pid 1 of its
//    own pid namespace, so by then every process of the job is gone too;
//  - no socket of any family exists in it (the per-namespace count in
//    `sockstat`, which covers sockets whose fd someone still holds), none in
//    TIME_WAIT and no fragment queued, and
//  - every per-namespace counter (`dev`, `snmp`, `snmp6`, `netstat`) reads the
//    same as when the namespace was made: no packet was ever sent in it.
// Anything else, including a failure to read, closes the fd and the kernel
// destroys the namespace as before. Steps that use loopback (MCP servers, a
// test server) therefore still get a fresh namespace after them.
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

enum { KEPT_MAX = 64, BOUND_MAX = 1024 };

static int home_fd = -1;
static sk_netns_t kept[KEPT_MAX];
static int kept_n;
static struct { pid_t pid; sk_netns_t ns; } bound[BOUND_MAX];
static int bound_n;

static char buf[16 * 1024];

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

// FNV-1a over the per-namespace counters: equal only if no packet moved any of them.
static int fingerprint(uint64_t *out) {
    static const char *const files[] = { "dev", "snmp", "snmp6", "netstat" };
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ssize_t n = read_net(files[i]);
        if (n < 0) return -1;
        for (ssize_t j = 0; j < n; j++) { h ^= (unsigned char)buf[j]; h *= 0x100000001b3ULL; }
        h ^= 0xff; h *= 0x100000001b3ULL;  // file boundary
    }
    *out = h;
    return 0;
}

// `sockstat` and `sockstat6` mix per-namespace counts (sockets used, inuse, tw,
// fragment memory) with host-wide ones (orphan, alloc, mem): each per-namespace
// one must be zero. 1 when all are, 0 when one is not, -1 when unreadable.
static int no_sockets(const char *name) {
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
    return seen > 0 ? 1 : -1;
}

int sk_netpool_init(void) {
    home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    return home_fd < 0 ? -errno : 0;
}

int sk_netpool_leave(void) { return setns(home_fd, CLONE_NEWNET); }

int sk_netpool_enter(const sk_netns_t *ns) { return setns(ns->fd, CLONE_NEWNET); }

static int make(sk_netns_t *ns, int *stage) {
    if (unshare(CLONE_NEWNET) < 0) { *stage = 1; return -1; }
    int r = sk_loopback_up();
    if (r == 0) {
        ns->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (ns->fd < 0) { *stage = 3; r = -1; }
        else ns->fingerprinted = fingerprint(&ns->fingerprint) == 0;
    } else {
        *stage = 2;
    }
    int saved = errno;
    if (sk_netpool_leave() < 0) abort();  // a serving thread stuck in a worker's namespace must not go on
    errno = saved;
    return r;
}

int sk_netpool_take(sk_netns_t *ns, int *stage) {
    if (kept_n > 0) {
        *ns = kept[--kept_n];
        return 0;
    }
    return make(ns, stage);
}

void sk_netpool_bind(pid_t pid, sk_netns_t ns) {
    if (bound_n == BOUND_MAX) { close(ns.fd); return; }
    bound[bound_n].pid = pid;
    bound[bound_n].ns = ns;
    bound_n++;
}

void sk_netpool_put_unused(sk_netns_t ns) {
    if (kept_n < KEPT_MAX) kept[kept_n++] = ns; else close(ns.fd);
}

static int unchanged(const sk_netns_t *ns) {
    if (!ns->fingerprinted || sk_netpool_enter(ns) < 0) return 0;
    uint64_t now = 0;
    int ok = no_sockets("sockstat") == 1 && no_sockets("sockstat6") == 1 &&
             fingerprint(&now) == 0 && now == ns->fingerprint;
    if (sk_netpool_leave() < 0) abort();
    return ok;
}

void sk_netpool_reaped(pid_t pid) {
    for (int i = 0; i < bound_n; i++) {
        if (bound[i].pid != pid) continue;
        sk_netns_t ns = bound[i].ns;
        bound[i] = bound[--bound_n];
        if (kept_n < KEPT_MAX && unchanged(&ns)) kept[kept_n++] = ns;
        else close(ns.fd);
        return;
    }
}
