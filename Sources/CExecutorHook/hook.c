// The address of the Swift Concurrency runtime's global-enqueue hook.
//
// The runtime declares it as a global variable (a pointer to a swiftcall
// function taking the job and the original enqueue). It is taken here, by the
// linker, rather than with dlsym: `--static-swift-stdlib` keeps the runtime's
// symbols out of the dynamic symbol table, where dlsym looks.
#include "executorhook.h"

extern void *swift_task_enqueueGlobal_hook;

void **sk_global_enqueue_hook_slot(void) {
    return &swift_task_enqueueGlobal_hook;
}
