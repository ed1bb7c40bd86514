/* The channel-blocked layout (src/nn/blocked.c): layout changes both ways
 * with their zero borders, and every blocked layer against its (C, N, H, W)
 * counterpart, bit for bit: the convolution (blocked input, and from the
 * image through the padded copy) against the im2col GEMM path with every
 * epilogue step, residuals with a border other than the output's, batches of
 * 1 and 3, one and two threads; max pooling with +-0 ties and NaN; batch
 * norm and ReLU; the kernels' vector epilogue on special values. Every
 * test runs on each ISA of this CPU (AVX-512, AVX2+FMA, portable C): the
 * blocked kernels exist on all of them. */
#include "testutil.h"
#include "nn/nn_internal.h"
#include "nn/v16.h"

#include "cwba/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *rnd(const char *name, size_t n, int zeros)
{
    return tu_random_floats(name, 23, n, zeros ? 7 : 0);
}

/* A convolution's weights, random, packed both ways, with the tap table and
 * per-thread scratch both paths need. */
typedef struct conv_w {
    int cout, kdim, nt;
    float *wt, *ap, *tp, *bias, *alpha, *beta;
    int *off;
    float **sc;
} conv_w;

static conv_w conv_w_new(int cout, int kdim, int nt, const char *name)
{
    conv_w c = {.cout = cout, .kdim = kdim, .nt = nt};
    c.wt = rnd(name, (size_t)cout * kdim, 1);
    c.bias = rnd("bias", (size_t)cout, 0);
    c.alpha = rnd("alpha", (size_t)cout, 0);
    c.beta = rnd("beta", (size_t)cout, 1);
    c.ap = malloc(nn_gemm_packed_a_size(cout, kdim) * sizeof(float));
    c.tp = malloc(nn_gemm_packed_t_size(cout, kdim) * sizeof(float));
    c.off = malloc((size_t)kdim * sizeof *c.off);
    assert_true(c.ap && c.tp && c.off);
    nn_gemm_pack_a(cout, kdim, c.wt, (size_t)kdim, c.ap);
    nn_gemm_pack_t(cout, kdim, c.wt, (size_t)kdim, c.tp);
    size_t need = nn_gemm_scratch_size(kdim);
    if (nn_gemm_direct_t_scratch_size(0) > need) need = nn_gemm_direct_t_scratch_size(0);
    c.sc = tu_scratch_new(nt, need);
    return c;
}

static void conv_w_free(conv_w *c)
{
    tu_gemm_scratch_free(c->sc, c->nt);
    free(c->wt);
    free(c->ap);
    free(c->tp);
    free(c->off);
    free(c->bias);
    free(c->alpha);
    free(c->beta);
}

static void layout_cases(void)
{
    /* c, n, h, w, pb: widths below, at and across 16 (the vector path's
     * tail), one pixel, borders 0-3 */
    static const int cases[][5] = {{16, 1, 1, 1, 1}, {32, 2, 5, 7, 1},   {16, 3, 4, 16, 0},
                                   {48, 1, 9, 33, 2}, {16, 2, 3, 17, 3}, {64, 1, 56, 56, 1}};
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            int c = cases[i][0], n = cases[i][1], h = cases[i][2], w = cases[i][3], pb = cases[i][4];
            size_t nf = (size_t)c * n * h * w;
            float *x = rnd("layout", nf, 1), *back = malloc(nf * sizeof *back);
            assert_non_null(back);
            nn_blk t = tu_blk_new(c, n, h, w, pb);
            nn_blk_from_cnhw(pool, x, &t);
            tu_blk_assert_border_zero(&t);
            for (int ch = 0; ch < c; ch++)
                for (int b = 0; b < n; b++)
                    for (int y = 0; y < h; y++)
                        for (int q = 0; q < w; q++) {
                            float a = x[(((size_t)ch * n + b) * h + y) * w + q];
                            float v = t.d[nn_blk_off(&t, ch / NN_CB, b, y, q) + ch % NN_CB];
                            if (memcmp(&a, &v, sizeof a) != 0)
                                fail_msg("case %zu: (%d, %d, %d, %d) misplaced", i, ch, b, y, q);
                        }
            memset(back, 0xff, nf * sizeof *back);
            nn_blk_to_cnhw(pool, &t, back);
            if (memcmp(x, back, nf * sizeof *x) != 0) fail_msg("case %zu: round trip differs", i);
            free(x);
            free(back);
            free(t.d);
        }
        nn_pool_free(pool);
    }
}

