/* The quantizers' own natural logarithm and exponential (float32, correctly
 * rounded), so that the log quantizer's codes and levels do not depend on the
 * C library: an ARM edge encoder and an x86 cloud decoder, with whatever libm
 * each has, compute the same bits.
 *
 * Method (Ziv's): a fast evaluation in double whose relative error is far
 * below 2^-44 (about 2^-50 here); if the interval y(1 +- 2^-44) around it
 * rounds to one float, that float is the correctly rounded result. Otherwise
 * (about one input in 2^20) the value is recomputed in double-double
 * arithmetic (about 2^-100) and rounded from there. Both steps use only
 * IEEE double additions, multiplications and divisions (no libm, no fused
 * multiply-add: -ffp-contract=off), so every CPU gives the same results; the
 * vector versions run the same operations in the same order, and any lane
 * whose check fails takes the scalar function. Correct rounding makes the
 * result a function of the input alone, which is what the tests check
 * (tests/test_quant_qmath.c; tools/qmath_exhaustive compares all inputs with
 * the C library's logf/expf). */
#include "quant/quant_internal.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QM_X86 1
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define QM_NEON 1
#endif

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline double pow2i(int k) /* 2^k for -1022 <= k <= 1023 */
{
    uint64_t u = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ln 2 = LN2_HI + LN2_LO to about 2^-107 (LN2_HI the double nearest ln 2). */
static const double LN2_HI = 0x1.62e42fefa39efp-1;
static const double LN2_LO = 0x1.abc9e3b39803fp-56;
/* ln 2 split for the exponential's reduction: k * E_LN2_HI is exact for
 * |k| < 2^11 (E_LN2_HI has 32 significant bits). */
static const double E_LN2_HI = 0x1.62e42feep-1;
static const double E_LN2_LO = 0x1.a39ef35793c76p-33;
static const double INV_LN2 = 0x1.71547652b82fep0;
static const double SQRT2 = 1.4142135623730951;
static const double ROUNDER = 0x1.8p52; /* (v + R) - R rounds v to an integer, ties to even */
#define ZIV_EPS 0x1p-44

/* 1/(2k+1) and 1/k! as the compiler rounds them (constant expressions). */
#define L3 (1.0 / 3)
#define L5 (1.0 / 5)
#define L7 (1.0 / 7)
#define L9 (1.0 / 9)
#define L11 (1.0 / 11)
#define L13 (1.0 / 13)
#define L15 (1.0 / 15)
#define L17 (1.0 / 17)
#define L19 (1.0 / 19)
#define E2 (1.0 / 2)
#define E3 (1.0 / 6)
#define E4 (1.0 / 24)
#define E5 (1.0 / 120)
#define E6 (1.0 / 720)
#define E7 (1.0 / 5040)
#define E8 (1.0 / 40320)
#define E9 (1.0 / 362880)
#define E10 (1.0 / 3628800)
#define E11 (1.0 / 39916800)
#define E12 (1.0 / 479001600)
#define E13 (1.0 / 6227020800.0)

/* ------------------------------------------------------ double-double */

typedef struct dd {
    double hi, lo;
} dd;

static inline dd fast_two_sum(double a, double b) /* |a| >= |b| */
{
    double s = a + b;
    return (dd){s, b - (s - a)};
}

static inline dd two_sum(double a, double b)
{
    double s = a + b, bb = s - a;
    return (dd){s, (a - (s - bb)) + (b - bb)};
}

static inline void split(double a, double *hi, double *lo)
{
    double c = 134217729.0 * a; /* 2^27 + 1 */
    *hi = c - (c - a);
    *lo = a - *hi;
}

static inline dd two_prod(double a, double b) /* Dekker: exact a*b */
{
    double p = a * b, ah, al, bh, bl;
    split(a, &ah, &al);
    split(b, &bh, &bl);
    return (dd){p, ((ah * bh - p) + ah * bl + al * bh) + al * bl};
}

static inline dd dd_add(dd a, dd b)
{
    dd s = two_sum(a.hi, b.hi);
    return fast_two_sum(s.hi, s.lo + (a.lo + b.lo));
}

static inline dd dd_mul(dd a, dd b)
{
    dd p = two_prod(a.hi, b.hi);
    return fast_two_sum(p.hi, p.lo + (a.hi * b.lo + a.lo * b.hi));
}

static inline dd dd_div_d(dd a, double d)
{
    double q1 = a.hi / d;
    dd p = two_prod(q1, d);
    double r = ((a.hi - p.hi) - p.lo) + a.lo;
    return fast_two_sum(q1, r / d);
}

/* The float nearest hi + lo (a normalised pair): only when hi is exactly
 * halfway between two floats can lo move the result (hi is the double
 * nearest the value, and every float midpoint is a double). */
static float dd_to_float(dd v)
{
    float f = (float)v.hi;
    double d = (double)f;
    if (d == v.hi || v.lo == 0.0 || !(f == f) || f2u(f) == 0x7f800000u || f2u(f) == 0xff800000u)
        return f;
    /* The neighbour of f on hi's side, and the midpoint between them. */
    uint32_t u = f2u(f);
    int up = (v.hi > d) == (f > 0.0f || (f == 0.0f && v.hi > 0.0)); /* away from zero */
    float g = f == 0.0f ? (v.hi > 0.0 ? u2f(1u) : u2f(0x80000001u)) : u2f(up ? u + 1 : u - 1);
    double mid = (d + (double)g) * 0.5;
    if (v.hi != mid) return f;
    /* hi is the midpoint: lo says on which side the value lies. */
    int toward_g = (v.lo > 0.0) == ((double)g > d);
    return toward_g ? g : f;
}

/* ------------------------------------------------------------ logarithm */

/* x = 2^e * m, m in [sqrt(1/2), sqrt(2)), for a positive normal float. */
static inline void log_reduce(uint32_t u, int *e, double *m)
{
    int ee = (int)(u >> 23) - 127;
    double mm = (double)u2f((u & 0x007fffffu) | 0x3f800000u);
    if (mm > SQRT2) {
        mm *= 0.5;
        ee++;
    }
    *e = ee;
    *m = mm;
}

static float logf_slow(int e, double m)
{
    /* ln m = 2 atanh(s), s = (m - 1) / (m + 1): m - 1 and m + 1 are exact. */
    double num = m - 1.0, den = m + 1.0;
    double q1 = num / den;
    dd p = two_prod(q1, den);
    dd s = fast_two_sum(q1, ((num - p.hi) - p.lo) / den);
    dd s2 = dd_mul(s, s), term = s, acc = s;
    /* |s| <= 0.1716: s^34 / 35 is below 2^-87 of s. */
    for (int k = 1; k <= 16; k++) {
        term = dd_mul(term, s2);
        acc = dd_add(acc, dd_div_d(term, (double)(2 * k + 1)));
    }
    dd lnm = {2.0 * acc.hi, 2.0 * acc.lo};
    dd el = two_prod((double)e, LN2_HI);
    el.lo += (double)e * LN2_LO;
    return dd_to_float(dd_add(fast_two_sum(el.hi, el.lo), lnm));
}

/* The fast double evaluation shared by the scalar and vector paths, written
 * once as the sequence of operations the vector code repeats. */
static inline double logd_fast(int e, double m)
{
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double p = s2 * (L3 + s2 * (L5 + s2 * (L7 + s2 * (L9 + s2 * (L11 + s2 * (L13 + s2 * (L15 + s2 * (L17 + s2 * L19))))))));
    double lnm = 2.0 * s + 2.0 * s * p;
    return (double)e * LN2_HI + lnm;
}

static inline int ziv_ok(double y, float *out)
{
    double a = y < 0.0 ? -y : y;
    float lo = (float)(y - a * ZIV_EPS), hi = (float)(y + a * ZIV_EPS);
    *out = (float)y;
    return f2u(lo) == f2u(hi);
}

float cwba__logf(float x)
{
    uint32_t u = f2u(x);
    int bias = 0;
    if (u - 0x00800000u >= 0x7f000000u) {
        /* zero, subnormal, negative, infinite or NaN */
        if (x != x) return x;
        if (u == 0 || u == 0x80000000u) return -__builtin_inff();
        if (u & 0x80000000u) return __builtin_nanf("");
        if (u == 0x7f800000u) return x;
        u = f2u(x * 0x1p24f); /* subnormal: exact scaling */
        bias = -24;
    }
    int e;
    double m;
    log_reduce(u, &e, &m);
    e += bias;
    float r;
    if (ziv_ok(logd_fast(e, m), &r)) return r;
    return logf_slow(e, m);
}

/* ---------------------------------------------------------- exponential */

#define EXP_HI 89.0f   /* above: +inf (exp(88.7229) already overflows float) */
#define EXP_LO -104.0f /* below: +0 (exp(-104) < 2^-150, half the least subnormal) */

static float expf_slow(float x)
{
    double k = ((double)x * INV_LN2 + ROUNDER) - ROUNDER;
    dd p = two_prod(k, LN2_HI);
    dd r = dd_add((dd){(double)x, 0.0}, (dd){-p.hi, -p.lo});
    r = dd_add(r, (dd){-k * LN2_LO, 0.0});
    /* |r| <= 0.35: r^21 / 21! is below 2^-97. */
    dd term = {1.0, 0.0}, acc = {1.0, 0.0};
    for (int i = 1; i <= 20; i++) {
        term = dd_div_d(dd_mul(term, r), (double)i);
        acc = dd_add(acc, term);
    }
    double s = pow2i((int)k);
    return dd_to_float((dd){acc.hi * s, acc.lo * s});
}

static inline double expd_fast(double xd, double k)
{
    double r = (xd - k * E_LN2_HI) - k * E_LN2_LO;
    double p = 1.0 + r * (1.0 + r * (E2 + r * (E3 + r * (E4 + r * (E5 + r * (E6 + r * (E7 + r * (E8 + r * (E9 + r * (E10 + r * (E11 + r * (E12 + r * E13))))))))))));
    return p;
}

float cwba__expf(float x)
{
    if (!(x >= EXP_LO && x <= EXP_HI)) {
        if (x != x) return x;
        return x > 0.0f ? __builtin_inff() : 0.0f;
    }
    double k = ((double)x * INV_LN2 + ROUNDER) - ROUNDER;
    float r;
    if (ziv_ok(expd_fast((double)x, k) * pow2i((int)k), &r)) return r;
    return expf_slow(x);
}

/* ------------------------------------------------------------- vectors */

static void logf_n_scalar(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = cwba__logf(x[i]);
}

static void expf_n_scalar(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = cwba__expf(x[i]);
}

#ifdef QM_X86
/* Stores the lanes of r to y, those in `redo` recomputed by the scalar
 * function from x first (y may be x: the inputs are read before the store). */
static inline void redo_lanes(const float *x, float *t, int redo, int is_log)
{
    while (redo) {
        int j = __builtin_ctz((unsigned)redo);
        t[j] = is_log ? cwba__logf(x[j]) : cwba__expf(x[j]);
        redo &= redo - 1;
    }
}

__attribute__((target("avx2"))) static inline void fix_lanes(const float *x, __m128 r, int redo,
                                                             float *y, int is_log)
{
    if (!redo) {
        _mm_storeu_ps(y, r);
        return;
    }
    float t[4];
    _mm_storeu_ps(t, r);
    redo_lanes(x, t, redo, is_log);
    memcpy(y, t, sizeof t);
}

__attribute__((target("avx2"))) static inline void fix_lanes8(const float *x, __m256 r, int redo,
                                                              float *y, int is_log)
{
    if (!redo) {
        _mm256_storeu_ps(y, r);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, r);
    redo_lanes(x, t, redo, is_log);
    memcpy(y, t, sizeof t);
}

/* AVX2: 4 doubles a register; lanes that are not positive normal floats,
 * or whose rounding check fails, are redone by the scalar function. */
__attribute__((target("avx2"))) static inline __m256d logd_fast4(__m128i u)
{
    const __m128i mant = _mm_set1_epi32(0x007fffff), one = _mm_set1_epi32(0x3f800000);
    __m128i ei = _mm_sub_epi32(_mm_srli_epi32(u, 23), _mm_set1_epi32(127));
    __m256d m = _mm256_cvtps_pd(_mm_castsi128_ps(_mm_or_si128(_mm_and_si128(u, mant), one)));
    __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(SQRT2), _CMP_GT_OQ);
    m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
    __m256d e = _mm256_cvtepi32_pd(ei);
    e = _mm256_add_pd(e, _mm256_and_pd(big, _mm256_set1_pd(1.0)));
    const __m256d c1 = _mm256_set1_pd(1.0), c2 = _mm256_set1_pd(2.0);
    __m256d s = _mm256_div_pd(_mm256_sub_pd(m, c1), _mm256_add_pd(m, c1));
    __m256d s2 = _mm256_mul_pd(s, s);
    __m256d p = _mm256_set1_pd(L19);
    p = _mm256_add_pd(_mm256_set1_pd(L17), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L15), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L13), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L11), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L9), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L7), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L5), _mm256_mul_pd(s2, p));
    p = _mm256_add_pd(_mm256_set1_pd(L3), _mm256_mul_pd(s2, p));
    p = _mm256_mul_pd(s2, p);
    __m256d s_2 = _mm256_mul_pd(c2, s);
    __m256d lnm = _mm256_add_pd(s_2, _mm256_mul_pd(s_2, p));
    return _mm256_add_pd(_mm256_mul_pd(e, _mm256_set1_pd(LN2_HI)), lnm);
}

