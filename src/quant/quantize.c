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

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q_X86 1
#endif

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

#ifdef Q_X86
/* The 16 lanes of cwba_feature_range in registers (the same selects:
 * min_ps(v, lo) is v < lo ? v : lo). Returns the count of values done. */
__attribute__((target("avx512f"))) static size_t range_avx512(const float *x, size_t n, float *lo,
                                                              float *hi)
{
    __m512 l = _mm512_loadu_ps(lo), h = _mm512_loadu_ps(hi);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        l = _mm512_min_ps(v, l);
        h = _mm512_max_ps(v, h);
    }
    _mm512_storeu_ps(lo, l);
    _mm512_storeu_ps(hi, h);
    return i;
}

__attribute__((target("avx2"))) static size_t range_avx2(const float *x, size_t n, float *lo,
                                                         float *hi)
{
    __m256 l0 = _mm256_loadu_ps(lo), l1 = _mm256_loadu_ps(lo + 8);
    __m256 h0 = _mm256_loadu_ps(hi), h1 = _mm256_loadu_ps(hi + 8);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        l0 = _mm256_min_ps(v0, l0);
        l1 = _mm256_min_ps(v1, l1);
        h0 = _mm256_max_ps(v0, h0);
        h1 = _mm256_max_ps(v1, h1);
    }
    _mm256_storeu_ps(lo, l0);
    _mm256_storeu_ps(lo + 8, l1);
    _mm256_storeu_ps(hi, h0);
    _mm256_storeu_ps(hi + 8, h1);
    return i;
}

/* 1 if every value is finite (exponent field not all ones). */
__attribute__((target("avx2"))) static int finite_avx2(const float *x, size_t n, size_t *done)
{
    const __m256i e = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), e);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(u, e));
    }
    *done = i;
    return _mm256_testz_si256(bad, bad);
}
#endif

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
#ifdef Q_X86
    switch (cwba_isa_current()) {
    case CWBA_ISA_AVX512: i = range_avx512(x, n, lo, hi); break;
    case CWBA_ISA_AVX2: i = range_avx2(x, n, lo, hi); break;
    default: break;
    }
#endif
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
        float m = cwba__qlogf(range + 1.0f);
        if (!(m > 0.0f)) return 0; /* range too small for ln: pass-through */
        t = cwba__qlogf(x - mn + 1.0f) / m * (float)n;
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
        float m = cwba__qlogf(range + 1.0f);
        return cwba__qexpf((float)code * m / (float)n) - 1.0f + mn;
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
    size_t i0 = 0;
#ifdef Q_X86
    if (cwba_isa_current() != CWBA_ISA_SCALAR) bad = !finite_avx2(x, count, &i0);
#endif
    for (size_t i = i0; i < count; i++) bad |= !isfinite(x[i]);
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
        qp->logm = cwba__qlogf(qp->range + 1.0f);
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
 * for bit on every ISA), in vector kernels for AVX2 and AVX-512 chosen by
 * cwba_isa_current(), and in plain loops otherwise.
 *
 * Uniform: the same float32 expressions, branch-free (the clamp to 0..n is
 * a select written as the reference's comparisons, so that NaN and signed
 * zeros go the same way; x always lies in [mn, mx], so it only guards
 * rounding).
 *
 * Log: t = rint((ln(x - mn + 1) / M) * n) is the reference's float32 chain
 * itself, with the quantizers' own correctly rounded logarithm
 * (cwba__logf_n, src/quant/qmath.c) evaluated for the whole channel at
 * once; every step is an IEEE operation, so the codes are the reference's
 * by construction. The levels come from a table of the n + 1 values when it
 * is smaller than the channel (one expf per level instead of one per value). */
#define CWBA_LOG_LUT_MAX 4096

static inline float qlevel(const cwba_qparams *qp, uint32_t code, float nf)
{
    if (qp->q == CWBA_QUANT_LOG) return cwba__qexpf((float)code * qp->logm / nf) - 1.0f + qp->mn;
    return (float)code * qp->range / nf + qp->mn;
}

/* lev[k] = the log level of code k for n intervals, k = 0..n (qlevel's
 * operations, the exponentials in one vector call). */
