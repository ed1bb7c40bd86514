/* Winograd F(2x2, 3x3) convolution on channel-blocked tensors (Lavin and
 * Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
 *
 * A 3x3, stride-1, pad-1 convolution computes each 2x2 output tile from the
 * 4x4 input tile around it: Y = A^T [ (G g G^T) . (B^T d B) ] A, summed over
 * the input channels. The 16 products (.) of one tile are 16 independent
 * matrix products over the channels, (cout, cin) x (cin, tiles), run by the
 * channels-on-lanes kernel (nn_gemm_direct_t_run): 16 multiply-adds per
 * tile and channel pair where the direct convolution needs 36, 2.25x fewer.
 *
 * Numerics: this is NOT the direct convolution's arithmetic. The input and
 * output transforms add and subtract (B and A hold 0 and +-1 only), the
 * weight transform (G holds +-1/2) is computed in double and rounded once,
 * so every output differs from the direct chain by a few float32 roundings
 * of the terms' magnitude; tests/test_nn_winograd.c bounds it. Each output
 * is still one fixed sequence of operations, whatever the thread count,
 * the batch or the band a tile falls in, so results are identical at any
 * thread count and however images are batched. The models use it only when
 * asked (cwba_model_set_conv_algo).
 *
 * Tiles t = (n, ty, tx) are taken in bands of at most `band` tiles. For a
 * band a thread writes the transformed input V[e][cb][tb][16] (e = 0..15
 * the transform's element, cb the input channel block), then for each
 * 64-channel output block ob the 16 products M[e][q][tb][16] (q = 0..3 the
 * block's four channel blocks), then transforms M back through the
 * epilogue into the blocked output. */
#include "nn/nn_internal.h"
#include "nn/v16.h"

#include "cwba/core.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define WG_E 16

/* Planes of 4x4 and more; odd sides from 9 on. On an odd side the tiles
 * overhang by a row or column, and on 7x7 (ResNet18's layer4 at 224 px: 16
 * tiles covering 8x8, 31% wasted) the 512-channel transformed weights,
 * 16.8 MB per layer, 1.8x the direct ones, come from DRAM every pass:
 * ResNet18 224 b1 ran 0.93x with them (paired, 8 rounds), while AlexNet's
 * 13x13 layers run 1.47-1.51x faster alone (AlexNet 224 b1, whose linear
 * layers take most of the time: 1.01-1.07x). */
int nn_wino_applies(const nn_conv_geom *g, int cout, const nn_blk *in)
{
    return g->k == 3 && g->stride == 1 && g->pad == 1 && in->pb >= 1 &&
           g->h == in->h && g->w == in->w && g->oh == g->h && g->ow == g->w &&
           g->h >= 4 && g->w >= 4 && (g->h % 2 == 0 || g->h >= 9) &&
           (g->w % 2 == 0 || g->w >= 9) && g->cin == in->c && g->cin % NN_CB == 0 && cout > 0 &&
           cout % NN_T_OC == 0 &&
           nn_blk_floats(in->c, in->n, in->h, in->w, in->pb) <= INT_MAX;
}

size_t nn_wino_packed_size(int cout, int cin) { return WG_E * nn_gemm_packed_t_size(cout, cin); }

int nn_wino_pack(int cout, int cin, const float *w, float *dst)
{
    /* U_e(o, c) = (G g G^T)[e / 4][e % 4], G = [1 0 0; 1/2 1/2 1/2;
     * 1/2 -1/2 1/2; 0 0 1], in double, rounded once. */
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    float *u = malloc(sizeof(float) * WG_E * (size_t)cout * (size_t)cin);
    if (!u) return 0;
    const size_t plane = (size_t)cout * (size_t)cin;
    for (size_t oc = 0; oc < plane; oc++) {
        const float *g = w + oc * 9;
        double gg[4][3];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                u[(size_t)(i * 4 + j) * plane + oc] =
                    (float)(gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2]);
    }
    const size_t ps = nn_gemm_packed_t_size(cout, cin);
    for (int e = 0; e < WG_E; e++)
        nn_gemm_pack_t(cout, cin, u + (size_t)e * plane, (size_t)cin, dst + (size_t)e * ps);
    free(u);
    return 1;
}

