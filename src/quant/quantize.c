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
#include <stdint.h>
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

/* Sequentially, lo = x[0] then lo = x[i] whenever x[i] < lo: the minimum,
 * and among equal candidates the first, which only shows for zeros (+0 and
 * -0 compare equal). The same is computed here in 16 independent lanes (the
 * loop vectorises); when the extreme is a zero, the sequential result is
 * the first zero of the array, whose sign is then copied. NaN behaves as
 * sequentially: skipped, unless x[0] is NaN. */
static float first_zero(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] == 0.0f) return x[i];
    return 0.0f;
}

void cwba_feature_range(const float *x, size_t n, float *mn, float *mx)
{
    enum { LANES = 16 };
    if (n == 0) {
        *mn = *mx = 0.0f;
        return;
    }
    float lo[LANES], hi[LANES];
    for (int j = 0; j < LANES; j++) lo[j] = hi[j] = x[0];
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float v = x[i + j];
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
        }
    for (; i < n; i++) {
        lo[0] = x[i] < lo[0] ? x[i] : lo[0];
        hi[0] = x[i] > hi[0] ? x[i] : hi[0];
    }
    float l = lo[0], h = hi[0];
    for (int j = 1; j < LANES; j++) {
        l = lo[j] < l ? lo[j] : l;
        h = hi[j] > h ? hi[j] : h;
    }
    if (l == 0.0f) l = first_zero(x, n);
    if (h == 0.0f) h = first_zero(x, n);
    *mn = l;
    *mx = h;
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
    /* A branch-free scan first (it vectorises); the index only on failure. */
    int bad = 0;
    for (size_t i = 0; i < count; i++) bad |= !isfinite(x[i]);
    if (bad)
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

/* The fast per-channel paths. They compute exactly what the reference
 * functions above compute (tests/test_quant_quantizers.c compares them bit
 * for bit), organised so that the compiler vectorises them.
 *
 * Uniform: the same float32 expressions, branch-free (the clamp to 0..n is
 * a select; x always lies in [mn, mx], so it only guards rounding).
 *
 * Log: logf per value costs most of the time, so the code is first computed
 * from ln(v) in double precision (fast_ln below, relative error < 1e-12)
 * and the float32 chain is evaluated only where that cannot be trusted. The
 * reference is t = rint((logf(v) / M) * n) in float32: logf is within 1 ulp
 * (glibc: 0.82 ulp) and the division and product add half an ulp each, so
 * the unrounded float32 value lies within 3.7 * 2^-24 * t of the exact
 * ln(v) / M * n (t <= n). When the double estimate is farther than
 * 6 * 2^-24 * n (plus its own error) from a half-integer, both round to the
 * same integer; otherwise (about one value in 10^6 at 4 bits) the float32
 * reference chain decides. tests/test_quant_quantizers.c aims values at the
 * half-integers to check this on the machine's libm. */
/* Log levels come from a table of the n+1 values when it is smaller than the
 * channel (one expf per level instead of one per value). */
#define CWBA_LOG_LUT_MAX 4096

static inline float qlevel(const cwba_qparams *qp, uint32_t code, float nf)
{
    if (qp->q == CWBA_QUANT_LOG) return expf((float)code * qp->logm / nf) - 1.0f + qp->mn;
    return (float)code * qp->range / nf + qp->mn;
}

static void quant_uniform(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                          uint32_t *codes)
{
    const float mn = qp->mn, range = qp->range, nf = (float)n;
    /* t is a whole number in 0..n, so t * range / nf + mn is the dequantized
     * level of code (uint32_t)t, as in cwba_quant_dequant_ref. */
#define UNIFORM_T(i)                                                                             \
    float t = rintf((x[i] - mn) / range * nf);                                                   \
    t = t >= 0.0f ? t : 0.0f;                                                                    \
    t = t <= nf ? t : nf
    if (codes) {
        for (int i = 0; i < HW; i++) {
            UNIFORM_T(i);
            codes[i] = (uint32_t)(int32_t)t;
            out[i] = t * range / nf + mn;
        }
    } else {
        for (int i = 0; i < HW; i++) {
            UNIFORM_T(i);
            out[i] = t * range / nf + mn;
        }
    }
#undef UNIFORM_T
}

/* ln(v) for a finite float v >= 1, in double: v = 2^e * m with m in
 * [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716;
 * the series to s^11 leaves a relative error below 1e-12. */
static inline double fast_ln(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    int e = (int)(u >> 23) - 127;
    uint32_t mu = (u & 0x007fffffu) | 0x3f800000u;
    float mf;
    memcpy(&mf, &mu, sizeof mf);
    double m = (double)mf;
    int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e += big;
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 * (1.0 / 11)))));
    return (double)e * 0.69314718055994530942 + (2.0 * s + 2.0 * s * p);
}

static inline float log_code_exact(const cwba_qparams *qp, float x, float nf)
{
    return rintf(logf(x - qp->mn + 1.0f) / qp->logm * nf);
}

