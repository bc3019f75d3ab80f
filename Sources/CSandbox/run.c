// Runs one step process: pipes, rlimits, a session of its own, timeout, bounded output.
//
// Written in C because the rlimits that must bind only the step (address
// space, CPU) have to be set between fork and exec, where Swift cannot run.
//
// vfork, not fork: the worker is multi-threaded with a large Swift heap, and
// fork would copy its page tables and make every page it writes afterwards
// fault (copy-on-write) until the step execs. The vfork child shares memory
// with the worker, so it only makes syscalls on the spec and its own stack,
// with every signal blocked until its handlers are back to the defaults.
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct { char *buf; size_t len, cap, max; int truncated; } sink_t;

static void sink_add(sink_t *s, const char *data, size_t n) {
    size_t room = s->max > s->len ? s->max - s->len : 0;
    if (n > room) { s->truncated = 1; n = room; }
    if (n == 0) return;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n) cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) { s->truncated = 1; return; }
        s->buf = nb; s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
}

// The vfork child: runs on the parent's stack, so it only makes syscalls on
// the spec and its own locals, and never returns.
static void child_exec(const sk_run_spec_t *spec, int in0, int out1, int err1, int exfd) {
    // The child's signal dispositions are its own (vfork does not share them).
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction cur;
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (sigaction(sig, NULL, &cur) == 0 && cur.sa_handler != SIG_DFL &&
            (cur.sa_handler != SIG_IGN || sig == SIGPIPE))
            sigaction(sig, &dfl, NULL);
    }
    // A session of its own: no controlling terminal, so a step can neither
    // write to nor read from the operator's terminal through /dev/tty, nor
    // take its foreground. Also a process group of its own (kill(-pid)).
    setsid();
    // Only 0-2 reach the step; every other fd of the worker (its event loop's
    // epoll and eventfds, its channel, sockets of other steps) is closed at
    // exec. CLOEXEC rather than closed: the exec-error pipe must outlive a failed exec.
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    sigset_t none; sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (spec->rlimit_as) { struct rlimit rl = { spec->rlimit_as, spec->rlimit_as }; setrlimit(RLIMIT_AS, &rl); }
    if (spec->rlimit_cpu) { struct rlimit rl = { spec->rlimit_cpu, spec->rlimit_cpu }; setrlimit(RLIMIT_CPU, &rl); }
    if (dup2(in0, 0) < 0 || dup2(out1, 1) < 0 || dup2(err1, 2) < 0) goto fail;
    if (spec->cwd && chdir(spec->cwd) < 0) goto fail;
    execve(spec->path, spec->argv, spec->envp);
fail:;
    int e = errno;
    ssize_t unused = write(exfd, &e, sizeof e);
    (void)unused;
    _exit(127);
}

