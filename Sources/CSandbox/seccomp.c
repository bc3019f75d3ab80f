// The seccomp filter every worker and every step process runs under.
//
// Compiled once by the control plane with libseccomp and exported as raw BPF
// into a sealed memfd; each worker loads that program. Sealing matters: the
// memfd is shared by every worker, and a worker must not be able to rewrite
// the filter the next one will load.
#define _GNU_SOURCE
#include "csandbox.h"
#include <seccomp.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif

// Syscalls that only an escape attempt needs: the process dies with SIGSYS,
// which the worker reports and the control plane audits as a violation.
static const char *const killed[] = {
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open",
    "keyctl", "add_key", "request_key",
    "setns",
    "open_by_handle_at", "name_to_handle_at",
    "userfaultfd",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "lookup_dcookie", "vhangup", "nfsservctl", "uselib", "_sysctl",
};

// Syscalls that fail with an errno instead: ordinary programs probe them.
static const char *const refused[] = {
    "io_uring_setup", "io_uring_enter", "io_uring_register",
};

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned cnt,
               const struct scmp_arg_cmp *args, char *err, size_t errlen) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return 0;   // not on this architecture
    int r = seccomp_rule_add_array(ctx, action, nr, cnt, args);
    if (r < 0) snprintf(err, errlen, "seccomp rule %s: %s", name, strerror(-r));
    return r;
}

static int build(scmp_filter_ctx ctx, char *err, size_t errlen) {
    int r;
    for (size_t i = 0; i < sizeof killed / sizeof *killed; i++)
        if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, killed[i], 0, NULL, err, errlen)) < 0) return r;
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if ((r = add(ctx, SCMP_ACT_ERRNO(EPERM), refused[i], 0, NULL, err, errlen)) < 0) return r;

    // A new user namespace is where most kernel privilege-escalation bugs are
    // reached from; deny it in every form.
    struct scmp_arg_cmp newuser = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
    if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, "unshare", 1, &newuser, err, errlen)) < 0) return r;
    if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, "clone", 1, &newuser, err, errlen)) < 0) return r;
    // clone3 passes flags in memory a filter cannot read: ENOSYS makes glibc fall back to clone.
    if ((r = add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err, errlen)) < 0) return r;

    // personality: only the query (0xffffffff) and PER_LINUX (0) are allowed.
    // libseccomp takes one comparison per argument and rule, so "neither of the
    // two" is spelled bit by bit: bit 31 clear with any other bit set, or bit 31
    // set with any other bit clear, or anything above 32 bits.
    for (int b = 0; b < 31; b++) {
        struct scmp_arg_cmp low = SCMP_A0(SCMP_CMP_MASKED_EQ, 0x80000000ULL | (1ULL << b), 1ULL << b);
        struct scmp_arg_cmp high = SCMP_A0(SCMP_CMP_MASKED_EQ, 0x80000000ULL | (1ULL << b), 0x80000000ULL);
        if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, "personality", 1, &low, err, errlen)) < 0) return r;
        if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, "personality", 1, &high, err, errlen)) < 0) return r;
    }
    struct scmp_arg_cmp wide = SCMP_A0(SCMP_CMP_GE, 0x100000000ULL);
    if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, "personality", 1, &wide, err, errlen)) < 0) return r;

    // Only AF_UNIX, AF_INET and AF_INET6 sockets (no netlink, packet, vsock, ...).
    struct scmp_arg_cmp fam = SCMP_A0(SCMP_CMP_EQ, AF_UNSPEC);
    if ((r = add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &fam, err, errlen)) < 0) return r;
    for (int f = AF_INET + 1; f < AF_INET6; f++) {
        fam = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)f);
        if ((r = add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &fam, err, errlen)) < 0) return r;
    }
    fam = SCMP_A0(SCMP_CMP_GE, AF_INET6 + 1);
    if ((r = add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &fam, err, errlen)) < 0) return r;

    // Socket options that leave state in the network namespace after the socket
    // is gone, where a later worker given the same namespace (netpool.c) could
    // read it: IPv6 flow labels linger up to minutes and are listed in
    // /proc/net/ip6_flowlabel; a multicast membership makes the kernel send
    // reports a moment after it is left. Only loopback exists here, so no step
    // needs either: the process dies and the attempt is audited. Level and name
    // are ints: compared on their low 32 bits, as the kernel reads them.
    static const struct { int level, name; } lingering[] = {
        { IPPROTO_IPV6, 32 /* IPV6_FLOWLABEL_MGR */ },
        { IPPROTO_IP, 35 /* IP_ADD_MEMBERSHIP */ }, { IPPROTO_IP, 39 /* IP_ADD_SOURCE_MEMBERSHIP */ },
        { IPPROTO_IP, 42 /* MCAST_JOIN_GROUP */ }, { IPPROTO_IP, 46 /* MCAST_JOIN_SOURCE_GROUP */ },
        { IPPROTO_IPV6, 20 /* IPV6_ADD_MEMBERSHIP */ }, { IPPROTO_IPV6, 27 /* IPV6_JOIN_ANYCAST */ },
        { IPPROTO_IPV6, 42 /* MCAST_JOIN_GROUP */ }, { IPPROTO_IPV6, 46 /* MCAST_JOIN_SOURCE_GROUP */ },
    };
    for (size_t i = 0; i < sizeof lingering / sizeof *lingering; i++) {
        struct scmp_arg_cmp opt[2] = {
            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, (scmp_datum_t)lingering[i].level),
            SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffULL, (scmp_datum_t)lingering[i].name),
        };
        if ((r = add(ctx, SCMP_ACT_KILL_PROCESS, "setsockopt", 2, opt, err, errlen)) < 0) return r;
    }

    // Typing into the controlling terminal of whoever started us.
    struct scmp_arg_cmp sti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, TIOCSTI);
    if ((r = add(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &sti, err, errlen)) < 0) return r;
    struct scmp_arg_cmp linux_ioctl = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, TIOCLINUX);
    if ((r = add(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &linux_ioctl, err, errlen)) < 0) return r;
    return 0;
}

