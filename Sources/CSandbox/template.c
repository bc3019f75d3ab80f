// Worker template: fork a warmed-up worker image instead of exec'ing a new one.
//
// A freshly exec'd worker spends most of its start in the Swift runtime's first
// protocol-conformance lookups and metadata instantiation, and every worker
// pays it again. The template pays it once, then forks workers that inherit
// the warm caches; each child builds its own namespaces, uid and fds here, and
// its Landlock, rlimits and seccomp in Swift before any second thread exists.
//
// Forking a Swift process is safe only under two conditions this file keeps:
//  - The fork happens on a thread that has never run Swift. The Swift runtime
//    and the Synchronization module cache the thread id in thread-local storage
//    for their priority-inheritance futexes; a child of the main thread would
//    inherit a stale id, and the first contended lock would deadlock.
//  - No other thread is running: the template's main thread waits in
//    pthread_join while this one serves, and nothing else was ever started
//    (libdispatch and the concurrency runtime stay uninitialised in the
//    template, so the child may use them).
#define _GNU_SOURCE
#include "csandbox.h"
#include "netpool.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define SK_TPL_MAGIC 0x736b5432u /* "skT2" */

typedef struct {
    uint32_t magic;
    uint32_t flags;
    uint32_t uid;
    uint32_t gid;
    uint32_t spec_len;
    uint32_t noexec_len;   ///< NUL-terminated paths after the spec (see harden.c)
    uint32_t has_log;
} tpl_request_t;

typedef struct {
    int32_t pid;    // > 0 on success
    int32_t stage;  // the failed stage otherwise
    int32_t err;    // its errno
} tpl_reply_t;

typedef struct {
    int32_t pid;
    int32_t status;
} tpl_exit_t;

enum tpl_stage {
    TS_REQUEST = 1, TS_PIDNS, TS_FORK, TS_UNSHARE, TS_MOUNT_PRIVATE, TS_MOUNT_PROC, TS_LOOPBACK,
    TS_SETGROUPS, TS_SETGID, TS_SETUID, TS_PDEATHSIG, TS_NNP, TS_FDS, TS_NOEXEC, TS_MEMFD, TS_NETNS,
};

static const char *tpl_stage_name(int s) {
    switch (s) {
    case TS_REQUEST: return "request";
    case TS_PIDNS: return "new pid namespace";
    case TS_FORK: return "fork";
    case TS_UNSHARE: return "unshare namespaces";
    case TS_MOUNT_PRIVATE: return "mount --make-rprivate /";
    case TS_MOUNT_PROC: return "mount /proc";
    case TS_LOOPBACK: return "bring up loopback";
    case TS_SETGROUPS: return "setgroups";
    case TS_SETGID: return "setresgid";
    case TS_SETUID: return "setresuid";
    case TS_PDEATHSIG: return "PR_SET_PDEATHSIG";
    case TS_NNP: return "PR_SET_NO_NEW_PRIVS";
    case TS_FDS: return "fd setup";
    case TS_NOEXEC: return "remount writable paths noexec";
    case TS_MEMFD: return "vm.memfd_noexec";
    case TS_NETNS: return "enter network namespace";
    default: return "template";
    }
}

// ---------------------------------------------------------------------------
// Template side

typedef struct {
    int ctl;
    int exits;
    int sigfd;
    int pidns;      // our own pid namespace, to reset pid_for_children after each fork
    int self;       // a pidfd on the template itself, or -1: checked by each child after PR_SET_PDEATHSIG
    sk_tpl_entry_t entry;
    int children;
} tpl_state_t;

// A worker's network namespace comes from the pool (netpool.c) only when it is
// also pid 1 of its own pid namespace: its reaping then means every process of
// its job is gone, and nothing can still be using the namespace when it is
// checked and handed on.
static int pooled_net(uint32_t flags) { return (flags & SK_TPL_NET) && (flags & SK_TPL_PID); }

