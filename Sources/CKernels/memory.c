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

/* Reads n bytes (a multiple of 64) with 8 independent 64-bit lanes of xor, the way the decode
 * kernels stream weights: read bandwidth alone, no writes. The xor goes to *sink so the reads
 * are not optimized away. Returns seconds. */
double dsk_timed_read(const void *src, size_t n, uint64_t *sink) {
    struct timespec a, b;
    const uint64_t *p = (const uint64_t *)src;
    uint64_t acc[8] = {0};
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (size_t i = 0; i + 8 <= n / 8; i += 8)
        for (int k = 0; k < 8; k++) acc[k] ^= p[i + k];
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = 0;
    for (int k = 0; k < 8; k++) x ^= acc[k];
    *sink = x;
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}
