// The parts of the sandbox that Swift cannot do safely or at all.
//
// Glibc's Swift module exports neither unshare/clone with namespace flags nor
// the Landlock syscalls, and everything between fork and exec must be
// async-signal-safe (no allocation, no locks), which Swift cannot promise.
// Everything here is plain syscalls on memory prepared by the caller.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Worker spawn (control plane side)

/// What the spawner builds around a worker before it execs.
typedef struct {
    int exe_fd;               ///< open fd of the skelm binary (exec'd with execveat, so the
                              ///< worker uid needs no search permission on its directories)
    char *const *argv;
    char *const *envp;
    int channel_fd;           ///< becomes fd 3 in the worker
    int seccomp_fd;           ///< becomes fd 4 (sealed memfd holding BPF), or -1
    int log_fd;               ///< becomes fds 1 and 2, or -1 for /dev/null
    int extra_fd;             ///< becomes fd 5, or -1 (the worker template's exit pipe)
    int new_user_ns;          ///< map the current uid/gid 1:1 in a new user namespace (non-root hosts)
    int new_net_ns;
    int new_mount_ns;
    int new_pid_ns;
    int new_ipc_ns;
    int new_uts_ns;
    int mount_proc;           ///< mount a fresh /proc for the new pid namespace
    uid_t uid;                ///< drop to this uid/gid when running as root (ignored with new_user_ns)
    gid_t gid;
    int drop_uid;
    const char *noexec;       ///< NUL-terminated paths, back to back, to remount noexec (see harden.c)
    size_t noexec_len;
} sk_worker_spawn_t;

/// In a worker's new mount namespace: bind-mounts each of `paths` (NUL-terminated,
/// back to back, `len` bytes in all) onto itself noexec, nosuid, nodev. 0 or -1.
int sk_harden_mounts(const char *paths, size_t len);
/// In a worker's new pid namespace: memfds can no longer be executed
/// (vm.memfd_noexec = 2). 0, 1 when the kernel has no such setting, or -1.
int sk_memfd_noexec(void);
/// The calling pid namespace's vm.memfd_noexec (0-2), or -1.
int sk_memfd_noexec_level(void);
/// 1 when `path` is on a noexec mount, 0 when not, -1 on error.
int sk_path_noexec(const char *path);

/// Spawns a worker. Returns its pid, or -1 with `err` filled in ("stage: strerror")
/// when any step before exec failed (fail closed: the child exits instead of running
/// unsandboxed).
pid_t sk_spawn_worker(const sk_worker_spawn_t *spec, char *err, size_t errlen);

/// Brings up `lo` in the caller's network namespace. 0 or -1 (errno set).
int sk_loopback_up(void);

// ---------------------------------------------------------------------------
// Worker template: a warmed-up worker image that forks sandboxed workers on
// request instead of exec'ing a fresh binary for each (see template.c).

enum {
    SK_TPL_NET = 1 << 0,
    SK_TPL_MOUNT = 1 << 1,
    SK_TPL_PID = 1 << 2,
    SK_TPL_IPC = 1 << 3,
    SK_TPL_UTS = 1 << 4,
    SK_TPL_MOUNT_PROC = 1 << 5,
    SK_TPL_DROP_UID = 1 << 6,
};

/// The nice value a forked worker waits at until it gets a job.
#define SK_TPL_SPARE_NICE 10

/// The largest sandbox spec a request may carry.
#define SK_TPL_MAX_SPEC (64 * 1024)

/// What the worker calls in each forked child, with the spec bytes; never returns.
typedef void (*sk_tpl_entry_t)(const char *spec, size_t len);

/// Template side: serves spawn requests on `ctl_fd` (SOCK_SEQPACKET) from a
/// thread that never runs Swift, writes {pid, wait status} records to `exit_fd`
/// for every child that ends, and returns once the control plane has closed
/// `ctl_fd` and the last child has been reaped. In each child, after its
/// namespaces, uid and fds are in place, calls `entry`.
int sk_template_serve(int ctl_fd, int exit_fd, sk_tpl_entry_t entry);

/// Template side, before anything else: moves the 2 MiB-aligned middle of the
/// executable's code onto anonymous transparent huge pages (same bytes, same
/// addresses), so a fork copies a few huge-page entries instead of every
/// worker faulting its code in page by page. Returns the bytes moved, 0 when
/// the code spans no whole huge page, or -errno with the code as it was
/// (-EOPNOTSUPP: transparent huge pages are off, strict overcommit, or not
/// x86-64; -ENOMEM: the copy did not get huge pages). Only the final move can
/// fail after the original is gone, and then the template dies (see hugetext.c).
long sk_template_huge_code(void);

/// Drops every capability the template does not need to make workers
/// (it keeps setuid, setgid, sys_admin, net_admin, and kill for its workers'
/// death signal). 0 or -errno.
int sk_template_drop_caps(void);

/// Control plane side: asks the template for one worker. `channel_fd` becomes
/// the worker's fd 3, `log_fd` (or -1) its stdout and stderr. Returns the
/// worker's pid and a pidfd for it in `*pidfd` (or -1 when the kernel has none);
/// -1 with `err` filled in when the template refused or a set-up stage failed;
/// -2 when the template is gone (its socket closed or broke).
pid_t sk_template_spawn(int ctl_fd, uint32_t flags, uid_t uid, gid_t gid,
                        const char *spec, size_t spec_len, const char *noexec, size_t noexec_len,
                        int channel_fd, int log_fd, int *pidfd, char *err, size_t errlen);

/// One exit record from the template's exit pipe: 0, or -errno (-EPIPE at EOF).
int sk_template_read_exit(int exit_fd, pid_t *pid, int *status);