// Static: the child reads its spec from here after fork, with nothing to free.
static char spec_buf[SK_TPL_MAX_SPEC];

static void child_fail(int pipe_fd, int stage) {
    int msg[2] = { stage, errno };
    ssize_t unused = write(pipe_fd, msg, sizeof msg);
    (void)unused;
    _exit(127);
}

// In the forked child: one thread, glibc's fork bookkeeping done, so plain
// syscalls are safe. Fail closed: any error exits before the worker code runs.
static void child_setup(const tpl_request_t *rq, int channel, int log_fd, int ep, int parent) {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);

    // A pooled network namespace is already ours: the serving thread entered it
    // before the fork (netpool.c). Without a pid namespace of its own, a worker's
    // processes could outlive it, so it makes a namespace of its own, used once.
    int own_net = (rq->flags & SK_TPL_NET) && !pooled_net(rq->flags);
    int ns = own_net ? CLONE_NEWNET : 0;
    if (rq->flags & SK_TPL_MOUNT) ns |= CLONE_NEWNS;
    if (rq->flags & SK_TPL_IPC) ns |= CLONE_NEWIPC;
    if (rq->flags & SK_TPL_UTS) ns |= CLONE_NEWUTS;
    if (ns && unshare(ns) < 0) child_fail(ep, TS_UNSHARE);
    if (rq->flags & SK_TPL_MOUNT) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) child_fail(ep, TS_MOUNT_PRIVATE);
        if ((rq->flags & SK_TPL_MOUNT_PROC) && (rq->flags & SK_TPL_PID) &&
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            child_fail(ep, TS_MOUNT_PROC);
        if (sk_harden_mounts(spec_buf + rq->spec_len, rq->noexec_len) < 0) child_fail(ep, TS_NOEXEC);
    }
    if ((rq->flags & SK_TPL_PID) && sk_memfd_noexec() < 0) child_fail(ep, TS_MEMFD);
    if (own_net && sk_loopback_up() < 0) child_fail(ep, TS_LOOPBACK);
    if (rq->flags & SK_TPL_DROP_UID) {
        if (syscall(SYS_setgroups, 0, NULL) < 0) child_fail(ep, TS_SETGROUPS);
        if (syscall(SYS_setresgid, rq->gid, rq->gid, rq->gid) < 0) child_fail(ep, TS_SETGID);
        if (syscall(SYS_setresuid, rq->uid, rq->uid, rq->uid) < 0) child_fail(ep, TS_SETUID);
    }
    // After the uid change, which clears it. The parent is the template's serving
    // thread, which lives as long as the template: the template's death takes
    // its workers, and the control plane's death takes the template.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) child_fail(ep, TS_PDEATHSIG);
    // The death signal covers only a parent that dies after it is set: a
    // template that died during the set-up above would leave this child running
    // on, holding a worker uid, until it noticed by itself (a spare waits at low
    // priority). Nobody reads `ep` any more.
    if (parent >= 0 && sk_process_exited(0, parent)) _exit(127);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail(ep, TS_NNP);
    // A spare worker starts and waits at low priority, so making it does not
    // slow the runs in progress; the control plane restores the normal priority
    // of all its threads (PRIO_USER: the worker is the only process of its uid)
    // when it hands the worker a job. Inherited by every thread it starts.
    if (rq->flags & SK_TPL_DROP_UID) setpriority(PRIO_PROCESS, 0, SK_TPL_SPARE_NICE);

    // The same fd layout an exec'd worker gets: 0 /dev/null, 1-2 log, 3 channel,
    // 4 the seccomp program (the template's own fd 4, inherited).
    int ch = fcntl(channel, F_DUPFD_CLOEXEC, 64);
    int lg = log_fd >= 0 ? fcntl(log_fd, F_DUPFD_CLOEXEC, 64) : -1;
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (ch < 0 || null_fd < 0 || (log_fd >= 0 && lg < 0)) child_fail(ep, TS_FDS);
    if (dup2(null_fd, 0) < 0) child_fail(ep, TS_FDS);
    if (dup2(lg >= 0 ? lg : null_fd, 1) < 0) child_fail(ep, TS_FDS);
    if (dup2(lg >= 0 ? lg : null_fd, 2) < 0) child_fail(ep, TS_FDS);
    if (dup2(ch, 3) < 0) child_fail(ep, TS_FDS);
    // Everything else goes: the template's control socket and exit pipe, its
    // signalfd, and `ep`, whose closing tells the template the set-up worked.
    if (syscall(SYS_close_range, 5U, ~0U, 0) < 0) child_fail(ep, TS_FDS);
}

