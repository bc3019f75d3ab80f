// What a worker's namespaces get before its uid is dropped, beyond the
// namespaces themselves: nothing a job can write may become code.
//
// - Every path a job can write (the workspace root, any fsWrite a ceiling
//   grants) is bind-mounted onto itself noexec, nosuid, nodev in the worker's
//   own mount namespace. Landlock already refuses execve of those files, but
//   not mmap(PROT_EXEC): without this, `ld.so ./copy` and dlopen() of a
//   library the step wrote ran code no policy allowed.
// - memfds are made non-executable in the worker's pid namespace
//   (vm.memfd_noexec = 2, Linux >= 6.3; the setting is per pid namespace and
//   inherited by its children): `memfd_create` + `execveat` ran programs that
//   exist in no directory Landlock could cover.
//
// Runs in the child between clone/fork and the uid change: plain syscalls only.
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef ST_VALID
#define ST_VALID 0x0020
#endif

// The flags a bind remount must keep: in a user namespace the original
// mount's flags are locked, and dropping one fails with EPERM.
static unsigned long kept_flags(const char *path) {
    struct statfs st;
    if (syscall(SYS_statfs, path, &st) < 0 || !(st.f_flags & ST_VALID)) return 0;
    unsigned long f = (unsigned long)st.f_flags;
    return f & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
}

int sk_harden_mounts(const char *paths, size_t len) {
    size_t i = 0;
    while (i < len) {
        const char *p = paths + i;
        size_t n = strnlen(p, len - i);
        if (n == len - i) { errno = EINVAL; return -1; }   // not NUL-terminated
        i += n + 1;
        if (n == 0) continue;
        // A path that does not exist yet cannot be written either: nothing to do.
        if (access(p, F_OK) != 0) continue;
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
        unsigned long flags = kept_flags(p) | MS_NOEXEC | MS_NOSUID | MS_NODEV;
        if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | flags, NULL) < 0) return -1;
    }
    return 0;
}

int sk_memfd_noexec(void) {
    int fd = open("/proc/sys/vm/memfd_noexec", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 1 : -1;   // a kernel without it: the worker reports the layer missing
    ssize_t n = write(fd, "2", 1);
    int e = errno;
    close(fd);
    if (n != 1) { errno = e; return -1; }
    return 0;
}

int sk_memfd_noexec_level(void) {
    int fd = open("/proc/sys/vm/memfd_noexec", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char c = 0;
    ssize_t n = read(fd, &c, 1);
    close(fd);
    return n == 1 && c >= '0' && c <= '2' ? c - '0' : -1;
}

int sk_path_noexec(const char *path) {
    struct statfs st;
    if (syscall(SYS_statfs, path, &st) < 0) return -1;
    return (st.f_flags & ST_VALID) && (st.f_flags & MS_NOEXEC) ? 1 : 0;
}
