// The worker template's code on huge pages.
//
// Every worker is a fork of the template, used for one job and then gone.
// A fork does not copy the page tables of a file mapping that was never
// written (the kernel leaves them to be faulted in), so each worker faulted in
// every page of the binary's code it touched, a few hundred faults per worker,
// and its exit unmapped them again. Here the template copies the 2 MiB-aligned
// middle of its code segment into anonymous memory backed by transparent huge
// pages and moves the copy over the original: the same bytes at the same
// addresses, read-only and executable. A fork then copies a few dozen huge-page
// entries, and a worker faults in none of that code (the segment's unaligned
// ends, at most 2 MiB each, and the C library stay the file's).
//
// Nothing in libc or a listed library does this; it is a few system calls.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "csandbox.h"

typedef struct { uintptr_t start, end; } range_t;

// The executable's own code segment: the first object dl_iterate_phdr
// reports is the program itself.
static int first_code_segment(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    range_t *r = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        // Readable too: an execute-only segment cannot be copied.
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && (ph->p_flags & PF_R)) {
            r->start = info->dlpi_addr + ph->p_vaddr;
            r->end = r->start + ph->p_memsz;
            break;
        }
    }
    return 1;
}

static size_t read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) n = 0;
    buf[n] = 0;
    return (size_t)n;
}

// The kernel's huge page size for anonymous memory, or 0 when transparent
// huge pages are off (or the kernel has none).
static size_t huge_page_size(void) {
    char buf[128];
    if (!read_small("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf)) return 0;
    if (strstr(buf, "[never]")) return 0;
    if (!read_small("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof buf)) return 0;
    return (size_t)strtoull(buf, NULL, 10);
}

// How much of the mapping that starts at `start` is on huge pages, from
// /proc/self/smaps (the kernel says so nowhere else).
static size_t huge_bytes_at(uintptr_t start) {
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f) return 0;
    char line[512], want[32];
    snprintf(want, sizeof want, "%lx-", (unsigned long)start);
    size_t kb = 0;
    int inside = 0;
    while (fgets(line, sizeof line, f)) {
        if (!inside) {
            inside = strncmp(line, want, strlen(want)) == 0;
            continue;
        }
        if (strncmp(line, "AnonHugePages:", 14) == 0) {
            kb = strtoull(line + 14, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

// Gives the copy back and reports `err`.
static long discard(char *copy, size_t len, int err) {
    munmap(copy, len);
    return -err;
}

long sk_template_huge_code(void) {
#if !defined(__x86_64__)
    // Elsewhere the loader may map code with more than read and execute
    // (arm64's PROT_BTI), which a plain copy would drop.
    return -EOPNOTSUPP;
#endif
    // Under strict overcommit every fork would commit the copy's size again.
    char mode[8];
    if (read_small("/proc/sys/vm/overcommit_memory", mode, sizeof mode) && mode[0] == '2') return -EOPNOTSUPP;
    size_t huge = huge_page_size();
    if (huge == 0 || (huge & (huge - 1)) != 0) return -EOPNOTSUPP;
    range_t code = { 0, 0 };
    dl_iterate_phdr(first_code_segment, &code);
    uintptr_t from = (code.start + huge - 1) & ~(uintptr_t)(huge - 1);
    uintptr_t to = code.end & ~(uintptr_t)(huge - 1);
    if (code.end == 0 || to <= from) return 0;
    size_t len = to - from;

    // A huge-page-aligned place for the copy: reserve one page more and trim.
    size_t reserved = len + huge;
    // MAP_NORESERVE: not counted against the commit limit, in the template or
    // again in each fork; the pages are never written after the copy.
    char *area = mmap(NULL, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED) return -errno;
    char *copy = (char *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
    if (copy > area) munmap(area, (size_t)(copy - area));
    size_t tail = (size_t)(area + reserved - (copy + len));
    if (tail) munmap(copy + len, tail);

    if (madvise(copy, len, MADV_HUGEPAGE) != 0) return discard(copy, len, errno);
    memcpy(copy, (const void *)from, len);
    // On small pages the copy would cost more than it saves: a fork copies an
    // anonymous mapping's page tables entry by entry, and every worker's exit
    // unmaps them. Only a copy that is (nearly) all huge pages replaces the code.
    if (huge_bytes_at((uintptr_t)copy) < len - len / 10) return discard(copy, len, ENOMEM);
    if (mprotect(copy, len, PROT_READ | PROT_EXEC) != 0) return discard(copy, len, errno);
    // One call replaces the old mapping with the copy, and the bytes under this
    // very instruction are the same before and after. The template has one
    // thread here, so nothing else runs meanwhile. Should the kernel fail the
    // move after unmapping the original (out of memory for page tables), the
    // return lands on nothing and the template dies of it: the pool starts
    // another, as after any template's death.
    void *moved = mremap(copy, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)from);
    if (moved == MAP_FAILED) return discard(copy, len, errno);
    return (long)len;
}
