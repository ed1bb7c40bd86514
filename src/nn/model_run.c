/* Running a model: the workspace, the two activation layouts, the
 * convolution paths, and the forward API. */
#include "nn/model_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_wino_workspace(cwba_model *m)
{
    free(m->wbuf);
    m->wbuf = NULL;
    m->wbuf_floats = 0;
    free(m->woff);
    m->woff = NULL;
}

void nn_model_free_workspace(cwba_model *m)
{
    for (int i = 0; i < 4; i++) {
        free(m->buf[i]);
        m->buf[i] = NULL;
    }
    free(m->tapbuf);
    m->tapbuf = NULL;
    free(m->dirbuf);
    m->dirbuf = NULL;
    m->dir_floats = 0;
    free(m->offbuf);
    m->offbuf = NULL;
    free_wino_workspace(m);
    m->ws_batch = 0;
    if (m->scratch) {
        for (int t = 0; t < nn_pool_size(m->pool); t++) free(m->scratch[t]);
        free(m->scratch);
        m->scratch = NULL;
    }
    nn_pool_free(m->pool);
    m->pool = NULL;
    m->pool_threads = 0;
}

/* ------------------------------------------------------------ forward */

static cwba_status ensure_threads(cwba_model *m, cwba_error *err)
{
    int threads = cwba_get_threads();
    if (m->pool && m->pool_threads == threads) return CWBA_OK;
    nn_model_free_workspace(m);
    m->pool = nn_pool_create(threads);
    if (!m->pool) return cwba_fail(err, CWBA_E_NOMEM, "out of memory (thread pool)");
    m->pool_threads = threads;
    int n = nn_pool_size(m->pool);
    m->scratch = calloc((size_t)n, sizeof *m->scratch);
    for (int t = 0; m->scratch && t < n; t++) {
        m->scratch[t] = nn_alloc_floats(m->scratch_floats);
        if (!m->scratch[t]) break;
    }
    if (!m->scratch || !m->scratch[n - 1]) {
        nn_model_free_workspace(m); /* leave nothing half-built for the next call */
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory (workspace)");
    }
    return CWBA_OK;
}

/* The Winograd path's transform buffers for `batch` (none with direct
 * arithmetic); 1 when memory is short. */
static int wino_workspace(cwba_model *m, int batch)
{
    free_wino_workspace(m);
    if (m->conv_algo != CWBA_CONV_WINOGRAD) return 0;
    int nt = nn_pool_size(m->pool), max_cin = 0;
    size_t need = 0;
    for (int i = 0; i < m->nunits; i++) {
        const conv_layer *cs[NN_UNIT_CONVS];
        int nc = nn_model_unit_convs(&m->units[i], cs);
        for (int j = 0; j < nc; j++) {
            if (!cs[j]->upack) continue;
            size_t t = nn_wino_tmp_floats(&cs[j]->geom, batch, nt);
            if (t > need) need = t;
            if (cs[j]->cin > max_cin) max_cin = cs[j]->cin;
        }
    }
    if (!need) return 0;
    m->wbuf = nn_alloc_floats(need);
    m->woff = malloc((size_t)nt * (size_t)max_cin * sizeof(int));
    if (!m->wbuf || !m->woff) return 1;
    m->wbuf_floats = need;
    return 0;
}

/* Thread pool, per-thread packing scratch and four activation buffers big
 * enough for `batch`; grown here, never inside the layer loop. */
static cwba_status ensure_workspace(cwba_model *m, int batch, cwba_error *err)
{
    cwba_status st = ensure_threads(m, err);
    if (st) return st;
    if (batch <= m->ws_batch) return CWBA_OK;
    size_t n, nt;
    size_t per = m->blk_ok && m->max_blk > m->max_act ? m->max_blk : m->max_act;
    if ((long)batch > INT_MAX / 4 / m->max_cols || !cwba_size_mul(per, (size_t)batch, &n) ||
        n > SIZE_MAX / sizeof(float) || !cwba_size_mul(m->tap_floats, (size_t)batch, &nt) ||
        nt > SIZE_MAX / sizeof(float))
        return cwba_fail(err, CWBA_E_ARG, "batch of %d images is too large for %s at %d px", batch,
                         cwba_arch_name(m->arch), m->input_size);
    for (int i = 0; i < 4; i++) {
        free(m->buf[i]);
        m->buf[i] = NULL;
    }
    free(m->tapbuf);
    free(m->dirbuf);
    m->dirbuf = NULL;
    m->ws_batch = 0;
    if (!(m->tapbuf = nn_alloc_floats(nt)))
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory (workspace for batch %d)", batch);
    /* The direct convolutions' padded input: computed columns per kept one
     * grow with the batch, so a layer the direct path takes at some batch
     * <= this one is one it takes at batch 1, and needs at most its size at
     * this batch (conv_run checks it again). */
    m->dir_floats = 0;
    for (int i = 0; i < m->nunits; i++) {
        const conv_layer *cs[NN_UNIT_CONVS];
        int nc = nn_model_unit_convs(&m->units[i], cs);
        for (int j = 0; j < nc; j++) {
            size_t t = 0;
            if (nn_directconv_pays(&cs[j]->geom, 1)) t = nn_directconv_tmp_floats(&cs[j]->geom, batch);
            if (i == 0 && m->blk_ok && nn_blk_image_tmp_floats(&cs[j]->geom, batch) > t)
                t = nn_blk_image_tmp_floats(&cs[j]->geom, batch);
            if (t > m->dir_floats) m->dir_floats = t;
        }
    }
    if (m->dir_floats && !(m->dirbuf = nn_alloc_floats(m->dir_floats)))
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory (workspace for batch %d)", batch);
    if (wino_workspace(m, batch))
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory (workspace for batch %d)", batch);
    if (!m->offbuf && !(m->offbuf = malloc((size_t)(m->max_kdim > 0 ? m->max_kdim : 1) * sizeof(int))))
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory (workspace for batch %d)", batch);
    for (int i = 0; i < 4; i++) {
        m->buf[i] = nn_alloc_floats(n);
        if (!m->buf[i]) {
            for (int j = 0; j < i; j++) {
                free(m->buf[j]);
                m->buf[j] = NULL;
            }
            return cwba_fail(err, CWBA_E_NOMEM, "out of memory (workspace for batch %d)", batch);
        }
    }
    m->ws_batch = batch;
    return CWBA_OK;
}

