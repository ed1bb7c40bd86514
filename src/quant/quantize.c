/* Quantizers of SPEC §2.1: uniform (interval), log and DoReFa.
 *
 * Everything is float32 in the SPEC's operation order, as PyTorch's eager
 * float32 code computes it, so that codes match the original bit for bit:
 *   uniform  q = rint(((x - mn) / (mx - mn)) * n),  xhat = ((q * (mx - mn)) / n) + mn
 *   log      q = rint((ln(x - mn + 1) / M) * n),    xhat = (exp((q * M) / n) - 1) + mn
 * with M = ln(mx - mn + 1). rintf rounds half to even under the default
 * rounding mode (roundf would round half away from zero, unlike torch.round). */
#include "quant/quant_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cwba_status cwba_quant_parse(const char *name, cwba_quant *out, cwba_error *err)
{
    if (name && (strcmp(name, "uniform") == 0 || strcmp(name, "interval") == 0)) {
        *out = CWBA_QUANT_UNIFORM;
        return CWBA_OK;
    }
    if (name && strcmp(name, "log") == 0) {
        *out = CWBA_QUANT_LOG;
        return CWBA_OK;
    }
    if (name && strcmp(name, "dorefa") == 0) {
        *out = CWBA_QUANT_DOREFA;
        return CWBA_OK;
    }
    return cwba_fail(err, CWBA_E_ARG, "unknown quantizer '%s' (expected uniform, log or dorefa)",
                     name ? name : "(null)");
}

const char *cwba_quant_name(cwba_quant q)
{
    switch (q) {
    case CWBA_QUANT_UNIFORM: return "uniform";
    case CWBA_QUANT_LOG: return "log";
    case CWBA_QUANT_DOREFA: return "dorefa";
    }
    return "unknown";
}

void cwba_feature_range(const float *x, size_t n, float *mn, float *mx)
{
    float lo = 0.0f, hi = 0.0f;
    if (n > 0) lo = hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    *mn = lo;
    *mx = hi;
}

long cwba_budget(int bits, int C)
{
    if (bits < 1 || bits > 30 || C < 0) return 0;
    return ((1L << bits) - 1) * (long)C;
}

/* A rounded value -> code in 0..n. Values can only leave 0..n when x lies
 * outside [mn, mx] (or is NaN), which a feature's own range never allows. */
static uint32_t code_clamp(float t, int n)
{
    if (!(t >= 0.0f)) return 0;
    if (t >= (float)n) return (uint32_t)n;
    return (uint32_t)t;
}

uint32_t cwba_quant_code_ref(cwba_quant q, float x, float mn, float mx, int n)
{
    if (n < 1) return 0;
    if (q == CWBA_QUANT_DOREFA) {
        /* [mn, mx] is the clamp interval: mn is 0 and mx the clip in SPEC use. */
        float c = x < mn ? mn : (x > mx ? mx : x);
        return code_clamp(rintf(c * (float)n), INT32_MAX);
    }
    if (!(mx > mn)) return 0;
    float range = mx - mn;
    float t;
    if (q == CWBA_QUANT_LOG) {
        float m = logf(range + 1.0f);
        if (!(m > 0.0f)) return 0; /* range too small for ln: pass-through */
        t = logf(x - mn + 1.0f) / m * (float)n;
    } else {
        t = (x - mn) / range * (float)n;
    }
    return code_clamp(rintf(t), n);
}

float cwba_quant_dequant_ref(cwba_quant q, uint32_t code, float mn, float mx, int n)
{
    if (n < 1) return mn;
    if (q == CWBA_QUANT_DOREFA) return (float)code / (float)n;
    /* mx == mn: every value of the feature equals mn, so mn is the exact value. */
    if (!(mx > mn)) return mn;
    float range = mx - mn;
    if (q == CWBA_QUANT_LOG) {
        float m = logf(range + 1.0f);
        return expf((float)code * m / (float)n) - 1.0f + mn;
    }
    return (float)code * range / (float)n + mn;
}