/* The float nearest y and a mask (4 bits) of lanes where it is certain. */
__attribute__((target("avx2"))) static inline __m128 ziv4(__m256d y, int *ok)
{
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d a = _mm256_mul_pd(_mm256_andnot_pd(sign, y), _mm256_set1_pd(ZIV_EPS));
    __m128 lo = _mm256_cvtpd_ps(_mm256_sub_pd(y, a)), hi = _mm256_cvtpd_ps(_mm256_add_pd(y, a));
    *ok = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_castps_si128(lo), _mm_castps_si128(hi))));
    return _mm256_cvtpd_ps(y);
}

__attribute__((target("avx2"))) static void logf_n_avx2(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128i u = _mm_loadu_si128((const __m128i *)(x + i));
        /* positive normal: u - 0x00800000 < 0x7f000000 unsigned (signed compare after bias) */
        __m128i t = _mm_sub_epi32(u, _mm_set1_epi32((int)0x80800000u));
        int good = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(t, _mm_set1_epi32((int)0xff000000u))));
        int ok;
        __m128 r = ziv4(logd_fast4(u), &ok);
        fix_lanes(x + i, r, ~(good & ok) & 0xf, y + i, 1);
    }
    logf_n_scalar(x + i, y + i, n - i);
}

__attribute__((target("avx2"))) static inline __m256d expd_fast4(__m256d xd, __m256d k)
{
    __m256d r = _mm256_sub_pd(_mm256_sub_pd(xd, _mm256_mul_pd(k, _mm256_set1_pd(E_LN2_HI))),
                              _mm256_mul_pd(k, _mm256_set1_pd(E_LN2_LO)));
    __m256d p = _mm256_set1_pd(E13);
    p = _mm256_add_pd(_mm256_set1_pd(E12), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E11), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E10), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E9), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E8), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E7), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E6), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E5), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E4), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E3), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(E2), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_mul_pd(r, p));
    p = _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_mul_pd(r, p));
    return p;
}