// Up to two fds ride along with a control message (SCM_RIGHTS).
typedef union { char buf[CMSG_SPACE(2 * sizeof(int))]; struct cmsghdr align; } fd_buf_t;

static void attach_fds(struct msghdr *m, fd_buf_t *u, const int *fds, size_t n) {
    if (n == 0) return;
    memset(u, 0, sizeof *u);
    m->msg_control = u->buf;
    m->msg_controllen = CMSG_SPACE(n * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
}

// The fds a received message carried, up to `max`; any beyond are closed.
static size_t take_fds(struct msghdr *m, int *fds, size_t max) {
    size_t n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (n < max) fds[n++] = fd; else close(fd);
        }
    }
    return n;
}

static void send_reply(int ctl, pid_t pid, int stage, int err, int pidfd) {
    tpl_reply_t r = { pid, stage, err };
    struct iovec iov = { &r, sizeof r };
    fd_buf_t u;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    attach_fds(&m, &u, &pidfd, pidfd >= 0 ? 1 : 0);
    ssize_t n;
    do { n = sendmsg(ctl, &m, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
}

static void reap(tpl_state_t *st) {
    struct signalfd_siginfo si;
    while (read(st->sigfd, &si, sizeof si) > 0) {}
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        st->children--;
        sk_netpool_reaped(pid);
        tpl_exit_t rec = { pid, status };
        // A record is smaller than PIPE_BUF: written whole or not at all. The
        // control plane gone (EPIPE) is not an error here: we are closing too.
        ssize_t n;
        do { n = write(st->exits, &rec, sizeof rec); } while (n < 0 && errno == EINTR);
    }
}

// One request: returns 0 to go on, -1 when the control socket is closed or broken.
static int serve_one(tpl_state_t *st) {
    tpl_request_t rq;
    struct iovec iov[2] = { { &rq, sizeof rq }, { spec_buf, sizeof spec_buf } };
    fd_buf_t u;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = 2;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    ssize_t n;
    do { n = recvmsg(st->ctl, &m, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;

    int fds[2] = { -1, -1 };
    size_t nfds = take_fds(&m, fds, 2);
    size_t want_fds = rq.has_log ? 2 : 1;
    if ((size_t)n < sizeof rq || rq.magic != SK_TPL_MAGIC || (size_t)rq.spec_len + rq.noexec_len != (size_t)n - sizeof rq ||
        (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nfds != want_fds) {
        for (size_t i = 0; i < nfds; i++) close(fds[i]);
        send_reply(st->ctl, -1, TS_REQUEST, EINVAL, -1);
        return 0;
    }
    int channel = fds[0], log_fd = rq.has_log ? fds[1] : -1;

    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        close(channel);
        if (log_fd >= 0) close(log_fd);
        send_reply(st->ctl, -1, TS_FORK, e, -1);
        return 0;
    }
    // The worker's network namespace: one a reaped worker left unchanged, or a
    // new one. This thread enters it for the fork, so the child starts inside.
    int net = pooled_net(rq.flags);
    sk_netns_t netns = { -1, NULL, 0 };
    int net_stage = 0;
    if (net && (sk_netpool_take(&netns, &net_stage) < 0 || sk_netpool_enter(&netns) < 0)) {
        int e = errno;
        // Not kept: one that cannot be entered would be retried on every request.
        sk_netpool_discard(netns);
        close(ep[0]); close(ep[1]); close(channel);
        if (log_fd >= 0) close(log_fd);
        send_reply(st->ctl, -1, net_stage == 1 ? TS_UNSHARE : net_stage == 2 ? TS_LOOPBACK : TS_NETNS, e, -1);
        return 0;
    }
    // A pid namespace cannot be entered by unshare: it applies to the next child.
    // Point pid_for_children back at our own namespace first, so each worker gets
    // a fresh one of its own.
    if ((rq.flags & SK_TPL_PID) && (setns(st->pidns, CLONE_NEWPID) < 0 || unshare(CLONE_NEWPID) < 0)) {
        int e = errno;
        if (net) { sk_netpool_leave(); sk_netpool_put_unused(netns); }
        close(ep[0]); close(ep[1]); close(channel);
        if (log_fd >= 0) close(log_fd);
        send_reply(st->ctl, -1, TS_PIDNS, e, -1);
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(ep[0]);
        child_setup(&rq, channel, log_fd, ep[1], st->self);
        // Unreachable for the failure paths; ep[1] was closed by close_range.
        st->entry(spec_buf, rq.spec_len);
        _exit(0);
    }
    int fork_errno = errno;
    if (rq.flags & SK_TPL_PID) setns(st->pidns, CLONE_NEWPID);
    // Home before anything else: a later namespace is made from this thread's.
    // If that fails, the pool refuses every later take and the serving loop
    // stops: the control plane starts a fresh template.
    if (net) sk_netpool_leave();
    close(ep[1]);
    close(channel);
    if (log_fd >= 0) close(log_fd);
    if (pid < 0) {
        close(ep[0]);
        if (net) sk_netpool_put_unused(netns);
        send_reply(st->ctl, -1, TS_FORK, fork_errno, -1);
        return 0;
    }
    int msg[2];
    do { n = read(ep[0], msg, sizeof msg); } while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == (ssize_t)sizeof msg) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        // The child ran nothing of a job, but it did run: its namespace goes the
        // way every worker's does.
        if (net) { sk_netpool_bind(pid, netns); sk_netpool_reaped(pid); }
        send_reply(st->ctl, -1, msg[0], msg[1], -1);
        return 0;
    }
    if (net) sk_netpool_bind(pid, netns);
    st->children++;
    // Opened before we ever wait for it, so the pid cannot have been recycled:
    // the control plane signals through this, never through the bare pid.
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    send_reply(st->ctl, pid, 0, 0, pidfd);
    if (pidfd >= 0) close(pidfd);
    return 0;
}

static void *serve_thread(void *arg) {
    tpl_state_t *st = arg;
    int open_ctl = 1;
    for (;;) {
        if (!open_ctl && st->children <= 0) return NULL;
        struct pollfd p[2] = { { st->sigfd, POLLIN, 0 }, { open_ctl ? st->ctl : -1, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return NULL;
        }
        if (p[0].revents) reap(st);
        if (open_ctl && p[1].revents) {
            // The control plane is done with us (a reload, a stop, or it died), or
            // this thread could not return to its own network namespace: serve no
            // more, and stay until the last worker is gone, then exit.
            if (serve_one(st) < 0 || sk_netpool_broken()) {
                open_ctl = 0;
                close(st->ctl);
                sk_netpool_drain();
            }
        }
    }
}

int sk_template_serve(int ctl_fd, int exit_fd, sk_tpl_entry_t entry) {
    tpl_state_t st;
    memset(&st, 0, sizeof st);
    st.ctl = ctl_fd;
    st.exits = exit_fd;
    st.entry = entry;
    // SIGCHLD through a signalfd, SIGPIPE as EPIPE: blocked here, before the
    // serving thread exists, so both threads have them blocked.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return 71;
    sigdelset(&set, SIGPIPE);
    st.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    st.pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    st.self = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (st.sigfd < 0 || st.pidns < 0 || sk_netpool_init() < 0) return 71;
    // What the warm-up freed goes back to the kernel: every fork copies the page
    // tables of what is left, and every worker's exit unmaps it.
    malloc_trim(0);
    pthread_t t;
    if (pthread_create(&t, NULL, serve_thread, &st) != 0) return 71;
    pthread_join(t, NULL);
    return 0;
}

int sk_template_drop_caps(void) {
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct have[2];
    memset(have, 0, sizeof have);
    if (syscall(SYS_capget, &hdr, have) < 0) return -errno;
    // CAP_KILL: a worker's death signal (PR_SET_PDEATHSIG) is sent with its
    // parent's credentials, and a worker runs as another uid; without it the
    // template's death would leave its workers running.
    const int keep[] = { CAP_SETUID, CAP_SETGID, CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_KILL };
    uint64_t mask = 0;
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) mask |= 1ULL << keep[i];
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    for (int cap = 0; cap <= 63; cap++) {
        if (mask & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    }
    // Only what we hold: a container may have withheld some of these already,
    // and asking for more than is permitted fails.
    mask &= (uint64_t)have[0].permitted | ((uint64_t)have[1].permitted << 32);
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = (uint32_t)mask;
    data[1].effective = data[1].permitted = (uint32_t)(mask >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0) return -errno;
    return 0;
}

// ---------------------------------------------------------------------------
// Control plane side

pid_t sk_template_spawn(int ctl_fd, uint32_t flags, uid_t uid, gid_t gid,
                        const char *spec, size_t spec_len, const char *noexec, size_t noexec_len,
                        int channel_fd, int log_fd, int *pidfd, char *err, size_t errlen) {
    *pidfd = -1;
    if (spec_len + noexec_len > SK_TPL_MAX_SPEC) {
        snprintf(err, errlen, "sandbox spec of %zu bytes is over the template's limit", spec_len + noexec_len);
        return -1;
    }
    tpl_request_t rq = { SK_TPL_MAGIC, flags, (uint32_t)uid, (uint32_t)gid, (uint32_t)spec_len, (uint32_t)noexec_len, log_fd >= 0 };
    struct iovec iov[3] = { { &rq, sizeof rq }, { (void *)spec, spec_len }, { (void *)noexec, noexec_len } };
    fd_buf_t u;
    int fds[2] = { channel_fd, log_fd };
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = 3;
    attach_fds(&m, &u, fds, log_fd >= 0 ? 2 : 1);
    ssize_t n;
    do { n = sendmsg(ctl_fd, &m, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    if (n < 0) {
        snprintf(err, errlen, "worker template: send: %s", strerror(errno));
        return -2;
    }

    tpl_reply_t r;
    struct iovec riov = { &r, sizeof r };
    fd_buf_t ru;
    struct msghdr rm;
    memset(&rm, 0, sizeof rm);
    rm.msg_iov = &riov;
    rm.msg_iovlen = 1;
    rm.msg_control = ru.buf;
    rm.msg_controllen = sizeof ru.buf;
    do { n = recvmsg(ctl_fd, &rm, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof r) {
        snprintf(err, errlen, "worker template: %s", n == 0 ? "exited" : n < 0 ? strerror(errno) : "short reply");
        return -2;
    }
    take_fds(&rm, pidfd, 1);
    if (r.pid <= 0) {
        if (*pidfd >= 0) { close(*pidfd); *pidfd = -1; }
        snprintf(err, errlen, "%s: %s", tpl_stage_name(r.stage), strerror(r.err));
        return -1;
    }
    return r.pid;
}

int sk_template_read_exit(int exit_fd, pid_t *pid, int *status) {
    tpl_exit_t rec;
    ssize_t n;
    do { n = read(exit_fd, &rec, sizeof rec); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n != (ssize_t)sizeof rec) return -EPIPE;
    *pid = rec.pid;
    *status = rec.status;
    return 0;
}

int sk_pidfd_kill(int pidfd) {
    return syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
}
