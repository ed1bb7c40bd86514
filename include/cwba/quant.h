/* cwba/quant.h — quantizers (SPEC §2.1) and channel-wise bit allocation
 * (SPEC §2.2): calibration of the interval table and per-image evaluation.
 * Independent of the networks: the back end is a caller-supplied callback. */
#ifndef CWBA_QUANT_H
#define CWBA_QUANT_H

#include "cwba/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cwba_quant { CWBA_QUANT_UNIFORM, CWBA_QUANT_LOG, CWBA_QUANT_DOREFA } cwba_quant;

cwba_status cwba_quant_parse(const char *name, cwba_quant *out, cwba_error *err);
const char *cwba_quant_name(cwba_quant q);

#define CWBA_BITS_MIN 2
#define CWBA_BITS_MAX 7

/* Global range of one image's feature (all C*H*W values). */
void cwba_feature_range(const float *x, size_t n, float *mn, float *mx);

/* Scalar reference quantizers on a given range [mn, mx] with n intervals.
 * Codes are in 0..n. When mx == mn, xhat = x and codes are 0. float32
 * arithmetic in the SPEC's operation order, round half to even. For
 * CWBA_QUANT_DOREFA, [mn, mx] is the clamp interval [0, clip] and n = 2^b-1:
 * code = round(clamp(x, mn, mx) * n), xhat = code / n. */
uint32_t cwba_quant_code_ref(cwba_quant q, float x, float mn, float mx, int n);
float cwba_quant_dequant_ref(cwba_quant q, uint32_t code, float mn, float mx, int n);

/* Quantize+dequantize a feature (C, HW) with per-channel interval counts n[C]
 * (uniform or log) on the feature's global range. codes (C*HW) may be NULL. */
cwba_status cwba_quantize_feature(cwba_quant q, const float *x, int C, int HW, const int *n,
                                  float *xhat, uint32_t *codes, cwba_error *err);
/* DoReFa baseline: xhat = round(clamp(x, 0, clip) * (2^b-1)) / (2^b-1). */
void cwba_dorefa(const float *x, size_t count, int bits, float clip, float *xhat);

/* T_b = (2^b - 1) * C. */
long cwba_budget(int bits, int C);

/* ------------------------------------------------------------ the back end */

/* Maps a batch of features (batch, C, H, W) to logits (batch, K). Must be
 * deterministic and treat each batch element independently. A status other
 * than CWBA_OK (with err filled, when non-NULL) aborts the library call that
 * made the call: it returns that status at once, without calling again
 * (the Python package turns a raised exception into this). */
typedef cwba_status (*cwba_backend_fn)(void *ctx, const float *feat, int batch, float *logits,
                                       cwba_error *err);

typedef struct cwba_backend {
    int C, H, W, K;
    int max_batch;      /* largest batch the callback accepts (>= 1) */
    cwba_backend_fn run;
    void *ctx;
} cwba_backend;

/* Counters every algorithm entry point adds to. */
typedef struct cwba_alloc_stats {
    uint64_t passes;    /* back-end evaluations (one per feature in a batch) */
    uint64_t probes;    /* probe errors computed */
    uint64_t steps;     /* greedy steps taken */
} cwba_alloc_stats;

/* ------------------------------------------------------------ calibration */

/* One calibration image (the original's --flag 0). x is (C, H, W); y0 may be
 * NULL (then computed). rows receives 6 allocation vectors, rows[(b-2)*C + c]
 * for b = 2..7. Probe errors are computed once per (channel, n), in batches. */
cwba_status cwba_calibrate_image(const cwba_backend *be, cwba_quant q, const float *x,
                                 const float *y0, int *rows, cwba_alloc_stats *stats,
                                 cwba_error *err);
/* The original's method, kept as the reference: every step recomputes all C
 * probes. Same output, C x steps passes. */
cwba_status cwba_calibrate_image_naive(const cwba_backend *be, cwba_quant q, const float *x,
                                       const float *y0, int *rows, cwba_alloc_stats *stats,
                                       cwba_error *err);

/* --------------------------------------------------------- interval tables */

typedef struct cwba_table {
    int C;
    int rows;
    int *data; /* (rows, C) */
} cwba_table;

/* Reads DIR-style table file (CSV, no header, C positive integers a row).
 * expected_C > 0 enforces the column count. */
cwba_status cwba_table_read(const char *path, int expected_C, cwba_table *t, cwba_error *err);
/* Appends rows to path atomically (existing content + new rows -> temp -> rename). */
cwba_status cwba_table_append(const char *path, const int *rows, int nrows, int C, cwba_error *err);
void cwba_table_free(cwba_table *t);
/* Column means avg[C] (double). */
void cwba_table_column_means(const cwba_table *t, double *avg);

/* ------------------------------------------------------------- evaluation */

typedef struct cwba_eval_params {
    cwba_quant quant;   /* uniform or log */
    int bits;           /* 2..7 */
    int reserve;        /* R >= 0 */
    double alpha, beta; /* priority weights */
} cwba_eval_params;

/* Priority P[C] of SPEC §2.2 from the feature x (C, HW) and the resulting
 * order (channels by P descending, stable). */
void cwba_priority(const float *x, int C, int HW, double alpha, double beta, double *P, int *order);
/* Base allocation from column means: n_c = max(1, floor(avg_c/sum*T_b)), with
 * the over-budget repair taking from the lowest-priority channels. Returns
 * the leftover L = T_b - sum(n). Only the shares avg_c/sum matter, so column
 * sums may be passed instead of means; whole-number weights (column sums)
 * are floored exactly in integer arithmetic, which cwba_evaluate_image uses. */