/* ------------------------------------------------------ convolution paths */

/* Every convolution runs through conv_exec, which takes the first path of
 * CONV_PATHS that applies to the call's layout and geometry. All paths
 * compute the same bits (docs/architecture.md) except Winograd, which runs
 * only where the model's arithmetic is CWBA_CONV_WINOGRAD. */
typedef enum conv_layout {
    CL_PLAIN,   /* (C, N, H, W) in and out */
    CL_BLOCKED, /* nn_blk in and out */
    CL_IMAGE    /* the (3, N, H, W) image in, nn_blk out */
} conv_layout;

typedef struct conv_call {
    cwba_model *m;
    const conv_layer *cv;
    nn_conv_geom g;      /* at the call's input plane */
    int batch;
    const float *in;     /* CL_PLAIN, CL_IMAGE */
    float *out;          /* CL_PLAIN; CL_IMAGE: a spare activation buffer */
    const nn_blk *bin;   /* CL_BLOCKED */
    const nn_blk *bout;  /* CL_BLOCKED, CL_IMAGE */
    const nn_blk *bres;  /* CL_BLOCKED residual, or NULL */
    const nn_epilogue *ep;
} conv_call;

typedef struct conv_path {
    const char *name;
    conv_layout layout;
    int (*applies)(const conv_call *c);
    void (*run)(const conv_call *c);
} conv_path;

/* Whether the tap-skipping path runs this batch. Taps only pay once every
 * group's GEMM spans two column panels: with fewer columns the weights are
 * streamed per group and dominate (the restricted weights of all groups are
 * larger than the full ones). */
static int taps_run(const conv_layer *cv, int batch, int h, int w)
{
    return cv->use_taps && cv->taps.geom.h == h && cv->taps.geom.w == w &&
           (long)batch * cv->taps.min_npos >= 2 * NN_NR;
}

static int taps_applies(const conv_call *c) { return taps_run(c->cv, c->batch, c->g.h, c->g.w); }

static void taps_exec(const conv_call *c)
{
    nn_tapconv_run(c->m->pool, &c->cv->taps, c->in, c->batch, c->out, c->ep, c->m->scratch,
                   c->m->tapbuf);
}

static int direct_applies(const conv_call *c)
{
    return nn_directconv_pays(&c->g, c->batch) && nn_directconv_applies(&c->cv->geom, 1) &&
           nn_directconv_tmp_floats(&c->g, c->batch) <= c->m->dir_floats;
}

static void direct_exec(const conv_call *c)
{
    const conv_layer *cv = c->cv;
    nn_directconv_run(c->m->pool, cv->apack, cv->tpack, cv->cout, &c->g, c->in, c->batch, c->out,
                      c->ep, c->m->scratch, c->m->dirbuf, c->m->offbuf);
}

/* A 1x1 stride-1 convolution is a plain matrix product. */
static int matrix_applies(const conv_call *c)
{
    return c->cv->k == 1 && c->cv->stride == 1 && c->cv->pad == 0;
}

static int always(const conv_call *c)
{
    (void)c;
    return 1;
}

static void gemm_exec(const conv_call *c)
{
    const conv_layer *cv = c->cv;
    nn_gemm gm = {.m = cv->cout, .n = c->batch * c->g.oh * c->g.ow, .k = cv->cin * cv->k * cv->k,
                  .apack = cv->apack, .c = c->out, .ep = *c->ep};
    gm.ldc = (size_t)gm.n;
    nn_im2col_ctx ic = {.in = c->in, .batch = c->batch, .g = c->g};
    nn_matrix_ctx mc = {.b = c->in, .k = cv->cin, .n = gm.n, .ld = (size_t)gm.n};
    if (matrix_applies(c)) {
        gm.pack_b = nn_pack_b_matrix;
        gm.pack_ctx = &mc;
    } else {
        gm.pack_b = nn_pack_b_im2col;
        gm.pack_ctx = &ic;
    }
    nn_gemm_run(c->m->pool, &gm, c->m->scratch);
}

