#include "ckernels.h"
#include <string.h>

/* rANS with 32-bit states renormalized 16 bits at a time (at most one word per symbol), four
 * states each with its own word stream, so the four decode chains run independently. */
#define RANS_L (1u << 16)
#define SCALE 14
#define M (1u << SCALE)
#define STATES 4

/* Block layout (all little-endian):
 *   u16 k                        symbols present
 *   k × (u8 symbol, u16 freq)    frequencies, summing to 2^14
 *   4 × u32 stream_len           bytes of each state's stream (a multiple of 2, ≥ 4)
 *   4 streams                    initial state (u32), then 16-bit words in decode order
 *   n bytes                      sign << 7 | mantissa, one per value
 * Value i is coded by state i mod 4. */

size_t dsk_bf16_exp_bound(size_t n) { return 2 + 3 * 256 + 4 * STATES + 4 * STATES + 2 * n + 64 + n; }

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
    uint8_t *lenFields = p;
    p += 4 * STATES;

    /* Division by the frequency through a reciprocal (Alverson), as in ryg_rans. */
    struct { uint32_t xmax, rcp, bias; uint16_t cmpl, shift; } enc[256];
    for (int s = 0; s < 256; s++) {
        uint32_t f = freq[s];
        if (!f) continue;
        enc[s].xmax = ((RANS_L >> SCALE) << 16) * f;
        enc[s].cmpl = (uint16_t)(M - f);
        if (f < 2) {
            enc[s].rcp = ~0u; enc[s].shift = 0; enc[s].bias = cum[s] + M - 1;
        } else {
            uint32_t shift = 0;
            while (f > (1u << shift)) shift++;
            enc[s].rcp = (uint32_t)(((1ull << (shift + 31)) + f - 1) / f);
            enc[s].shift = (uint16_t)(shift - 1);
            enc[s].bias = cum[s];
        }
    }
    /* Each state writes its words backwards into its own region, sized for the worst case
     * (one word per symbol), placed one after another in the output; they are then moved together. */
    size_t per = (n + STATES - 1) / STATES;
    uint8_t *region[STATES], *ptr[STATES];
    for (int j = 0; j < STATES; j++) { region[j] = p + (size_t)j * (2 * per + 8); ptr[j] = region[j] + 2 * per + 8; }
    uint32_t x[STATES];
    for (int j = 0; j < STATES; j++) x[j] = RANS_L;
    for (size_t i = n; i-- > 0;) {
        uint32_t s = (in[i] >> 7) & 0xFF;
        int j = (int)(i & (STATES - 1));
        uint32_t v = x[j];
        if (v >= enc[s].xmax) { ptr[j] -= 2; put16(ptr[j], v & 0xFFFF); v >>= 16; }
        uint32_t q = (uint32_t)(((uint64_t)v * enc[s].rcp) >> 32) >> enc[s].shift;
        x[j] = v + enc[s].bias + q * enc[s].cmpl;
    }
    uint8_t *dst = p;
    for (int j = 0; j < STATES; j++) {
        ptr[j] -= 4;
        put32(ptr[j], x[j]);
        size_t len = (size_t)(region[j] + 2 * per + 8 - ptr[j]);
        memmove(dst, ptr[j], len);
        put32(lenFields + 4 * j, (uint32_t)len);
        dst += len;
    }
    p = dst;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(((in[i] >> 8) & 0x80) | (in[i] & 0x7F));
    p += n;
    return (size_t)(p - out);
}

