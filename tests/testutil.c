#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cwba/codec.h"
#include "cwba/nn.h"
#include "nn/nn_internal.h"

const char *tu_source_dir(void)
{
    const char *s = getenv("CWBA_SOURCE_DIR");
    return s ? s : CWBA_SOURCE_DIR;
}

const char *tu_path(const char *rel)
{
    static char bufs[8][4096];
    static int slot = 0;
    char *b = bufs[slot++ & 7];
    snprintf(b, 4096, "%s/%s", tu_source_dir(), rel);
    return b;
}

char *tu_tmpdir(void)
{
    char tmpl[] = "/tmp/cwba-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) return NULL;
    return strdup(d);
}

void tu_rmtree(const char *dir)
{
    if (!dir || strncmp(dir, "/tmp/cwba-test-", 15) != 0) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* best effort */ }
}

int tu_emulated(void) { return getenv("CWBA_TEST_EMULATED") != NULL; }

int tu_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

const char *tu_fmnist_dir(void)
{
    const char *d = "/usr/share/datasets/fashion-mnist";
    char p[256];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", d);
    return tu_exists(p) ? d : NULL;
}

char *tu_group_dir = NULL;

int tu_group_setup(void **state)
{
    (void)state;
    tu_group_dir = tu_tmpdir();
    return tu_group_dir ? 0 : -1;
}

int tu_group_teardown(void **state)
{
    (void)state;
    tu_rmtree(tu_group_dir);
    free(tu_group_dir);
    tu_group_dir = NULL;
    return 0;
}

float **tu_scratch_new(int threads, size_t floats)
{
    float **s = calloc((size_t)threads, sizeof *s);
    assert_non_null(s);
    for (int t = 0; t < threads; t++) {
        s[t] = malloc(floats * sizeof(float));
        assert_non_null(s[t]);
    }
    return s;
}

float **tu_gemm_scratch_new(int threads, int k)
{
    return tu_scratch_new(threads, nn_gemm_scratch_size(k));
}

void tu_gemm_scratch_free(float **s, int threads)
{
    for (int t = 0; t < threads; t++) free(s[t]);
    free(s);
}

void tu_for_each_isa(void (*fn)(void))
{
    static const char *const isas[] = {"avx512", "avx2", "neon", "scalar"};
    const char *best = nn_gemm_isa();
    int ran = 0;
    for (int i = 0; i < 4; i++) {
        if (!nn_gemm_set_isa(isas[i])) continue; /* not on this CPU */
        fn();
        ran++;
    }
    assert_true(ran >= 1);
    assert_true(nn_gemm_set_isa(best));
}

nn_conv_geom tu_conv_geom(int cin, int h, int w, int k, int s, int p)
{
    nn_conv_geom g = {.cin = cin, .h = h, .w = w, .k = k, .stride = s, .pad = p};
    g.oh = nn_out_side(h, k, s, p);
    g.ow = nn_out_side(w, k, s, p);
    return g;
}

float *tu_random_floats(const char *name, uint64_t seed, size_t n, size_t zero_every)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    cwba_synthetic_fill(name, seed, x, n);
    if (zero_every)
        for (size_t i = 0; i < n; i += zero_every) x[i] = (i / zero_every) % 2 ? 0.0f : -0.0f;
    return x;
}

void tu_conv_im2col(nn_pool *pool, const float *apack, int cout, const nn_conv_geom *g,
                    const float *in, int batch, float *out, const nn_epilogue *ep,
                    float *const *scratch)
{
    nn_im2col_ctx ic = {.in = in, .batch = batch, .g = *g};
    nn_gemm gm = {.m = cout, .n = batch * g->oh * g->ow, .k = g->cin * g->k * g->k,
                  .apack = apack, .pack_b = nn_pack_b_im2col, .pack_ctx = &ic, .c = out,
                  .ep = *ep};
    gm.ldc = (size_t)gm.n;
    nn_gemm_run(pool, &gm, scratch);
}

void tu_epilogue_case(nn_epilogue *ep, int e, const float *bias, const float *alpha,
                      const float *beta, const float *res)
{
    *ep = (nn_epilogue){0};
    if (e == 1) ep->bias = bias, ep->relu = 1;
    if (e == 2) ep->alpha = alpha, ep->beta = beta;
    if (e == 3) ep->alpha = alpha, ep->beta = beta, ep->res = res, ep->relu = 1;
}

struct nn_blk tu_blk_new(int c, int n, int h, int w, int pb)
{
    nn_blk t = {.c = c, .n = n, .h = h, .w = w, .pb = pb};
    size_t f = nn_blk_floats(c, n, h, w, pb);
    t.d = malloc((f ? f : 1) * sizeof(float));
    assert_non_null(t.d);
    memset(t.d, 0xff, f * sizeof(float));
    return t;
}

void tu_blk_assert_border_zero(const struct nn_blk *t)
{
    for (int cb = 0; cb < t->c / NN_CB; cb++)
        for (int n = 0; n < t->n; n++)
            for (int y = -t->pb; y < t->h + t->pb; y++)
                for (int x = -t->pb; x < t->w + t->pb; x++) {
                    if (y >= 0 && y < t->h && x >= 0 && x < t->w) continue;
                    const float *v = t->d + nn_blk_off(t, cb, n, y, x);
                    for (int l = 0; l < NN_CB; l++)
                        if (v[l] != 0.0f || signbit(v[l]))
                            fail_msg("border (%d, %d) of block %d image %d is not +0", y, x, cb, n);
                }
}

cwba_status tu_toy_backend(void *ctx, const float *feat, int batch, float *logits,
                           cwba_error *err)
{
    (void)err;
    const int *dim = ctx, size = dim[0], nk = dim[1];
    for (int b = 0; b < batch; b++)
        for (int k = 0; k < nk; k++) {
            float s = 0.0f;
            for (int i = k; i < size; i += nk)
                s += feat[(size_t)b * size + i] * (1.0f + 0.1f * (float)(i % 7));
            logits[b * nk + k] = s;
        }
    return CWBA_OK;
}

void tu_check_stream(cwba_quant q, const float *x, int C, int H, int W, const int *n,
                     const uint32_t *codes, const float *xhat)
{
    cwba_stream_info si;
    memset(&si, 0, sizeof si);
    snprintf(si.model, sizeof si.model, "toy");
    snprintf(si.split, sizeof si.split, "s");
    si.C = C;
    si.H = H;
    si.W = W;
    si.quant = q;
    const size_t total = (size_t)C * H * W;
    cwba_feature_range(x, total, &si.mn, &si.mx);
    size_t cap = cwba_stream_bound(&si, n);
    uint8_t *buf = malloc(cap);
    float *xdec = malloc(total * sizeof *xdec);
    int *nd = malloc((size_t)C * sizeof *nd);
    assert_non_null(buf);
    assert_non_null(xdec);
    assert_non_null(nd);
    for (int mode = 0; mode < 2; mode++) {
        si.mode = mode ? CWBA_STREAM_ADAPTIVE : CWBA_STREAM_FIXED;
        size_t len;
        cwba_error err;
        assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err), CWBA_OK);
        assert_int_equal(cwba_stream_decode(buf, len, NULL, nd, (size_t)C, NULL, xdec, total, &err),
                         CWBA_OK);
        assert_memory_equal(nd, n, (size_t)C * sizeof *nd);
        assert_memory_equal(xdec, xhat, total * sizeof *xdec);
    }
    free(buf);
    free(xdec);
    free(nd);
}