long cwba_base_allocation(const double *avg, int C, int bits, const int *order, int *n);
/* Gives one extra interval to each of the `count` highest-priority channels
 * (wrapping round). */
void cwba_topup(int *n, int C, const int *order, long count);

/* Per-image probe cache: e_c(n) for this image, computed on demand in batches
 * and shared between bit depths and reserves. */
typedef struct cwba_probe_cache cwba_probe_cache;
cwba_status cwba_probe_cache_create(const cwba_backend *be, cwba_quant q, const float *x,
                                    const float *y0, cwba_probe_cache **out, cwba_error *err);
void cwba_probe_cache_free(cwba_probe_cache *pc);
/* Runs `steps` greedy steps on n (in place). */
cwba_status cwba_greedy_steps(cwba_probe_cache *pc, int *n, long steps, cwba_alloc_stats *stats,
                              cwba_error *err);

/* Full evaluation of one image for one (bits, reserve): the final allocation
 * n_out[C], xhat (C,H,W) and its output mse against y0. pc may be NULL
 * (reserve 0 needs no probes; otherwise a temporary cache is made). n_out,
 * xhat and mse may be NULL; with mse == NULL no output pass is made (and y0
 * is only needed when reserve > 0). */
cwba_status cwba_evaluate_image(const cwba_backend *be, cwba_probe_cache *pc,
                                const cwba_table *table, const cwba_eval_params *p, const float *x,
                                const float *y0, int *n_out, float *xhat, double *mse,
                                cwba_alloc_stats *stats, cwba_error *err);

/* Per-image evaluation context: everything that depends only on the image
 * (quantizer parameters, priority order) is computed once at creation, each
 * table's column sums once on first use, and the probe cache only when a
 * configuration takes online steps. x (C, H, W) and y0 (K, may be NULL: then
 * computed on first need, one counted pass) must outlive the context. */
typedef struct cwba_eval_ctx cwba_eval_ctx;
cwba_status cwba_eval_ctx_create(const cwba_backend *be, cwba_quant q, const float *x,
                                 const float *y0, double alpha, double beta, cwba_eval_ctx **out,
                                 cwba_error *err);
void cwba_eval_ctx_free(cwba_eval_ctx *ec);
/* One (table, bits, reserve): the final allocation n_out[C], the quantized
 * feature xhat (C,H,W) and its codes (C,H,W), each may be NULL, and the
 * online steps actually taken, min(reserve, leftover), in *steps (may be
 * NULL). No back-end pass but the probes of those steps. Configurations run
 * on one context share its probe errors (exact: a probe error depends only
 * on its channel and n) unless cwba_eval_ctx_fresh_probes is called between
 * them. */
cwba_status cwba_eval_ctx_run(cwba_eval_ctx *ec, const cwba_table *table, int bits, int reserve,
                              int *n_out, float *xhat, uint32_t *codes, long *steps,
                              cwba_alloc_stats *stats, cwba_error *err);
/* Drops the context's probe errors: the next run computes its own. */
void cwba_eval_ctx_fresh_probes(cwba_eval_ctx *ec);
/* Uses the caller's cache pc (made for the same feature and quantizer; not
 * freed by the context) instead of the context's own. */
cwba_status cwba_eval_ctx_use_probes(cwba_eval_ctx *ec, cwba_probe_cache *pc, cwba_error *err);
/* The reference logits y0 (the caller's, or computed once). */
cwba_status cwba_eval_ctx_y0(cwba_eval_ctx *ec, const float **y0, cwba_alloc_stats *stats,
                             cwba_error *err);

/* ------------------------------------------- rate-distortion allocation */
/* Per-image rate-distortion allocation (docs/algorithm.md): candidates
 * n_c = 2^k - 1, k = 0..kmax (k = 0 drops the channel: x̂ = mn, no codes),
 * with D_c(k), channel c's probe error at that n, from pc (made for the same
 * back end, quantizer and feature; C*(kmax+1) probes, in full batches, shared
 * with anything else run on pc), and R_c(k), the bits of its codes under the
 * image's conditional code frequencies given the payload coder's
 * neighbourhood class. x must outlive the context. */
#define CWBA_RD_KMAX 8
typedef struct cwba_rd_ctx cwba_rd_ctx;
cwba_status cwba_rd_ctx_create(cwba_probe_cache *pc, const cwba_backend *be, cwba_quant q,
                               const float *x, int kmax, cwba_rd_ctx **out,
                               cwba_alloc_stats *stats, cwba_error *err);
void cwba_rd_ctx_free(cwba_rd_ctx *rc);
/* The allocation minimising sum_c D_c + lambda * sum_c R_c / (C*H*W)
 * (lambda: output MSE per bit per element), exactly (it separates over
 * channels; ties keep the smaller n): n_out[C], the quantized feature xhat
 * and its codes (C,H,W), the model's sum of D and of R (bits); each may be
 * NULL. No back-end pass. */
cwba_status cwba_rd_ctx_alloc(const cwba_rd_ctx *rc, double lambda, int *n_out, float *xhat,
                              uint32_t *codes, double *model_mse, double *model_bits,
                              cwba_error *err);
/* mean((a - b)^2) over n values, accumulated in double. */
double cwba_mse(const float *a, const float *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