static int wino_applies(const conv_call *c)
{
    const cwba_model *m = c->m;
    return c->cv->upack && m->wbuf && nn_wino_applies(&c->g, c->cv->cout, c->bin) &&
           nn_wino_tmp_floats(&c->g, c->bin->n, nn_pool_size(m->pool)) <= m->wbuf_floats;
}

static void wino_exec(const conv_call *c)
{
    cwba_model *m = c->m;
    nn_wino_conv(m->pool, c->cv->upack, c->cv->cout, &c->g, c->bin, c->bout, c->ep, c->bres,
                 m->scratch, m->wbuf, m->woff);
}

/* nn_blk_conv_applies holds by construction here: use_blk (AVX-512, int
 * offsets), blk_ok (a t-pack, so cout % 64 == 0, and cin % 16 == 0) and the
 * borders, which nn_model_blocked makes as wide as the readers' padding. */
static void blk_exec(const conv_call *c)
{
    cwba_model *m = c->m;
    nn_blk_conv(m->pool, c->cv->tpack, c->cv->cout, &c->g, c->bin, c->bout, c->ep, c->bres,
                m->scratch, m->offbuf);
}

/* The image, (3, batch, H, W): through the padded copy. */
static int image_applies(const conv_call *c)
{
    return nn_blk_image_conv_applies(&c->g, c->batch, c->cv->cout) &&
           nn_blk_image_tmp_floats(&c->g, c->batch) <= c->m->dir_floats;
}

static void image_exec(const conv_call *c)
{
    cwba_model *m = c->m;
    nn_blk_conv_image(m->pool, c->cv->tpack, c->cv->cout, &c->g, c->in, c->batch, c->bout, c->ep,
                      m->scratch, m->dirbuf, m->offbuf);
}

static void conv_exec(const conv_call *c, conv_layout layout);

/* Else the image through a plain path into c->out, then blocked. */
static void image_plain_exec(const conv_call *c)
{
    conv_exec(c, CL_PLAIN);
    nn_blk_from_cnhw(c->m->pool, c->out, c->bout);
}

static const conv_path CONV_PATHS[] = {
    {"taps", CL_PLAIN, taps_applies, taps_exec},
    {"direct", CL_PLAIN, direct_applies, direct_exec},
    {"gemm-1x1", CL_PLAIN, matrix_applies, gemm_exec},
    {"gemm-im2col", CL_PLAIN, always, gemm_exec},
    {"winograd", CL_BLOCKED, wino_applies, wino_exec},
    {"blocked", CL_BLOCKED, always, blk_exec},
    {"blocked-image", CL_IMAGE, image_applies, image_exec},
    {"image-via-plain", CL_IMAGE, always, image_plain_exec},
};
#define NPATHS ((int)(sizeof CONV_PATHS / sizeof *CONV_PATHS))
_Static_assert(sizeof CONV_PATHS / sizeof *CONV_PATHS == NN_CONV_PATHS, "NN_CONV_PATHS");

static void conv_exec(const conv_call *c, conv_layout layout)
{
    for (int i = 0; i < NPATHS; i++) {
        const conv_path *p = &CONV_PATHS[i];
        if (p->layout != layout || !p->applies(c)) continue;
        c->m->conv_calls[i]++;
        p->run(c);
        return;
    }
}

long nn_model_conv_calls(const cwba_model *m, const char *path)
{
    for (int i = 0; i < NPATHS; i++)
        if (!strcmp(CONV_PATHS[i].name, path)) return m->conv_calls[i];
    return -1;
}

void nn_model_conv_calls_reset(cwba_model *m) { memset(m->conv_calls, 0, sizeof m->conv_calls); }

static nn_conv_geom conv_geom_at(const conv_layer *cv, int h, int w)
{
    nn_conv_geom g = {.cin = cv->cin, .h = h, .w = w, .k = cv->k, .stride = cv->stride, .pad = cv->pad};
    g.oh = nn_out_side(h, cv->k, cv->stride, cv->pad);
    g.ow = nn_out_side(w, cv->k, cv->stride, cv->pad);
    return g;
}

/* (cout, batch, oh, ow) = conv((cin, batch, h, w)) with the epilogue. */
static void conv_run(cwba_model *m, const conv_layer *cv, const float *in, int batch, int h, int w,
                     float *out, const nn_epilogue *ep)
{
    conv_call c = {.m = m, .cv = cv, .g = conv_geom_at(cv, h, w), .batch = batch, .in = in,
                   .out = out, .ep = ep};
    conv_exec(&c, CL_PLAIN);
}

static int other_buf(int a, int b, int c)
{
    for (int i = 0; i < 4; i++)
        if (i != a && i != b && i != c) return i;
    return -1;
}

/* Element-wise and pooling layers, split over planes across the pool; each
 * output element is computed by exactly the same code whatever the split. */
typedef enum plane_op { P_BN, P_RELU, P_MAXPOOL, P_AVGPOOL, P_TO_CNHW, P_TO_NCHW } plane_op;

typedef struct plane_job {
    plane_op op;
    const float *in;
    float *out;
    int planes;        /* units of work: channels or (channel, image) planes */
    size_t plane;      /* floats per unit (BN / ReLU / layout changes) */
    int h, w, oh, ow;  /* pooling */
    int k, stride, pad;
    const float *alpha, *beta;
    int relu, batch;
} plane_job;