static void test_layout_changes(void **state)
{
    (void)state;
    tu_for_each_isa(layout_cases);
}

static void conv_cases(void)
{
    /* cin, h, w, cout, k, stride, pad, input border, output border */
    static const int cases[][9] = {
        {16, 9, 7, 64, 3, 1, 1, 1, 1},    /* odd sides */
        {32, 14, 14, 128, 3, 1, 1, 2, 0}, /* border wider than the padding */
        {80, 7, 6, 64, 3, 1, 1, 1, 1},    /* k = 720: two k-blocks, the last one fused */
        {144, 5, 5, 128, 3, 1, 1, 1, 0},  /* k = 1296: three k-blocks */
        {32, 14, 13, 64, 3, 2, 1, 1, 2},  /* stride 2 */
        {64, 8, 8, 128, 1, 2, 0, 1, 0},   /* 1x1 stride-2 downsample reading a bordered input */
        {16, 13, 13, 192, 5, 1, 2, 2, 1}, /* 5x5, three 64-channel blocks */
        {48, 2, 2, 64, 3, 1, 1, 1, 1},    /* 2x2: mostly padding */
        {16, 1, 1, 64, 3, 1, 1, 1, 0},    /* one pixel */
        {16, 23, 22, 64, 3, 1, 1, 1, 1},  /* 506 positions: three chunks */
    };
    static const int batches[] = {1, 3};
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        int nt = nn_pool_size(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const int *cs = cases[i];
            int cin = cs[0], h = cs[1], w = cs[2], cout = cs[3], pbi = cs[7], pbo = cs[8];
            nn_conv_geom g = tu_conv_geom(cin, h, w, cs[4], cs[5], cs[6]);
            conv_w cw = conv_w_new(cout, cin * g.k * g.k, nt, "w");
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                int batch = batches[bi];
                size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * g.oh * g.ow;
                float *in = rnd("in", nin, 1), *res = rnd("res", nout, 0);
                float *o1 = malloc(nout * sizeof *o1), *o2 = malloc(nout * sizeof *o2);
                assert_true(o1 && o2);
                nn_blk bin = tu_blk_new(cin, batch, h, w, pbi), bout = tu_blk_new(cout, batch, g.oh, g.ow, pbo);
                nn_blk bres = tu_blk_new(cout, batch, g.oh, g.ow, pbo == 0 ? 1 : 0);
                nn_blk_from_cnhw(pool, in, &bin);
                nn_blk_from_cnhw(pool, res, &bres);
                assert_true(nn_blk_conv_applies(&g, cout, &bin));
                for (int e = 0; e < 4; e++) {
                    nn_epilogue ep;
                    tu_epilogue_case(&ep, e, cw.bias, cw.alpha, cw.beta, res);
                    tu_conv_im2col(pool, cw.ap, cout, &g, in, batch, o1, &ep, cw.sc);
                    nn_epilogue bep = ep;
                    bep.res = NULL;
                    memset(bout.d, 0xff, nn_blk_floats(cout, batch, g.oh, g.ow, pbo) * sizeof(float));
                    nn_blk_conv(pool, cw.tp, cout, &g, &bin, &bout, &bep, ep.res ? &bres : NULL, cw.sc,
                                cw.off);
                    tu_blk_assert_border_zero(&bout);
                    nn_blk_to_cnhw(pool, &bout, o2);
                    if (memcmp(o1, o2, nout * sizeof *o1) != 0)
                        fail_msg("case %zu batch %d epilogue %d threads %d: blocked convolution "
                                 "differs",
                                 i, batch, e, nt);
                }
                free(in);
                free(res);
                free(o1);
                free(o2);
                free(bin.d);
                free(bout.d);
                free(bres.d);
            }
            conv_w_free(&cw);
        }
        nn_pool_free(pool);
    }
}