static void log_levels(const cwba_qparams *qp, int n, float *lev)
{
    const float nf = (float)n;
    const int count = n + 1;
    lev[0] = 0.0f * qp->logm / nf; /* also tells the compiler lev is written first */
    for (int k = 1; k < count; k++) lev[k] = (float)k * qp->logm / nf;
#ifdef CWBA_QMATH_LIBC
    for (int k = 0; k < count; k++) lev[k] = expf(lev[k]);
#else
    cwba__expf_n(lev, lev, (size_t)count);
#endif
    for (int k = 0; k < count; k++) lev[k] = lev[k] - 1.0f + qp->mn;
}

#ifdef Q_X86
/* t -> clamp to [0, nf] exactly as the scalar selects: t >= 0 ? t : 0, then
 * t <= nf ? t : nf. */
__attribute__((target("avx2"))) static inline __m256 clamp8(__m256 t, __m256 nf)
{
    const __m256 z = _mm256_setzero_ps();
    t = _mm256_blendv_ps(z, t, _mm256_cmp_ps(t, z, _CMP_GE_OQ));
    return _mm256_blendv_ps(nf, t, _mm256_cmp_ps(t, nf, _CMP_LE_OQ));
}

__attribute__((target("avx2"))) static int uniform_avx2(const cwba_qparams *qp, const float *x,
                                                        int HW, float nfs, float *out,
                                                        uint32_t *codes)
{
    const __m256 mn = _mm256_set1_ps(qp->mn), range = _mm256_set1_ps(qp->range),
                 nf = _mm256_set1_ps(nfs);
    int i = 0;
    for (; i + 8 <= HW; i += 8) {
        __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mn), range);
        __m256 t = clamp8(_mm256_round_ps(_mm256_mul_ps(v, nf), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), nf);
        if (codes) _mm256_storeu_si256((__m256i *)(codes + i), _mm256_cvttps_epi32(t));
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_div_ps(_mm256_mul_ps(t, range), nf), mn));
    }
    return i;
}

/* t[i] = clamp(rint((t[i] / M) * n)); codes and out from lut when given. */
__attribute__((target("avx2"))) static int logcodes_avx2(float *t, int HW, float logm, float nfs,
                                                         uint32_t *codes, const float *lut,
                                                         float *out)
{
    const __m256 m = _mm256_set1_ps(logm), nf = _mm256_set1_ps(nfs);
    int i = 0;
    for (; i + 8 <= HW; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_div_ps(_mm256_loadu_ps(t + i), m), nf);
        v = clamp8(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), nf);
        __m256i c = _mm256_cvttps_epi32(v);
        _mm256_storeu_ps(t + i, v);
        if (codes) _mm256_storeu_si256((__m256i *)(codes + i), c);
        if (lut) _mm256_storeu_ps(out + i, _mm256_i32gather_ps(lut, c, 4));
    }
    return i;
}

__attribute__((target("avx2"))) static int logarg_avx2(const float *x, int HW, float mnv,
                                                       float *t)
{
    const __m256 mn = _mm256_set1_ps(mnv), one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= HW; i += 8)
        _mm256_storeu_ps(t + i, _mm256_add_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mn), one));
    return i;
}

__attribute__((target("avx512f"))) static inline __m512 clamp16(__m512 t, __m512 nf)
{
    const __m512 z = _mm512_setzero_ps();
    t = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, z, _CMP_GE_OQ), z, t);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t, nf, _CMP_LE_OQ), nf, t);
}

__attribute__((target("avx512f"))) static int uniform_avx512(const cwba_qparams *qp,
                                                             const float *x, int HW, float nfs,
                                                             float *out, uint32_t *codes)
{
    const __m512 mn = _mm512_set1_ps(qp->mn), range = _mm512_set1_ps(qp->range),
                 nf = _mm512_set1_ps(nfs);
    int i = 0;
    for (; i + 16 <= HW; i += 16) {
        __m512 v = _mm512_div_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mn), range);
        __m512 t = clamp16(_mm512_roundscale_ps(_mm512_mul_ps(v, nf), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), nf);
        if (codes) _mm512_storeu_si512(codes + i, _mm512_cvttps_epi32(t));
        _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_div_ps(_mm512_mul_ps(t, range), nf), mn));
    }
    return i;
}

