/* blocked.c's row kernels for one ISA (a template: see v16.h; included by
 * blocked.c once per ISA). */

/* Each window's row maxima first, then their maximum over the rows in
 * order: the first greatest value in row-major order, a NaN anywhere
 * surviving, as nn_maxpool's window scan (see layers.c); the short
 * independent chains overlap where one chain of k * k steps would not. */
VATTR static void VNAME(maxpool_row)(const row_job *j, int cb, int n, int y)
{
    const nn_blk *o = j->a, *in = j->in;
    int h0 = y * j->s - j->pad, h1 = h0 + j->k;
    if (h0 < 0) h0 = 0;
    if (h1 > in->h) h1 = in->h;
    float *dst = o->d + nn_blk_off(o, cb, n, y, 0);
    const float *src = in->d + nn_blk_off(in, cb, n, h0, 0);
    const size_t rs = (size_t)nn_blk_wp(in) * NN_CB;
    for (int x = 0; x < o->w; x++) {
        int w0 = x * j->s - j->pad, w1 = w0 + j->k;
        if (w0 < 0) w0 = 0;
        if (w1 > in->w) w1 = in->w;
        VT m = VOP(set1)(-INFINITY);
        for (int i = 0; i < h1 - h0; i++) {
            const float *r = src + i * rs + (size_t)w0 * NN_CB;
            VT v = VOP(ld)(r);
            for (int q = 1; q < w1 - w0; q++) v = VOP(maxstep)(v, VOP(ld)(r + (size_t)q * NN_CB));
            m = i == 0 ? v : VOP(maxstep)(m, v);
        }
        VOP(st)(dst + (size_t)x * NN_CB, m);
    }
}

/* x = fmaf(x, alpha[c], beta[c]) (alpha NULL: skipped), then ReLU, on one
 * row of channel block cb. */
VATTR static void VNAME(bn_row)(const row_job *j, float *row, int cb, int w)
{
    const VT z = VOP(zero)();
    const VT a = j->alpha ? VOP(ld)(j->alpha + cb * NN_CB) : z;
    const VT e = j->alpha ? VOP(ld)(j->beta + cb * NN_CB) : z;
    for (int x = 0; x < w; x++) {
        float *v = row + (size_t)x * NN_CB;
        VOP(st)(v, VOP(epi)(VOP(ld)(v), 0, z, j->alpha != NULL, a, e, NULL, j->relu));
    }
}