int dsk_bf16_exp_decode(const uint8_t *in, size_t len, uint16_t *out, size_t n) {
    if (n == 0) return len == 0 ? 0 : -1;
    const uint8_t *p = in, *end = in + len;
    if (end - p < 2) return -1;
    uint32_t k = get16(p); p += 2;
    if (k == 0 || k > 256 || (size_t)(end - p) < 3 * (size_t)k + 4 * STATES) return -1;
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
    /* One table indexed by slot: symbol, frequency and slot − cum together. */
    uint32_t tab[M];
    uint8_t lut[M];
    uint32_t c = 0;
    for (uint32_t i = 0; i < k; i++) {
        uint8_t s = sym[i];
        cum[s] = c;
        for (uint32_t t = 0; t < freq[s]; t++) { tab[c + t] = freq[s] << 16 | t; lut[c + t] = s; }
        c += freq[s];
    }
    const uint8_t *sp[STATES], *se[STATES];
    uint32_t lens[STATES];
    size_t streams = 0;
    for (int j = 0; j < STATES; j++) {
        lens[j] = get32(p + 4 * j);
        if (lens[j] < 4 || (lens[j] & 1)) return -1;
        streams += lens[j];
    }
    p += 4 * STATES;
    if ((size_t)(end - p) != streams + n) return -1;
    uint32_t x[STATES];
    for (int j = 0; j < STATES; j++) {
        sp[j] = p; se[j] = p + lens[j]; p += lens[j];
        x[j] = get32(sp[j]); sp[j] += 4;
    }
    const uint8_t *sm = p;
    size_t i = 0;
    /* Four chains in scalar variables (not arrays), so they stay in registers. The stream
     * bounds are checked once per group against the worst case of one word per state. */
    uint32_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    const uint8_t *p0 = sp[0], *p1 = sp[1], *p2 = sp[2], *p3 = sp[3];
#define STEP(X, P, J)                                                                            \
    {                                                                                            \
        uint32_t slot = X & (M - 1);                                                             \
        uint32_t e = tab[slot];                                                                  \
        uint32_t sy = lut[slot];                                                                 \
        X = (e >> 16) * (X >> SCALE) + (e & 0xFFFF);                                             \
        if (X < RANS_L) { X = (X << 16) | get16(P); P += 2; }                                    \
        uint8_t b = sm[i + J];                                                                   \
        out[i + J] = (uint16_t)(((uint32_t)(b & 0x80) << 8) | (sy << 7) | (b & 0x7F));           \
    }
    for (; i + STATES <= n; i += STATES) {
        if (p0 + 2 > se[0] || p1 + 2 > se[1] || p2 + 2 > se[2] || p3 + 2 > se[3]) break;
        STEP(x0, p0, 0) STEP(x1, p1, 1) STEP(x2, p2, 2) STEP(x3, p3, 3)
    }
#undef STEP
    x[0] = x0; x[1] = x1; x[2] = x2; x[3] = x3;
    sp[0] = p0; sp[1] = p1; sp[2] = p2; sp[3] = p3;
    for (; i < n; i++) {
        int j = (int)(i & (STATES - 1));
        uint32_t v = x[j];
        uint32_t slot = v & (M - 1);
        uint32_t e = tab[slot];
        uint32_t s = lut[slot];
        v = (e >> 16) * (v >> SCALE) + (e & 0xFFFF);
        if (v < RANS_L) {
            if (sp[j] >= se[j]) return -1;
            v = (v << 16) | get16(sp[j]);
            sp[j] += 2;
        }
        x[j] = v;
        uint8_t b = sm[i];
        out[i] = (uint16_t)(((uint32_t)(b & 0x80) << 8) | (s << 7) | (b & 0x7F));
    }
    for (int j = 0; j < STATES; j++) if (sp[j] != se[j] || x[j] != RANS_L) return -1;
    return 0;
}

void dsk_bf16_to_planes(const uint16_t *in, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) { out[i] = (uint8_t)(in[i] >> 8); out[n + i] = (uint8_t)in[i]; }
}

void dsk_planes_to_bf16(const uint8_t *in, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = (uint16_t)((uint16_t)in[i] << 8 | in[n + i]);
}

void dsk_bf16_to_exp_planes(const uint16_t *in, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        out[i] = (uint8_t)(in[i] >> 7);
        out[n + i] = (uint8_t)(((in[i] >> 8) & 0x80) | (in[i] & 0x7F));
    }
}

void dsk_exp_planes_to_bf16(const uint8_t *in, size_t n, uint16_t *out) {
    const uint8_t *e = in, *sm = in + n;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint16_t)(((uint16_t)(sm[i] & 0x80) << 8) | ((uint16_t)e[i] << 7) | (sm[i] & 0x7F));
}
