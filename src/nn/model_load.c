/* Creating a model: checking the weights against the structure, packing
 * them for the convolution paths, folding batch norms; and freeing it. */
#include "nn/model_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ creation / free */

static float *copy_floats(const float *src, size_t n)
{
    float *d = malloc(n * sizeof *d);
    if (d) memcpy(d, src, n * sizeof *d);
    return d;
}

static const float *tensor(const cwba_weights *w, const char *prefix, const char *suffix)
{
    char name[80];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    const cwba_tensor_entry *e = cwba_weights_find(w, name);
    return e ? e->data : NULL; /* presence and shape already checked */
}

/* Padded share of the im2col matrix above which a convolution skips the
 * padding taps (tapconv.c): below it the extra GEMM calls and the gather /
 * scatter cost more than the multiply-adds saved. */
#define TAPS_MIN_PADDED 0.2

/* h, w: the input plane the convolution sees in this model. */
static int load_conv(cwba_model *m, conv_layer *c, const cwba_weights *w, int h, int wd)
{
    int kdim = c->cin * c->k * c->k;
    const float *wt = tensor(w, c->prefix, "weight");
    c->apack = nn_alloc_floats(nn_gemm_packed_a_size(c->cout, kdim));
    if (!c->apack) return 0;
    nn_gemm_pack_a(c->cout, kdim, wt, (size_t)kdim, c->apack);
    nn_conv_geom g = {.cin = c->cin, .h = h, .w = wd, .k = c->k, .stride = c->stride, .pad = c->pad};
    g.oh = nn_out_side(h, c->k, c->stride, c->pad);
    g.ow = nn_out_side(wd, c->k, c->stride, c->pad);
    if (c->pad > 0 && nn_tapconv_padded_fraction(&g) > TAPS_MIN_PADDED) {
        if (!nn_tapconv_init(&c->taps, &g, c->cout, wt)) return 0;
        c->use_taps = 1;
        size_t t = nn_tapconv_tmp_floats(&c->taps, 1);
        if (t > m->tap_floats) m->tap_floats = t;
    }
    if (c->has_bias && !(c->bias = copy_floats(tensor(w, c->prefix, "bias"), (size_t)c->cout)))
        return 0;
    c->geom = g;
    size_t need = nn_gemm_scratch_size(kdim), dneed = nn_gemm_direct_scratch_size(c->cout);
    if (nn_directconv_applies(&g, 1) && dneed > need) need = dneed;
    /* The channels-on-lanes packing: for the blocked layout (every layer)
     * and for the direct path where that variant pays. */
    if (nn_isa_avx512() && c->cout % NN_T_OC == 0) {
        c->tpack = nn_alloc_floats(nn_gemm_packed_t_size(c->cout, kdim));
        if (!c->tpack) return 0;
        nn_gemm_pack_t(c->cout, kdim, wt, (size_t)kdim, c->tpack);
        size_t tneed = nn_gemm_direct_t_scratch_size(0);
        if (nn_directconv_t_pays(&g, 1, c->cout) && nn_directconv_t_scratch_size(&g) > tneed)
            tneed = nn_directconv_t_scratch_size(&g);
        if (tneed > need) need = tneed;
    }
    if (need > m->scratch_floats) m->scratch_floats = need;
    if (kdim > m->max_kdim) m->max_kdim = kdim;
    return 1;
}

static int load_bn(bn_layer *b, const cwba_weights *w)
{
    b->alpha = malloc((size_t)b->c * sizeof(float));
    b->beta = malloc((size_t)b->c * sizeof(float));
    if (!b->alpha || !b->beta) return 0;
    nn_bn_fold(b->c, tensor(w, b->prefix, "weight"), tensor(w, b->prefix, "bias"),
               tensor(w, b->prefix, "running_mean"), tensor(w, b->prefix, "running_var"), BN_EPS,
               b->alpha, b->beta);
    return 1;
}