static void plane_range(const plane_job *j, int p0, int p1)
{
    int n = p1 - p0;
    switch (j->op) {
    case P_BN:
        nn_bn_apply(j->out + (size_t)p0 * j->plane, n, j->plane, j->alpha + p0, j->beta + p0, j->relu);
        break;
    case P_RELU: nn_relu(j->out + (size_t)p0 * j->plane, (size_t)n * j->plane); break;
    case P_MAXPOOL:
        nn_maxpool(j->in + (size_t)p0 * j->h * j->w, n, j->h, j->w, j->k, j->stride, j->pad,
                   j->out + (size_t)p0 * j->oh * j->ow, j->oh, j->ow);
        break;
    case P_AVGPOOL:
        nn_adaptive_avgpool(j->in + (size_t)p0 * j->h * j->w, n, j->h, j->w,
                            j->out + (size_t)p0 * j->oh * j->ow, j->oh, j->ow);
        break;
    case P_TO_CNHW: /* unit = channel: (batch, C, plane) -> (C, batch, plane) */
    case P_TO_NCHW:
        for (int ch = p0; ch < p1; ch++)
            for (int b = 0; b < j->batch; b++) {
                size_t cn = ((size_t)ch * j->batch + b) * j->plane;
                size_t nc = ((size_t)b * j->planes + ch) * j->plane;
                if (j->op == P_TO_CNHW)
                    memcpy(j->out + cn, j->in + nc, j->plane * sizeof(float));
                else
                    memcpy(j->out + nc, j->in + cn, j->plane * sizeof(float));
            }
        break;
    }
}

static void plane_task(void *ctx, int tid, int nt)
{
    const plane_job *j = ctx;
    int p0 = (int)((long)j->planes * tid / nt), p1 = (int)((long)j->planes * (tid + 1) / nt);
    if (p0 < p1) plane_range(j, p0, p1);
}

static void run_planes(cwba_model *m, const plane_job *j, size_t total_floats)
{
    /* Below ~64K floats the wake-up of the other threads costs more. */
    if (nn_pool_size(m->pool) == 1 || total_floats < 65536 || j->planes < 2)
        plane_range(j, 0, j->planes);
    else
        nn_pool_run(m->pool, plane_task, (void *)j);
}

/* The epilogue of unit i's convolution: its bias, and the batch norm and
 * ReLU units that follow it within u1 (fused). Returns the last unit used. */
static int conv_epilogue(const cwba_model *m, int i, int u1, nn_epilogue *ep)
{
    *ep = (nn_epilogue){.bias = m->units[i].conv.bias};
    if (i + 1 <= u1 && m->units[i + 1].kind == U_BN) {
        ep->alpha = m->units[i + 1].bn.alpha;
        ep->beta = m->units[i + 1].bn.beta;
        i++;
    }
    if (i + 1 <= u1 && m->units[i + 1].kind == U_RELU) {
        ep->relu = 1;
        i++;
    }
    return i;
}

/* Runs units u0..u1 on m->buf[*cur] (layout (C, batch, H, W)). */
static void run_units(cwba_model *m, int u0, int u1, int batch, int *cur)
{
    for (int i = u0; i <= u1; i++) {
        const unit *u = &m->units[i];
        float *x = m->buf[*cur];
        size_t plane = (size_t)batch * u->in_h * u->in_w; /* one channel */
        switch (u->kind) {
        case U_CONV: {
            nn_epilogue ep;
            i = conv_epilogue(m, i, u1, &ep);
            int o = other_buf(*cur, -1, -1);
            conv_run(m, &u->conv, x, batch, u->in_h, u->in_w, m->buf[o], &ep);
            *cur = o;
            break;
        }
        case U_BN: {
            int relu = i + 1 <= u1 && m->units[i + 1].kind == U_RELU;
            plane_job j = {.op = P_BN, .out = x, .planes = u->in_c, .plane = plane,
                           .alpha = u->bn.alpha, .beta = u->bn.beta, .relu = relu};
            run_planes(m, &j, (size_t)u->in_c * plane);
            i += relu;
            break;
        }
        case U_RELU: {
            plane_job j = {.op = P_RELU, .out = x, .planes = u->in_c, .plane = plane};
            run_planes(m, &j, (size_t)u->in_c * plane);
            break;
        }
        case U_MAXPOOL: {
            int o = other_buf(*cur, -1, -1);
            plane_job j = {.op = P_MAXPOOL, .in = x, .out = m->buf[o], .planes = u->in_c * batch,
                           .h = u->in_h, .w = u->in_w, .oh = u->out_h, .ow = u->out_w,
                           .k = u->pk, .stride = u->ps, .pad = u->pp};
            run_planes(m, &j, (size_t)u->in_c * plane);
            *cur = o;
            break;
        }
        case U_BLOCK: {
            /* out = relu(bn2(conv2(relu(bn1(conv1(x))))) + identity); a
             * Bottleneck: relu(bn3(conv3(relu(bn2(conv2(...))))) + identity) */
            int t1 = other_buf(*cur, -1, -1);
            nn_epilogue ep1 = {.alpha = u->bn.alpha, .beta = u->bn.beta, .relu = 1};
            conv_run(m, &u->conv, x, batch, u->in_h, u->in_w, m->buf[t1], &ep1);
            const float *identity = x;
            int id = *cur;
            if (u->has_down) {
                id = other_buf(*cur, t1, -1);
                nn_epilogue epd = {.alpha = u->down_bn.alpha, .beta = u->down_bn.beta};
                conv_run(m, &u->down, x, batch, u->in_h, u->in_w, m->buf[id], &epd);
                identity = m->buf[id];
            }
            int o = other_buf(*cur, t1, id);
            const conv_layer *last = &u->conv2;
            const bn_layer *last_bn = &u->bn2;
            if (u->bottleneck) {
                /* conv2 into the fourth buffer; conv3 reads it and writes
                 * where conv1's output was. */
                nn_epilogue ep2 = {.alpha = u->bn2.alpha, .beta = u->bn2.beta, .relu = 1};
                conv_run(m, &u->conv2, m->buf[t1], batch, u->conv2.geom.h, u->conv2.geom.w,
                         m->buf[o], &ep2);
                int t = t1;
                t1 = o;
                o = t;
                last = &u->conv3;
                last_bn = &u->bn3;
            }
            nn_epilogue epl = {.alpha = last_bn->alpha, .beta = last_bn->beta, .res = identity,
                               .relu = 1};
            conv_run(m, last, m->buf[t1], batch, last->geom.h, last->geom.w, m->buf[o], &epl);
            *cur = o;
            break;
        }
        }
    }
}

