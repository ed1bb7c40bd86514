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
/* (a macro: the intrinsics take the rounding mode as a compile-time constant) */
#define Q_RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define Q_NEON 1
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
 * for bit on every ISA), in vector kernels for AVX2, AVX-512 and NEON chosen
 * by cwba_isa_current(), and in plain loops otherwise.
 *
 * Uniform: the same float32 expressions, branch-free (the clamp to 0..n is
 * a select written as the reference's comparisons, so that NaN and signed
 * zeros go the same way; x always lies in [mn, mx], so it only guards
 * rounding).
 *
 * Log: the code of rint((ln(x - mn + 1) / M) * n) comes from a bracket of
 * it computed with a cheap float logarithm, the reference chain deciding
 * the rare values the bracket leaves open (see qlog_approx below): the
 * codes are the reference's by construction, with either logarithm
 * (CWBA_QMATH_LIBC or not). The levels come from a table of the n + 1
 * values when it is smaller than the channel (one expf per level instead of
 * one per value), looked up with register permutes up to 32 levels. */
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

#endif

#ifdef Q_NEON
/* t -> clamp to [0, nf] as the scalar selects (NaN -> 0). */
static inline float32x4_t clamp4(float32x4_t t, float32x4_t nf)
{
    const float32x4_t z = vdupq_n_f32(0.0f);
    t = vbslq_f32(vcgeq_f32(t, z), t, z);
    return vbslq_f32(vcleq_f32(t, nf), t, nf);
}

