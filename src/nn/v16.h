/* 16-float vectors (one channel block of the blocked layout, NN_CB) on each
 * ISA, with the few operations the blocked kernels need, so that a kernel
 * is written once (the *_tmpl.h files) and compiled for AVX-512 (one zmm),
 * AVX2+FMA (two ymm) and portable C (16 lanes in a loop). Every operation
 * is one IEEE operation per lane, the same on each ISA, so the three
 * instances give the same bits.
 *
 * v16_each.h includes a template once per ISA, defining VPFX (v16a:
 * AVX-512, v16b: AVX2, v16n: NEON, v16s: scalar), VATTR (its target
 * attribute) and VNAME(x) (the instance's function name); VT and VOP(op)
 * name the instance's type and operations. */
#ifndef CWBA_NN_V16_H
#define CWBA_NN_V16_H

#include "nn/nn_internal.h"

#include <string.h>

#define NN_CAT2(a, b) a##b
#define NN_CAT(a, b) NN_CAT2(a, b)
#define VT NN_CAT(VPFX, _t)
#define VOP(op) NN_CAT(VPFX, _##op)

/* ---- portable: lanes in a loop (max_step and nn_epilogue_row's steps) */
typedef struct v16s_t {
    float l[16];
} v16s_t;
static inline v16s_t v16s_ld(const float *p)
{
    v16s_t v;
    memcpy(v.l, p, sizeof v.l);
    return v;
}
static inline void v16s_st(float *p, v16s_t v) { memcpy(p, v.l, sizeof v.l); }
static inline v16s_t v16s_zero(void) { return (v16s_t){{0}}; }
static inline v16s_t v16s_set1(float x)
{
    v16s_t v;
    for (int i = 0; i < 16; i++) v.l[i] = x;
    return v;
}
static inline v16s_t v16s_add(v16s_t a, v16s_t b)
{
    for (int i = 0; i < 16; i++) a.l[i] = a.l[i] + b.l[i];
    return a;
}
static inline v16s_t v16s_sub(v16s_t a, v16s_t b)
{
    for (int i = 0; i < 16; i++) a.l[i] = a.l[i] - b.l[i];
    return a;
}
/* Max pooling's step: v where v > m or v is NaN, else m. */
static inline v16s_t v16s_maxstep(v16s_t m, v16s_t v)
{
    for (int i = 0; i < 16; i++) m.l[i] = v.l[i] > m.l[i] || v.l[i] != v.l[i] ? v.l[i] : m.l[i];
    return m;
}
/* nn_epi16's steps (bias b, batch norm a, e, residual r, ReLU). */
static inline v16s_t v16s_epi(v16s_t v, int has_b, v16s_t b, int has_a, v16s_t a, v16s_t e,
                              const float *r, int relu)
{
    for (int i = 0; i < 16; i++) {
        float x = v.l[i];
        if (has_b) x = x + b.l[i];
        if (has_a) x = fmaf(x, a.l[i], e.l[i]);
        if (r) x = x + r[i];
        if (relu) x = nn_relu1(x);
        v.l[i] = x;
    }
    return v;
}

#ifdef NN_X86
/* ---- AVX-512: one zmm */
#define V16A __attribute__((target("avx512f"))) static inline
typedef __m512 v16a_t;
V16A v16a_t v16a_ld(const float *p) { return _mm512_loadu_ps(p); }
V16A void v16a_st(float *p, v16a_t v) { _mm512_storeu_ps(p, v); }
V16A v16a_t v16a_zero(void) { return _mm512_setzero_ps(); }
V16A v16a_t v16a_set1(float x) { return _mm512_set1_ps(x); }
V16A v16a_t v16a_add(v16a_t a, v16a_t b) { return _mm512_add_ps(a, b); }
V16A v16a_t v16a_sub(v16a_t a, v16a_t b) { return _mm512_sub_ps(a, b); }
/* vmaxps(v, m) is v where v > m and m otherwise (ties of +-0 and any NaN
 * included), so only a NaN v needs mending. */