static void test_conv(void **state)
{
    (void)state;
    tu_for_each_isa(conv_cases);
}

/* The first layer: the (3, N, H, W) image through its zero-padded copy
 * into a blocked output. */
static void conv_from_image_cases(void)
{
    static const int cases[][7] = {
        {3, 20, 18, 64, 3, 1, 1},  /* VGG16's first layer, K = 27 */
        {3, 23, 23, 64, 11, 4, 2}, /* AlexNet conv1 */
        {3, 16, 16, 64, 7, 2, 3},  /* ResNet conv1 */
    };
    for (int threads = 1; threads <= 2; threads++) {
        nn_pool *pool = nn_pool_create(threads);
        assert_non_null(pool);
        int nt = nn_pool_size(pool);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const int *cs = cases[i];
            int cin = cs[0], h = cs[1], w = cs[2], cout = cs[3], batch = 2;
            nn_conv_geom g = tu_conv_geom(cin, h, w, cs[4], cs[5], cs[6]);
            conv_w cw = conv_w_new(cout, cin * g.k * g.k, nt, "w1");
            size_t nin = (size_t)cin * batch * h * w, nout = (size_t)cout * batch * g.oh * g.ow;
            float *in = rnd("img", nin, 1), *o1 = malloc(nout * sizeof *o1), *o2 = malloc(nout * sizeof *o2);
            size_t ntmp = nn_blk_image_tmp_floats(&g, batch);
            float *tmp = malloc(ntmp * sizeof *tmp);
            assert_true(o1 && o2 && tmp);
            nn_blk bout = tu_blk_new(cout, batch, g.oh, g.ow, 1);
            nn_epilogue ep = {.bias = cw.bias, .relu = 1};
            tu_conv_im2col(pool, cw.ap, cout, &g, in, batch, o1, &ep, cw.sc);
            assert_true(nn_blk_image_conv_applies(&g, batch, cout));
            memset(tmp, 0xff, ntmp * sizeof *tmp); /* the padding must be written */
            nn_blk_conv_image(pool, cw.tp, cout, &g, in, batch, &bout, &ep, cw.sc, tmp, cw.off);
            tu_blk_assert_border_zero(&bout);
            nn_blk_to_cnhw(pool, &bout, o2);
            if (memcmp(o1, o2, nout * sizeof *o1) != 0)
                fail_msg("case %zu threads %d: first layer into the blocked layout differs", i, nt);
            conv_w_free(&cw);
            free(in);
            free(o1);
            free(o2);
            free(tmp);
            free(bout.d);
        }
        nn_pool_free(pool);
    }
}

static void test_conv_from_image(void **state)
{
    (void)state;
    tu_for_each_isa(conv_from_image_cases);
}