/* Folds the adaptive average pool into the first linear layer when the pool
 * only replicates or averages a smaller plane (AlexNet at 64 px: 256x1x1 ->
 * 6x6 before a 9216-input layer; VGG16: 512x2x2 -> 7x7 before 25088 inputs):
 * W_eff[o, c*hw + i] = sum over the pooled cells q whose window holds input
 * i of W[o, c*p*p + q] / |window(q)|, summed in double and rounded once. The
 * layer then reads the (C, h, w) feature directly (k = C*h*w instead of
 * C*p*p), for every pass including the plain forward, so front + back still
 * equals forward. Not bit-identical to pooling first (a different summation
 * order); docs/performance.md states the effect. Returns 1 when memory is
 * short, 0 otherwise (folded or not applicable). */
#define FOLD_POOL 1 /* 0 restores the unfolded head (the pre-fold float results) */
static int fold_pool(cwba_model *m, linear_layer *l, const float *wt)
{
    const unit *last = &m->units[m->nunits - 1];
    const int c = last->out_c, h = last->out_h, wd = last->out_w, p = m->pool_out;
    const int hw = h * wd, pp = p * p;
    if (!FOLD_POOL || hw >= pp) return 0;
    int kin = c * hw;
    double *acc = malloc(sizeof(double) * (size_t)kin);
    float *weff = malloc(sizeof(float) * (size_t)l->out * (size_t)kin);
    l->apack = nn_alloc_floats(nn_gemm_packed_a_size(l->out, kin));
    if (!acc || !weff || !l->apack) {
        free(acc);
        free(weff);
        return 1;
    }
    for (int o = 0; o < l->out; o++) {
        const float *row = wt + (size_t)o * l->in;
        memset(acc, 0, sizeof(double) * (size_t)kin);
        for (int y = 0; y < p; y++) {
            int h0 = (int)((long)y * h / p), h1 = (int)(((long)(y + 1) * h + p - 1) / p);
            for (int x = 0; x < p; x++) {
                int w0 = (int)((long)x * wd / p), w1 = (int)(((long)(x + 1) * wd + p - 1) / p);
                double inv = 1.0 / ((double)(h1 - h0) * (double)(w1 - w0));
                for (int ch = 0; ch < c; ch++) {
                    double v = (double)row[(size_t)ch * pp + (size_t)y * p + x] * inv;
                    for (int i = h0; i < h1; i++)
                        for (int j = w0; j < w1; j++) acc[(size_t)ch * hw + (size_t)i * wd + j] += v;
                }
            }
        }
        for (int k = 0; k < kin; k++) weff[(size_t)o * kin + k] = (float)acc[k];
    }
    nn_gemm_pack_a(l->out, kin, weff, (size_t)kin, l->apack);
    free(acc);
    free(weff);
    l->in = kin;
    m->pool_folded = 1;
    return 0;
}

static int load_all(cwba_model *m, const cwba_weights *w)
{
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        if (u->kind == U_CONV && !load_conv(m, &u->conv, w, u->in_h, u->in_w)) return 0;
        if (u->kind == U_BN && !load_bn(&u->bn, w)) return 0;
        if (u->kind == U_BLOCK) {
            if (!load_conv(m, &u->conv, w, u->in_h, u->in_w) || !load_bn(&u->bn, w) ||
                !load_conv(m, &u->conv2, w, u->conv.geom.oh, u->conv.geom.ow) ||
                !load_bn(&u->bn2, w))
                return 0;
            if (u->bottleneck &&
                (!load_conv(m, &u->conv3, w, u->conv2.geom.oh, u->conv2.geom.ow) ||
                 !load_bn(&u->bn3, w)))
                return 0;
            if (u->has_down &&
                (!load_conv(m, &u->down, w, u->in_h, u->in_w) || !load_bn(&u->down_bn, w)))
                return 0;
        }
    }
    for (int i = 0; i < m->nlin; i++) {
        linear_layer *l = &m->lin[i];
        if (i == 0 && fold_pool(m, l, tensor(w, l->prefix, "weight"))) return 0;
        if (!l->apack) {
            l->apack = nn_alloc_floats(nn_gemm_packed_a_size(l->out, l->in));
            if (!l->apack) return 0;
            nn_gemm_pack_a(l->out, l->in, tensor(w, l->prefix, "weight"), (size_t)l->in, l->apack);
        }
        if (!(l->bias = copy_floats(tensor(w, l->prefix, "bias"), (size_t)l->out))) return 0;
        size_t need = nn_gemm_scratch_size(l->in);
        if (need > m->scratch_floats) m->scratch_floats = need;
    }
    return 1;
}

