// The benchmark's floor: the kernel work a sandboxed run cannot avoid, done by
// plain C with nothing of the gateway around it (floor.c).
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "csandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

/// How much of a run the floor does, each level adding to the one before.
enum {
    SKB_FLOOR_STEP = 0,      ///< the step alone: `sh` started with vfork, its output read, reaped
    SKB_FLOOR_PROCESS = 1,   ///< + a process of its own per run, forked and reaped
    SKB_FLOOR_SANDBOX = 2,   ///< + that process's sandbox, as the worker template sets it up
};

typedef struct {
    int level;                       ///< SKB_FLOOR_*
    int iterations;
    uid_t uid;                       ///< the sandboxed process's uid and gid (level 2)
    gid_t gid;
    const sk_landlock_rule_t *worker_rules;  ///< the worker's Landlock layer (level 2)
    size_t worker_nrules;
    const uint16_t *bind_ports;      ///< the worker's egress forwarder ports
    size_t nbind;
    const sk_landlock_rule_t *step_rules;    ///< the step's own layer (level 2)
    size_t step_nrules;
    int seccomp_fd;                  ///< sk_seccomp_build_memfd's program (level 2)
    const char *noexec;              ///< paths remounted noexec, NUL-terminated back to back
    size_t noexec_len;
    sk_run_spec_t step;              ///< the step's program
} skb_floor_t;

/// Runs `iterations` runs' worth of that work one after another on a thread of
/// its own (it enters namespaces, which must not touch the caller's thread).
/// Returns 0, or -1 with `err` filled in ("stage: strerror"): any run that did
/// not exit 0 with output stops it.
int skb_floor_run(const skb_floor_t *spec, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