V16A v16a_t v16a_maxstep(v16a_t m, v16a_t v)
{
    return _mm512_mask_mov_ps(_mm512_max_ps(v, m), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
}
V16A v16a_t v16a_epi(v16a_t v, int has_b, v16a_t b, int has_a, v16a_t a, v16a_t e, const float *r,
                     int relu)
{
    return nn_epi16(v, has_b, b, has_a, a, e, r, relu);
}

/* ---- AVX2+FMA: two ymm */
#define V16B __attribute__((target("avx2,fma"))) static inline
typedef struct v16b_t {
    __m256 lo, hi;
} v16b_t;
V16B v16b_t v16b_ld(const float *p) { return (v16b_t){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
V16B void v16b_st(float *p, v16b_t v)
{
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}
V16B v16b_t v16b_zero(void) { return (v16b_t){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
V16B v16b_t v16b_set1(float x) { return (v16b_t){_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
V16B v16b_t v16b_add(v16b_t a, v16b_t b)
{
    return (v16b_t){_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
}
V16B v16b_t v16b_sub(v16b_t a, v16b_t b)
{
    return (v16b_t){_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)};
}
V16B __m256 v8_maxstep(__m256 m, __m256 v)
{
    return _mm256_blendv_ps(_mm256_max_ps(v, m), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
V16B v16b_t v16b_maxstep(v16b_t m, v16b_t v)
{
    return (v16b_t){v8_maxstep(m.lo, v.lo), v8_maxstep(m.hi, v.hi)};
}
V16B v16b_t v16b_epi(v16b_t v, int has_b, v16b_t b, int has_a, v16b_t a, v16b_t e, const float *r,
                     int relu)
{
    return (v16b_t){nn_epi8(v.lo, has_b, b.lo, has_a, a.lo, e.lo, r, relu),
                    nn_epi8(v.hi, has_b, b.hi, has_a, a.hi, e.hi, r ? r + 8 : NULL, relu)};
}
#endif

#ifdef NN_NEON
/* ---- NEON: four q registers */
typedef struct v16n_t {
    float32x4_t q[4];
} v16n_t;
static inline v16n_t v16n_ld(const float *p)
{
    return (v16n_t){{vld1q_f32(p), vld1q_f32(p + 4), vld1q_f32(p + 8), vld1q_f32(p + 12)}};
}
static inline void v16n_st(float *p, v16n_t v)
{
    for (int i = 0; i < 4; i++) vst1q_f32(p + 4 * i, v.q[i]);
}
static inline v16n_t v16n_set1(float x)
{
    float32x4_t d = vdupq_n_f32(x);
    return (v16n_t){{d, d, d, d}};
}
static inline v16n_t v16n_zero(void) { return v16n_set1(0.0f); }
static inline v16n_t v16n_add(v16n_t a, v16n_t b)
{
    for (int i = 0; i < 4; i++) a.q[i] = vaddq_f32(a.q[i], b.q[i]);
    return a;
}
static inline v16n_t v16n_sub(v16n_t a, v16n_t b)
{
    for (int i = 0; i < 4; i++) a.q[i] = vsubq_f32(a.q[i], b.q[i]);
    return a;
}
/* v where v > m or v is NaN, else m (v16s_maxstep). */
static inline v16n_t v16n_maxstep(v16n_t m, v16n_t v)
{
    for (int i = 0; i < 4; i++) {
        uint32x4_t take = vorrq_u32(vcgtq_f32(v.q[i], m.q[i]), vmvnq_u32(vceqq_f32(v.q[i], v.q[i])));
        m.q[i] = vbslq_f32(take, v.q[i], m.q[i]);
    }
    return m;
}
static inline v16n_t v16n_epi(v16n_t v, int has_b, v16n_t b, int has_a, v16n_t a, v16n_t e,
                              const float *r, int relu)
{
    for (int i = 0; i < 4; i++)
        v.q[i] = nn_epi4(v.q[i], has_b, b.q[i], has_a, a.q[i], e.q[i], r ? r + 4 * i : NULL, relu);
    return v;
}
#endif

#endif