static int uniform_neon(const cwba_qparams *qp, const float *x, int HW, float nfs, float *out,
                        uint32_t *codes)
{
    const float32x4_t mn = vdupq_n_f32(qp->mn), range = vdupq_n_f32(qp->range),
                      nf = vdupq_n_f32(nfs);
    int i = 0;
    for (; i + 4 <= HW; i += 4) {
        float32x4_t v = vdivq_f32(vsubq_f32(vld1q_f32(x + i), mn), range);
        float32x4_t t = clamp4(vrndnq_f32(vmulq_f32(v, nf)), nf);
        /* a whole number in 0..n: truncation is the scalar conversion */
        if (codes) vst1q_u32(codes + i, vcvtq_u32_f32(t));
        vst1q_f32(out + i, vaddq_f32(vdivq_f32(vmulq_f32(t, range), nf), mn));
    }
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
#ifdef Q_NEON
    if (cwba_isa_current() == CWBA_ISA_NEON) i = uniform_neon(qp, x, HW, nf, out, codes);
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

/* The log quantizer's codes without a correctly rounded logarithm for most
 * values. The reference code is clamp(rint(fl(fl(L / M) * n))) of
 * L = cwba__qlogf(t), t = fl(fl(x - mn) + 1): cwba's logarithm or, with
 * CWBA_QMATH_LIBC, the C library's. qlog_approx(t) = l is a float
 * logarithm within 2^-20 l of L for every float t in [1, FLT_MAX], for both
 * (bench/qmath_exhaustive bracket checks every one; the approximation
 * itself is within about 2^-22). With k = fl(n / M) and u = fl(l * k), the
 * reference's fl(fl(L / M) * n) lies within u (1 +- 2^-19) (2^-20 from l,
 * four roundings of 2^-24), so between lo = fl(u - u 2^-18) and
 * hi = fl(u + u 2^-18). rint and the clamp are monotone, so where lo and hi
 * give one code, that is the reference's code: no logarithm and no division
 * by M for it. The other values (within about 2^-18 u of a decision
 * boundary: some n 2^-17 of them) and t outside [1, FLT_MAX] (x < mn, NaN)
 * take the reference chain. qlog_approx has float operations only, no fused
 * multiply-add, in the same order in the scalar and every vector version:
 * one function of t on every ISA (tests compare the vector versions with
 * the scalar one), checked once for all floats. */
#define QLOG_BRACKET 0x1p-18f
#define QLOG_SQRTH 0x3f3504f3u /* the bits of sqrt(1/2) rounded to float */
#define QLOG_LN2_HI 0x1.62e4p-1f /* 15 bits: e * QLOG_LN2_HI is exact for |e| <= 512 */
#define QLOG_LN2_LO ((float)(0x1.62e42fefa39efp-1 - 0x1.62e4p-1))
#define QLOG_C3 (1.0f / 3)
#define QLOG_C5 (1.0f / 5)
#define QLOG_C7 (1.0f / 7)
#define QLOG_C9 (1.0f / 9)
#define QLOG_TMAX 0x1.fffffep127f

/* One channel's constants of the log quantizer. */
typedef struct logq_k {
    float mn, logm, nf, k; /* k = n / M, for the bracket only */
} logq_k;

/* ln t for a positive normal float t: t = 2^e m, m in [sqrt(1/2), sqrt(2)),
 * f = m - 1 exact, ln m = 2 atanh(s) with s = f / (2 + f), |s| < 0.1716,
 * the series to s^9 (truncation below 2^-30 relative). */
static inline float qlog_approx(float t)
{
    uint32_t ix;
    memcpy(&ix, &t, sizeof ix);
    ix -= QLOG_SQRTH;
    int32_t e = (int32_t)ix >> 23;
    uint32_t mb = (ix & 0x007fffffu) + QLOG_SQRTH;
    float m;
    memcpy(&m, &mb, sizeof m);
    float f = m - 1.0f;
    float s = f / (2.0f + f), z = s * s;
    float p = z * (QLOG_C3 + z * (QLOG_C5 + z * (QLOG_C7 + z * QLOG_C9)));
    float hs = s + s, ef = (float)e;
    return ef * QLOG_LN2_HI + ((hs + hs * p) + ef * QLOG_LN2_LO);
}

static inline float code_clampf(float v, float nf)
{
    v = v >= 0.0f ? v : 0.0f;
    return v <= nf ? v : nf;
}

/* The reference chain: the code of x, as a float. */
static inline float log_code_ref(float x, const logq_k *K)
{
    return code_clampf(rintf(cwba__qlogf(x - K->mn + 1.0f) / K->logm * K->nf), K->nf);
}

/* The code of x (as a float): the bracket, else the reference chain. */
static inline float log_code(float x, const logq_k *K)
{
    float t = x - K->mn + 1.0f;
    if (t >= 1.0f && t <= QLOG_TMAX) {
        float u = qlog_approx(t) * K->k, b = u * QLOG_BRACKET;
        float c = code_clampf(rintf(u - b), K->nf);
        if (c == code_clampf(rintf(u + b), K->nf)) return c;
    }
    return log_code_ref(x, K);
}

float cwba__qlog_approx(float t)
{
    return qlog_approx(t);
}

#ifdef Q_X86
__attribute__((target("avx2"))) static inline __m256 qlog_approx8(__m256 t)
{
    const __m256i sq = _mm256_set1_epi32((int)QLOG_SQRTH);
    __m256i ix = _mm256_sub_epi32(_mm256_castps_si256(t), sq);
    __m256 ef = _mm256_cvtepi32_ps(_mm256_srai_epi32(ix, 23));
    __m256 m = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_and_si256(ix, _mm256_set1_epi32(0x007fffff)), sq));
    __m256 f = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
    __m256 s = _mm256_div_ps(f, _mm256_add_ps(_mm256_set1_ps(2.0f), f)), z = _mm256_mul_ps(s, s);
    __m256 p = _mm256_add_ps(_mm256_set1_ps(QLOG_C7), _mm256_mul_ps(z, _mm256_set1_ps(QLOG_C9)));
    p = _mm256_add_ps(_mm256_set1_ps(QLOG_C5), _mm256_mul_ps(z, p));
    p = _mm256_add_ps(_mm256_set1_ps(QLOG_C3), _mm256_mul_ps(z, p));
    p = _mm256_mul_ps(z, p);
    __m256 hs = _mm256_add_ps(s, s);
    __m256 lnm = _mm256_add_ps(_mm256_add_ps(hs, _mm256_mul_ps(hs, p)),
                               _mm256_mul_ps(ef, _mm256_set1_ps(QLOG_LN2_LO)));
    return _mm256_add_ps(_mm256_mul_ps(ef, _mm256_set1_ps(QLOG_LN2_HI)), lnm);
}