static void free_conv(conv_layer *c)
{
    free(c->apack);
    free(c->tpack);
    free(c->upack);
    free(c->bias);
    nn_tapconv_free(&c->taps);
}

static void free_bn(bn_layer *b)
{
    free(b->alpha);
    free(b->beta);
}

void cwba_model_free(cwba_model *m)
{
    if (!m) return;
    nn_model_free_workspace(m);
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        free_conv(&u->conv);
        free_bn(&u->bn);
        free_conv(&u->conv2);
        free_bn(&u->bn2);
        free_conv(&u->conv3);
        free_bn(&u->bn3);
        free_conv(&u->down);
        free_bn(&u->down_bn);
    }
    for (int i = 0; i < m->nlin; i++) {
        free(m->lin[i].apack);
        free(m->lin[i].bias);
    }
    free(m);
}

static cwba_status read_num_classes(cwba_arch arch, const cwba_weights *w, int *out, cwba_error *err)
{
    const char *last;
    int in;
    nn_model_last_layer(arch, &last, &in);
    const cwba_tensor_entry *e = cwba_weights_find(w, last);
    if (!e)
        return cwba_fail(err, CWBA_E_SHAPE, "%s weights: missing tensor %s (expected shape (num_classes, %d))",
                         cwba_arch_name(arch), last, in);
    if (e->is_integer || e->ndim != 2 || e->shape[0] < 1 || e->shape[0] > MAX_CLASSES) {
        char got[96];
        return cwba_fail(err, CWBA_E_SHAPE,
                         "%s weights: tensor %s has shape %s, expected (num_classes, %d) with 1 <= num_classes <= %d",
                         cwba_arch_name(arch), last, nn_model_shape_str(got, sizeof got, e->ndim, e->shape),
                         in, MAX_CLASSES);
    }
    *out = (int)e->shape[0];
    return CWBA_OK;
}

cwba_status cwba_model_create(cwba_arch arch, const cwba_weights *w, int input_size,
                              cwba_model **out, cwba_error *err)
{
    if (!out) return cwba_fail(err, CWBA_E_ARG, "cwba_model_create: out is NULL");
    *out = NULL;
    if (!nn_model_valid_arch(arch)) return cwba_fail(err, CWBA_E_ARG, "cwba_model_create: unknown architecture %d", (int)arch);
    if (!w) return cwba_fail(err, CWBA_E_ARG, "cwba_model_create: weights are NULL");
    if (input_size < 1 || input_size > MAX_INPUT_SIZE)
        return cwba_fail(err, CWBA_E_ARG, "input size %d out of range (1..%d)", input_size,
                         MAX_INPUT_SIZE);
    int num_classes = 0;
    cwba_status st = read_num_classes(arch, w, &num_classes, err);
    if (st) return st;

    cwba_model *m = calloc(1, sizeof *m);
    speclist *specs = malloc(sizeof *specs);
    if (!m || !specs) {
        free(m);
        free(specs);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    nn_model_build(m, arch, num_classes);
    nn_model_specs(m, specs);
    st = nn_model_check_weights(w, specs, cwba_arch_name(arch), err);
    free(specs);
    if (!st) st = nn_model_shapes(m, input_size, err);
    if (!st) nn_model_blocked(m);
    if (st) {
        cwba_model_free(m);
        return st;
    }
    m->input_size = input_size;
    if (!load_all(m, w)) {
        cwba_model_free(m);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory loading %s weights", cwba_arch_name(arch));
    }
    m->blk_ok = 1;
    for (int i = 0; i < m->nunits; i++) {
        const conv_layer *cs[NN_UNIT_CONVS];
        int nc = nn_model_unit_convs(&m->units[i], cs);
        for (int j = 0; j < nc; j++)
            if (!cs[j]->tpack || (cs[j]->cin % NN_CB != 0 && i > 0)) m->blk_ok = 0;
    }
    *out = m;
    return CWBA_OK;
}

