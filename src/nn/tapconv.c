/* Convolution on small planes without the padding taps.
 *
 * A 3x3 pad-1 convolution on a 2x2 plane reads 5 zeros of padding out of 9
 * taps at every output position; the im2col GEMM multiplies them anyway.
 * Here the output positions are grouped by their window of valid taps (a
 * rectangle [ky0, ky1) x [kx0, kx1), fixed by the output row and column
 * separately), and each group runs one GEMM over the weights restricted to
 * those taps, in the original k order (c, ky, kx) with the invalid taps left
 * out.
 *
 * Why the results are bit-identical to the im2col path: every output element
 * there is the chain acc = fmaf(w[p], x[p], acc) over p = 0..K-1 from +0,
 * with x[p] = +0 for a padding tap. fmaf(w, +0, acc) = (w * +0) + acc exactly,
 * and w * +0 is +0 or -0; adding a zero to acc returns acc unchanged unless
 * acc is itself -0 and the product +0 (then +0). A chain started at +0 only
 * becomes -0 when a finite sum underflows to a negative zero (products below
 * 2^-150), so for every value above that scale the element gets exactly the
 * same chain minus steps that change nothing. In that underflow corner the
 * result can at most differ in the sign of a zero, which compares equal and
 * is erased by a following bias / batch-norm shift or ReLU. Tests compare the
 * two paths bit for bit on random data with negative values. */
#include "nn/nn_internal.h"

#include <stdlib.h>
#include <string.h>

/* Window of valid taps along one axis for output index o. */
static void axis_window(int o, int in, int k, int stride, int pad, int *k0, int *k1)
{
    int start = o * stride - pad;
    *k0 = start < 0 ? -start : 0;
    *k1 = in - start < k ? in - start : k;
    if (*k1 < *k0) *k1 = *k0;
}

/* Valid taps summed over the output positions of one axis. */
static long axis_taps(int in, int out, int k, int stride, int pad)
{
    long t = 0;
    for (int o = 0; o < out; o++) {
        int a, b;
        axis_window(o, in, k, stride, pad, &a, &b);
        t += b - a;
    }
    return t;
}

double nn_tapconv_padded_fraction(const nn_conv_geom *g)
{
    if (g->oh < 1 || g->ow < 1 || g->k < 1) return 0.0;
    double valid = (double)axis_taps(g->h, g->oh, g->k, g->stride, g->pad) *
                   (double)axis_taps(g->w, g->ow, g->k, g->stride, g->pad);
    return 1.0 - valid / ((double)g->oh * g->ow * g->k * g->k);
}

void nn_tapconv_free(nn_tapconv *t)
{
    if (!t) return;
    for (int i = 0; i < t->ngroups; i++) {
        free(t->groups[i].apack);
        free(t->groups[i].pos);
    }
    free(t->groups);
    memset(t, 0, sizeof *t);
}

int nn_tapconv_init(nn_tapconv *t, const nn_conv_geom *g, int cout, const float *w)
{
    memset(t, 0, sizeof *t);
    t->geom = *g;
    t->cout = cout;
    /* Distinct windows per axis, in order of first appearance. */
    int *rw = malloc(sizeof(int) * (size_t)g->oh), *cw = malloc(sizeof(int) * (size_t)g->ow);
    int(*rk)[2] = malloc(sizeof *rk * (size_t)g->oh), (*ck)[2] = malloc(sizeof *ck * (size_t)g->ow);
    int nr = 0, nc = 0, ok = rw && cw && rk && ck;
    for (int o = 0; ok && o < g->oh; o++) {
        int a, b, j;
        axis_window(o, g->h, g->k, g->stride, g->pad, &a, &b);
        for (j = 0; j < nr && (rk[j][0] != a || rk[j][1] != b); j++) continue;
        if (j == nr) rk[nr][0] = a, rk[nr][1] = b, nr++;
        rw[o] = j;
    }
    for (int o = 0; ok && o < g->ow; o++) {
        int a, b, j;
        axis_window(o, g->w, g->k, g->stride, g->pad, &a, &b);
        for (j = 0; j < nc && (ck[j][0] != a || ck[j][1] != b); j++) continue;
        if (j == nc) ck[nc][0] = a, ck[nc][1] = b, nc++;
        cw[o] = j;
    }
    if (ok) ok = (t->groups = calloc((size_t)nr * nc, sizeof *t->groups)) != NULL;
    for (int r = 0; ok && r < nr; r++)
        for (int c = 0; ok && c < nc; c++) {
            nn_tapgroup *gr = &t->groups[t->ngroups++];
            gr->ky0 = rk[r][0];
            gr->ky1 = rk[r][1];
            gr->kx0 = ck[c][0];
            gr->kx1 = ck[c][1];
            gr->kdim = g->cin * (gr->ky1 - gr->ky0) * (gr->kx1 - gr->kx0);
            gr->pos = malloc(sizeof(int) * (size_t)g->oh * g->ow);
            if (!(ok = gr->pos != NULL)) break;
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++)
                    if (rw[oy] == r && cw[ox] == c) gr->pos[gr->npos++] = oy * g->ow + ox;
            if (gr->npos > t->max_npos) t->max_npos = gr->npos;
            if (t->min_npos == 0 || gr->npos < t->min_npos) t->min_npos = gr->npos;
            /* The restricted weights (cout, cin, ky1-ky0, kx1-kx0), k order kept. */
            size_t kd = gr->kdim > 0 ? (size_t)gr->kdim : 1;
            float *sub = malloc(sizeof(float) * (size_t)cout * kd);
            gr->apack = nn_alloc_floats(nn_gemm_packed_a_size(cout, (int)kd));
            if (!(ok = sub && gr->apack)) {
                free(sub);
                break;
            }
            size_t q = 0;
            for (int o = 0; o < cout; o++)
                for (int ci = 0; ci < g->cin; ci++)
                    for (int ky = gr->ky0; ky < gr->ky1; ky++)
                        for (int kx = gr->kx0; kx < gr->kx1; kx++)
                            sub[q++] = w[(((size_t)o * g->cin + ci) * g->k + ky) * g->k + kx];
            if (gr->kdim > 0) nn_gemm_pack_a(cout, gr->kdim, sub, (size_t)gr->kdim, gr->apack);
            free(sub);
        }
    free(rw);
    free(cw);
    free(rk);
    free(ck);
    if (!ok) nn_tapconv_free(t);
    return ok;
}

