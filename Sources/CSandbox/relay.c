// The byte relay of the worker's egress forwarder: copies between two
// connected sockets until both directions are done. Blocking, on the caller's
// thread: a step has few connections, and the worker runs no event loop for them.
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static int pump(int from, int to) {
    char buf[16384];
    ssize_t n = read(from, buf, sizeof buf);
    if (n < 0) return errno == EINTR || errno == EAGAIN ? 1 : -1;
    if (n == 0) return 0;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        off += w;
    }
    return 1;
}

int64_t sk_relay(int a, int b, int idle_timeout_ms) {
    int open_ab = 1, open_ba = 1;
    int64_t total = 0;
    while (open_ab || open_ba) {
        struct pollfd p[2] = { { a, open_ab ? POLLIN : 0, 0 }, { b, open_ba ? POLLIN : 0, 0 } };
        int r = poll(p, 2, idle_timeout_ms > 0 ? idle_timeout_ms : -1);
        if (r < 0) { if (errno == EINTR) continue; return -errno; }
        if (r == 0) return total;   // idle too long
        if (open_ab && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            int s = pump(a, b);
            if (s <= 0) { open_ab = 0; shutdown(b, SHUT_WR); if (s < 0) break; } else total++;
        }
        if (open_ba && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            int s = pump(b, a);
            if (s <= 0) { open_ba = 0; shutdown(a, SHUT_WR); if (s < 0) break; } else total++;
        }
    }
    return total;
}