/* codes[i], out[i] (from lut when given) and t[i] = the code as a float,
 * for all i < HW: the tail through masked loads and stores. */
__attribute__((target("avx2"))) static void logq_avx2(const float *x, int HW, const logq_k *K,
                                                      float *t, uint32_t *codes, const float *lut,
                                                      float *out)
{
    const __m256 mn = _mm256_set1_ps(K->mn), one = _mm256_set1_ps(1.0f),
                 kk = _mm256_set1_ps(K->k), nf = _mm256_set1_ps(K->nf),
                 tmax = _mm256_set1_ps(QLOG_TMAX), br = _mm256_set1_ps(QLOG_BRACKET);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    /* Up to 32 levels: looked up in registers (permutes), not gathered. */
    int nl = (int)K->nf + 1;
    __m256 L0 = _mm256_setzero_ps(), L1 = L0, L2 = L0, L3 = L0;
    if (lut && nl <= 32) { /* lut is readable to CWBA_LEVELS_PAD floats */
        L0 = _mm256_loadu_ps(lut);
        L1 = _mm256_loadu_ps(lut + 8);
        L2 = _mm256_loadu_ps(lut + 16);
        L3 = _mm256_loadu_ps(lut + 24);
    }
    for (int i = 0; i < HW; i += 8) {
        int left = HW - i;
        __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
        int livebits = left >= 8 ? 0xff : (1 << left) - 1;
        /* dead lanes read mn: t = 1, code 0, never redone */
        __m256 xv = left >= 8 ? _mm256_loadu_ps(x + i)
                              : _mm256_blendv_ps(mn, _mm256_maskload_ps(x + i, live),
                                                 _mm256_castsi256_ps(live));
        __m256 a = _mm256_add_ps(_mm256_sub_ps(xv, mn), one);
        __m256 dom = _mm256_and_ps(_mm256_cmp_ps(a, one, _CMP_GE_OQ),
                                   _mm256_cmp_ps(a, tmax, _CMP_LE_OQ));
        __m256 u = _mm256_mul_ps(qlog_approx8(a), kk), b = _mm256_mul_ps(u, br);
        __m256 v = clamp8(_mm256_round_ps(_mm256_sub_ps(u, b), Q_RN), nf);
        __m256 w = clamp8(_mm256_round_ps(_mm256_add_ps(u, b), Q_RN), nf);
        __m256 ok = _mm256_and_ps(dom, _mm256_cmp_ps(v, w, _CMP_EQ_OQ));
        int redo = ~_mm256_movemask_ps(ok) & livebits;
        if (redo) {
            float tv[8];
            _mm256_storeu_ps(tv, v);
            for (; redo; redo &= redo - 1) {
                int j = __builtin_ctz((unsigned)redo);
                tv[j] = log_code_ref(x[i + j], K);
            }
            v = _mm256_loadu_ps(tv);
        }
        __m256i c = _mm256_cvttps_epi32(v);
        __m256 o = _mm256_setzero_ps();
        if (lut && nl <= 32) {
            /* bit 3 of the code picks L0/L1 (L2/L3), bit 4 the pair */
            __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
            __m256 b4 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 27));
            __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(L0, c),
                                         _mm256_permutevar8x32_ps(L1, c), b3);
            __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(L2, c),
                                         _mm256_permutevar8x32_ps(L3, c), b3);
            o = _mm256_blendv_ps(lo, hi, b4);
        } else if (lut) {
            o = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), lut, c, _mm256_castsi256_ps(live), 4);
        }
        if (left >= 8) {
            _mm256_storeu_ps(t + i, v);
            if (codes) _mm256_storeu_si256((__m256i *)(codes + i), c);
            if (lut) _mm256_storeu_ps(out + i, o);
        } else {
            _mm256_maskstore_ps(t + i, live, v);
            if (codes) _mm256_maskstore_epi32((int *)(codes + i), live, c);
            if (lut) _mm256_maskstore_ps(out + i, live, o);
        }
    }
}