__attribute__((target("avx512f"))) static int logcodes_avx512(float *t, int HW, float logm,
                                                              float nfs, uint32_t *codes,
                                                              const float *lut, float *out)
{
    const __m512 m = _mm512_set1_ps(logm), nf = _mm512_set1_ps(nfs);
    int i = 0;
    for (; i + 16 <= HW; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_div_ps(_mm512_loadu_ps(t + i), m), nf);
        v = clamp16(_mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), nf);
        __m512i c = _mm512_cvttps_epi32(v);
        _mm512_storeu_ps(t + i, v);
        if (codes) _mm512_storeu_si512(codes + i, c);
        if (lut) _mm512_storeu_ps(out + i, _mm512_i32gather_ps(c, lut, 4));
    }
    return i;
}

__attribute__((target("avx512f"))) static int logarg_avx512(const float *x, int HW, float mnv,
                                                            float *t)
{
    const __m512 mn = _mm512_set1_ps(mnv), one = _mm512_set1_ps(1.0f);
    int i = 0;
    for (; i + 16 <= HW; i += 16)
        _mm512_storeu_ps(t + i, _mm512_add_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mn), one));
    return i;
}
#endif

static void quant_uniform(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                          uint32_t *codes)
{
    const float mn = qp->mn, range = qp->range, nf = (float)n;
    int i = 0;
#ifdef Q_X86
    switch (cwba_isa_current()) {
    case CWBA_ISA_AVX512: i = uniform_avx512(qp, x, HW, nf, out, codes); break;
    case CWBA_ISA_AVX2: i = uniform_avx2(qp, x, HW, nf, out, codes); break;
    default: break;
    }
#endif
    /* t is a whole number in 0..n, so t * range / nf + mn is the dequantized
     * level of code (uint32_t)t, as in cwba_quant_dequant_ref. */
    for (; i < HW; i++) {
        float t = rintf((x[i] - mn) / range * nf);
        t = t >= 0.0f ? t : 0.0f;
        t = t <= nf ? t : nf;
        if (codes) codes[i] = (uint32_t)(int32_t)t;
        out[i] = t * range / nf + mn;
    }
}

#ifdef CWBA_QMATH_LIBC
/* Whether any element of t needs libc_log_fixup's look (the same test in
 * registers; an element flagged or not, the result is the library's code). */
#define DOUBT_THR(u) (0.5f - fabsf(u) * 0x1p-20f - 0x1p-30f)
#ifdef Q_X86
__attribute__((target("avx512f"))) static int doubt_avx512(const float *t, int HW, float logm,
                                                           float nfs, int *done)
{
    const __m512 m = _mm512_set1_ps(logm), nf = _mm512_set1_ps(nfs);
    __mmask16 any = 0;
    int i = 0;
    for (; i + 16 <= HW; i += 16) {
        __m512 u = _mm512_mul_ps(_mm512_div_ps(_mm512_loadu_ps(t + i), m), nf);
        __m512 r = _mm512_roundscale_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 d = _mm512_abs_ps(_mm512_sub_ps(u, r));
        __m512 thr = _mm512_sub_ps(_mm512_sub_ps(_mm512_set1_ps(0.5f),
                                                 _mm512_mul_ps(_mm512_abs_ps(u), _mm512_set1_ps(0x1p-20f))),
                                   _mm512_set1_ps(0x1p-30f));
        any |= _mm512_cmp_ps_mask(d, thr, _CMP_GT_OQ);
    }
    *done = i;
    return any != 0;
}

__attribute__((target("avx2"))) static int doubt_avx2(const float *t, int HW, float logm,
                                                      float nfs, int *done)
{
    const __m256 m = _mm256_set1_ps(logm), nf = _mm256_set1_ps(nfs);
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 any = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= HW; i += 8) {
        __m256 u = _mm256_mul_ps(_mm256_div_ps(_mm256_loadu_ps(t + i), m), nf);
        __m256 r = _mm256_round_ps(u, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(u, r), abs);
        __m256 thr = _mm256_sub_ps(_mm256_sub_ps(_mm256_set1_ps(0.5f),
                                                 _mm256_mul_ps(_mm256_and_ps(u, abs), _mm256_set1_ps(0x1p-20f))),
                                   _mm256_set1_ps(0x1p-30f));
        any = _mm256_or_ps(any, _mm256_cmp_ps(d, thr, _CMP_GT_OQ));
    }
    *done = i;
    return _mm256_movemask_ps(any) != 0;
}
#endif