__attribute__((target("avx2"))) static void expf_n_avx2(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128 xf = _mm_loadu_ps(x + i);
        int good = _mm_movemask_ps(_mm_and_ps(_mm_cmp_ps(xf, _mm_set1_ps(EXP_LO), _CMP_GE_OQ),
                                              _mm_cmp_ps(xf, _mm_set1_ps(EXP_HI), _CMP_LE_OQ)));
        /* out-of-range lanes are clamped so that the arithmetic stays finite */
        xf = _mm_min_ps(_mm_max_ps(xf, _mm_set1_ps(EXP_LO)), _mm_set1_ps(EXP_HI));
        __m256d xd = _mm256_cvtps_pd(xf);
        __m256d k = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(xd, _mm256_set1_pd(INV_LN2)),
                                                _mm256_set1_pd(ROUNDER)),
                                  _mm256_set1_pd(ROUNDER));
        /* 2^k: k + 1023 in the exponent field */
        __m128i ki = _mm256_cvtpd_epi32(k);
        __m256i sc = _mm256_slli_epi64(_mm256_cvtepi32_epi64(_mm_add_epi32(ki, _mm_set1_epi32(1023))), 52);
        __m256d yd = _mm256_mul_pd(expd_fast4(xd, k), _mm256_castsi256_pd(sc));
        int ok;
        __m128 r = ziv4(yd, &ok);
        fix_lanes(x + i, r, ~(good & ok) & 0xf, y + i, 0);
    }
    expf_n_scalar(x + i, y + i, n - i);
}