__attribute__((target("avx512f"))) static inline __m512 qlog_approx16(__m512 t)
{
    const __m512i sq = _mm512_set1_epi32((int)QLOG_SQRTH);
    __m512i ix = _mm512_sub_epi32(_mm512_castps_si512(t), sq);
    __m512 ef = _mm512_cvtepi32_ps(_mm512_srai_epi32(ix, 23));
    __m512 m = _mm512_castsi512_ps(
        _mm512_add_epi32(_mm512_and_si512(ix, _mm512_set1_epi32(0x007fffff)), sq));
    __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    __m512 s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0f), f)), z = _mm512_mul_ps(s, s);
    __m512 p = _mm512_add_ps(_mm512_set1_ps(QLOG_C7), _mm512_mul_ps(z, _mm512_set1_ps(QLOG_C9)));
    p = _mm512_add_ps(_mm512_set1_ps(QLOG_C5), _mm512_mul_ps(z, p));
    p = _mm512_add_ps(_mm512_set1_ps(QLOG_C3), _mm512_mul_ps(z, p));
    p = _mm512_mul_ps(z, p);
    __m512 hs = _mm512_add_ps(s, s);
    __m512 lnm = _mm512_add_ps(_mm512_add_ps(hs, _mm512_mul_ps(hs, p)),
                               _mm512_mul_ps(ef, _mm512_set1_ps(QLOG_LN2_LO)));
    return _mm512_add_ps(_mm512_mul_ps(ef, _mm512_set1_ps(QLOG_LN2_HI)), lnm);
}

__attribute__((target("avx512f"))) static void logq_avx512(const float *x, int HW,
                                                           const logq_k *K, float *t,
                                                           uint32_t *codes, const float *lut,
                                                           float *out)
{
    const __m512 mn = _mm512_set1_ps(K->mn), one = _mm512_set1_ps(1.0f),
                 kk = _mm512_set1_ps(K->k), nf = _mm512_set1_ps(K->nf),
                 tmax = _mm512_set1_ps(QLOG_TMAX), br = _mm512_set1_ps(QLOG_BRACKET);
    /* Up to 32 levels: one two-register permute, not a gather. */
    int nl = (int)K->nf + 1;
    __m512 L0 = _mm512_setzero_ps(), L1 = L0;
    if (lut && nl <= 32) { /* lut is readable to CWBA_LEVELS_PAD floats */
        L0 = _mm512_loadu_ps(lut);
        L1 = _mm512_loadu_ps(lut + 16);
    }
    for (int i = 0; i < HW; i += 16) {
        int left = HW - i;
        __mmask16 live = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 xv = _mm512_mask_loadu_ps(mn, live, x + i); /* dead lanes: code 0 */
        __m512 a = _mm512_add_ps(_mm512_sub_ps(xv, mn), one);
        __mmask16 dom = _mm512_cmp_ps_mask(a, one, _CMP_GE_OQ) &
                        _mm512_cmp_ps_mask(a, tmax, _CMP_LE_OQ);
        __m512 u = _mm512_mul_ps(qlog_approx16(a), kk), b = _mm512_mul_ps(u, br);
        __m512 v = clamp16(_mm512_roundscale_ps(_mm512_sub_ps(u, b), Q_RN), nf);
        __m512 w = clamp16(_mm512_roundscale_ps(_mm512_add_ps(u, b), Q_RN), nf);
        __mmask16 ok = dom & _mm512_cmp_ps_mask(v, w, _CMP_EQ_OQ);
        unsigned redo = ~(unsigned)ok & (unsigned)live;
        if (redo) {
            float tv[16];
            _mm512_storeu_ps(tv, v);
            for (; redo; redo &= redo - 1) {
                int j = __builtin_ctz(redo);
                tv[j] = log_code_ref(x[i + j], K);
            }
            v = _mm512_loadu_ps(tv);
        }
        __m512i c = _mm512_cvttps_epi32(v);
        _mm512_mask_storeu_ps(t + i, live, v);
        if (codes) _mm512_mask_storeu_epi32(codes + i, live, c);
        if (lut && nl <= 32)
            _mm512_mask_storeu_ps(out + i, live, _mm512_permutex2var_ps(L0, c, L1));
        else if (lut)
            _mm512_mask_storeu_ps(out + i, live,
                                  _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, c, lut, 4));
    }
}
#endif

