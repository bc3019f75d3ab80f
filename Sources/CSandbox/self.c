// What a worker measures about itself while it sandboxes itself: read with
// plain syscalls, because this runs on every worker's start and Foundation's
// file reading costs a hundred times more than the read.
#define _GNU_SOURCE
#include "csandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sk_thread_count(void) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *line = strstr(buf, "\nThreads:");
    if (!line) return -1;
    return (int)strtol(line + strlen("\nThreads:"), NULL, 10);
}

// From /proc/net/dev, not if_nameindex: that asks netlink, which the worker's
// seccomp filter refuses.
int sk_only_loopback(void) {
    int fd = open("/proc/net/dev", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[8192];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    int line = 0, seen = 0, only = 1;
    for (char *p = buf, *next; p && *p; p = next) {
        next = strchr(p, '\n');
        if (next) *next++ = 0;
        if (line++ < 2) continue;          // two header lines
        char *colon = strchr(p, ':');
        if (!colon) continue;
        *colon = 0;
        while (*p == ' ') p++;
        seen++;
        if (strcmp(p, "lo") != 0) only = 0;
    }
    return only && seen == 1;
}

int sk_process_exited(pid_t pid, int pidfd) {
    if (pidfd >= 0) {
        // A pidfd becomes readable when its process exits.
        struct pollfd p = { pidfd, POLLIN, 0 };
        return poll(&p, 1, 0) > 0 ? 1 : 0;
    }
    // Our own child: ask without reaping it (WNOWAIT), so the pool's reaper
    // still gets its status.
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) return 0;
    return info.si_pid == pid ? 1 : 0;
}
