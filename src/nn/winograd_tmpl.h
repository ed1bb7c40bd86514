/* winograd.c's transforms for one ISA (a template: see v16.h; included by
 * winograd.c once per ISA). */

/* V[e][cb][tb][16] = (B^T d B)[e] for the band's tiles t0 + tb. */
VATTR static void VNAME(in_transform)(const wino_ctx *c, long t0, long nb, float *v)
{
    const long wp16 = nn_blk_wp(c->in) * NN_CB, estep = (long)c->g->cin * nb;
    /* On an odd side the last tile's fourth row (column) lies beyond a
     * one-wide border; it feeds only the tile's second output row (column),
     * which does not exist and is not stored, so zeros stand in for it. */
    const int ymax = c->in->h - 1 + c->in->pb, xmax = c->in->w - 1 + c->in->pb;
    const VT zero = VOP(zero)();
    for (int cb = 0; cb < c->g->cin / NN_CB; cb++)
        for (long tb = 0; tb < nb; tb++) {
            int n, ty, tx;
            tile_of(c, t0 + tb, &n, &ty, &tx);
            const float *p = c->in->d + nn_blk_off(c->in, cb, n, 2 * ty - 1, 2 * tx - 1);
            const int row3 = 2 * ty + 2 <= ymax, cols = 2 * tx + 2 <= xmax ? 4 : 3;
            VT t[4][4];
            for (int j = 0; j < 4; j++) { /* B^T d, column by column */
                if (j == cols) {
                    t[0][j] = t[1][j] = t[2][j] = t[3][j] = zero;
                    continue;
                }
                const float *q = p + j * NN_CB;
                VT d0 = VOP(ld)(q), d1 = VOP(ld)(q + wp16);
                VT d2 = VOP(ld)(q + 2 * wp16);
                VT d3 = row3 ? VOP(ld)(q + 3 * wp16) : zero;
                t[0][j] = VOP(sub)(d0, d2);
                t[1][j] = VOP(add)(d1, d2);
                t[2][j] = VOP(sub)(d2, d1);
                t[3][j] = VOP(sub)(d1, d3);
            }
            float *o = v + ((long)cb * nb + tb) * NN_CB;
            for (int i = 0; i < 4; i++) { /* (B^T d) B, row by row */
                float *oi = o + (long)(4 * i) * estep;
                VOP(st)(oi, VOP(sub)(t[i][0], t[i][2]));
                VOP(st)(oi + estep, VOP(add)(t[i][1], t[i][2]));
                VOP(st)(oi + 2 * estep, VOP(sub)(t[i][2], t[i][1]));
                VOP(st)(oi + 3 * estep, VOP(sub)(t[i][1], t[i][3]));
            }
        }
}

/* Output channel blocks ob*4 .. ob*4+3 of the band's tiles from
 * M[e][q][tb][16]: A^T m A, then the epilogue, into the blocked output. */
VATTR static void VNAME(out_transform)(const wino_ctx *c, long t0, long nb, int ob,
                                       const float *mm)
{
    const long estep = (long)NN_T_OC * nb;
    const nn_epilogue *ep = c->ep;
    const VT zero = VOP(zero)();
    for (int q = 0; q < NN_T_OC / NN_CB; q++) {
        const int cb = ob * (NN_T_OC / NN_CB) + q, c0 = cb * NN_CB;
        const VT b = ep->bias ? VOP(ld)(ep->bias + c0) : zero;
        const VT a = ep->alpha ? VOP(ld)(ep->alpha + c0) : zero;
        const VT e = ep->alpha && ep->beta ? VOP(ld)(ep->beta + c0) : zero;
        for (long tb = 0; tb < nb; tb++) {
            int n, ty, tx;
            tile_of(c, t0 + tb, &n, &ty, &tx);
            const float *m = mm + ((long)q * nb + tb) * NN_CB;
            VT s[2][4];
            for (int j = 0; j < 4; j++) { /* A^T m, column by column */
                VT m0 = VOP(ld)(m + (long)j * estep);
                VT m1 = VOP(ld)(m + (long)(4 + j) * estep);
                VT m2 = VOP(ld)(m + (long)(8 + j) * estep);
                VT m3 = VOP(ld)(m + (long)(12 + j) * estep);
                s[0][j] = VOP(add)(VOP(add)(m0, m1), m2);
                s[1][j] = VOP(sub)(VOP(sub)(m1, m2), m3);
            }
            for (int i = 0; i < 2; i++) { /* (A^T m) A, row by row */
                VT y[2];
                y[0] = VOP(add)(VOP(add)(s[i][0], s[i][1]), s[i][2]);
                y[1] = VOP(sub)(VOP(sub)(s[i][1], s[i][2]), s[i][3]);
                for (int j = 0; j < 2; j++) {
                    const int oy = 2 * ty + i, ox = 2 * tx + j;
                    if (oy >= c->out->h || ox >= c->out->w) continue; /* odd sides */
                    const float *r = c->res ? c->res->d + nn_blk_off(c->res, cb, n, oy, ox) : NULL;
                    VOP(st)(c->out->d + nn_blk_off(c->out, cb, n, oy, ox),
                                     VOP(epi)(y[j], ep->bias != NULL, b, ep->alpha != NULL, a, e,
                                              r, ep->relu));
                }
            }
        }
    }
}

