// Landlock: unprivileged filesystem (and TCP) confinement.
//
// Debian 12's <linux/landlock.h> stops at ABI 2, and the kernels we run on
// speak ABI 7, so the UAPI is restated here with our own names.
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SK_NR_landlock_create_ruleset 444
#define SK_NR_landlock_add_rule 445
#define SK_NR_landlock_restrict_self 446
#define SK_LL_CREATE_RULESET_VERSION (1U << 0)
#define SK_LL_RULE_PATH_BENEATH 1
#define SK_LL_RULE_NET_PORT 2

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_DIR (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR (1ULL << 6)
#define FS_MAKE_DIR (1ULL << 7)
#define FS_MAKE_REG (1ULL << 8)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_MAKE_FIFO (1ULL << 10)
#define FS_MAKE_BLOCK (1ULL << 11)
#define FS_MAKE_SYM (1ULL << 12)
#define FS_REFER (1ULL << 13)        /* ABI 2 */
#define FS_TRUNCATE (1ULL << 14)     /* ABI 3 */
#define FS_IOCTL_DEV (1ULL << 15)    /* ABI 5 */
#define NET_BIND_TCP (1ULL << 0)     /* ABI 4 */
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL (1ULL << 1)

struct sk_ruleset_attr { uint64_t handled_access_fs, handled_access_net, scoped; };
struct sk_path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
struct sk_net_port_attr { uint64_t allowed_access; uint64_t port; };

int sk_landlock_abi(void) {
    long v = syscall(SK_NR_landlock_create_ruleset, NULL, 0, SK_LL_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

static uint64_t fs_all(int abi) {
    uint64_t a = (FS_MAKE_SYM << 1) - 1;
    if (abi >= 2) a |= FS_REFER;
    if (abi >= 3) a |= FS_TRUNCATE;
    if (abi >= 5) a |= FS_IOCTL_DEV;
    return a;
}

static const uint64_t FS_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
static const uint64_t FS_FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;

int sk_landlock_restrict(const sk_landlock_rule_t *rules, size_t nrules,
                         const uint16_t *ports, size_t nports, char *err, size_t errlen) {
    return sk_landlock_restrict_net(rules, nrules, ports, nports, NULL, 0, err, errlen);
}

int sk_landlock_restrict_net(const sk_landlock_rule_t *rules, size_t nrules,
                             const uint16_t *ports, size_t nports,
                             const uint16_t *bind_ports, size_t nbind, char *err, size_t errlen) {
    int abi = sk_landlock_abi();
    if (abi <= 0) { snprintf(err, errlen, "Landlock is not supported by this kernel"); return -EOPNOTSUPP; }
    struct sk_ruleset_attr attr = { .handled_access_fs = fs_all(abi) };
    size_t attr_size = sizeof(uint64_t);
    if (abi >= 4) { attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP; attr_size = 2 * sizeof(uint64_t); }
    if (abi >= 6) { attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL; attr_size = sizeof attr; }

    int rs = (int)syscall(SK_NR_landlock_create_ruleset, &attr, attr_size, 0);
    if (rs < 0) { int e = errno; snprintf(err, errlen, "landlock_create_ruleset: %s", strerror(e)); return -e; }

    for (size_t i = 0; i < nrules; i++) {
        int fd = open(rules[i].path, O_PATH | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR) continue;   // e.g. /lib64 on arm64
            int e = errno;
            snprintf(err, errlen, "open %s: %s", rules[i].path, strerror(e));
            close(rs);
            return -e;
        }
        struct stat st;
        if (fstat(fd, &st) < 0) { int e = errno; close(fd); close(rs); snprintf(err, errlen, "stat %s: %s", rules[i].path, strerror(e)); return -e; }
        uint64_t access;
        switch (rules[i].writable) {
        case SK_LL_WRITE: access = fs_all(abi); break;
        case SK_LL_READ: access = FS_READ & ~FS_EXECUTE; break;
        case SK_LL_WRITE_NOEXEC: access = fs_all(abi) & ~FS_EXECUTE; break;
        default: access = FS_READ; break;
        }
        if (!S_ISDIR(st.st_mode)) access &= FS_FILE_ONLY;
        access &= fs_all(abi);
        struct sk_path_beneath_attr pb = { .allowed_access = access, .parent_fd = fd };
        long r = syscall(SK_NR_landlock_add_rule, rs, SK_LL_RULE_PATH_BENEATH, &pb, 0);
        int e = errno;
        close(fd);
        if (r < 0) { snprintf(err, errlen, "landlock_add_rule %s: %s", rules[i].path, strerror(e)); close(rs); return -e; }
    }
    if (abi >= 4) {
        // A port in both lists gets one rule with both rights: the same grant in
        // half the calls (a worker's 64 forwarder ports are in both, and every
        // worker makes its ruleset anew).
        for (size_t i = 0; i < nports; i++) {
            struct sk_net_port_attr np = { .allowed_access = NET_CONNECT_TCP, .port = ports[i] };
            for (size_t j = 0; j < nbind; j++) if (bind_ports[j] == ports[i]) np.allowed_access |= NET_BIND_TCP;
            if (syscall(SK_NR_landlock_add_rule, rs, SK_LL_RULE_NET_PORT, &np, 0) < 0) {
                int e = errno; snprintf(err, errlen, "landlock net rule %u: %s", ports[i], strerror(e)); close(rs); return -e;
            }
        }
        for (size_t i = 0; i < nbind; i++) {
            int granted = 0;
            for (size_t j = 0; j < nports; j++) if (ports[j] == bind_ports[i]) granted = 1;
            if (granted) continue;
            struct sk_net_port_attr np = { .allowed_access = NET_BIND_TCP, .port = bind_ports[i] };
            if (syscall(SK_NR_landlock_add_rule, rs, SK_LL_RULE_NET_PORT, &np, 0) < 0) {
                int e = errno; snprintf(err, errlen, "landlock bind rule %u: %s", bind_ports[i], strerror(e)); close(rs); return -e;
            }
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SK_NR_landlock_restrict_self, rs, 0) < 0) {
        int e = errno; snprintf(err, errlen, "landlock_restrict_self: %s", strerror(e)); close(rs); return -e;
    }
    close(rs);
    return abi;
}

int sk_set_cloexec(int fd) {
    int f = fcntl(fd, F_GETFD);
    if (f < 0 || fcntl(fd, F_SETFD, f | FD_CLOEXEC) < 0) return -errno;
    return 0;
}

int sk_close_fds_from(int first) {
    if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) < 0) return -errno;
    return 0;
}

#include <sys/resource.h>

int sk_set_rlimit(const char *name, uint64_t value) {
    int res;
    if (!strcmp(name, "nofile")) res = RLIMIT_NOFILE;
    else if (!strcmp(name, "fsize")) res = RLIMIT_FSIZE;
    else if (!strcmp(name, "core")) res = RLIMIT_CORE;
    else if (!strcmp(name, "nproc")) res = RLIMIT_NPROC;
    else if (!strcmp(name, "as")) res = RLIMIT_AS;
    else if (!strcmp(name, "cpu")) res = RLIMIT_CPU;
    else return -EINVAL;
    struct rlimit rl = { value, value };
    return setrlimit(res, &rl) == 0 ? 0 : -errno;
}