#ifdef Q_NEON
static inline float32x4_t qlog_approx4(float32x4_t t)
{
    const uint32x4_t sq = vdupq_n_u32(QLOG_SQRTH);
    uint32x4_t ix = vsubq_u32(vreinterpretq_u32_f32(t), sq);
    float32x4_t ef = vcvtq_f32_s32(vshrq_n_s32(vreinterpretq_s32_u32(ix), 23));
    float32x4_t m = vreinterpretq_f32_u32(vaddq_u32(vandq_u32(ix, vdupq_n_u32(0x007fffffu)), sq));
    float32x4_t f = vsubq_f32(m, vdupq_n_f32(1.0f));
    float32x4_t s = vdivq_f32(f, vaddq_f32(vdupq_n_f32(2.0f), f)), z = vmulq_f32(s, s);
    float32x4_t p = vaddq_f32(vdupq_n_f32(QLOG_C7), vmulq_f32(z, vdupq_n_f32(QLOG_C9)));
    p = vaddq_f32(vdupq_n_f32(QLOG_C5), vmulq_f32(z, p));
    p = vaddq_f32(vdupq_n_f32(QLOG_C3), vmulq_f32(z, p));
    p = vmulq_f32(z, p);
    float32x4_t hs = vaddq_f32(s, s);
    float32x4_t lnm = vaddq_f32(vaddq_f32(hs, vmulq_f32(hs, p)),
                                vmulq_f32(ef, vdupq_n_f32(QLOG_LN2_LO)));
    return vaddq_f32(vmulq_f32(ef, vdupq_n_f32(QLOG_LN2_HI)), lnm);
}

/* As logq_avx2, for i < the count returned (a multiple of 4). */
static int logq_neon(const float *x, int HW, const logq_k *K, float *t, uint32_t *codes,
                     const float *lut, float *out)
{
    const float32x4_t mn = vdupq_n_f32(K->mn), one = vdupq_n_f32(1.0f), kk = vdupq_n_f32(K->k),
                      nf = vdupq_n_f32(K->nf), tmax = vdupq_n_f32(QLOG_TMAX),
                      br = vdupq_n_f32(QLOG_BRACKET);
    int i = 0;
    for (; i + 4 <= HW; i += 4) {
        float32x4_t a = vaddq_f32(vsubq_f32(vld1q_f32(x + i), mn), one);
        uint32x4_t dom = vandq_u32(vcgeq_f32(a, one), vcleq_f32(a, tmax));
        float32x4_t u = vmulq_f32(qlog_approx4(a), kk), b = vmulq_f32(u, br);
        float32x4_t v = clamp4(vrndnq_f32(vsubq_f32(u, b)), nf);
        float32x4_t w = clamp4(vrndnq_f32(vaddq_f32(u, b)), nf);
        uint32x4_t ok = vandq_u32(dom, vceqq_f32(v, w));
        vst1q_f32(t + i, v);
        if (vminvq_u32(ok) == 0) {
            uint32_t okl[4];
            vst1q_u32(okl, ok);
            for (int j = 0; j < 4; j++)
                if (!okl[j]) t[i + j] = log_code_ref(x[i + j], K);
        }
        /* whole numbers in 0..n: truncation is the reference's conversion */
        uint32x4_t c = vcvtq_u32_f32(vld1q_f32(t + i));
        if (codes) vst1q_u32(codes + i, c);
        if (lut) {
            uint32_t cl[4];
            vst1q_u32(cl, c);
            for (int j = 0; j < 4; j++) out[i + j] = lut[cl[j]];
        }
    }
    return i;
}
#endif