static void quant_log(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                      uint32_t *codes, float *scratch, const float *levels)
{
    const float mn = qp->mn, nf = (float)n;
    const double scale = (double)nf / (double)qp->logm;
    /* Half-integer distance below which the float32 chain decides: 6 ulps of
     * t (<= n) in float32 plus 1e-9 * n for the double estimate. */
    const double lim = 0.5 - ((double)nf * (6.0 / 16777216.0 + 1e-9) + 1e-12);
    float *t = scratch;
    int doubtful = 0;
    for (int i = 0; i < HW; i++) {
        double td = fast_ln(x[i] - mn + 1.0f) * scale;
        double r = nearbyint(td);
        doubtful |= fabs(td - r) > lim;
        t[i] = (float)r;
    }
    if (doubtful)
        for (int i = 0; i < HW; i++) {
            double td = fast_ln(x[i] - mn + 1.0f) * scale;
            if (fabs(td - nearbyint(td)) > lim) t[i] = log_code_exact(qp, x[i], nf);
        }
    for (int i = 0; i < HW; i++) {
        float v = t[i] >= 0.0f ? t[i] : 0.0f;
        t[i] = v <= nf ? v : nf;
    }
    if (codes)
        for (int i = 0; i < HW; i++) codes[i] = (uint32_t)(int32_t)t[i];
    if (levels) {
        for (int i = 0; i < HW; i++) out[i] = levels[(int32_t)t[i]];
        return;
    }
    if (n < HW && n <= CWBA_LOG_LUT_MAX) {
        float lut[CWBA_LOG_LUT_MAX + 1];
        for (int k = 0; k <= n; k++) lut[k] = qlevel(qp, (uint32_t)k, nf);
        for (int i = 0; i < HW; i++) out[i] = lut[(int32_t)t[i]];
        return;
    }
    for (int i = 0; i < HW; i++) out[i] = qlevel(qp, (uint32_t)(int32_t)t[i], nf);
}

int cwba__levels_make(const cwba_qparams *qp, const int *n, int C, int HW, cwba__levels *lv)
{
    memset(lv, 0, sizeof *lv);
    if (qp->q != CWBA_QUANT_LOG || !(qp->range > 0.0f)) return 1; /* nothing to tabulate */
    int nmax = 0;
    for (int c = 0; c < C; c++)
        if (n[c] > nmax) nmax = n[c];
    if (nmax < 1 || nmax > CWBA_LEVELS_NMAX) return 1;
    lv->off = malloc(((size_t)nmax + 1) * sizeof *lv->off);
    if (!lv->off) return 0;
    for (int k = 0; k <= nmax; k++) lv->off[k] = -1;
    size_t total = 0;
    for (int c = 0; c < C; c++)
        if (lv->off[n[c]] < 0) {
            lv->off[n[c]] = (long)total;
            total += (size_t)n[c] + 1;
        }
    if (total > (size_t)C * (size_t)HW) {
        /* More levels than values: one expf per value is cheaper. */
        free(lv->off);
        lv->off = NULL;
        return 1;
    }
    lv->buf = malloc(total * sizeof *lv->buf);
    if (!lv->buf) {
        free(lv->off);
        lv->off = NULL;
        return 0;
    }
    for (int k = 1; k <= nmax; k++)
        if (lv->off[k] >= 0)
            for (int j = 0; j <= k; j++) lv->buf[lv->off[k] + j] = qlevel(qp, (uint32_t)j, (float)k);
    lv->nmax = nmax;
    return 1;
}

const float *cwba__levels_get(const cwba__levels *lv, int n)
{
    if (!lv || !lv->buf || n < 1 || n > lv->nmax || lv->off[n] < 0) return NULL;
    return lv->buf + lv->off[n];
}

void cwba__levels_free(cwba__levels *lv)
{
    free(lv->buf);
    free(lv->off);
    memset(lv, 0, sizeof *lv);
}

void cwba__quant_channel(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                         uint32_t *codes, float *scratch, const float *levels)
{
    if (!(qp->range > 0.0f)) {
        /* mx == mn: pass-through, codes 0 (SPEC §2). */
        if (out != x) memcpy(out, x, (size_t)HW * sizeof *out);
        if (codes) memset(codes, 0, (size_t)HW * sizeof *codes);
        return;
    }
    if (qp->q == CWBA_QUANT_LOG) {
        if (scratch) {
            quant_log(qp, x, HW, n, out, codes, scratch, levels);
            return;
        }
        const float nf = (float)n;
        for (int i = 0; i < HW; i++) {
            uint32_t c = code_clamp(log_code_exact(qp, x[i], nf), n);
            if (codes) codes[i] = c;
            out[i] = levels ? levels[c] : qlevel(qp, c, nf);
        }
        return;
    }
    quant_uniform(qp, x, HW, n, out, codes);
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
    float *scratch = malloc((size_t)HW * sizeof *scratch);
    cwba__levels lv;
    if (!scratch || !cwba__levels_make(&qp, n, C, HW, &lv)) {
        free(scratch);
        return cwba_fail(err, CWBA_E_NOMEM, "quantize_feature: out of memory");
    }
    for (int c = 0; c < C; c++) {
        size_t off = (size_t)c * (size_t)HW;
        cwba__quant_channel(&qp, x + off, HW, n[c], xhat + off, codes ? codes + off : NULL, scratch,
                            cwba__levels_get(&lv, n[c]));
    }
    cwba__levels_free(&lv);
    free(scratch);
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