/* t holds the correctly rounded logarithms. The C library's logf is within
 * one ulp of them (glibc: 0.82 ulp from the exact value, ours 0.5), so the
 * unrounded code u = (ln / M) * n of its chain lies within 2^-21 u of ours:
 * where ours is farther than 2^-20 u from a half-integer, both round to the
 * same code. Elsewhere (a few values in 10^5) the logarithm is replaced by
 * the library's, so that the chain below gives the library's code. */
static void libc_log_fixup(const cwba_qparams *qp, const float *x, int HW, float nf, float *t)
{
    int i0 = 0, any = 0;
#ifdef Q_X86
    switch (cwba_isa_current()) {
    case CWBA_ISA_AVX512: any = doubt_avx512(t, HW, qp->logm, nf, &i0); break;
    case CWBA_ISA_AVX2: any = doubt_avx2(t, HW, qp->logm, nf, &i0); break;
    default: break;
    }
#endif
    for (int i = i0; i < HW && !any; i++) {
        float u = t[i] / qp->logm * nf;
        any = fabsf(u - rintf(u)) > DOUBT_THR(u);
    }
    if (!any) return;
    for (int i = 0; i < HW; i++) {
        float u = t[i] / qp->logm * nf;
        if (fabsf(u - rintf(u)) > DOUBT_THR(u)) t[i] = logf(x[i] - qp->mn + 1.0f);
    }
}
#endif

static void quant_log(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                      uint32_t *codes, float *t, const float *levels)
{
    const float mn = qp->mn, nf = (float)n;
    float lut[CWBA_LOG_LUT_MAX + 1];
    const float *lv = levels;
    if (!lv && n < HW && n <= CWBA_LOG_LUT_MAX) {
        log_levels(qp, n, lut);
        lv = lut;
    }
    cwba_isa isa = cwba_isa_current();
    int i = 0;
#ifdef Q_X86
    if (isa == CWBA_ISA_AVX512) i = logarg_avx512(x, HW, mn, t);
    if (isa == CWBA_ISA_AVX2) i = logarg_avx2(x, HW, mn, t);
#endif
    for (; i < HW; i++) t[i] = x[i] - mn + 1.0f;
    cwba__logf_n(t, t, (size_t)HW);
#ifdef CWBA_QMATH_LIBC
    libc_log_fixup(qp, x, HW, nf, t);
#endif
    i = 0;
#ifdef Q_X86
    if (isa == CWBA_ISA_AVX512) i = logcodes_avx512(t, HW, qp->logm, nf, codes, lv, out);
    if (isa == CWBA_ISA_AVX2) i = logcodes_avx2(t, HW, qp->logm, nf, codes, lv, out);
#endif
    (void)isa;
    for (; i < HW; i++) {
        float v = rintf(t[i] / qp->logm * nf);
        v = v >= 0.0f ? v : 0.0f;
        v = v <= nf ? v : nf;
        t[i] = v;
        if (codes) codes[i] = (uint32_t)(int32_t)v;
        if (lv) out[i] = lv[(int32_t)v];
    }
    if (lv) return;
    /* More levels than values: one exponential per value. */
    for (int k = 0; k < HW; k++) out[k] = (float)(int32_t)t[k] * qp->logm / nf;
#ifdef CWBA_QMATH_LIBC
    for (int k = 0; k < HW; k++) out[k] = expf(out[k]);
#else
    cwba__expf_n(out, out, (size_t)HW);
#endif
    for (int k = 0; k < HW; k++) out[k] = out[k] - 1.0f + mn;
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
            log_levels(qp, k, lv->buf + lv->off[k]);
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
            uint32_t c = code_clamp(rintf(cwba__qlogf(x[i] - qp->mn + 1.0f) / qp->logm * nf), n);
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
