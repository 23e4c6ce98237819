#include "ckernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void dsk_keep_freed_memory(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

#include <string.h>
#include <time.h>

double dsk_timed_copy(void *dst, const void *src, size_t n) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    memcpy(dst, src, n);
    __asm__ volatile("" ::: "memory");
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}
