/* Log-softmax comparisons of two logit rows (see ckernels.h). */
#include "ckernels.h"
#include <math.h>

static double log_sum_exp(const float *x, size_t n, size_t *argmax) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    *argmax = best;
    const double m = x[best];
    double s = 0;
    for (size_t i = 0; i < n; i++) s += exp((double)x[i] - m);
    return m + log(s);
}

double dsk_kl_position(const float *ours, const float *ref, size_t n, size_t target, double *nll_ours, double *nll_ref,
                       size_t *argmax_ours, size_t *argmax_ref) {
    const double lo = log_sum_exp(ours, n, argmax_ours), lr = log_sum_exp(ref, n, argmax_ref);
    double kl = 0;
    for (size_t i = 0; i < n; i++) {
        const double lp = (double)ref[i] - lr, lq = (double)ours[i] - lo;
        kl += exp(lp) * (lp - lq);
    }
    *nll_ours = lo - (double)ours[target];
    *nll_ref = lr - (double)ref[target];
    return kl > 0 ? kl : 0;
}

void dsk_group_output_error(const float *X, size_t tokens, size_t cols, const float *D, size_t rows, size_t group, double *err) {
    const size_t groups = cols / group;
    for (size_t r = 0; r < rows; r++) {
        const float *d = D + r * cols;
        for (size_t g = 0; g < groups; g++) {
            double e = 0;
            for (size_t t = 0; t < tokens; t++) {
                const float *x = X + t * cols + g * group;
                float s = 0;
                for (size_t c = 0; c < group; c++) s += x[c] * d[g * group + c];
                e += (double)s * s;
            }
            err[r * groups + g] += e;
        }
    }
}