/* AVX-512: 8 doubles a register, the same operations. */
__attribute__((target("avx512f"))) static inline __m512d logd_fast8(__m256i u)
{
    const __m256i mant = _mm256_set1_epi32(0x007fffff), one = _mm256_set1_epi32(0x3f800000);
    __m256i ei = _mm256_sub_epi32(_mm256_srli_epi32(u, 23), _mm256_set1_epi32(127));
    __m512d m = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(u, mant), one)));
    __mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(SQRT2), _CMP_GT_OQ);
    m = _mm512_mask_mul_pd(m, big, m, _mm512_set1_pd(0.5));
    __m512d e = _mm512_cvtepi32_pd(ei);
    e = _mm512_mask_add_pd(e, big, e, _mm512_set1_pd(1.0));
    const __m512d c1 = _mm512_set1_pd(1.0), c2 = _mm512_set1_pd(2.0);
    __m512d s = _mm512_div_pd(_mm512_sub_pd(m, c1), _mm512_add_pd(m, c1));
    __m512d s2 = _mm512_mul_pd(s, s);
    __m512d p = _mm512_set1_pd(L19);
    p = _mm512_add_pd(_mm512_set1_pd(L17), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L15), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L13), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L11), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L9), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L7), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L5), _mm512_mul_pd(s2, p));
    p = _mm512_add_pd(_mm512_set1_pd(L3), _mm512_mul_pd(s2, p));
    p = _mm512_mul_pd(s2, p);
    __m512d s_2 = _mm512_mul_pd(c2, s);
    __m512d lnm = _mm512_add_pd(s_2, _mm512_mul_pd(s_2, p));
    return _mm512_add_pd(_mm512_mul_pd(e, _mm512_set1_pd(LN2_HI)), lnm);
}

