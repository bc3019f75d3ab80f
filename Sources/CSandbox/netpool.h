// Network namespaces kept by the worker template for reuse (netpool.c).
// Internal to the template: not part of the module's public header.
#ifndef SK_NETPOOL_H
#define SK_NETPOOL_H

#include <stdint.h>
#include <sys/types.h>

/// A network namespace with `lo` up, held by its fd, and what its tables and
/// counters read when it was made (`state` NULL: they could not be read, and the
/// namespace is never kept).
typedef struct {
    int fd;
    char *state;
    size_t state_len;
} sk_netns_t;

/// Opens the calling thread's own network namespace, to come back to. 0 or -errno.
int sk_netpool_init(void);

/// A namespace for the next worker: a kept one, else a new one. Fills `ns`;
/// returns 0, or -1 with errno and the failed stage in `*stage` (1: unshare,
/// 2: loopback, 3: anything else).
int sk_netpool_take(sk_netns_t *ns, int *stage);

/// Moves the calling thread into `ns` (before a fork) or back home (after it).
/// A failed return home leaves the thread where it is: the pool then refuses
/// every take (`sk_netpool_broken`), and the template stops serving.
int sk_netpool_enter(const sk_netns_t *ns);
int sk_netpool_leave(void);
int sk_netpool_broken(void);

/// Closes a namespace: the kernel destroys it once nothing else holds it.
void sk_netpool_discard(sk_netns_t ns);

/// Closes every kept namespace: a retired template hands out no more.
void sk_netpool_drain(void);

/// `ns` now belongs to the live worker `pid`: it comes back with `reaped`.
void sk_netpool_bind(pid_t pid, sk_netns_t ns);

/// `pid` was reaped: its namespace is kept for another worker if nothing in it
/// changed, else closed (and the kernel destroys it).
void sk_netpool_reaped(pid_t pid);

/// A namespace no worker ran in (a failed fork): kept.
void sk_netpool_put_unused(sk_netns_t ns);

#endif
