/* Internal helpers shared by the files of src/quant (not part of the API). */
#ifndef CWBA_QUANT_INTERNAL_H
#define CWBA_QUANT_INTERNAL_H

#include "cwba/quant.h"

/* Speculation bound: at most C * (CWBA_SPEC_MAX - 1) probe errors computed
 * ahead of need are outstanding in a cache at any time, so the speculative
 * passes never used are at most that many per calibration image; tests
 * assert that bound. */
#define CWBA_SPEC_MAX 16

/* A batch buffer larger than this many bytes is cut down (the callback may
 * accept a huge max_batch; the result does not depend on the batch size). */
#define CWBA_BATCH_BYTES_MAX ((size_t)64 << 20)

/* The quantizers' natural logarithm and exponential (src/quant/qmath.c):
 * float32, correctly rounded, the same bits on every CPU and C library.
 * The _n forms compute y[i] = f(x[i]) with the library's ISA (x and y may
 * be the same array). The _slow_for_test forms always take the
 * double-double path (tests check it against the fast one). */
float cwba__logf(float x);
float cwba__expf(float x);
void cwba__logf_n(const float *x, float *y, size_t n);
void cwba__expf_n(const float *x, float *y, size_t n);
float cwba__logf_slow_for_test(float x);
float cwba__expf_slow_for_test(float x);
/* 1 if the fast path's rounding check fails for x (the slow path decides). */
int cwba__qmath_slow_for_test(int is_log, float x);

/* The logarithm and exponential of the log quantizer (codes, levels, the
 * bitstream's decoder). With CWBA_QMATH_LIBC (CMake option CWBA_LIBM_LOGEXP,
 * on by default) they are the C library's logf/expf, as the committed
 * experiments were computed: glibc 2.36 is not correctly rounded (it
 * differs from the nearest float on ~2e-4 of [1, FLT_MAX] for logf, ~7e-5
 * of [0, 89] for expf), so figures of the log quantizer move at ~1e-7
 * relative with cwba's own functions, and experiments/raw/<config>/log-*
 * must be regenerated before the option is turned off. Off: cwba__logf /
 * cwba__expf, the same bits on every CPU and C library. */
#ifdef CWBA_QMATH_LIBC
#include <math.h>
#define cwba__qlogf logf
#define cwba__qexpf expf
#else
#define cwba__qlogf cwba__logf
#define cwba__qexpf cwba__expf
#endif

/* The log quantizer's float logarithm for its code bracket
 * (src/quant/quantize.c): float operations only, one function of t on every
 * ISA, within 2^-20 relative of cwba__qlogf on [1, FLT_MAX] (both modes;
 * bench/qmath_exhaustive bracket checks every float). The _n form runs the
 * current ISA's kernel. */
float cwba__qlog_approx(float t);
void cwba__qlog_approx_n(const float *x, float *y, size_t n);

/* Everything one quantizer needs for one image: the global range and the
 * derived constants, computed once in the SPEC's float32 order. */
typedef struct cwba_qparams {
    cwba_quant q;   /* uniform or log */
    float mn, mx;
    float range;    /* mx - mn (float32), 0 means pass-through */
    float logm;     /* ln(range + 1), log quantizer only */
} cwba_qparams;

/* Fills qp from the feature (C*HW values). Fails on a non-finite value or a
 * range that overflows float32, naming `what`. */
cwba_status cwba__qparams_from_feature(cwba_quant q, const float *x, size_t count,
                                       cwba_qparams *qp, cwba_error *err);

/* Quantizes one channel x[HW] with n >= 1 intervals into out[HW] (and codes,
 * may be NULL); out may be x. scratch is at least HW floats, or NULL (then the
 * log quantizer takes its slow scalar path). levels, if not NULL, are the
 * n+1 dequantized levels of this n (cwba__levels_get: readable to
 * CWBA_LEVELS_PAD floats). Bit-exact with
 * cwba_quant_code_ref / cwba_quant_dequant_ref. */
void cwba__quant_channel(const cwba_qparams *qp, const float *x, int HW, int n, float *out,
                         uint32_t *codes, float *scratch, const float *levels);

/* A dropped channel (n = 0, the rate-distortion allocation): every value
 * becomes mn, the value of code 0 (x itself on a pass-through range); codes
 * (may be NULL) are 0. Matches the bitstream's decoder. */
void cwba__drop_channel(const cwba_qparams *qp, const float *x, int HW, float *out,
                        uint32_t *codes);

/* The log quantizer's dequantized levels for every distinct n of one
 * allocation of a (C, HW) feature, computed once per image (one expf per
 * level, not per value). Empty (every get returns NULL) for the uniform
 * quantizer, a pass-through range, n above CWBA_LEVELS_NMAX, or more levels
 * than values. make returns 0 when out of memory. */
#define CWBA_LEVELS_NMAX 65536
/* Each table can be read (not used) to CWBA_LEVELS_PAD floats from its
 * start: the vector kernels load small tables into registers whole. */
#define CWBA_LEVELS_PAD 32
typedef struct cwba__levels {
    float *buf;
    long *off; /* (nmax + 1): offset of n's levels in buf, -1 if absent */
    int nmax;
} cwba__levels;
int cwba__levels_make(const cwba_qparams *qp, const int *n, int C, int HW, cwba__levels *lv);
const float *cwba__levels_get(const cwba__levels *lv, int n);
void cwba__levels_free(cwba__levels *lv);

/* Checks the back-end description (sizes, overflow, callback). On success
 * *feat_count = C*H*W. */
cwba_status cwba__backend_check(const cwba_backend *be, size_t *feat_count, cwba_error *err);

/* Runs the back end on `batch` features and rejects non-finite logits. */
cwba_status cwba__backend_run(const cwba_backend *be, const float *feat, int batch, float *logits,
                              cwba_alloc_stats *stats, cwba_error *err);

/* Probe error of one logit vector against y0: mean of squared float32
 * differences, accumulated in double and rounded to float (see
 * docs/algorithm.md, "float precision"). */
float cwba__probe_error(const float *y, const float *y0, int K);

/* Greedy steps with a speculation horizon: `horizon` >= steps is the number of
 * greedy steps the caller will still run in total on this cache (including
 * these), which bounds how far ahead a channel's errors are computed. */
cwba_status cwba__greedy_run(cwba_probe_cache *pc, int *n, long steps, long horizon,
                             cwba_alloc_stats *stats, cwba_error *err);

/* The probe errors e[i] = e_{c[i]}(n[i]) (n = 0: the channel dropped), from
 * the cache or computed in full batches; count pairs of any number. */
cwba_status cwba__probe_cache_errors(cwba_probe_cache *pc, int count, const int *c, const int *n,
                                     float *e, cwba_alloc_stats *stats, cwba_error *err);

/* The y0 the cache uses (computed on first need, one counted pass). */
cwba_status cwba__probe_cache_y0(cwba_probe_cache *pc, const float **y0, cwba_alloc_stats *stats,
                                 cwba_error *err);

/* 1 if pc was made for this back end shape, quantizer and feature. */
int cwba__probe_cache_matches(const cwba_probe_cache *pc, const cwba_backend *be, cwba_quant q,
                              const float *x);

/* cwba_table_read on a table held in memory (the fuzz target's entry
 * point); `what` names it in messages. */
cwba_status cwba_table_parse(const char *buf, size_t len, const char *what, int expected_C,
                             cwba_table *t, cwba_error *err);

#endif
