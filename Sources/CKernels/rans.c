#include "ckernels.h"
#include <string.h>

#define RANS_L (1u << 23)
#define SCALE 14
#define M (1u << SCALE)

/* Block layout (all little-endian):
 *   u16 k                     symbols present
 *   k × (u8 symbol, u16 freq) frequencies, summing to 2^14
 *   u32 stream_len            rANS bytes (4 initial states first)
 *   stream_len bytes
 *   n bytes                   sign << 7 | mantissa, one per value */

size_t dsk_bf16_exp_bound(size_t n) { return 2 + 3 * 256 + 4 + 16 + 2 * n + 64 + n; }

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }
static uint32_t get16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const uint8_t *p) { return get16(p) | get16(p + 2) << 16; }

static void normalize(const uint32_t cnt[256], size_t n, uint32_t freq[256]) {
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        if (!cnt[s]) { freq[s] = 0; continue; }
        uint32_t f = (uint32_t)((uint64_t)cnt[s] * M / n);
        if (f == 0) f = 1;
        freq[s] = f;
        sum += f;
    }
    while (sum != M) {
        /* Give the remainder to (or take the excess from) the most frequent symbols. */
        int best = -1;
        for (int s = 0; s < 256; s++)
            if (freq[s] > 1 && (best < 0 || cnt[s] > cnt[best])) best = s;
        if (best < 0) break;
        if (sum < M) { freq[best] += M - sum; sum = M; }
        else { uint32_t take = sum - M < freq[best] - 1 ? sum - M : freq[best] - 1; freq[best] -= take; sum -= take; }
    }
}

size_t dsk_bf16_exp_encode(const uint16_t *in, size_t n, uint8_t *out) {
    if (n == 0) return 0;
    uint32_t cnt[256] = {0};
    for (size_t i = 0; i < n; i++) cnt[(in[i] >> 7) & 0xFF]++;
    uint32_t freq[256], cum[257];
    normalize(cnt, n, freq);
    cum[0] = 0;
    for (int s = 0; s < 256; s++) cum[s + 1] = cum[s] + freq[s];

    uint8_t *p = out;
    uint32_t k = 0;
    for (int s = 0; s < 256; s++) k += freq[s] ? 1 : 0;
    put16(p, k); p += 2;
    for (int s = 0; s < 256; s++)
        if (freq[s]) { *p++ = (uint8_t)s; put16(p, freq[s]); p += 2; }
    uint8_t *lenField = p;
    p += 4;

    /* Encode backwards into the tail of the bound, then move the stream into place. */
    size_t streamCap = 2 * n + 64;
    uint8_t *end = p + streamCap, *ptr = end;
    uint32_t x[4] = {RANS_L, RANS_L, RANS_L, RANS_L};
    for (size_t i = n; i-- > 0;) {
        uint32_t s = (in[i] >> 7) & 0xFF;
        uint32_t f = freq[s];
        uint32_t *st = &x[i & 3];
        uint32_t xmax = ((RANS_L >> SCALE) << 8) * f;
        while (*st >= xmax) { *--ptr = (uint8_t)*st; *st >>= 8; }
        *st = ((*st / f) << SCALE) + (*st % f) + cum[s];
    }
    for (int j = 3; j >= 0; j--) { ptr -= 4; put32(ptr, x[j]); }
    size_t streamLen = (size_t)(end - ptr);
    memmove(p, ptr, streamLen);
    put32(lenField, (uint32_t)streamLen);
    p += streamLen;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(((in[i] >> 8) & 0x80) | (in[i] & 0x7F));
    p += n;
    return (size_t)(p - out);
}

int dsk_bf16_exp_decode(const uint8_t *in, size_t len, uint16_t *out, size_t n) {
    if (n == 0) return len == 0 ? 0 : -1;
    const uint8_t *p = in, *end = in + len;
    if (end - p < 2) return -1;
    uint32_t k = get16(p); p += 2;
    if (k == 0 || k > 256 || (size_t)(end - p) < 3 * (size_t)k + 4) return -1;
    uint32_t freq[256] = {0}, cum[256] = {0};
    uint8_t sym[256];
    uint32_t total = 0;
    for (uint32_t i = 0; i < k; i++) {
        uint8_t s = *p++;
        uint32_t f = get16(p); p += 2;
        if (f == 0 || freq[s]) return -1;
        freq[s] = f; sym[i] = s; total += f;
    }
    if (total != M) return -1;
    static __thread uint8_t lut[M];
    uint32_t c = 0;
    for (uint32_t i = 0; i < k; i++) {
        uint8_t s = sym[i];
        cum[s] = c;
        memset(lut + c, s, freq[s]);
        c += freq[s];
    }
    uint32_t streamLen = get32(p); p += 4;
    if (streamLen < 16 || (size_t)(end - p) < (size_t)streamLen + n) return -1;
    const uint8_t *sp = p, *send = p + streamLen;
    const uint8_t *sm = send;
    if ((size_t)(end - sm) != n) return -1;
    uint32_t x[4];
    for (int j = 0; j < 4; j++) { x[j] = get32(sp); sp += 4; }
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int j = 0; j < 4; j++) {
            uint32_t slot = x[j] & (M - 1);
            uint32_t s = lut[slot];
            x[j] = freq[s] * (x[j] >> SCALE) + slot - cum[s];
            while (x[j] < RANS_L) {
                if (sp >= send) return -1;
                x[j] = (x[j] << 8) | *sp++;
            }
            uint8_t b = sm[i + j];
            out[i + j] = (uint16_t)(((uint32_t)(b & 0x80) << 8) | (s << 7) | (b & 0x7F));
        }
    }
    for (; i < n; i++) {
        uint32_t j = (uint32_t)(i & 3);
        uint32_t slot = x[j] & (M - 1);
        uint32_t s = lut[slot];
        x[j] = freq[s] * (x[j] >> SCALE) + slot - cum[s];
        while (x[j] < RANS_L) {
            if (sp >= send) return -1;
            x[j] = (x[j] << 8) | *sp++;
        }
        uint8_t b = sm[i];
        out[i] = (uint16_t)(((uint32_t)(b & 0x80) << 8) | (s << 7) | (b & 0x7F));
    }
    if (sp != send) return -1;
    for (int j = 0; j < 4; j++) if (x[j] != RANS_L) return -1;
    return 0;
}

void dsk_bf16_to_planes(const uint16_t *in, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) { out[i] = (uint8_t)(in[i] >> 8); out[n + i] = (uint8_t)in[i]; }
}

void dsk_planes_to_bf16(const uint8_t *in, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = (uint16_t)((uint16_t)in[i] << 8 | in[n + i]);
}