/* ------------------------------------------------------- blocked layout */

/* Whether run_units_blk runs this batch: every convolution has its
 * channels-on-lanes packing, the CPU has AVX-512 (the kernels follow the
 * GEMM's ISA choice) and tap offsets fit in an int. */
static int use_blk(const cwba_model *m, int batch)
{
    return m->blk_ok && nn_isa_avx512() && m->max_blk <= (size_t)INT_MAX / (size_t)batch;
}

/* Unit i's output with border pb as a blocked tensor in m->buf[b]. */
static nn_blk unit_blk(const cwba_model *m, int i, int batch, int b, int pb)
{
    const unit *u = &m->units[i];
    return (nn_blk){.d = m->buf[b], .c = u->out_c, .n = batch, .h = u->out_h, .w = u->out_w,
                    .pb = pb};
}

static void blk_conv(cwba_model *m, const conv_layer *cv, const nn_blk *in, const nn_blk *out,
                     const nn_epilogue *ep, const nn_blk *res)
{
    conv_call c = {.m = m, .cv = cv, .g = conv_geom_at(cv, in->h, in->w), .batch = in->n,
                   .bin = in, .bout = out, .bres = res, .ep = ep};
    conv_exec(&c, CL_BLOCKED);
}

/* cv's output as a blocked tensor with border pb in m->buf[b]. */
static nn_blk conv_blk(const cwba_model *m, const conv_layer *cv, int batch, int b, int pb)
{
    return (nn_blk){.d = m->buf[b], .c = cv->cout, .n = batch, .h = cv->geom.oh,
                    .w = cv->geom.ow, .pb = pb};
}

/* Small planes with much padding (4x4 and 2x2 at batch 64) are faster
 * through the tap-skipping convolution, which computes only valid taps:
 * such a unit runs in the (C, N, H, W) layout, its input and output changed
 * on the way. */
static int unit_wants_taps(const unit *u, int batch)
{
    const conv_layer *cs[NN_UNIT_CONVS];
    int nc = nn_model_unit_convs(u, cs);
    for (int j = 0; j < nc; j++) {
        int h = cs[j]->geom.h, w = cs[j]->geom.w;
        if (taps_run(cs[j], batch, h, w) && nn_tapconv_padded_fraction(&cs[j]->taps.geom) > 0.5) return 1;
    }
    return 0;
}

/* Runs units u0..u1 in the blocked layout. On entry m->buf[*cur] holds unit
 * u0 - 1's output blocked with its out_pb, or for u0 = 0 the (3, batch, H,
 * W) image; on return unit u1's output, blocked with its out_pb. */