size_t nn_tapconv_tmp_floats(const nn_tapconv *t, int batch)
{
    /* GEMM output and gathered residual of the largest group. */
    return 2 * (size_t)t->cout * (size_t)batch * (size_t)t->max_npos;
}

/* Packing context: the group's column matrix, column j = (image j / npos,
 * position j % npos of the group), row p = (c, ky, kx) inside the window. */
typedef struct tap_ctx {
    const float *in; /* (cin, batch, h, w) */
    int batch;
    const nn_conv_geom *g;
    const nn_tapgroup *gr;
} tap_ctx;

static void pack_tap(const void *vctx, int p0, int np, int k0, int kc, float *dst)
{
    const tap_ctx *x = vctx;
    const nn_conv_geom *g = x->g;
    const nn_tapgroup *gr = x->gr;
    const int kh = gr->ky1 - gr->ky0, kw = gr->kx1 - gr->kx0;
    const size_t plane = (size_t)g->h * g->w, chan = (size_t)x->batch * plane;
    const long ncols = (long)x->batch * gr->npos;
    for (int pi = 0; pi < np; pi++) {
        float *d = dst + (size_t)pi * kc * NN_NR;
        /* Offset of input tap (c=0, ky0, kx0) for each column of the panel. */
        size_t base[NN_NR];
        int cols = 0;
        for (long col = (long)(p0 + pi) * NN_NR; cols < NN_NR && col < ncols; col++, cols++) {
            int b = (int)(col / gr->npos), pos = gr->pos[col % gr->npos];
            int iy = pos / g->ow * g->stride - g->pad + gr->ky0;
            int ix = pos % g->ow * g->stride - g->pad + gr->kx0;
            base[cols] = (size_t)b * plane + (size_t)iy * g->w + (size_t)ix;
        }
        int c = k0 / (kh * kw), ky = k0 / kw % kh, kx = k0 % kw;
        for (int p = 0; p < kc; p++, d += NN_NR) {
            const float *src = x->in + (size_t)c * chan + (size_t)ky * g->w + (size_t)kx;
            int j = 0;
            for (; j < cols; j++) d[j] = src[base[j]];
            for (; j < NN_NR; j++) d[j] = 0.0f;
            if (++kx == kw) {
                kx = 0;
                if (++ky == kh) {
                    ky = 0;
                    c++;
                }
            }
        }
    }
}

void nn_tapconv_run(nn_pool *pool, const nn_tapconv *t, const float *in, int batch, float *out,
                    const nn_epilogue *ep, float *const *scratch, float *tmp)
{
    const nn_conv_geom *g = &t->geom;
    const size_t ohw = (size_t)g->oh * g->ow, ldo = (size_t)batch * ohw;
    for (int i = 0; i < t->ngroups; i++) {
        const nn_tapgroup *gr = &t->groups[i];
        const int n = batch * gr->npos;
        float *c = tmp, *res = tmp + (size_t)t->cout * n;
        nn_epilogue e = *ep;
        if (ep->res) {
            /* Gather the residual into the group's column order. */
            for (int o = 0; o < t->cout; o++)
                for (int b = 0; b < batch; b++)
                    for (int j = 0; j < gr->npos; j++)
                        res[(size_t)o * n + (size_t)b * gr->npos + j] =
                            ep->res[(size_t)o * ldo + (size_t)b * ohw + gr->pos[j]];
            e.res = res;
        }
        if (gr->kdim == 0) {
            /* Only padding: the im2col chain is +0 throughout. */
            memset(c, 0, sizeof(float) * (size_t)t->cout * n);
            nn_matrix_ctx none = {.b = c, .k = 0, .n = n, .ld = (size_t)n};
            nn_gemm gm = {.m = t->cout, .n = n, .k = 0, .apack = gr->apack,
                          .pack_b = nn_pack_b_matrix, .pack_ctx = &none, .c = c,
                          .ldc = (size_t)n, .ep = e};
            nn_gemm_epilogue_only(&gm);
        } else {
            tap_ctx tc = {.in = in, .batch = batch, .g = g, .gr = gr};
            nn_gemm gm = {.m = t->cout, .n = n, .k = gr->kdim, .apack = gr->apack,
                          .pack_b = pack_tap, .pack_ctx = &tc, .c = c, .ldc = (size_t)n, .ep = e};
            nn_gemm_run(pool, &gm, scratch);
        }
        for (int o = 0; o < t->cout; o++)
            for (int b = 0; b < batch; b++) {
                const float *src = c + (size_t)o * n + (size_t)b * gr->npos;
                float *dst = out + (size_t)o * ldo + (size_t)b * ohw;
                for (int j = 0; j < gr->npos; j++) dst[gr->pos[j]] = src[j];
            }
    }
}