#ifdef Q_X86
__attribute__((target("avx512f"))) static size_t approx_n_avx512(const float *x, float *y,
                                                                 size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, qlog_approx16(_mm512_loadu_ps(x + i)));
    return i;
}

__attribute__((target("avx2"))) static size_t approx_n_avx2(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, qlog_approx8(_mm256_loadu_ps(x + i)));
    return i;
}
#endif

/* y[i] = qlog_approx(x[i]) with the current ISA's kernel (tests compare it
 * with the scalar function; bench/qmath_exhaustive does so for every float). */
void cwba__qlog_approx_n(const float *x, float *y, size_t n)
{
    size_t i = 0;
    switch (cwba_isa_current()) {
#ifdef Q_X86
    case CWBA_ISA_AVX512: i = approx_n_avx512(x, y, n); break;
    case CWBA_ISA_AVX2: i = approx_n_avx2(x, y, n); break;
#endif
#ifdef Q_NEON
    case CWBA_ISA_NEON:
        for (; i + 4 <= n; i += 4) vst1q_f32(y + i, qlog_approx4(vld1q_f32(x + i)));
        break;
#endif
    default: break;
    }
    for (; i < n; i++) y[i] = qlog_approx(x[i]);
}

static void quant_log(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                      uint32_t *codes, float *t, const float *levels)
{
    const float nf = (float)n;
    const logq_k K = {.mn = qp->mn, .logm = qp->logm, .nf = nf, .k = nf / qp->logm};
    float lut[CWBA_LOG_LUT_MAX + CWBA_LEVELS_PAD];
    const float *lv = levels;
    if (!lv && n < HW && n <= CWBA_LOG_LUT_MAX) {
        log_levels(qp, n, lut);
        for (int k = n + 1; k < CWBA_LEVELS_PAD; k++) lut[k] = 0.0f; /* read, never used */
        lv = lut;
    }
    int i = 0;
    switch (cwba_isa_current()) {
#ifdef Q_X86
    case CWBA_ISA_AVX512: logq_avx512(x, HW, &K, t, codes, lv, out); i = HW; break;
    case CWBA_ISA_AVX2: logq_avx2(x, HW, &K, t, codes, lv, out); i = HW; break;
#endif
#ifdef Q_NEON
    case CWBA_ISA_NEON: i = logq_neon(x, HW, &K, t, codes, lv, out); break;
#endif
    default: break;
    }
    for (; i < HW; i++) {
        float v = log_code(x[i], &K);
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
    for (int k = 0; k < HW; k++) out[k] = out[k] - 1.0f + qp->mn;
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
    /* CWBA_LEVELS_PAD more: every table is readable to that many floats */
    lv->buf = malloc((total + CWBA_LEVELS_PAD) * sizeof *lv->buf);
    if (!lv->buf) {
        free(lv->off);
        lv->off = NULL;
        return 0;
    }
    for (size_t k = 0; k < CWBA_LEVELS_PAD; k++) lv->buf[total + k] = 0.0f;
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