static void run_units_blk(cwba_model *m, int u0, int u1, int batch, int *cur)
{
    for (int i = u0; i <= u1; i++) {
        const unit *u = &m->units[i];
        nn_blk x = {.d = m->buf[*cur], .c = u->in_c, .n = batch, .h = u->in_h, .w = u->in_w,
                    .pb = i > 0 ? m->units[i - 1].out_pb : 0};
        switch (u->kind) {
        case U_CONV: {
            nn_epilogue ep;
            int last = conv_epilogue(m, i, u1, &ep);
            int o = other_buf(*cur, -1, -1);
            nn_blk y = unit_blk(m, i, batch, o, m->units[last].out_pb);
            if (i > 0) {
                blk_conv(m, &u->conv, &x, &y, &ep, NULL);
            } else {
                conv_call c = {.m = m, .cv = &u->conv, .g = conv_geom_at(&u->conv, u->in_h, u->in_w),
                               .batch = batch, .in = m->buf[*cur],
                               .out = m->buf[other_buf(*cur, o, -1)], .bout = &y, .ep = &ep};
                conv_exec(&c, CL_IMAGE);
            }
            *cur = o;
            i = last;
            break;
        }
        case U_BN:
        case U_RELU: {
            int relu = u->kind == U_RELU || (i + 1 <= u1 && m->units[i + 1].kind == U_RELU);
            if (u->kind == U_BN)
                nn_blk_bn(m->pool, &x, u->bn.alpha, u->bn.beta, relu);
            else
                nn_blk_bn(m->pool, &x, NULL, NULL, 1);
            if (u->kind == U_BN && relu) i++;
            break;
        }
        case U_MAXPOOL: {
            int o = other_buf(*cur, -1, -1);
            nn_blk y = unit_blk(m, i, batch, o, u->out_pb);
            nn_blk_maxpool(m->pool, &x, &y, u->pk, u->ps, u->pp);
            *cur = o;
            break;
        }
        case U_BLOCK: {
            /* out = relu(bn2(conv2(relu(bn1(conv1(x))))) + identity); a
             * Bottleneck: relu(bn3(conv3(relu(bn2(conv2(...))))) + identity) */
            int t1 = other_buf(*cur, -1, -1);
            nn_blk y1 = conv_blk(m, &u->conv, batch, t1, u->conv2.pad);
            nn_epilogue ep1 = {.alpha = u->bn.alpha, .beta = u->bn.beta, .relu = 1};
            blk_conv(m, &u->conv, &x, &y1, &ep1, NULL);
            nn_blk identity = x;
            int id = *cur;
            if (u->has_down) {
                id = other_buf(*cur, t1, -1);
                identity = conv_blk(m, &u->down, batch, id, 0);
                nn_epilogue epd = {.alpha = u->down_bn.alpha, .beta = u->down_bn.beta};
                blk_conv(m, &u->down, &x, &identity, &epd, NULL);
            }
            int o = other_buf(*cur, t1, id);
            const conv_layer *last = &u->conv2;
            const bn_layer *last_bn = &u->bn2;
            if (u->bottleneck) { /* as in run_units */
                nn_blk y2 = conv_blk(m, &u->conv2, batch, o, u->conv3.pad);
                nn_epilogue ep2 = {.alpha = u->bn2.alpha, .beta = u->bn2.beta, .relu = 1};
                blk_conv(m, &u->conv2, &y1, &y2, &ep2, NULL);
                y1 = y2;
                o = t1;
                last = &u->conv3;
                last_bn = &u->bn3;
            }
            nn_blk y = unit_blk(m, i, batch, o, u->out_pb);
            nn_epilogue epl = {.alpha = last_bn->alpha, .beta = last_bn->beta, .relu = 1};
            blk_conv(m, last, &y1, &y, &epl, &identity);
            *cur = o;
            break;
        }
        }
    }
}

/* Unit u's output in m->buf[*cur], blocked <-> (C, batch, H, W), into
 * another buffer (*cur updated). */
static void change_layout(cwba_model *m, int u, int batch, int *cur, int to_blk)
{
    int o = other_buf(*cur, -1, -1);
    nn_blk x = unit_blk(m, u, batch, to_blk ? o : *cur, m->units[u].out_pb);
    if (to_blk)
        nn_blk_from_cnhw(m->pool, m->buf[*cur], &x);
    else
        nn_blk_to_cnhw(m->pool, &x, m->buf[o]);
    *cur = o;
}

/* Units u0..u1 from m->buf[*cur] in the (C, batch, H, W) layout (for u0 = 0
 * the image) to unit u1's output in the same layout: in the blocked layout
 * where use_blk allows it, except for the stretches of units that
 * unit_wants_taps (batch norm and ReLU stay with the unit before them). */
static void run_range(cwba_model *m, int u0, int u1, int batch, int *cur)
{
    if (!use_blk(m, batch)) {
        run_units(m, u0, u1, batch, cur);
        return;
    }
    int blk = 0;
    for (int i = u0; i <= u1;) {
        int taps = unit_wants_taps(&m->units[i], batch), j = i;
        while (j + 1 <= u1) {
            const unit *v = &m->units[j + 1];
            if (v->kind != U_BN && v->kind != U_RELU && unit_wants_taps(v, batch) != taps) break;
            j++;
        }
        if (taps) {
            if (blk) change_layout(m, i - 1, batch, cur, 0);
            run_units(m, i, j, batch, cur);
            blk = 0;
        } else {
            if (!blk && i > 0) change_layout(m, i - 1, batch, cur, 1);
            run_units_blk(m, i, j, batch, cur);
            blk = 1;
        }
        i = j + 1;
    }
    if (blk) change_layout(m, u1, batch, cur, 0);
}

