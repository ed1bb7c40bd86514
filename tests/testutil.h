/* Shared helpers for the cmocka tests. */
#ifndef CWBA_TESTUTIL_H
#define CWBA_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Root of the source tree (env CWBA_SOURCE_DIR, set by CTest). */
const char *tu_source_dir(void);
/* "<source>/<rel>" in a static rotating buffer (8 slots). */
const char *tu_path(const char *rel);
/* A fresh temporary directory, removed by tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* A scratch directory for a whole cmocka group: tu_group_setup makes it in
 * tu_group_dir, tu_group_teardown removes it (pass both to
 * cmocka_run_group_tests). */
extern char *tu_group_dir;
int tu_group_setup(void **state);
int tu_group_teardown(void **state);

/* 1 when the tests run under an emulator (CWBA_TEST_EMULATED, set by the
 * cross build's CTest: qemu-user is 5-50x slower), so that the largest
 * cases can be cut to the ones that reach a path of their own. */
int tu_emulated(void);

/* 1 if the file exists. */
int tu_exists(const char *path);
/* Directory of the Debian Fashion-MNIST package, or NULL (tests then skip). */
const char *tu_fmnist_dir(void);

/* Per-thread GEMM packing scratch for nn_gemm_run (src/nn), k the inner
 * dimension; asserts on allocation failure. */
float **tu_gemm_scratch_new(int threads, int k);
void tu_gemm_scratch_free(float **s, int threads);
/* The same with at least `floats` floats per thread. */
float **tu_scratch_new(int threads, size_t floats);

/* n floats uniform in [-1, 1) from cwba_synthetic_fill(name, seed); with
 * zero_every > 0 every zero_every-th value is an exact zero, alternately
 * -0 and +0. Asserts on allocation failure; free() releases it. */
float *tu_random_floats(const char *name, uint64_t seed, size_t n, size_t zero_every);

/* Runs fn once per GEMM kernel family this CPU has (avx512, avx2, neon, scalar:
 * they must agree bit for bit), then restores the best one. */
void tu_for_each_isa(void (*fn)(void));

/* The convolution tests (src/nn): nn_conv_geom for (cin, h, w), window k,
 * stride s, padding p; the reference im2col GEMM path into out; and
 * epilogue e = 0..3 (none; bias + ReLU; batch norm; batch norm + residual
 * + ReLU). The nn types come from nn/nn_internal.h, which the callers
 * include. */
struct nn_conv_geom;
struct nn_epilogue;
struct nn_pool;
struct nn_conv_geom tu_conv_geom(int cin, int h, int w, int k, int s, int p);
void tu_conv_im2col(struct nn_pool *pool, const float *apack, int cout,
                    const struct nn_conv_geom *g, const float *in, int batch, float *out,
                    const struct nn_epilogue *ep, float *const *scratch);
void tu_epilogue_case(struct nn_epilogue *ep, int e, const float *bias, const float *alpha,
                      const float *beta, const float *res);
/* A blocked tensor (nn_blk) over a fresh buffer filled with a NaN pattern,
 * so that anything the code under test reads without writing shows. */
struct nn_blk;
struct nn_blk tu_blk_new(int c, int n, int h, int w, int pb);

#include "cwba/quant.h"
/* A toy back end for the allocation tests: y_k = a weighted sum of v[k::K]
 * over the flattened feature; ctx points to {feature size, K}. */
cwba_status tu_toy_backend(void *ctx, const float *feat, int batch, float *logits,
                           cwba_error *err);
/* Codes (C,H,W) with interval counts n go through a real bitstream in both
 * payload modes and decode to exactly n and xhat (the range is x's). */
void tu_check_stream(cwba_quant q, const float *x, int C, int H, int W, const int *n,
                     const uint32_t *codes, const float *xhat);
/* Fails the test unless every border float of t is +0. */
void tu_blk_assert_border_zero(const struct nn_blk *t);

#endif