static void maxpool_cases(void)
{
    /* c, n, h, w, k, stride, pad, input border, output border */
    static const int cases[][9] = {{16, 2, 9, 9, 3, 2, 1, 1, 1},  {32, 1, 13, 13, 3, 2, 0, 0, 2},
                                   {16, 3, 6, 11, 2, 2, 0, 1, 0}, {16, 1, 1, 1, 3, 2, 1, 0, 1},
                                   {16, 1, 55, 55, 3, 2, 0, 2, 0}};
    const float pool_vals[] = {-0.0f, 0.0f, -1.0f, 1.0f, NAN};
    nn_pool *pool = nn_pool_create(2);
    assert_non_null(pool);
    unsigned st = 11u;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int *cs = cases[i];
        int c = cs[0], n = cs[1], h = cs[2], w = cs[3], k = cs[4], s = cs[5], p = cs[6];
        int oh = nn_out_side(h, k, s, p), ow = nn_out_side(w, k, s, p);
        size_t nin = (size_t)c * n * h * w, nout = (size_t)c * n * oh * ow;
        float *x = malloc(nin * sizeof *x), *a = malloc(nout * sizeof *a), *b = malloc(nout * sizeof *b);
        assert_true(x && a && b);
        for (size_t q = 0; q < nin; q++) { /* ties of +-0, and a NaN now and then */
            st = st * 1103515245u + 12345u;
            x[q] = pool_vals[(st >> 16) % (i % 2 ? 5 : 4)];
        }
        nn_maxpool(x, c * n, h, w, k, s, p, a, oh, ow);
        nn_blk bin = tu_blk_new(c, n, h, w, cs[7]), bout = tu_blk_new(c, n, oh, ow, cs[8]);
        nn_blk_from_cnhw(pool, x, &bin);
        nn_blk_maxpool(pool, &bin, &bout, k, s, p);
        tu_blk_assert_border_zero(&bout);
        nn_blk_to_cnhw(pool, &bout, b);
        if (memcmp(a, b, nout * sizeof *a) != 0) fail_msg("case %zu: blocked max pooling differs", i);
        free(x);
        free(a);
        free(b);
        free(bin.d);
        free(bout.d);
    }
    nn_pool_free(pool);
}

static void test_maxpool(void **state)
{
    (void)state;
    tu_for_each_isa(maxpool_cases);
}

static void bn_relu_cases(void)
{
    const int c = 32, n = 2, h = 5, w = 19;
    size_t nf = (size_t)c * n * h * w, plane = (size_t)n * h * w;
    float *alpha = rnd("ba", (size_t)c, 0), *beta = rnd("bb", (size_t)c, 1);
    nn_pool *pool = nn_pool_create(2);
    assert_non_null(pool);
    for (int mode = 0; mode < 3; mode++) { /* bn, bn + relu, relu */
        float *x = rnd("bnx", nf, 1), *y = malloc(nf * sizeof *y);
        assert_non_null(y);
        nn_blk t = tu_blk_new(c, n, h, w, 1);
        nn_blk_from_cnhw(pool, x, &t);
        if (mode < 2)
            nn_bn_apply(x, c, plane, alpha, beta, mode == 1);
        else
            nn_relu(x, nf);
        nn_blk_bn(pool, &t, mode < 2 ? alpha : NULL, mode < 2 ? beta : NULL, mode >= 1);
        tu_blk_assert_border_zero(&t);
        nn_blk_to_cnhw(pool, &t, y);
        if (memcmp(x, y, nf * sizeof *x) != 0) fail_msg("mode %d: blocked batch norm / ReLU differs", mode);
        free(x);
        free(y);
        free(t.d);
    }
    nn_pool_free(pool);
    free(alpha);
    free(beta);
}

static void test_bn_relu(void **state)
{
    (void)state;
    tu_for_each_isa(bn_relu_cases);
}

/* The blocked kernels' epilogue (v16.h: nn_epi16, nn_epi8 on two halves,
 * the portable lanes) over M channels of NPOS positions (acc
 * position-major, 16 channels per vector), written back channel-major like
 * nn_epilogue_row. */