/// SIGKILL through a pidfd: never hits a recycled pid. 0 or -errno.
int sk_pidfd_kill(int pidfd);

/// Builds the seccomp filter with libseccomp and writes its BPF into a sealed memfd.
/// Returns the memfd or -1 (with `err`). Compiled once per control plane.
int sk_seccomp_build_memfd(char *err, size_t errlen);

// ---------------------------------------------------------------------------
// Worker side: applied at the top of the worker's main, before any thread.

int sk_set_no_new_privs(void);
/// Threads of the calling process (from /proc/self/status), or -1.
int sk_thread_count(void);
/// 1 when `lo` is the only network interface the caller can see.
int sk_only_loopback(void);
/// 1 when the process has exited (it may not be reaped yet): through `pidfd`
/// when there is one, else with waitid(WNOWAIT) on our own child. Never reaps.
int sk_process_exited(pid_t pid, int pidfd);
/// Landlock ABI version the kernel supports, or 0 when it has none.
int sk_landlock_abi(void);

/// What a Landlock path rule allows.
enum {
    SK_LL_READ_EXEC = 0,     ///< read, list, execute
    SK_LL_WRITE = 1,         ///< everything
    SK_LL_READ = 2,          ///< read and list, never execute
    SK_LL_WRITE_NOEXEC = 3,  ///< everything but execute
};

/// One Landlock path rule.
typedef struct {
    const char *path;
    int writable;   ///< one of SK_LL_*
} sk_landlock_rule_t;

/// Restricts the calling process (and all its future children) to `rules`.
/// TCP bind/connect is denied except connect to `connect_ports` (ABI >= 4);
/// signals and abstract unix sockets are scoped to the domain (ABI >= 6).
/// Paths that do not exist are skipped. Returns 0 or -errno.
int sk_landlock_restrict(const sk_landlock_rule_t *rules, size_t nrules,
                         const uint16_t *connect_ports, size_t nports,
                         char *err, size_t errlen);

/// The same, also allowing TCP bind to `bind_ports` (the worker's egress forwarders).
int sk_landlock_restrict_net(const sk_landlock_rule_t *rules, size_t nrules,
                             const uint16_t *connect_ports, size_t nports,
                             const uint16_t *bind_ports, size_t nbind,
                             char *err, size_t errlen);

/// Copies between two connected sockets, both ways, until both directions hit
/// EOF (each EOF is passed on with shutdown(SHUT_WR)) or nothing moves for
/// `idle_timeout_ms` (0: no limit). Returns the number of reads, or -errno.
int64_t sk_relay(int a, int b, int idle_timeout_ms);

/// Loads the BPF program found in `fd` (read with pread from offset 0). 0 or -errno.
int sk_seccomp_load_fd(int fd);
/// 2 when the calling thread runs under a seccomp filter.
int sk_seccomp_mode(void);
int sk_no_new_privs_set(void);

/// Marks every fd >= `first` close-on-exec and closes it (close_range). 0 or -errno.
int sk_close_fds_from(int first);
int sk_set_cloexec(int fd);

// ---------------------------------------------------------------------------
// Step process runner (worker side)

typedef struct {
    const char *path;         ///< absolute path, already resolved
    char *const *argv;
    char *const *envp;
    const char *cwd;
    const char *stdin_data;
    size_t stdin_len;
    int64_t timeout_ms;       ///< <= 0: none
    uint64_t rlimit_as;       ///< 0: leave as is
    uint64_t rlimit_cpu;
    size_t max_output;        ///< per stream; the rest is read and dropped
} sk_run_spec_t;

typedef struct {
    int exited;               ///< 1: exit_code valid; 0: term_signal valid
    int exit_code;
    int term_signal;
    int timed_out;
    int exec_errno;           ///< non-zero when the program could not be started
    char *out; size_t out_len; int out_truncated;
    char *errb; size_t err_len; int err_truncated;
    int64_t duration_us;
} sk_run_result_t;

/// Runs one program to completion in its own process group. Returns 0, or -errno
/// when the runner itself failed (pipes, fork). Free with sk_run_result_free.
int sk_run(const sk_run_spec_t *spec, sk_run_result_t *res);
void sk_run_result_free(sk_run_result_t *res);

typedef struct {
    int pid;
    int in_fd;                ///< the child's stdin (write end)
    int out_fd;               ///< its stdout (read end)
    int err_fd;               ///< its stderr (read end); -1 when merged into out_fd
    int exec_errno;           ///< non-zero when the program could not be started (it has exited with 127)
} sk_piped_t;

/// Starts one program in its own process group and session, like sk_run, but
/// returns at once with pipes to its stdio (parent ends close-on-exec): for
/// peers a step talks to (agents, MCP servers, terminals). The caller reaps it.
/// timeout_ms, stdin_data and max_output of the spec are not used.
int sk_spawn_piped(const sk_run_spec_t *spec, int merge_stderr, sk_piped_t *res);

// ---------------------------------------------------------------------------
// Host probes for `skelm doctor`

/// 1 when a child can create the given namespaces (CLONE_* flags), else 0 (and errno in *e).
int sk_probe_namespaces(int flags, int *e);
int sk_clone_newuser(void);
int sk_clone_newnet(void);
int sk_clone_newns(void);
int sk_clone_newpid(void);

/// Kills the process and reaps it: waits for `pid` to exit. Returns wait status or -errno.
int sk_wait_pid(pid_t pid, int nohang);

#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// setrlimit by name ("nofile", "fsize", "core", "nproc", "as", "cpu"), soft = hard. 0 or -errno.
int sk_set_rlimit(const char *name, uint64_t value);
#ifdef __cplusplus
}
#endif