int sk_run(const sk_run_spec_t *spec, sk_run_result_t *res) {
    memset(res, 0, sizeof *res);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, ex[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
        pipe2(ex, O_CLOEXEC) < 0) {
        int e = errno;
        int fds[] = {in[0], in[1], out[0], out[1], errp[0], errp[1], ex[0], ex[1]};
        for (int i = 0; i < 8; i++) if (fds[i] >= 0) close(fds[i]);
        return -e;
    }
    int64_t start = now_us();
    // A signal handler of the worker must never run on the child's borrowed
    // stack: block everything across the vfork, reset handlers in the child.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = vfork();
    if (pid < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        int fds[] = {in[0], in[1], out[0], out[1], errp[0], errp[1], ex[0], ex[1]};
        for (int i = 0; i < 8; i++) close(fds[i]);
        return -e;
    }
    if (pid == 0) child_exec(spec, in[0], out[1], errp[1], ex[1]);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    setpgid(pid, pid);   // both sides, so a kill(-pid) never races the child's own call
    close(in[0]); close(out[1]); close(errp[1]); close(ex[1]);
    // Readable once the step exits, so its end wakes the loops below at once.
    // Polling waitpid instead slept 2 ms whenever the step closed its output a
    // moment before it exited, which is how most steps end. Only this thread
    // reaps this pid, so the fd names this child until it is reaped. -1 (a
    // kernel without pidfds): the loops fall back to polling.
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);

    int e = 0;
    ssize_t n;
    do { n = read(ex[0], &e, sizeof e); } while (n < 0 && errno == EINTR);
    close(ex[0]);
    if (n == (ssize_t)sizeof e) res->exec_errno = e;

    sink_t so = { .max = spec->max_output }, se = { .max = spec->max_output };
    size_t written = 0;
    if (spec->stdin_len == 0 || res->exec_errno) { close(in[1]); in[1] = -1; }
    else fcntl(in[1], F_SETFL, O_NONBLOCK);
    int64_t deadline = spec->timeout_ms > 0 ? start + spec->timeout_ms * 1000 : 0;
    char buf[65536];
    int status = 0, reaped = 0;
    int64_t drain_until = 0;
    while (out[0] >= 0 || errp[0] >= 0) {
        // Once the step itself has exited, its leftovers (a background child still
        // holding stdout) get a short drain and are killed with its group.
        if (!reaped) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) {
                reaped = 1; kill(-pid, SIGKILL); drain_until = now_us() + 200 * 1000;
                // Stays readable once reaped: out of the poll set, or the drain would spin.
                if (pfd >= 0) { close(pfd); pfd = -1; }
            }
        } else if (now_us() >= drain_until) {
            break;
        }
        struct pollfd p[4];
        int np = 0, io = -1, ie = -1, ii = -1;
        if (out[0] >= 0) { io = np; p[np++] = (struct pollfd){ out[0], POLLIN, 0 }; }
        if (errp[0] >= 0) { ie = np; p[np++] = (struct pollfd){ errp[0], POLLIN, 0 }; }
        if (in[1] >= 0) { ii = np; p[np++] = (struct pollfd){ in[1], POLLOUT, 0 }; }
        if (pfd >= 0) p[np++] = (struct pollfd){ pfd, POLLIN, 0 };
        int wait_ms = -1;
        if (deadline) {
            int64_t left = (deadline - now_us()) / 1000;
            if (left <= 0) {
                res->timed_out = 1;
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                break;
            }
            wait_ms = left > 1000 ? 1000 : (int)left + 1;
        }
        // Bounded even with the pidfd: the drain's end and the deadline are
        // checked at least this often.
        if (wait_ms < 0 || wait_ms > 50) wait_ms = 50;
        int r = poll(p, (nfds_t)np, wait_ms);
        if (r < 0) { if (errno == EINTR) continue; break; }
        if (io >= 0 && p[io].revents) {
            n = read(out[0], buf, sizeof buf);
            if (n > 0) sink_add(&so, buf, (size_t)n); else if (n == 0 || errno != EINTR) { close(out[0]); out[0] = -1; }
        }
        if (ie >= 0 && p[ie].revents) {
            n = read(errp[0], buf, sizeof buf);
            if (n > 0) sink_add(&se, buf, (size_t)n); else if (n == 0 || errno != EINTR) { close(errp[0]); errp[0] = -1; }
        }
        if (ii >= 0 && p[ii].revents) {
            if (p[ii].revents & (POLLERR | POLLHUP)) { close(in[1]); in[1] = -1; }
            else {
                n = write(in[1], spec->stdin_data + written, spec->stdin_len - written);
                if (n > 0) written += (size_t)n;
                if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == spec->stdin_len) { close(in[1]); in[1] = -1; }
            }
        }
    }
    if (out[0] >= 0) close(out[0]);
    if (errp[0] >= 0) close(errp[0]);
    if (in[1] >= 0) close(in[1]);

    // The step's stdout may close before it exits; wait, but never past the deadline.
    while (!reaped) {
        pid_t w = waitpid(pid, &status, deadline ? WNOHANG : 0);
        if (w == pid) { reaped = 1; break; }
        if (w < 0 && errno != EINTR) break;
        if (w == 0) {
            int64_t left = deadline - now_us();
            if (left <= 0) { res->timed_out = 1; kill(-pid, SIGKILL); kill(pid, SIGKILL); deadline = 0; continue; }
            if (pfd >= 0) {
                struct pollfd p = { pfd, POLLIN, 0 };
                int wait_ms = left / 1000 + 1;
                poll(&p, 1, wait_ms > 50 ? 50 : wait_ms);
            } else {
                struct timespec ts = { 0, 2 * 1000 * 1000 };
                nanosleep(&ts, NULL);
            }
        }
    }
    if (pfd >= 0) close(pfd);
    // Whatever the step left running in its group goes with it.
    kill(-pid, SIGKILL);
    res->duration_us = now_us() - start;
    if (WIFEXITED(status)) { res->exited = 1; res->exit_code = WEXITSTATUS(status); }
    else if (WIFSIGNALED(status)) { res->term_signal = WTERMSIG(status); }
    res->out = so.buf; res->out_len = so.len; res->out_truncated = so.truncated;
    res->errb = se.buf; res->err_len = se.len; res->err_truncated = se.truncated;
    return 0;
}

void sk_run_result_free(sk_run_result_t *res) {
    free(res->out); free(res->errb);
    res->out = NULL; res->errb = NULL;
}

int sk_spawn_piped(const sk_run_spec_t *spec, int merge_stderr, sk_piped_t *res) {
    memset(res, 0, sizeof *res);
    res->in_fd = res->out_fd = res->err_fd = -1;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, ex[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || (!merge_stderr && pipe2(errp, O_CLOEXEC) < 0) ||
        pipe2(ex, O_CLOEXEC) < 0) {
        int e = errno;
        int fds[] = {in[0], in[1], out[0], out[1], errp[0], errp[1], ex[0], ex[1]};
        for (int i = 0; i < 8; i++) if (fds[i] >= 0) close(fds[i]);
        return -e;
    }
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = vfork();
    if (pid < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        int fds[] = {in[0], in[1], out[0], out[1], errp[0], errp[1], ex[0], ex[1]};
        for (int i = 0; i < 8; i++) if (fds[i] >= 0) close(fds[i]);
        return -e;
    }
    if (pid == 0) child_exec(spec, in[0], out[1], merge_stderr ? out[1] : errp[1], ex[1]);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    setpgid(pid, pid);
    close(in[0]); close(out[1]); if (errp[1] >= 0) close(errp[1]); close(ex[1]);
    int e = 0;
    ssize_t n;
    do { n = read(ex[0], &e, sizeof e); } while (n < 0 && errno == EINTR);
    close(ex[0]);
    res->pid = pid;
    res->in_fd = in[1];
    res->out_fd = out[0];
    res->err_fd = errp[0];
    if (n == (ssize_t)sizeof e) res->exec_errno = e;
    return 0;
}