#define EPI_ALL(P, ATTR)                                                                           \
    ATTR static void epi_all_##P(const nn_epilogue *ep, const float *acc, const float *res_pm,   \
                                 int m, int npos, float *out)                                      \
    {                                                                                              \
        for (int q = 0; q < m / 16; q++) {                                                         \
            const P##_t zero = P##_zero();                                                         \
            P##_t b = ep->bias ? P##_ld(ep->bias + 16 * q) : zero;                                 \
            P##_t a = ep->alpha ? P##_ld(ep->alpha + 16 * q) : zero;                               \
            P##_t e = ep->alpha && ep->beta ? P##_ld(ep->beta + 16 * q) : zero;                    \
            for (int j = 0; j < npos; j++) {                                                       \
                float v[16];                                                                       \
                const float *r = ep->res ? res_pm + (size_t)j * m + 16 * q : NULL;                 \
                P##_st(v, P##_epi(P##_ld(acc + (size_t)j * m + 16 * q), ep->bias != NULL, b,       \
                                  ep->alpha != NULL, a, e, r, ep->relu));                          \
                for (int l = 0; l < 16; l++) out[(size_t)(16 * q + l) * npos + j] = v[l];          \
            }                                                                                      \
        }                                                                                          \
    }
EPI_ALL(v16s, )
#ifdef NN_X86
EPI_ALL(v16a, __attribute__((target("avx512f"))))
EPI_ALL(v16b, __attribute__((target("avx2,fma"))))
#endif

static void epi_all(const nn_epilogue *ep, const float *acc, const float *res_pm, int m, int npos,
                    float *out)
{
    switch (cwba_isa_current()) {
#ifdef NN_X86
    case CWBA_ISA_AVX512: epi_all_v16a(ep, acc, res_pm, m, npos, out); return;
    case CWBA_ISA_AVX2: epi_all_v16b(ep, acc, res_pm, m, npos, out); return;
#endif
    default: epi_all_v16s(ep, acc, res_pm, m, npos, out);
    }
}

/* The vector epilogue the blocked convolution's kernel applies (nn_epi16),
 * on special values (NaN, +-0, +-inf, the smallest subnormal), against
 * nn_epilogue_row channel by channel: ReLU keeps a NaN and maps -0 to +0,
 * batch norm is one fused multiply-add. The convolution tests cover the
 * rest of the path, but a convolution cannot produce these values. */
static void vector_epilogue_cases(void)
{
    enum { M = 64, NPOS = 15 };
    const float specials[] = {NAN, -0.0f, 0.0f, INFINITY, -INFINITY, 1.4e-45f, -1.0f, 2.5f};
    float acc[NPOS * M], res_pm[NPOS * M], res[M * NPOS], got[M * NPOS], want[NPOS], row[NPOS];
    float *bias = rnd("sb", M, 1), *alpha = rnd("sa", M, 1), *beta = rnd("sbe", M, 1);
    for (int i = 0; i < NPOS * M; i++) acc[i] = specials[(i * 7 + i / 64) % 8];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < NPOS; j++) {
            float r = (i + j) % 5 == 0 ? -0.0f : specials[(i * 3 + j) % 8];
            res[(size_t)i * NPOS + j] = r;
            res_pm[(size_t)j * M + i] = r;
        }
    for (int i = 0; i < M; i += 5) bias[i] = NAN;
    for (int e = 0; e < 5; e++) {
        nn_epilogue ep;
        tu_epilogue_case(&ep, e % 4, bias, alpha, beta, res);
        if (e == 4) ep = (nn_epilogue){.relu = 1}; /* ReLU alone on the raw specials */
        epi_all(&ep, acc, res_pm, M, NPOS, got);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < NPOS; j++) row[j] = acc[(size_t)j * M + i];
            nn_epilogue_row(&ep, i, row, want, ep.res ? res + (size_t)i * NPOS : NULL, NPOS);
            if (memcmp(want, got + (size_t)i * NPOS, sizeof want) != 0)
                fail_msg("%s epilogue %d channel %d: vector epilogue differs", nn_gemm_isa(), e, i);
        }
    }
    free(bias);
    free(alpha);
    free(beta);
}

static void test_vector_epilogue(void **state)
{
    (void)state;
    tu_for_each_isa(vector_epilogue_cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_changes), cmocka_unit_test(test_conv),
        cmocka_unit_test(test_conv_from_image), cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_bn_relu), cmocka_unit_test(test_vector_epilogue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
