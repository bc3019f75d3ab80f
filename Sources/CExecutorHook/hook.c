// Installs the Swift Concurrency runtime's global-enqueue hook.
//
// The runtime declares it as a global variable (a pointer to a swiftcall
// function taking the job and the original enqueue). It is reached here, by the
// linker, rather than with dlsym: `--static-swift-stdlib` keeps the runtime's
// symbols out of the dynamic symbol table, where dlsym looks.
#include "executorhook.h"

extern void *swift_task_enqueueGlobal_hook;

int sk_install_global_enqueue_hook(void *hook) {
    void *expected = 0;
    // Only over no hook: another one already there (a library's, NIO's) stays.
    return __atomic_compare_exchange_n(&swift_task_enqueueGlobal_hook, &expected, hook, 0,
                                       __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}