__attribute__((target("avx512f"))) static inline __m256 ziv8(__m512d y, __mmask8 *ok)
{
    __m512d a = _mm512_mul_pd(_mm512_abs_pd(y), _mm512_set1_pd(ZIV_EPS));
    __m256 lo = _mm512_cvtpd_ps(_mm512_sub_pd(y, a)), hi = _mm512_cvtpd_ps(_mm512_add_pd(y, a));
    *ok = _mm512_cmpeq_epi32_mask(_mm512_castsi256_si512(_mm256_castps_si256(lo)),
                                  _mm512_castsi256_si512(_mm256_castps_si256(hi))) & 0xff;
    return _mm512_cvtpd_ps(y);
}

__attribute__((target("avx512f"))) static void logf_n_avx512(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i t = _mm256_sub_epi32(u, _mm256_set1_epi32((int)0x80800000u));
        __m256i g = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)0xff000000u), t);
        int good = _mm256_movemask_ps(_mm256_castsi256_ps(g));
        __mmask8 ok;
        __m256 r = ziv8(logd_fast8(u), &ok);
        fix_lanes8(x + i, r, ~(good & (int)ok) & 0xff, y + i, 1);
    }
    logf_n_scalar(x + i, y + i, n - i);
}

__attribute__((target("avx512f"))) static void expf_n_avx512(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xf = _mm256_loadu_ps(x + i);
        int good = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(xf, _mm256_set1_ps(EXP_LO), _CMP_GE_OQ),
                                                    _mm256_cmp_ps(xf, _mm256_set1_ps(EXP_HI), _CMP_LE_OQ)));
        xf = _mm256_min_ps(_mm256_max_ps(xf, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
        __m512d xd = _mm512_cvtps_pd(xf);
        __m512d k = _mm512_sub_pd(_mm512_add_pd(_mm512_mul_pd(xd, _mm512_set1_pd(INV_LN2)),
                                                _mm512_set1_pd(ROUNDER)),
                                  _mm512_set1_pd(ROUNDER));
        __m512d r = _mm512_sub_pd(_mm512_sub_pd(xd, _mm512_mul_pd(k, _mm512_set1_pd(E_LN2_HI))),
                                  _mm512_mul_pd(k, _mm512_set1_pd(E_LN2_LO)));
        __m512d p = _mm512_set1_pd(E13);
        p = _mm512_add_pd(_mm512_set1_pd(E12), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E11), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E10), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E9), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E8), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E7), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E6), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E5), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E4), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E3), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(E2), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(r, p));
        p = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_mul_pd(r, p));
        __m256i ki = _mm512_cvtpd_epi32(k);
        __m512i sc = _mm512_slli_epi64(_mm512_cvtepi32_epi64(_mm256_add_epi32(ki, _mm256_set1_epi32(1023))), 52);
        __m512d yd = _mm512_mul_pd(p, _mm512_castsi512_pd(sc));
        __mmask8 ok;
        __m256 res = ziv8(yd, &ok);
        fix_lanes8(x + i, res, ~(good & (int)ok) & 0xff, y + i, 0);
    }
    expf_n_scalar(x + i, y + i, n - i);
}
#endif

