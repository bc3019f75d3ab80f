// Worker spawn: clone into new namespaces, drop privileges, exec.
//
// Runs in a multi-threaded control plane, so the child may only make raw
// syscalls on memory the parent prepared: no malloc, no stdio, no locks.
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

enum stage {
    ST_USERNS = 1, ST_MOUNT_PRIVATE, ST_MOUNT_PROC, ST_LOOPBACK, ST_SETGROUPS, ST_SETGID,
    ST_SETUID, ST_PDEATHSIG, ST_NNP, ST_FDS, ST_EXEC, ST_NOEXEC, ST_MEMFD,
};

static const char *stage_name(int s) {
    switch (s) {
    case ST_USERNS: return "user namespace id maps";
    case ST_MOUNT_PRIVATE: return "mount --make-rprivate /";
    case ST_MOUNT_PROC: return "mount /proc";
    case ST_LOOPBACK: return "bring up loopback";
    case ST_SETGROUPS: return "setgroups";
    case ST_SETGID: return "setresgid";
    case ST_SETUID: return "setresuid";
    case ST_PDEATHSIG: return "PR_SET_PDEATHSIG";
    case ST_NNP: return "PR_SET_NO_NEW_PRIVS";
    case ST_FDS: return "fd setup";
    case ST_EXEC: return "execveat";
    case ST_NOEXEC: return "remount writable paths noexec";
    case ST_MEMFD: return "vm.memfd_noexec";
    default: return "clone";
    }
}

typedef struct {
    const sk_worker_spawn_t *spec;
    int err_pipe;             // write end, O_CLOEXEC: EOF on exec means success
    int parent_pidfd;         // this process, O_CLOEXEC, or -1: checked after PR_SET_PDEATHSIG
    char uid_map[64];
    char gid_map[64];
} child_args_t;

static void fail(int pipe_fd, int stage) {
    int msg[2] = { stage, errno };
    ssize_t unused = write(pipe_fd, msg, sizeof msg);
    (void)unused;
    _exit(127);
}

static int write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

int sk_loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) { close(s); return -1; }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    int r = ioctl(s, SIOCSIFFLAGS, &ifr);
    int saved = errno;
    close(s);
    errno = saved;
    return r;
}

// Moves `fd` to a number >= 64 so that dup2 onto 0..4 cannot clobber a source.
static int lift(int fd) {
    if (fd < 0) return -1;
    return fcntl(fd, F_DUPFD_CLOEXEC, 64);
}

