// Swift Concurrency's global-executor hook, reached by the linker.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/// Where Swift Concurrency's runtime looks for a replacement of its global
/// executor's enqueue (`swift_task_enqueueGlobal_hook`).
void **sk_global_enqueue_hook_slot(void);

#ifdef __cplusplus
}
#endif