#ifdef QM_NEON
/* NEON: 2 doubles a register, the same operations in the same order. */
static inline float64x2_t logd_fast2(uint32x2_t u)
{
    int32x2_t ei = vsub_s32(vreinterpret_s32_u32(vshr_n_u32(u, 23)), vdup_n_s32(127));
    uint32x2_t mb = vorr_u32(vand_u32(u, vdup_n_u32(0x007fffffu)), vdup_n_u32(0x3f800000u));
    float64x2_t m = vcvt_f64_f32(vreinterpret_f32_u32(mb));
    uint64x2_t big = vcgtq_f64(m, vdupq_n_f64(SQRT2));
    m = vbslq_f64(big, vmulq_f64(m, vdupq_n_f64(0.5)), m);
    float64x2_t e = vcvtq_f64_s64(vmovl_s32(ei));
    e = vaddq_f64(e, vreinterpretq_f64_u64(vandq_u64(big, vreinterpretq_u64_f64(vdupq_n_f64(1.0)))));
    const float64x2_t c1 = vdupq_n_f64(1.0), c2 = vdupq_n_f64(2.0);
    float64x2_t s = vdivq_f64(vsubq_f64(m, c1), vaddq_f64(m, c1));
    float64x2_t s2 = vmulq_f64(s, s);
    float64x2_t p = vdupq_n_f64(L19);
    p = vaddq_f64(vdupq_n_f64(L17), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L15), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L13), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L11), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L9), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L7), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L5), vmulq_f64(s2, p));
    p = vaddq_f64(vdupq_n_f64(L3), vmulq_f64(s2, p));
    p = vmulq_f64(s2, p);
    float64x2_t s_2 = vmulq_f64(c2, s);
    float64x2_t lnm = vaddq_f64(s_2, vmulq_f64(s_2, p));
    return vaddq_f64(vmulq_f64(e, vdupq_n_f64(LN2_HI)), lnm);
}

/* The float nearest y; *ok: all ones in the lanes where it is certain. */
static inline float32x2_t ziv2(float64x2_t y, uint32x2_t *ok)
{
    float64x2_t a = vmulq_f64(vabsq_f64(y), vdupq_n_f64(ZIV_EPS));
    float32x2_t lo = vcvt_f32_f64(vsubq_f64(y, a)), hi = vcvt_f32_f64(vaddq_f64(y, a));
    *ok = vceq_u32(vreinterpret_u32_f32(lo), vreinterpret_u32_f32(hi));
    return vcvt_f32_f64(y);
}

/* Stores r to y, the lanes not in ok recomputed by the scalar function. */
static inline void fix_lanes4(const float *x, float32x4_t r, uint32x4_t ok, float *y, int is_log)
{
    if (vminvq_u32(ok) != 0) {
        vst1q_f32(y, r);
        return;
    }
    float t[4];
    uint32_t okl[4];
    vst1q_f32(t, r);
    vst1q_u32(okl, ok);
    for (int j = 0; j < 4; j++)
        if (!okl[j]) t[j] = is_log ? cwba__logf(x[j]) : cwba__expf(x[j]);
    memcpy(y, t, sizeof t);
}

static void logf_n_neon(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32x4_t u = vld1q_u32((const uint32_t *)(const void *)(x + i));
        /* positive normal: u - 0x00800000 < 0x7f000000 unsigned */
        uint32x4_t good = vcltq_u32(vsubq_u32(u, vdupq_n_u32(0x00800000u)), vdupq_n_u32(0x7f000000u));
        uint32x2_t ok0, ok1;
        float32x2_t r0 = ziv2(logd_fast2(vget_low_u32(u)), &ok0);
        float32x2_t r1 = ziv2(logd_fast2(vget_high_u32(u)), &ok1);
        fix_lanes4(x + i, vcombine_f32(r0, r1), vandq_u32(good, vcombine_u32(ok0, ok1)), y + i, 1);
    }
    logf_n_scalar(x + i, y + i, n - i);
}