int sk_seccomp_build_memfd(char *err, size_t errlen) {
    // Default allow, explicit deny: workers run arbitrary toolchains (python,
    // node, compilers) whose syscall sets are not ours to enumerate; the other
    // layers confine what allowed syscalls can reach. Foreign architectures
    // (the i386 ABI on x86_64) are killed by libseccomp's bad-arch action.
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) { snprintf(err, errlen, "seccomp_init failed"); return -1; }
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);   // we set no_new_privs ourselves
    if (r == 0) r = build(ctx, err, errlen);
    if (r < 0) { seccomp_release(ctx); return -1; }

    int fd = (int)syscall(SYS_memfd_create, "skelm-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
        seccomp_release(ctx);
        return -1;
    }
    r = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    if (r < 0) {
        snprintf(err, errlen, "seccomp_export_bpf: %s", strerror(-r));
        close(fd);
        return -1;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        snprintf(err, errlen, "sealing seccomp memfd: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int sk_seccomp_load_fd(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 || st.st_size > 1 << 20)
        return -EINVAL;
    struct sock_filter *prog = malloc((size_t)st.st_size);
    if (!prog) return -ENOMEM;
    ssize_t got = 0;
    while (got < st.st_size) {
        ssize_t n = pread(fd, (char *)prog + got, (size_t)(st.st_size - got), got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { free(prog); return n < 0 ? -errno : -EIO; }
        got += n;
    }
    struct sock_fprog fprog = { .len = (unsigned short)(st.st_size / sizeof(struct sock_filter)),
                                .filter = prog };
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
    int saved = errno;
    free(prog);
    return r == 0 ? 0 : -saved;
}

int sk_seccomp_mode(void) { return prctl(PR_GET_SECCOMP, 0, 0, 0, 0); }
int sk_no_new_privs_set(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }
int sk_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : -errno; }