cwba_status cwba__qparams_from_feature(cwba_quant q, const float *x, size_t count,
                                       cwba_qparams *qp, cwba_error *err)
{
    if (q != CWBA_QUANT_UNIFORM && q != CWBA_QUANT_LOG)
        return cwba_fail(err, CWBA_E_ARG,
                         "quantizer %s has no per-channel intervals (use uniform or log)",
                         cwba_quant_name(q));
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return cwba_fail(err, CWBA_E_ARG, "feature value %zu is not finite", i);
    memset(qp, 0, sizeof *qp);
    qp->q = q;
    cwba_feature_range(x, count, &qp->mn, &qp->mx);
    qp->range = qp->mx - qp->mn;
    if (!isfinite(qp->range))
        return cwba_fail(err, CWBA_E_ARG, "feature range [%g, %g] overflows float32",
                         (double)qp->mn, (double)qp->mx);
    if (q == CWBA_QUANT_LOG && qp->range > 0.0f) {
        qp->logm = logf(qp->range + 1.0f);
        if (!(qp->logm > 0.0f)) {
            /* A range below half an ulp of 1 makes ln(range + 1) zero: the
             * log quantizer cannot resolve it, so keep the feature exact. */
            qp->range = 0.0f;
        }
    }
    return CWBA_OK;
}

/* The same expressions as the reference functions above, with the per-image
 * constants hoisted; kept in this file so both stay side by side. */
static inline float qcode_value(const cwba_qparams *qp, float x, float nf)
{
    if (qp->q == CWBA_QUANT_LOG) return rintf(logf(x - qp->mn + 1.0f) / qp->logm * nf);
    return rintf((x - qp->mn) / qp->range * nf);
}

static inline float qlevel(const cwba_qparams *qp, uint32_t code, float nf)
{
    if (qp->q == CWBA_QUANT_LOG) return expf((float)code * qp->logm / nf) - 1.0f + qp->mn;
    return (float)code * qp->range / nf + qp->mn;
}

void cwba__quant_channel(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                         uint32_t *codes, float *lut)
{
    if (!(qp->range > 0.0f)) {
        /* mx == mn: pass-through, codes 0 (SPEC §2). */
        if (out != x) memcpy(out, x, (size_t)HW * sizeof *out);
        if (codes) memset(codes, 0, (size_t)HW * sizeof *codes);
        return;
    }
    const float nf = (float)n;
    /* A table of the n+1 levels saves one division (uniform) or one expf
     * (log) per value when there are fewer levels than values. */
    int use_lut = lut && n < HW;
    if (use_lut)
        for (int k = 0; k <= n; k++) lut[k] = qlevel(qp, (uint32_t)k, nf);
    for (int i = 0; i < HW; i++) {
        uint32_t c = code_clamp(qcode_value(qp, x[i], nf), n);
        if (codes) codes[i] = c;
        out[i] = use_lut ? lut[c] : qlevel(qp, c, nf);
    }
}

cwba_status cwba_quantize_feature(cwba_quant q, const float *x, int C, int HW, const int *n,
                                  float *xhat, uint32_t *codes, cwba_error *err)
{
    if (!x || !n || !xhat || C < 1 || HW < 1)
        return cwba_fail(err, CWBA_E_ARG, "quantize_feature: empty or missing feature (C=%d, HW=%d)",
                         C, HW);
    size_t count;
    if (!cwba_size_mul((size_t)C, (size_t)HW, &count) || count > SIZE_MAX / sizeof(float))
        return cwba_fail(err, CWBA_E_NOMEM, "quantize_feature: feature %d x %d is too large", C, HW);
    for (int c = 0; c < C; c++)
        if (n[c] < 1)
            return cwba_fail(err, CWBA_E_ARG, "quantize_feature: channel %d has %d intervals (need >= 1)",
                             c, n[c]);
    cwba_qparams qp;
    cwba_status st = cwba__qparams_from_feature(q, x, count, &qp, err);
    if (st != CWBA_OK) return st;
    float *lut = malloc((size_t)HW * sizeof *lut);
    if (!lut) return cwba_fail(err, CWBA_E_NOMEM, "quantize_feature: out of memory");
    for (int c = 0; c < C; c++) {
        size_t off = (size_t)c * (size_t)HW;
        cwba__quant_channel(&qp, x + off, HW, n[c], xhat + off, codes ? codes + off : NULL, lut);
    }
    free(lut);
    return CWBA_OK;
}

void cwba_dorefa(const float *x, size_t count, int bits, float clip, float *xhat)
{
    if (bits < 1) bits = 1;
    if (bits > 24) bits = 24; /* beyond 24 bits the levels are not exact in float32 */
    const float levels = (float)((1L << bits) - 1);
    for (size_t i = 0; i < count; i++) {
        float v = x[i];
        /* clamp(x, 0, clip) as torch.clamp: NaN stays NaN. */
        if (v < 0.0f) v = 0.0f;
        if (v > clip) v = clip;
        xhat[i] = rintf(v * levels) / levels;
    }
}

double cwba_mse(const float *a, const float *b, size_t n)
{
    if (n == 0) return 0.0;
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        acc += d * d;
    }
    return acc / (double)n;
}