/* Tiles per band: a thread's transformed input of a band, WG_E * cin
 * floats per tile, kept to about BAND_BYTES (in L2) where the threads share
 * the tiles, or SPLIT_BAND_BYTES where they share the output blocks (each
 * band then reads the thread's part of the transformed weights again, and
 * fewer, larger bands read them less often: VGG16 224 b1 1.17x, ResNet18
 * 224 b1 1.03x, ResNet18 64 b64 1.04x against 768 KB, paired, 8 rounds;
 * 8 MB was no better). At least BAND_MIN tiles, so that each 64-row
 * weight panel serves enough positions; bands of equal size. */
#define BAND_BYTES (768L << 10)
#define SPLIT_BAND_BYTES (4L << 20)
#define BAND_MIN 24
#define BAND_MAX 240 /* NN_T_CHUNK: one chunk per product */

/* split: the threads share the output blocks (wino_split_ob), and each
 * takes every band; else the bands spread over the nt threads. */
static long band_tiles(int cin, long tiles, int nt, int split)
{
    long b = (split ? SPLIT_BAND_BYTES : BAND_BYTES) / ((long)WG_E * cin * (long)sizeof(float));
    if (b < BAND_MIN) b = BAND_MIN;
    if (b > BAND_MAX) b = BAND_MAX;
    long per_thread = split ? tiles : (tiles + nt - 1) / nt;
    if (b > per_thread) b = per_thread;
    long nb = (tiles + b - 1) / b; /* equal bands */
    return (tiles + nb - 1) / nb;
}

/* Per thread: V (WG_E, cin, band) and M (WG_E, 64, band). */
static size_t thread_floats(int cin, long band)
{
    return (size_t)WG_E * ((size_t)cin + NN_T_OC) * (size_t)band;
}

/* Threads share the 64-channel output blocks where they divide evenly:
 * each then reads only its part of the transformed weights (for 512
 * channels 16.8 MB, from L3 or DRAM in a network) and both transform the
 * whole input, which costs less; else they share the tiles. Measured in
 * whole networks (paired, 6-8 rounds): ResNet18 224 b1 1.07x, VGG16 224 b1
 * 1.10x over sharing the tiles everywhere, ResNet18 64 b64 level; layers
 * alone, 512 channels 14x14: 1.57x over sharing the tiles. */
static int wino_split_ob(int cout, int nt)
{
    return nt > 1 && (cout / NN_T_OC) % nt == 0;
}

size_t nn_wino_tmp_floats(const nn_conv_geom *g, int batch, int nthreads)
{
    long tiles = (long)batch * ((g->h + 1) / 2) * ((g->w + 1) / 2);
    size_t a = thread_floats(g->cin, band_tiles(g->cin, tiles, nthreads, 0));
    size_t b = thread_floats(g->cin, band_tiles(g->cin, tiles, nthreads, 1));
    return (size_t)nthreads * (a > b ? a : b);
}

typedef struct wino_ctx {
    const nn_conv_geom *g;
    const nn_blk *in, *out, *res;
    const nn_epilogue *ep;
    const float *upack;
    size_t ps;        /* floats per element's packed weights */
    int cout, th, tw;
    long tiles, band;
    int split_ob;     /* threads share the 64-channel output blocks, not the tiles */
    float *tmp;
    float *const *scratch;
    int *off;         /* (nt, cin) */
    cwba_isa isa;     /* whose transforms run */
} wino_ctx;

/* Tile t as (n, ty, tx). */
static void tile_of(const wino_ctx *c, long t, int *n, int *ty, int *tx)
{
    long per = (long)c->th * c->tw;
    *n = (int)(t / per);
    *ty = (int)(t % per / c->tw);
    *tx = (int)(t % c->tw);
}

static void band_pos(const void *vctx, long j0, int cnt, long *boff)
{
    (void)vctx;
    for (int i = 0; i < cnt; i++) boff[i] = (j0 + i) * NN_CB;
}

static void band_opos(const void *vctx, long j0, int cnt, long *ooff, long *roff)
{
    (void)vctx;
    for (int i = 0; i < cnt; i++) {
        ooff[i] = (j0 + i) * NN_CB;
        roff[i] = 0;
    }
}