static int child_main(void *arg) {
    child_args_t *a = arg;
    const sk_worker_spawn_t *s = a->spec;
    int ep = a->err_pipe;

    if (s->new_user_ns) {
        // We are uid 0 with full capabilities inside the new namespace until exec;
        // map ourselves 1:1 so files keep their owners.
        if (write_file("/proc/self/setgroups", "deny") < 0) fail(ep, ST_USERNS);
        if (write_file("/proc/self/uid_map", a->uid_map) < 0) fail(ep, ST_USERNS);
        if (write_file("/proc/self/gid_map", a->gid_map) < 0) fail(ep, ST_USERNS);
    }
    if (s->new_mount_ns) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail(ep, ST_MOUNT_PRIVATE);
        // A /proc that shows only this pid namespace: jobs cannot read the
        // command lines of host processes.
        if (s->mount_proc && s->new_pid_ns &&
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            fail(ep, ST_MOUNT_PROC);
        if (sk_harden_mounts(s->noexec, s->noexec_len) < 0) fail(ep, ST_NOEXEC);
    }
    // In the new pid namespace, before the uid change. A user namespace's root
    // may not write this global sysctl file: the worker then reports `memfd` missing.
    if (s->new_pid_ns && !s->new_user_ns && sk_memfd_noexec() < 0) fail(ep, ST_MEMFD);
    if (s->new_net_ns && sk_loopback_up() < 0) fail(ep, ST_LOOPBACK);

    // Raw syscalls, not glibc's wrappers: those broadcast the change to every
    // thread glibc believes exists, and in this single-threaded copy of a
    // multi-threaded parent they wait forever for threads that are not there.
    if (s->drop_uid && !s->new_user_ns) {
        if (syscall(SYS_setgroups, 0, NULL) < 0) fail(ep, ST_SETGROUPS);
        if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0) fail(ep, ST_SETGID);
        if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0) fail(ep, ST_SETUID);
    }
    // After the uid change: the kernel clears the death signal on credential changes.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) fail(ep, ST_PDEATHSIG);
    // The death signal covers only a parent that dies after it is set. One that
    // died during the set-up above would leave this child running on, holding
    // a worker uid, until it noticed by itself. Nobody reads `ep` any more.
    if (a->parent_pidfd >= 0 && sk_process_exited(0, a->parent_pidfd)) _exit(127);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(ep, ST_NNP);

    int ch = lift(s->channel_fd);
    int sc = lift(s->seccomp_fd);
    int lg = lift(s->log_fd);
    int ex = lift(s->exe_fd);
    int xf = lift(s->extra_fd);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (ch < 0 || ex < 0 || null_fd < 0) fail(ep, ST_FDS);
    if (dup2(null_fd, 0) < 0) fail(ep, ST_FDS);
    if (dup2(lg >= 0 ? lg : null_fd, 1) < 0) fail(ep, ST_FDS);
    if (dup2(lg >= 0 ? lg : null_fd, 2) < 0) fail(ep, ST_FDS);
    if (dup2(ch, 3) < 0) fail(ep, ST_FDS);
    if (sc >= 0) { if (dup2(sc, 4) < 0) fail(ep, ST_FDS); }
    else if (dup2(null_fd, 4) < 0) fail(ep, ST_FDS);
    if (xf >= 0 && dup2(xf, 5) < 0) fail(ep, ST_FDS);
    // Everything else is close-on-exec: nothing of the control plane leaks in.
    if (syscall(SYS_close_range, xf >= 0 ? 6U : 5U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) fail(ep, ST_FDS);

    syscall(SYS_execveat, ex, "", s->argv, s->envp, AT_EMPTY_PATH);
    fail(ep, ST_EXEC);
    return 127;
}

pid_t sk_spawn_worker(const sk_worker_spawn_t *spec, char *err, size_t errlen) {
    child_args_t a;
    memset(&a, 0, sizeof a);
    a.spec = spec;
    snprintf(a.uid_map, sizeof a.uid_map, "%u %u 1\n", (unsigned)getuid(), (unsigned)getuid());
    snprintf(a.gid_map, sizeof a.gid_map, "%u %u 1\n", (unsigned)getgid(), (unsigned)getgid());

    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    a.err_pipe = p[1];

    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        snprintf(err, errlen, "mmap stack: %s", strerror(errno));
        close(p[0]); close(p[1]);
        return -1;
    }
    int flags = SIGCHLD;
    if (spec->new_user_ns) flags |= CLONE_NEWUSER;
    if (spec->new_net_ns) flags |= CLONE_NEWNET;
    if (spec->new_mount_ns) flags |= CLONE_NEWNS;
    if (spec->new_pid_ns) flags |= CLONE_NEWPID;
    if (spec->new_ipc_ns) flags |= CLONE_NEWIPC;
    if (spec->new_uts_ns) flags |= CLONE_NEWUTS;

    a.parent_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    pid_t pid = clone(child_main, (char *)stack + stack_size, flags, &a);
    int clone_errno = errno;
    if (a.parent_pidfd >= 0) close(a.parent_pidfd);
    close(p[1]);
    munmap(stack, stack_size);
    if (pid < 0) {
        close(p[0]);
        snprintf(err, errlen, "clone: %s", strerror(clone_errno));
        return -1;
    }
    int msg[2];
    ssize_t n;
    do { n = read(p[0], msg, sizeof msg); } while (n < 0 && errno == EINTR);
    close(p[0]);
    if (n == (ssize_t)sizeof msg) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        snprintf(err, errlen, "%s: %s", stage_name(msg[0]), strerror(msg[1]));
        return -1;
    }
    return pid;
}

int sk_wait_pid(pid_t pid, int nohang) {
    int status = 0;
    pid_t r;
    do { r = waitpid(pid, &status, nohang ? WNOHANG : 0); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    if (r == 0) return -EAGAIN;
    return status;
}
