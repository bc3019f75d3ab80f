// Swift Concurrency's global-executor hook, reached by the linker.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/// Sets Swift Concurrency's replacement of its global executor's enqueue
/// (`swift_task_enqueueGlobal_hook`) if none is set. 1 if set, 0 if another was.
int sk_install_global_enqueue_hook(void *hook);

#ifdef __cplusplus
}
#endif