/* Average pool, flatten, linear layers: m->buf[cur] -> logits (batch, K). */
static void run_head(cwba_model *m, int batch, int cur, float *logits)
{
    const unit *last = &m->units[m->nunits - 1];
    int c = last->out_c, p = m->pool_out;
    size_t pp = (size_t)p * p;
    int pooled = cur;
    if (m->pool_folded) {
        /* The first linear layer reads the (C, h, w) plane itself. */
        pp = (size_t)last->out_h * last->out_w;
    } else {
        /* (C, batch, p, p) */
        pooled = other_buf(cur, -1, -1);
        plane_job pj = {.op = P_AVGPOOL, .in = m->buf[cur], .out = m->buf[pooled],
                        .planes = c * batch, .h = last->out_h, .w = last->out_w, .oh = p, .ow = p};
        run_planes(m, &pj, (size_t)c * batch * (last->out_h * last->out_w + pp));
    }
    int x = pooled;
    if (pp > 1) {
        /* torch.flatten of (batch, C, p, p): feature index c*p*p + q; here as
         * the GEMM's (features, batch) right-hand matrix. */
        x = other_buf(cur, pooled, -1);
        const float *src = m->buf[pooled];
        float *dst = m->buf[x];
        for (int ch = 0; ch < c; ch++)
            for (int n = 0; n < batch; n++)
                for (size_t q = 0; q < pp; q++)
                    dst[((size_t)ch * pp + q) * batch + n] = src[((size_t)ch * batch + n) * pp + q];
    }
    for (int i = 0; i < m->nlin; i++) {
        const linear_layer *l = &m->lin[i];
        int o = other_buf(x, -1, -1);
        nn_matrix_ctx mc = {.b = m->buf[x], .k = l->in, .n = batch, .ld = (size_t)batch};
        nn_gemm gm = {.m = l->out, .n = batch, .k = l->in, .apack = l->apack,
                      .pack_b = nn_pack_b_matrix, .pack_ctx = &mc, .c = m->buf[o],
                      .ldc = (size_t)batch};
        gm.ep.bias = l->bias;
        gm.ep.relu = l->relu;
        nn_gemm_run(m->pool, &gm, m->scratch);
        x = o;
    }
    const float *y = m->buf[x]; /* (K, batch) */
    for (int n = 0; n < batch; n++)
        for (int k = 0; k < m->num_classes; k++)
            logits[(size_t)n * m->num_classes + k] = y[(size_t)k * batch + n];
}

/* (batch, C, H, W) -> (C, batch, H, W) and back. */
static void to_cnhw(cwba_model *m, const float *src, int batch, int c, size_t plane, float *dst)
{
    plane_job j = {.op = P_TO_CNHW, .in = src, .out = dst, .planes = c, .plane = plane, .batch = batch};
    run_planes(m, &j, (size_t)batch * c * plane);
}

static void to_nchw(cwba_model *m, const float *src, int batch, int c, size_t plane, float *dst)
{
    plane_job j = {.op = P_TO_NCHW, .in = src, .out = dst, .planes = c, .plane = plane, .batch = batch};
    run_planes(m, &j, (size_t)batch * c * plane);
}

static cwba_status check_call(const cwba_model *m, const void *in, int batch, const void *out,
                              const char *fn, cwba_error *err)
{
    if (!m || !in || !out) return cwba_fail(err, CWBA_E_ARG, "%s: NULL argument", fn);
    if (batch < 1) return cwba_fail(err, CWBA_E_ARG, "%s: batch %d must be >= 1", fn, batch);
    return CWBA_OK;
}

static cwba_status check_split(const cwba_model *m, int split, const char *fn, cwba_error *err)
{
    if (split < 0 || split >= m->nsplits)
        return cwba_fail(err, CWBA_E_ARG, "%s: split index %d out of range (0..%d)", fn, split,
                         m->nsplits - 1);
    return CWBA_OK;
}

/* ------------------------------------------------- convolution arithmetic */

/* The (m, k) weights back from nn_gemm_pack_t's layout. */
static void unpack_t(const float *tpack, int m, int k, float *w)
{
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++)
            w[(size_t)i * k + p] = tpack[((size_t)(i / NN_T_OC) * k + p) * NN_T_OC + i % NN_T_OC];
}

static int wino_layer(const conv_layer *c)
{
    return c->tpack && c->k == 3 && c->stride == 1 && c->pad == 1 && c->cin % NN_CB == 0 &&
           c->cout % NN_T_OC == 0;
}


static void free_upacks(cwba_model *m)
{
    for (int i = 0; i < NN_UNIT_CONVS * m->nunits; i++) {
        conv_layer *c = nn_model_conv_slot(m, i);
        free(c->upack);
        c->upack = NULL;
    }
}

cwba_status cwba_model_set_conv_algo(cwba_model *m, cwba_conv_algo algo, cwba_error *err)
{
    if (!m) return cwba_fail(err, CWBA_E_ARG, "cwba_model_set_conv_algo: NULL model");
    if (algo != CWBA_CONV_DIRECT && algo != CWBA_CONV_WINOGRAD)
        return cwba_fail(err, CWBA_E_ARG, "cwba_model_set_conv_algo: unknown algorithm %d",
                         (int)algo);
    if (algo == m->conv_algo) return CWBA_OK;
    if (algo == CWBA_CONV_WINOGRAD) {
        for (int i = 0; i < NN_UNIT_CONVS * m->nunits; i++) {
            conv_layer *c = nn_model_conv_slot(m, i);
            if (!wino_layer(c) || c->upack) continue;
            const int kdim = c->cin * 9;
            float *w = malloc(sizeof(float) * (size_t)c->cout * (size_t)kdim);
            c->upack = w ? nn_alloc_floats(nn_wino_packed_size(c->cout, c->cin)) : NULL;
            if (c->upack) unpack_t(c->tpack, c->cout, kdim, w);
            int ok = c->upack && nn_wino_pack(c->cout, c->cin, w, c->upack);
            free(w);
            if (!ok) {
                free_upacks(m);
                return cwba_fail(err, CWBA_E_NOMEM, "out of memory (Winograd weights)");
            }
        }
    } else {
        free_upacks(m);
    }
    m->conv_algo = algo;
    m->ws_batch = 0; /* the workspace is rebuilt for the new arithmetic */
    return CWBA_OK;
}

