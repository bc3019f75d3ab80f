// Host capability probes for `skelm doctor` and the spawner's mode choice.
#define _GNU_SOURCE
#include "csandbox.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

int sk_clone_newuser(void) { return CLONE_NEWUSER; }
int sk_clone_newnet(void) { return CLONE_NEWNET; }
int sk_clone_newns(void) { return CLONE_NEWNS; }
int sk_clone_newpid(void) { return CLONE_NEWPID; }

int sk_probe_namespaces(int flags, int *e) {
    int p[2];
    if (pipe(p) < 0) { *e = errno; return 0; }
    pid_t pid = fork();
    if (pid < 0) { *e = errno; close(p[0]); close(p[1]); return 0; }
    if (pid == 0) {
        close(p[0]);
        int r = unshare(flags) == 0 ? 0 : errno;
        ssize_t unused = write(p[1], &r, sizeof r);
        (void)unused;
        _exit(0);
    }
    close(p[1]);
    int r = EIO;
    if (read(p[0], &r, sizeof r) != sizeof r) r = EIO;
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    *e = r;
    return r == 0;
}