static inline float64x2_t expd2(float64x2_t xd)
{
    float64x2_t k = vsubq_f64(vaddq_f64(vmulq_f64(xd, vdupq_n_f64(INV_LN2)), vdupq_n_f64(ROUNDER)),
                              vdupq_n_f64(ROUNDER));
    float64x2_t r = vsubq_f64(vsubq_f64(xd, vmulq_f64(k, vdupq_n_f64(E_LN2_HI))),
                              vmulq_f64(k, vdupq_n_f64(E_LN2_LO)));
    float64x2_t p = vdupq_n_f64(E13);
    p = vaddq_f64(vdupq_n_f64(E12), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E11), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E10), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E9), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E8), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E7), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E6), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E5), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E4), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E3), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(E2), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(1.0), vmulq_f64(r, p));
    p = vaddq_f64(vdupq_n_f64(1.0), vmulq_f64(r, p));
    /* 2^k: k + 1023 in the exponent field (k is a whole number: exact) */
    int64x2_t ki = vaddq_s64(vcvtq_s64_f64(k), vdupq_n_s64(1023));
    return vmulq_f64(p, vreinterpretq_f64_s64(vshlq_n_s64(ki, 52)));
}

static void expf_n_neon(const float *x, float *y, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t xf = vld1q_f32(x + i);
        uint32x4_t good = vandq_u32(vcgeq_f32(xf, vdupq_n_f32(EXP_LO)), vcleq_f32(xf, vdupq_n_f32(EXP_HI)));
        /* out-of-range lanes (NaN included) are clamped so that the
         * arithmetic stays finite; the scalar function redoes them */
        xf = vbslq_f32(good, xf, vdupq_n_f32(0.0f));
        uint32x2_t ok0, ok1;
        float32x2_t r0 = ziv2(expd2(vcvt_f64_f32(vget_low_f32(xf))), &ok0);
        float32x2_t r1 = ziv2(expd2(vcvt_high_f64_f32(xf)), &ok1);
        fix_lanes4(x + i, vcombine_f32(r0, r1), vandq_u32(good, vcombine_u32(ok0, ok1)), y + i, 0);
    }
    expf_n_scalar(x + i, y + i, n - i);
}
#endif

void cwba__logf_n(const float *x, float *y, size_t n)
{
#ifdef QM_X86
    switch (cwba_isa_current()) {
    case CWBA_ISA_AVX512: logf_n_avx512(x, y, n); return;
    case CWBA_ISA_AVX2: logf_n_avx2(x, y, n); return;
    default: break;
    }
#endif
#ifdef QM_NEON
    if (cwba_isa_current() == CWBA_ISA_NEON) {
        logf_n_neon(x, y, n);
        return;
    }
#endif
    logf_n_scalar(x, y, n);
}

void cwba__expf_n(const float *x, float *y, size_t n)
{
#ifdef QM_X86
    switch (cwba_isa_current()) {
    case CWBA_ISA_AVX512: expf_n_avx512(x, y, n); return;
    case CWBA_ISA_AVX2: expf_n_avx2(x, y, n); return;
    default: break;
    }
#endif
#ifdef QM_NEON
    if (cwba_isa_current() == CWBA_ISA_NEON) {
        expf_n_neon(x, y, n);
        return;
    }
#endif
    expf_n_scalar(x, y, n);
}

float cwba__logf_slow_for_test(float x)
{
    uint32_t u = f2u(x);
    if (u - 0x00800000u >= 0x7f000000u) return cwba__logf(x);
    int e;
    double m;
    log_reduce(u, &e, &m);
    return logf_slow(e, m);
}

float cwba__expf_slow_for_test(float x)
{
    if (!(x >= EXP_LO && x <= EXP_HI)) return cwba__expf(x);
    return expf_slow(x);
}

int cwba__qmath_slow_for_test(int is_log, float x)
{
    float r;
    if (is_log) {
        uint32_t u = f2u(x);
        if (u - 0x00800000u >= 0x7f000000u) return 0;
        int e;
        double m;
        log_reduce(u, &e, &m);
        return !ziv_ok(logd_fast(e, m), &r);
    }
    if (!(x >= EXP_LO && x <= EXP_HI)) return 0;
    double k = ((double)x * INV_LN2 + ROUNDER) - ROUNDER;
    return !ziv_ok(expd_fast((double)x, k) * pow2i((int)k), &r);
}
