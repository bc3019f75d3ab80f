// The benchmark's floor (`skelm-bench`, "floor" rows): what a run costs the
// kernel when nothing of the gateway is involved: no HTTP, JSON, store, audit
// log or Swift worker, just the processes every run gets and the step's `sh`.
// Level 2 repeats what template.c's child set-up and a worker's start do to a
// fresh process (the same calls, in the same order, through the same sk_*
// functions where they are public), so the gap between it and the gateway's
// CPU per run is the gateway's own. Left out, so the floor stays a lower bound:
// the worker's own program (Swift runtime, socket, handshake), the checks of a
// reused network namespace (netpool.c) and the workspace's directories.
#define _GNU_SOURCE
#include "benchfloor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const skb_floor_t *spec;
    int result;
    char *err;
    size_t errlen;
} floor_job_t;

// Exit codes of a level-2 child, to name the stage that failed.
enum { ST_OK = 0, ST_UNSHARE = 10, ST_MOUNT, ST_PROC, ST_NOEXEC, ST_MEMFD, ST_UID, ST_NNP,
       ST_LANDLOCK, ST_SECCOMP, ST_STEP_LANDLOCK, ST_STEP };

static const char *stage_name(int code) {
    switch (code) {
    case ST_UNSHARE: return "unshare namespaces";
    case ST_MOUNT: return "mount --make-rprivate /";
    case ST_PROC: return "mount /proc";
    case ST_NOEXEC: return "remount noexec";
    case ST_MEMFD: return "vm.memfd_noexec";
    case ST_UID: return "setresuid";
    case ST_NNP: return "no_new_privs";
    case ST_LANDLOCK: return "worker Landlock layer";
    case ST_SECCOMP: return "seccomp filter";
    case ST_STEP_LANDLOCK: return "step Landlock layer";
    case ST_STEP: return "step";
    default: return "child";
    }
}

static int run_step(const skb_floor_t *s) {
    sk_run_result_t r;
    if (sk_run(&s->step, &r) < 0) return -1;
    int ok = r.exited && r.exit_code == 0 && r.out_len > 0;
    sk_run_result_free(&r);
    return ok ? 0 : -1;
}

// In the forked child, single-threaded: template.c's child_setup, then what a
// worker does to itself before its job (Landlock, seccomp) and the step.
static void sandboxed_child(const skb_floor_t *s) {
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) < 0) _exit(ST_UNSHARE);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) _exit(ST_MOUNT);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) _exit(ST_PROC);
    if (sk_harden_mounts(s->noexec, s->noexec_len) < 0) _exit(ST_NOEXEC);
    if (sk_memfd_noexec() < 0) _exit(ST_MEMFD);
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0 ||
        syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0) _exit(ST_UID);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(ST_NNP);
    char err[128];
    if (sk_landlock_restrict_net(s->worker_rules, s->worker_nrules, NULL, 0, s->bind_ports, s->nbind, err, sizeof err) < 0)
        _exit(ST_LANDLOCK);
    if (sk_seccomp_load_fd(s->seccomp_fd) < 0) _exit(ST_SECCOMP);
    if (sk_landlock_restrict(s->step_rules, s->step_nrules, NULL, 0, err, sizeof err) < 0) _exit(ST_STEP_LANDLOCK);
    _exit(run_step(s) == 0 ? ST_OK : ST_STEP);
}

static int fail(floor_job_t *job, const char *stage, int e) {
    snprintf(job->err, job->errlen, "%s: %s", stage, strerror(e));
    return -1;
}

static int floor_loop(floor_job_t *job) {
    const skb_floor_t *s = job->spec;
    int home_net = -1, net = -1, home_pid = -1;
    if (s->level == SKB_FLOOR_SANDBOX) {
        // One network namespace, made once and entered for every fork, as the
        // template reuses a namespace a worker left unchanged.
        home_net = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        home_pid = open("/proc/thread-self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
        if (home_net < 0 || home_pid < 0) return fail(job, "open namespaces", errno);
        if (unshare(CLONE_NEWNET) < 0) return fail(job, "unshare network namespace", errno);
        if (sk_loopback_up() < 0) return fail(job, "loopback", errno);
        net = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (net < 0 || setns(home_net, CLONE_NEWNET) < 0) return fail(job, "network namespace", errno);
    }
    int rc = 0;
    for (int i = 0; i < s->iterations && rc == 0; i++) {
        if (s->level == SKB_FLOOR_STEP) {
            if (run_step(s) < 0) rc = fail(job, "step", EIO);
            continue;
        }
        if (s->level == SKB_FLOOR_SANDBOX &&
            (setns(net, CLONE_NEWNET) < 0 || setns(home_pid, CLONE_NEWPID) < 0 || unshare(CLONE_NEWPID) < 0)) {
            rc = fail(job, "enter namespaces", errno);
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            if (s->level == SKB_FLOOR_SANDBOX) sandboxed_child(s);
            _exit(run_step(s) == 0 ? ST_OK : ST_STEP);
        }
        int fork_errno = errno;
        if (s->level == SKB_FLOOR_SANDBOX && (setns(home_net, CLONE_NEWNET) < 0 || setns(home_pid, CLONE_NEWPID) < 0)) {
            rc = fail(job, "leave namespaces", errno);
        }
        if (pid < 0) { rc = fail(job, "fork", fork_errno); break; }
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(status) || WEXITSTATUS(status) != ST_OK) {
            snprintf(job->err, job->errlen, "%s: the child exited with status %d",
                     WIFEXITED(status) ? stage_name(WEXITSTATUS(status)) : "killed", status);
            rc = -1;
        }
    }
    if (net >= 0) close(net);
    if (home_net >= 0) close(home_net);
    if (home_pid >= 0) close(home_pid);
    return rc;
}

static void *floor_thread(void *arg) {
    floor_job_t *job = arg;
    job->result = floor_loop(job);
    return NULL;
}

int skb_floor_run(const skb_floor_t *spec, char *err, size_t errlen) {
    floor_job_t job = { spec, -1, err, errlen };
    pthread_t t;
    int e = pthread_create(&t, NULL, floor_thread, &job);
    if (e != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(e));
        return -1;
    }
    pthread_join(t, NULL);
    return job.result;
}