cwba_conv_algo cwba_model_conv_algo(const cwba_model *m) { return m->conv_algo; }

cwba_status cwba_conv_algo_parse(const char *s, cwba_conv_algo *out, cwba_error *err)
{
    if (s && !strcmp(s, "direct")) *out = CWBA_CONV_DIRECT;
    else if (s && !strcmp(s, "winograd")) *out = CWBA_CONV_WINOGRAD;
    else
        return cwba_fail(err, CWBA_E_ARG, "unknown convolution arithmetic '%s' (direct, winograd)",
                         s ? s : "(null)");
    return CWBA_OK;
}

const char *cwba_conv_algo_name(cwba_conv_algo a)
{
    return a == CWBA_CONV_WINOGRAD ? "winograd" : "direct";
}

/* Images per call: with Winograd arithmetic a batch too large for the
 * blocked layout's int offsets (the only layout with that arithmetic) runs
 * in slices that fit, so that results do not depend on the batch. */
static int slice_of(const cwba_model *m, int batch)
{
    if (m->conv_algo != CWBA_CONV_WINOGRAD || !m->blk_ok || m->max_blk == 0) return batch;
    size_t lim = (size_t)INT_MAX / m->max_blk;
    return (size_t)batch > lim ? (int)(lim > 0 ? lim : 1) : batch;
}

cwba_status cwba_model_forward(cwba_model *m, const float *in, int batch, float *logits,
                               cwba_error *err)
{
    cwba_status st = check_call(m, in, batch, logits, "cwba_model_forward", err);
    if (st) return st;
    const int sl = slice_of(m, batch);
    if (sl < batch) {
        const size_t per = 3 * (size_t)m->input_size * m->input_size;
        for (int b0 = 0; b0 < batch && !st; b0 += sl)
            st = cwba_model_forward(m, in + (size_t)b0 * per, batch - b0 < sl ? batch - b0 : sl,
                                    logits + (size_t)b0 * m->num_classes, err);
        return st;
    }
    st = ensure_workspace(m, batch, err);
    if (st) return st;
    int cur = 0;
    to_cnhw(m, in, batch, 3, (size_t)m->input_size * m->input_size, m->buf[cur]);
    run_range(m, 0, m->nunits - 1, batch, &cur);
    run_head(m, batch, cur, logits);
    return CWBA_OK;
}

cwba_status cwba_model_forward_front(cwba_model *m, int split, const float *in, int batch,
                                     float *feat, cwba_error *err)
{
    cwba_status st = check_call(m, in, batch, feat, "cwba_model_forward_front", err);
    if (!st) st = check_split(m, split, "cwba_model_forward_front", err);
    if (st) return st;
    int cur = 0, u = m->splits[split].unit;
    const int sl = slice_of(m, batch);
    if (sl < batch) {
        const size_t per = 3 * (size_t)m->input_size * m->input_size;
        const size_t fper = (size_t)m->units[u].out_c * m->units[u].out_h * m->units[u].out_w;
        for (int b0 = 0; b0 < batch && !st; b0 += sl)
            st = cwba_model_forward_front(m, split, in + (size_t)b0 * per,
                                          batch - b0 < sl ? batch - b0 : sl,
                                          feat + (size_t)b0 * fper, err);
        return st;
    }
    st = ensure_workspace(m, batch, err);
    if (st) return st;
    to_cnhw(m, in, batch, 3, (size_t)m->input_size * m->input_size, m->buf[cur]);
    run_range(m, 0, u, batch, &cur);
    const unit *su = &m->units[u];
    to_nchw(m, m->buf[cur], batch, su->out_c, (size_t)su->out_h * su->out_w, feat);
    return CWBA_OK;
}

cwba_status cwba_model_forward_back(cwba_model *m, int split, const float *feat, int batch,
                                    float *logits, cwba_error *err)
{
    cwba_status st = check_call(m, feat, batch, logits, "cwba_model_forward_back", err);
    if (!st) st = check_split(m, split, "cwba_model_forward_back", err);
    if (st) return st;
    int cur = 0, u = m->splits[split].unit;
    const unit *su = &m->units[u];
    const int sl = slice_of(m, batch);
    if (sl < batch) {
        const size_t fper = (size_t)su->out_c * su->out_h * su->out_w;
        for (int b0 = 0; b0 < batch && !st; b0 += sl)
            st = cwba_model_forward_back(m, split, feat + (size_t)b0 * fper,
                                         batch - b0 < sl ? batch - b0 : sl,
                                         logits + (size_t)b0 * m->num_classes, err);
        return st;
    }
    st = ensure_workspace(m, batch, err);
    if (st) return st;
    to_cnhw(m, feat, batch, su->out_c, (size_t)su->out_h * su->out_w, m->buf[cur]);
    run_range(m, u + 1, m->nunits - 1, batch, &cur);
    run_head(m, batch, cur, logits);
    return CWBA_OK;
}