/* The transforms, once per ISA. */
#define V16_TEMPLATE "nn/winograd_tmpl.h"
#include "nn/v16_each.h"

static void in_transform(const wino_ctx *c, long t0, long nb, float *v)
{
    switch (c->isa) {
#ifdef NN_X86
    case CWBA_ISA_AVX512: in_transform_avx512(c, t0, nb, v); return;
    case CWBA_ISA_AVX2: in_transform_avx2(c, t0, nb, v); return;
#endif
#ifdef NN_NEON
    case CWBA_ISA_NEON: in_transform_neon(c, t0, nb, v); return;
#endif
    default: in_transform_scalar(c, t0, nb, v);
    }
}

static void out_transform(const wino_ctx *c, long t0, long nb, int ob, const float *mm)
{
    switch (c->isa) {
#ifdef NN_X86
    case CWBA_ISA_AVX512: out_transform_avx512(c, t0, nb, ob, mm); return;
    case CWBA_ISA_AVX2: out_transform_avx2(c, t0, nb, ob, mm); return;
#endif
#ifdef NN_NEON
    case CWBA_ISA_NEON: out_transform_neon(c, t0, nb, ob, mm); return;
#endif
    default: out_transform_scalar(c, t0, nb, ob, mm);
    }
}

static void wino_task(void *vctx, int tid, int nt)
{
    const wino_ctx *c = vctx;
    const int cin = c->g->cin, nob = c->cout / NN_T_OC;
    const long nbands = (c->tiles + c->band - 1) / c->band;
    long b0 = nbands * tid / nt, b1 = nbands * (tid + 1) / nt;
    int ob0 = 0, ob1 = nob;
    if (c->split_ob) {
        b0 = 0;
        b1 = nbands;
        ob0 = nob * tid / nt;
        ob1 = nob * (tid + 1) / nt;
    }
    float *v = c->tmp + (size_t)tid * thread_floats(cin, c->band);
    float *mm = v + (size_t)WG_E * cin * c->band;
    int *off = c->off + (size_t)tid * cin;
    for (long bi = b0; bi < b1; bi++) {
        const long t0 = bi * c->band, nb = c->tiles - t0 < c->band ? c->tiles - t0 : c->band;
        in_transform(c, t0, nb, v);
        for (int ci = 0; ci < cin; ci++) off[ci] = (int)((ci / NN_CB) * nb * NN_CB + ci % NN_CB);
        for (int ob = ob0; ob < ob1; ob++) {
            for (int e = 0; e < WG_E; e++) {
                nn_tfinal fin = {.out = mm + (size_t)e * NN_T_OC * nb, .ostep = nb * NN_CB,
                                 .opos = band_opos};
                nn_gemm_direct_t gt = {.m = NN_T_OC, .k = cin, .npos = nb,
                                       .wt = c->upack + (size_t)e * c->ps + (size_t)ob * NN_T_OC * cin,
                                       .b = v + (size_t)e * cin * nb, .off = off,
                                       .pos = band_pos, .fin = &fin};
                nn_gemm_direct_t_run(NULL, &gt, c->scratch + tid);
            }
            out_transform(c, t0, nb, ob, mm);
        }
    }
}

void nn_wino_conv(nn_pool *pool, const float *upack, int cout, const nn_conv_geom *g,
                  const nn_blk *in, const nn_blk *out, const nn_epilogue *ep, const nn_blk *res,
                  float *const *scratch, float *tmp, int *off)
{
    const int nt = nn_pool_size(pool);
    wino_ctx c = {.g = g, .in = in, .out = out, .res = res, .ep = ep, .upack = upack,
                  .ps = nn_gemm_packed_t_size(cout, g->cin), .cout = cout, .th = (g->h + 1) / 2,
                  .tw = (g->w + 1) / 2, .tmp = tmp, .scratch = scratch, .off = off,
                  .isa = cwba_isa_current()};
    c.tiles = (long)in->n * c.th * c.tw;
    c.split_ob = wino_split_ob(cout, nt);
    c.band = band_tiles(g->cin, c.tiles, nt, c.split_ob);
    nn_blk_clear_border(out);
    nn_pool_run(pool, wino_task, &c);
}
