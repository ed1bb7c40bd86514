/* torchvision AlexNet, VGG16 (configuration D, no batch norm) and ResNet18 in
 * eval mode, cut at any split point.
 *
 * A network is a chain of "units", one per split point (features[K] for
 * AlexNet/VGG16; conv1, bn1, relu, maxpool and the eight BasicBlocks for
 * ResNet18), followed by a head (adaptive average pool, flatten, linear
 * layers). The front end runs units 0..u, the back end units u+1.. and the
 * head. Fusing a batch norm / ReLU into the preceding convolution's epilogue
 * performs the very same float operations on the very same values as running
 * them separately, so a cut between them changes nothing. */
#include "cwba/nn.h"
#include "nn/nn_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPS 1e-5f
#define MAX_INPUT_SIZE 8192
#define MAX_CLASSES 1000000
#define MAX_UNITS 32
#define MAX_SPLITS 40
#define MAX_SPECS 128
#define MAX_LINEAR 3

/* ------------------------------------------------------------ structure */

typedef enum unit_kind { U_CONV, U_BN, U_RELU, U_MAXPOOL, U_BLOCK } unit_kind;

typedef struct conv_layer {
    int cin, cout, k, stride, pad, has_bias;
    char prefix[48];  /* torchvision module path, e.g. "layer2.0.downsample.0" */
    float *apack;     /* packed (cout, cin*k*k) */
    float *tpack;     /* the same packed for nn_gemm_direct_t_run, or NULL */
    float *upack;     /* Winograd F(2x2, 3x3) weights (nn_wino_pack), or NULL */
    float *bias;      /* (cout) or NULL */
    int use_taps;     /* small plane with much padding: run through taps */
    nn_tapconv taps;
    nn_conv_geom geom; /* at the model's input size */
} conv_layer;

typedef struct bn_layer {
    int c;
    char prefix[48];
    float *alpha, *beta; /* (c) folded eval-mode constants */
} bn_layer;

typedef struct unit {
    unit_kind kind;
    char name[24];             /* split name */
    int in_c, in_h, in_w;      /* per sample */
    int out_c, out_h, out_w;
    conv_layer conv;           /* U_CONV; block conv1 */
    bn_layer bn;               /* U_BN; block bn1 */
    int pk, ps, pp;            /* U_MAXPOOL kernel, stride, padding */
    conv_layer conv2, down;    /* U_BLOCK */
    bn_layer bn2, down_bn;
    int has_down;
    int out_pb;                /* border of the output in the blocked layout */
} unit;

typedef struct linear_layer {
    int in, out, relu;
    char prefix[48];
    float *apack; /* packed (out, in) */
    float *bias;  /* (out) */
} linear_layer;

typedef struct split_point {
    char name[24];
    int unit;
} split_point;

struct cwba_model {
    cwba_arch arch;
    int input_size, num_classes;
    unit units[MAX_UNITS];
    int nunits;
    split_point splits[MAX_SPLITS];
    int nsplits;
    int pool_out; /* adaptive average pool output side */
    linear_layer lin[MAX_LINEAR];
    int nlin;
    int pool_folded; /* lin[0] reads the unpooled (C, h, w) feature (fold_pool) */
    size_t max_act;      /* floats per sample of the largest activation */
    size_t max_blk;      /* the same in the blocked layout (with borders) */
    int blk_ok;          /* every convolution can run on blocked activations */
    long max_cols;       /* largest GEMM width per sample (output plane) */
    size_t scratch_floats;
    size_t tap_floats;   /* per sample, of tapbuf */
    int max_kdim;        /* largest cin*k*k of a convolution */
    /* workspace, grown on demand */
    float *tapbuf;
    float *dirbuf;       /* padded input of the direct convolutions */
    size_t dir_floats;   /* its size */
    int *offbuf;         /* (max_kdim) their tap offsets */
    cwba_conv_algo conv_algo;
    float *wbuf;         /* Winograd transforms (nn_wino_tmp_floats) */
    size_t wbuf_floats;
    int *woff;           /* (threads, max cin) Winograd channel offsets */
    int ws_batch;
    float *buf[4];
    nn_pool *pool;
    int pool_threads;
    float **scratch;
};

static void conv_def(conv_layer *c, const char *prefix, int cin, int cout, int k, int stride,
                     int pad, int has_bias)
{
    memset(c, 0, sizeof *c);
    snprintf(c->prefix, sizeof c->prefix, "%s", prefix);
    c->cin = cin;
    c->cout = cout;
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    c->has_bias = has_bias;
}

static void bn_def(bn_layer *b, const char *prefix, int c)
{
    memset(b, 0, sizeof *b);
    snprintf(b->prefix, sizeof b->prefix, "%s", prefix);
    b->c = c;
}

static unit *unit_add(cwba_model *m, unit_kind kind, const char *name)
{
    unit *u = &m->units[m->nunits++];
    memset(u, 0, sizeof *u);
    u->kind = kind;
    snprintf(u->name, sizeof u->name, "%s", name);
    return u;
}

static void split_add(cwba_model *m, const char *name, int unit_index)
{
    split_point *s = &m->splits[m->nsplits++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->unit = unit_index;
}

static void linear_def(cwba_model *m, const char *prefix, int in, int out, int relu)
{
    linear_layer *l = &m->lin[m->nlin++];
    memset(l, 0, sizeof *l);
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->in = in;
    l->out = out;
    l->relu = relu;
}

/* features.K units of AlexNet / VGG16: 'C' conv (cout, k, stride, pad), 'R', 'M' (k, stride). */
typedef struct feat_def {
    char op;
    int cout, k, stride, pad;
} feat_def;

static const feat_def ALEXNET_FEATURES[] = {
    {'C', 64, 11, 4, 2}, {'R', 0, 0, 0, 0},  {'M', 0, 3, 2, 0}, {'C', 192, 5, 1, 2},
    {'R', 0, 0, 0, 0},   {'M', 0, 3, 2, 0},  {'C', 384, 3, 1, 1}, {'R', 0, 0, 0, 0},
    {'C', 256, 3, 1, 1}, {'R', 0, 0, 0, 0},  {'C', 256, 3, 1, 1}, {'R', 0, 0, 0, 0},
    {'M', 0, 3, 2, 0},
};

/* VGG configuration "D": channel counts, 0 = max-pool. */
static const int VGG16_CFG[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0,
                                512, 512, 512, 0, 512, 512, 512, 0};

static void build_features(cwba_model *m, const feat_def *defs, int n)
{
    int c = 3;
    for (int i = 0; i < n; i++) {
        char name[24];
        snprintf(name, sizeof name, "features.%d", i);
        unit_kind kind = defs[i].op == 'C' ? U_CONV : defs[i].op == 'R' ? U_RELU : U_MAXPOOL;
        unit *u = unit_add(m, kind, name);
        if (kind == U_CONV) {
            conv_def(&u->conv, name, c, defs[i].cout, defs[i].k, defs[i].stride, defs[i].pad, 1);
            c = defs[i].cout;
        } else if (kind == U_MAXPOOL) {
            u->pk = defs[i].k;
            u->ps = defs[i].stride;
            u->pp = 0;
        }
        split_add(m, name, m->nunits - 1);
    }
}

static void build_structure(cwba_model *m, cwba_arch arch, int num_classes)
{
    m->arch = arch;
    m->num_classes = num_classes;
    if (arch == CWBA_ARCH_ALEXNET) {
        build_features(m, ALEXNET_FEATURES, (int)(sizeof ALEXNET_FEATURES / sizeof *ALEXNET_FEATURES));
        m->pool_out = 6;
        linear_def(m, "classifier.1", 256 * 6 * 6, 4096, 1);
        linear_def(m, "classifier.4", 4096, 4096, 1);
        linear_def(m, "classifier.6", 4096, num_classes, 0);
    } else if (arch == CWBA_ARCH_VGG16) {
        feat_def defs[64];
        int n = 0;
        for (size_t i = 0; i < sizeof VGG16_CFG / sizeof *VGG16_CFG; i++) {
            if (VGG16_CFG[i] == 0) {
                defs[n++] = (feat_def){'M', 0, 2, 2, 0};
            } else {
                defs[n++] = (feat_def){'C', VGG16_CFG[i], 3, 1, 1};
                defs[n++] = (feat_def){'R', 0, 0, 0, 0};
            }
        }
        build_features(m, defs, n);
        m->pool_out = 7;
        linear_def(m, "classifier.0", 512 * 7 * 7, 4096, 1);
        linear_def(m, "classifier.3", 4096, 4096, 1);
        linear_def(m, "classifier.6", 4096, num_classes, 0);
    } else {
        unit *u = unit_add(m, U_CONV, "conv1");
        conv_def(&u->conv, "conv1", 3, 64, 7, 2, 3, 0);
        split_add(m, "conv1", m->nunits - 1);
        u = unit_add(m, U_BN, "bn1");
        bn_def(&u->bn, "bn1", 64);
        split_add(m, "bn1", m->nunits - 1);
        unit_add(m, U_RELU, "relu");
        split_add(m, "relu", m->nunits - 1);
        u = unit_add(m, U_MAXPOOL, "maxpool");
        u->pk = 3;
        u->ps = 2;
        u->pp = 1;
        split_add(m, "maxpool", m->nunits - 1);
        int cin = 64;
        for (int l = 1; l <= 4; l++) {
            int planes = 64 << (l - 1);
            for (int b = 0; b < 2; b++) {
                char name[24], p[48];
                snprintf(name, sizeof name, "layer%d.%d", l, b);
                int stride = (l > 1 && b == 0) ? 2 : 1;
                u = unit_add(m, U_BLOCK, name);
                snprintf(p, sizeof p, "%s.conv1", name);
                conv_def(&u->conv, p, cin, planes, 3, stride, 1, 0);
                snprintf(p, sizeof p, "%s.bn1", name);
                bn_def(&u->bn, p, planes);
                snprintf(p, sizeof p, "%s.conv2", name);
                conv_def(&u->conv2, p, planes, planes, 3, 1, 1, 0);
                snprintf(p, sizeof p, "%s.bn2", name);
                bn_def(&u->bn2, p, planes);
                if (stride != 1 || cin != planes) {
                    u->has_down = 1;
                    snprintf(p, sizeof p, "%s.downsample.0", name);
                    conv_def(&u->down, p, cin, planes, 1, stride, 0, 0);
                    snprintf(p, sizeof p, "%s.downsample.1", name);
                    bn_def(&u->down_bn, p, planes);
                }
                cin = planes;
                split_add(m, name, m->nunits - 1);
            }
            char lname[16];
            snprintf(lname, sizeof lname, "layer%d", l);
            split_add(m, lname, m->nunits - 1);
        }
        m->pool_out = 1;
        linear_def(m, "fc", 512, num_classes, 0);
    }
}

/* ---------------------------------------------------------- tensor specs */

typedef enum tkind { T_WEIGHT, T_BIAS, T_BN_WEIGHT, T_BN_BIAS, T_BN_MEAN, T_BN_VAR } tkind;

typedef struct tspec {
    char name[64];
    int ndim;
    int64_t shape[4];
    tkind kind;
} tspec;

typedef struct speclist {
    tspec v[MAX_SPECS];
    int n;
} speclist;

static void spec_add(speclist *s, const char *prefix, const char *suffix, tkind kind, int ndim,
                     int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    tspec *t = &s->v[s->n++];
    snprintf(t->name, sizeof t->name, "%s.%s", prefix, suffix);
    t->kind = kind;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->shape[3] = d3;
}

static void spec_conv(speclist *s, const conv_layer *c)
{
    spec_add(s, c->prefix, "weight", T_WEIGHT, 4, c->cout, c->cin, c->k, c->k);
    if (c->has_bias) spec_add(s, c->prefix, "bias", T_BIAS, 1, c->cout, 0, 0, 0);
}

static void spec_bn(speclist *s, const bn_layer *b)
{
    spec_add(s, b->prefix, "weight", T_BN_WEIGHT, 1, b->c, 0, 0, 0);
    spec_add(s, b->prefix, "bias", T_BN_BIAS, 1, b->c, 0, 0, 0);
    spec_add(s, b->prefix, "running_mean", T_BN_MEAN, 1, b->c, 0, 0, 0);
    spec_add(s, b->prefix, "running_var", T_BN_VAR, 1, b->c, 0, 0, 0);
}

/* In torchvision's state_dict order. */
static void build_specs(const cwba_model *m, speclist *s)
{
    s->n = 0;
    for (int i = 0; i < m->nunits; i++) {
        const unit *u = &m->units[i];
        if (u->kind == U_CONV) spec_conv(s, &u->conv);
        if (u->kind == U_BN) spec_bn(s, &u->bn);
        if (u->kind == U_BLOCK) {
            spec_conv(s, &u->conv);
            spec_bn(s, &u->bn);
            spec_conv(s, &u->conv2);
            spec_bn(s, &u->bn2);
            if (u->has_down) {
                spec_conv(s, &u->down);
                spec_bn(s, &u->down_bn);
            }
        }
    }
    for (int i = 0; i < m->nlin; i++) {
        spec_add(s, m->lin[i].prefix, "weight", T_WEIGHT, 2, m->lin[i].out, m->lin[i].in, 0, 0);
        spec_add(s, m->lin[i].prefix, "bias", T_BIAS, 1, m->lin[i].out, 0, 0, 0);
    }
}

static const char *shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, ")");
    return buf;
}

static cwba_status check_weights(const cwba_weights *w, const speclist *s, const char *arch,
                                 cwba_error *err)
{
    char want[96], got[96];
    for (int i = 0; i < s->n; i++) {
        const tspec *t = &s->v[i];
        const cwba_tensor_entry *e = cwba_weights_find(w, t->name);
        shape_str(want, sizeof want, t->ndim, t->shape);
        if (!e)
            return cwba_fail(err, CWBA_E_SHAPE, "%s weights: missing tensor %s (expected shape %s)",
                             arch, t->name, want);
        if (e->is_integer || !e->data)
            return cwba_fail(err, CWBA_E_SHAPE,
                             "%s weights: tensor %s is an integer tensor, expected float %s", arch,
                             t->name, want);
        int same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same)
            return cwba_fail(err, CWBA_E_SHAPE, "%s weights: tensor %s has shape %s, expected %s",
                             arch, t->name, shape_str(got, sizeof got, e->ndim, e->shape), want);
    }
    for (size_t j = 0; j < w->count; j++) {
        const cwba_tensor_entry *e = &w->entries[j];
        if (e->is_integer) continue; /* num_batches_tracked carries nothing for inference */
        int known = 0;
        for (int i = 0; i < s->n && !known; i++) known = strcmp(s->v[i].name, e->name) == 0;
        if (!known)
            return cwba_fail(err, CWBA_E_SHAPE, "%s weights: unexpected tensor %s", arch, e->name);
    }
    return CWBA_OK;
}

/* --------------------------------------------------------- architecture */

cwba_status cwba_arch_parse(const char *name, cwba_arch *out, cwba_error *err)
{
    static const struct { const char *name; cwba_arch a; } names[] = {
        {"alexnet", CWBA_ARCH_ALEXNET}, {"vgg16", CWBA_ARCH_VGG16}, {"resnet18", CWBA_ARCH_RESNET18}};
    for (size_t i = 0; name && i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].a;
            return CWBA_OK;
        }
    return cwba_fail(err, CWBA_E_ARG, "unknown model '%s' (expected alexnet, vgg16 or resnet18)",
                     name ? name : "(null)");
}

const char *cwba_arch_name(cwba_arch a)
{
    switch (a) {
    case CWBA_ARCH_ALEXNET: return "alexnet";
    case CWBA_ARCH_VGG16: return "vgg16";
    case CWBA_ARCH_RESNET18: return "resnet18";
    }
    return "unknown";
}

static int valid_arch(cwba_arch a)
{
    return a == CWBA_ARCH_ALEXNET || a == CWBA_ARCH_VGG16 || a == CWBA_ARCH_RESNET18;
}

/* Propagates the spatial sizes; fails with CWBA_E_ARG when a layer's output
 * would be empty. */
static cwba_status compute_shapes(cwba_model *m, int s, cwba_error *err)
{
    int c = 3, h = s, w = s;
    size_t max_act = (size_t)3 * s * s;
    long max_cols = 1;
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        u->in_c = c;
        u->in_h = h;
        u->in_w = w;
        const char *what = u->name;
        switch (u->kind) {
        case U_CONV:
            c = u->conv.cout;
            h = nn_out_side(h, u->conv.k, u->conv.stride, u->conv.pad);
            w = nn_out_side(w, u->conv.k, u->conv.stride, u->conv.pad);
            break;
        case U_MAXPOOL:
            h = nn_out_side(h, u->pk, u->ps, u->pp);
            w = nn_out_side(w, u->pk, u->ps, u->pp);
            break;
        case U_BLOCK:
            c = u->conv.cout;
            h = nn_out_side(h, 3, u->conv.stride, 1);
            w = nn_out_side(w, 3, u->conv.stride, 1);
            break;
        case U_BN:
        case U_RELU: break;
        }
        if (h < 1 || w < 1)
            return cwba_fail(err, CWBA_E_ARG,
                             "input size %d is too small for %s: the output of %s would be empty", s,
                             cwba_arch_name(m->arch), what);
        u->out_c = c;
        u->out_h = h;
        u->out_w = w;
        size_t act = (size_t)c * h * w;
        if (act > max_act) max_act = act;
        if ((long)h * w > max_cols) max_cols = (long)h * w;
    }
    size_t pooled = (size_t)c * m->pool_out * m->pool_out;
    if (pooled > max_act) max_act = pooled;
    for (int i = 0; i < m->nlin; i++)
        if ((size_t)m->lin[i].out > max_act) max_act = (size_t)m->lin[i].out;
    m->max_act = max_act;
    m->max_cols = max_cols;
    return CWBA_OK;
}

/* The convolutions of a unit (cs holds 3); returns their count. */
static int unit_convs(const unit *u, const conv_layer **cs)
{
    cs[0] = &u->conv;
    cs[1] = &u->conv2;
    cs[2] = &u->down;
    return u->kind == U_CONV ? 1 : u->kind == U_BLOCK ? (u->has_down ? 3 : 2) : 0;
}

/* Border each unit's output needs in the blocked layout: the padding of the
 * convolutions that read it (pooling clips its windows instead; batch norm
 * and ReLU work in place and pass it on), and the blocked sizes. */
static int input_pad(const cwba_model *m, int i)
{
    for (; i < m->nunits; i++) {
        const unit *u = &m->units[i];
        switch (u->kind) {
        case U_CONV: return u->conv.pad;
        case U_BLOCK: return u->has_down && u->down.pad > u->conv.pad ? u->down.pad : u->conv.pad;
        case U_MAXPOOL: return 0;
        case U_BN:
        case U_RELU: break;
        }
    }
    return 0;
}

static void compute_blocked(cwba_model *m)
{
    size_t mx = 0;
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        u->out_pb = input_pad(m, i + 1);
        size_t f = nn_blk_floats(u->out_c, 1, u->out_h, u->out_w, u->out_pb);
        if (f > mx) mx = f;
        if (u->kind == U_BLOCK) { /* conv1's output, read by conv2 */
            f = nn_blk_floats(u->out_c, 1, u->out_h, u->out_w, u->conv2.pad);
            if (f > mx) mx = f;
        }
    }
    m->max_blk = mx;
}

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
    if (nn_isa_blocked() && c->cout % NN_T_OC == 0) {
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
                !load_conv(m, &u->conv2, w, u->out_h, u->out_w) || !load_bn(&u->bn2, w))
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

static void free_wino_workspace(cwba_model *m)
{
    free(m->wbuf);
    m->wbuf = NULL;
    m->wbuf_floats = 0;
    free(m->woff);
    m->woff = NULL;
}

static void free_workspace(cwba_model *m)
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

void cwba_model_free(cwba_model *m)
{
    if (!m) return;
    free_workspace(m);
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        free_conv(&u->conv);
        free_bn(&u->bn);
        free_conv(&u->conv2);
        free_bn(&u->bn2);
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
    const char *last = arch == CWBA_ARCH_RESNET18 ? "fc.weight" : "classifier.6.weight";
    const cwba_tensor_entry *e = cwba_weights_find(w, last);
    if (!e)
        return cwba_fail(err, CWBA_E_SHAPE, "%s weights: missing tensor %s (expected shape (num_classes, %d))",
                         cwba_arch_name(arch), last, arch == CWBA_ARCH_RESNET18 ? 512 : 4096);
    if (e->is_integer || e->ndim != 2 || e->shape[0] < 1 || e->shape[0] > MAX_CLASSES) {
        char got[96];
        return cwba_fail(err, CWBA_E_SHAPE,
                         "%s weights: tensor %s has shape %s, expected (num_classes, %d) with 1 <= num_classes <= %d",
                         cwba_arch_name(arch), last, shape_str(got, sizeof got, e->ndim, e->shape),
                         arch == CWBA_ARCH_RESNET18 ? 512 : 4096, MAX_CLASSES);
    }
    *out = (int)e->shape[0];
    return CWBA_OK;
}

cwba_status cwba_model_create(cwba_arch arch, const cwba_weights *w, int input_size,
                              cwba_model **out, cwba_error *err)
{
    if (!out) return cwba_fail(err, CWBA_E_ARG, "cwba_model_create: out is NULL");
    *out = NULL;
    if (!valid_arch(arch)) return cwba_fail(err, CWBA_E_ARG, "cwba_model_create: unknown architecture %d", (int)arch);
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
    build_structure(m, arch, num_classes);
    build_specs(m, specs);
    st = check_weights(w, specs, cwba_arch_name(arch), err);
    free(specs);
    if (!st) st = compute_shapes(m, input_size, err);
    if (!st) compute_blocked(m);
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
        const conv_layer *cs[3];
        int nc = unit_convs(&m->units[i], cs);
        for (int j = 0; j < nc; j++)
            if (!cs[j]->tpack || (cs[j]->cin % NN_CB != 0 && i > 0)) m->blk_ok = 0;
    }
    *out = m;
    return CWBA_OK;
}

/* ------------------------------------------------------------ queries */

cwba_arch cwba_model_arch(const cwba_model *m) { return m ? m->arch : CWBA_ARCH_ALEXNET; }
int cwba_model_num_classes(const cwba_model *m) { return m ? m->num_classes : 0; }
int cwba_model_input_size(const cwba_model *m) { return m ? m->input_size : 0; }
int cwba_model_num_splits(const cwba_model *m) { return m ? m->nsplits : 0; }

const char *cwba_model_split_name(const cwba_model *m, int split)
{
    if (!m || split < 0 || split >= m->nsplits) return NULL;
    return m->splits[split].name;
}

void cwba_model_split_shape(const cwba_model *m, int split, int *c, int *h, int *w)
{
    int cc = 0, hh = 0, ww = 0;
    if (m && split >= 0 && split < m->nsplits) {
        const unit *u = &m->units[m->splits[split].unit];
        cc = u->out_c;
        hh = u->out_h;
        ww = u->out_w;
    }
    if (c) *c = cc;
    if (h) *h = hh;
    if (w) *w = ww;
}

cwba_status cwba_model_find_split(const cwba_model *m, const char *name, int *split,
                                  cwba_error *err)
{
    if (!m || !name || !split) return cwba_fail(err, CWBA_E_ARG, "cwba_model_find_split: NULL argument");
    for (int i = 0; i < m->nsplits; i++)
        if (strcmp(m->splits[i].name, name) == 0) {
            *split = i;
            return CWBA_OK;
        }
    const char *hint = m->arch == CWBA_ARCH_RESNET18 ? "conv1, bn1, relu, maxpool, layer1..layer4, layerN.0, layerN.1"
                                                     : "features.0 .. features.N";
    return cwba_fail(err, CWBA_E_ARG, "unknown split point '%s' for %s (expected %s)", name,
                     cwba_arch_name(m->arch), hint);
}

/* ------------------------------------------------------------ forward */

static cwba_status ensure_threads(cwba_model *m, cwba_error *err)
{
    int threads = cwba_get_threads();
    if (m->pool && m->pool_threads == threads) return CWBA_OK;
    free_workspace(m);
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
        free_workspace(m); /* leave nothing half-built for the next call */
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
        const conv_layer *cs[3];
        int nc = unit_convs(&m->units[i], cs);
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
        const conv_layer *cs[3];
        int nc = unit_convs(&m->units[i], cs);
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

/* Whether conv_run takes the tap-skipping path for this batch. */
static int taps_run(const conv_layer *cv, int batch, int h, int w)
{
    return cv->use_taps && cv->taps.geom.h == h && cv->taps.geom.w == w &&
           (long)batch * cv->taps.min_npos >= 2 * NN_NR;
}

/* (cout, batch, oh, ow) = conv((cin, batch, h, w)) with the epilogue. */
static void conv_run(cwba_model *m, const conv_layer *cv, const float *in, int batch, int h, int w,
                     float *out, const nn_epilogue *ep)
{
    nn_conv_geom g = {.cin = cv->cin, .h = h, .w = w, .k = cv->k, .stride = cv->stride, .pad = cv->pad};
    g.oh = nn_out_side(h, cv->k, cv->stride, cv->pad);
    g.ow = nn_out_side(w, cv->k, cv->stride, cv->pad);
    /* Taps only pay once every group's GEMM spans two column panels: with
     * fewer columns the weights are streamed per group and dominate (the
     * restricted weights of all groups are larger than the full ones). */
    if (taps_run(cv, batch, h, w)) {
        nn_tapconv_run(m->pool, &cv->taps, in, batch, out, ep, m->scratch, m->tapbuf);
        return;
    }
    if (nn_directconv_pays(&g, batch) && nn_directconv_applies(&cv->geom, 1) &&
        nn_directconv_tmp_floats(&g, batch) <= m->dir_floats) {
        nn_directconv_run(m->pool, cv->apack, cv->tpack, cv->cout, &g, in, batch, out, ep, m->scratch,
                          m->dirbuf, m->offbuf);
        return;
    }
    nn_gemm gm = {.m = cv->cout, .n = batch * g.oh * g.ow, .k = cv->cin * cv->k * cv->k,
                  .apack = cv->apack, .c = out, .ep = *ep};
    gm.ldc = (size_t)gm.n;
    nn_im2col_ctx ic = {.in = in, .batch = batch, .g = g};
    nn_matrix_ctx mc = {.b = in, .k = cv->cin, .n = gm.n, .ld = (size_t)gm.n};
    if (cv->k == 1 && cv->stride == 1 && cv->pad == 0) {
        /* A 1x1 stride-1 convolution is a plain matrix product. */
        gm.pack_b = nn_pack_b_matrix;
        gm.pack_ctx = &mc;
    } else {
        gm.pack_b = nn_pack_b_im2col;
        gm.pack_ctx = &ic;
    }
    nn_gemm_run(m->pool, &gm, m->scratch);
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
            /* out = relu(bn2(conv2(relu(bn1(conv1(x))))) + identity) */
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
            nn_epilogue ep2 = {.alpha = u->bn2.alpha, .beta = u->bn2.beta, .res = identity, .relu = 1};
            conv_run(m, &u->conv2, m->buf[t1], batch, u->out_h, u->out_w, m->buf[o], &ep2);
            *cur = o;
            break;
        }
        }
    }
}

/* ------------------------------------------------------- blocked layout */

/* Whether run_units_blk runs this batch: every convolution has its
 * channels-on-lanes packing, the chosen ISA runs the blocked layout
 * (nn_isa_blocked) and tap offsets fit in an int. */
static int use_blk(const cwba_model *m, int batch)
{
    return m->blk_ok && nn_isa_blocked() && m->max_blk <= (size_t)INT_MAX / (size_t)batch;
}

/* Unit i's output (or, for a block, its conv1 output with border pb) as a
 * blocked tensor in m->buf[b]. */
static nn_blk unit_blk(const cwba_model *m, int i, int batch, int b, int pb)
{
    const unit *u = &m->units[i];
    return (nn_blk){.d = m->buf[b], .c = u->out_c, .n = batch, .h = u->out_h, .w = u->out_w,
                    .pb = pb};
}

static nn_conv_geom conv_geom_at(const conv_layer *cv, int h, int w)
{
    nn_conv_geom g = {.cin = cv->cin, .h = h, .w = w, .k = cv->k, .stride = cv->stride, .pad = cv->pad};
    g.oh = nn_out_side(h, cv->k, cv->stride, cv->pad);
    g.ow = nn_out_side(w, cv->k, cv->stride, cv->pad);
    return g;
}

/* nn_blk_conv_applies holds by construction here: use_blk (AVX-512, int
 * offsets), blk_ok (a t-pack, so cout % 64 == 0, and cin % 16 == 0) and the
 * borders, which compute_blocked makes as wide as the readers' padding. */
static void blk_conv(cwba_model *m, const conv_layer *cv, const nn_blk *in, const nn_blk *out,
                     const nn_epilogue *ep, const nn_blk *res)
{
    nn_conv_geom g = conv_geom_at(cv, in->h, in->w);
    if (cv->upack && m->wbuf && nn_wino_applies(&g, cv->cout, in) &&
        nn_wino_tmp_floats(&g, in->n, nn_pool_size(m->pool)) <= m->wbuf_floats) {
        nn_wino_conv(m->pool, cv->upack, cv->cout, &g, in, out, ep, res, m->scratch, m->wbuf,
                     m->woff);
        return;
    }
    nn_blk_conv(m->pool, cv->tpack, cv->cout, &g, in, out, ep, res, m->scratch, m->offbuf);
}

/* Small planes with much padding (4x4 and 2x2 at batch 64) are faster
 * through the tap-skipping convolution, which computes only valid taps:
 * such a unit runs in the (C, N, H, W) layout, its input and output changed
 * on the way. */
static int unit_wants_taps(const unit *u, int batch)
{
    const conv_layer *cs[3];
    int nc = unit_convs(u, cs);
    for (int j = 0; j < nc; j++) {
        int h = j == 1 ? u->out_h : u->in_h, w = j == 1 ? u->out_w : u->in_w;
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
                /* The image, (3, batch, H, W): through the padded copy. */
                nn_conv_geom g = conv_geom_at(&u->conv, u->in_h, u->in_w);
                if (nn_blk_image_conv_applies(&g, batch, u->conv.cout) &&
                    nn_blk_image_tmp_floats(&g, batch) <= m->dir_floats) {
                    nn_blk_conv_image(m->pool, u->conv.tpack, u->conv.cout, &g, m->buf[*cur], batch,
                                      &y, &ep, m->scratch, m->dirbuf, m->offbuf);
                } else {
                    int t = other_buf(*cur, o, -1);
                    conv_run(m, &u->conv, m->buf[*cur], batch, u->in_h, u->in_w, m->buf[t], &ep);
                    nn_blk_from_cnhw(m->pool, m->buf[t], &y);
                }
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
            /* out = relu(bn2(conv2(relu(bn1(conv1(x))))) + identity) */
            int t1 = other_buf(*cur, -1, -1);
            nn_blk y1 = unit_blk(m, i, batch, t1, u->conv2.pad);
            nn_epilogue ep1 = {.alpha = u->bn.alpha, .beta = u->bn.beta, .relu = 1};
            blk_conv(m, &u->conv, &x, &y1, &ep1, NULL);
            nn_blk identity = x;
            int id = *cur;
            if (u->has_down) {
                id = other_buf(*cur, t1, -1);
                identity = unit_blk(m, i, batch, id, 0);
                nn_epilogue epd = {.alpha = u->down_bn.alpha, .beta = u->down_bn.beta};
                blk_conv(m, &u->down, &x, &identity, &epd, NULL);
            }
            int o = other_buf(*cur, t1, id);
            nn_blk y = unit_blk(m, i, batch, o, u->out_pb);
            nn_epilogue ep2 = {.alpha = u->bn2.alpha, .beta = u->bn2.beta, .relu = 1};
            blk_conv(m, &u->conv2, &y1, &y, &ep2, &identity);
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

/* The model's i-th convolution slot (3 per unit: conv, conv2, down; unused
 * slots are zeroed, without a t-pack). */
static conv_layer *conv_slot(cwba_model *m, int i)
{
    unit *u = &m->units[i / 3];
    return i % 3 == 0 ? &u->conv : i % 3 == 1 ? &u->conv2 : &u->down;
}

static void free_upacks(cwba_model *m)
{
    for (int i = 0; i < 3 * m->nunits; i++) {
        conv_layer *c = conv_slot(m, i);
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
        for (int i = 0; i < 3 * m->nunits; i++) {
            conv_layer *c = conv_slot(m, i);
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

/* ------------------------------------------------------ synthetic weights */

/* The generator of docs/synthetic-weights.md. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001B3ULL;
    }
    return h;
}

void cwba_synthetic_fill(const char *name, uint64_t seed, float *x, size_t n)
{
    uint64_t s = fnv1a64(name) ^ seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = s + (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        float u = (float)(z >> 40) * 0x1p-24f; /* exact: 24-bit integer times 2^-24 */
        x[i] = 2.0f * u - 1.0f;                /* exact in float32 */
    }
}

cwba_status cwba_weights_synthetic(cwba_arch arch, int num_classes, uint64_t seed,
                                   cwba_weights **out, cwba_error *err)
{
    if (!out) return cwba_fail(err, CWBA_E_ARG, "cwba_weights_synthetic: out is NULL");
    *out = NULL;
    if (!valid_arch(arch))
        return cwba_fail(err, CWBA_E_ARG, "cwba_weights_synthetic: unknown architecture %d", (int)arch);
    if (num_classes < 1 || num_classes > MAX_CLASSES)
        return cwba_fail(err, CWBA_E_ARG, "num_classes %d out of range (1..%d)", num_classes,
                         MAX_CLASSES);
    cwba_model *m = calloc(1, sizeof *m);
    speclist *specs = malloc(sizeof *specs);
    cwba_weights *w = cwba_weights_new();
    if (!m || !specs || !w) {
        free(m);
        free(specs);
        cwba_weights_free(w);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    build_structure(m, arch, num_classes);
    build_specs(m, specs);
    free(m); /* structure only: nothing allocated inside */
    cwba_status st = CWBA_OK;
    for (int i = 0; i < specs->n && !st; i++) {
        const tspec *t = &specs->v[i];
        size_t n = 1, fan_in = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        for (int d = 1; d < t->ndim; d++) fan_in *= (size_t)t->shape[d];
        float *x = nn_alloc_floats(n);
        if (!x) {
            st = cwba_fail(err, CWBA_E_NOMEM, "out of memory (tensor %s)", t->name);
            break;
        }
        cwba_synthetic_fill(t->name, seed, x, n);
        float a = (float)sqrt(6.0 / (double)fan_in);
        for (size_t j = 0; j < n; j++) {
            float r = x[j];
            switch (t->kind) {
            case T_WEIGHT: x[j] = r * a; break;
            case T_BIAS: x[j] = r * 0.01f; break;
            case T_BN_WEIGHT: x[j] = 1.0f + 0.1f * r; break;
            case T_BN_BIAS:
            case T_BN_MEAN: x[j] = 0.1f * r; break;
            case T_BN_VAR: x[j] = 1.0f + 0.5f * r; break;
            }
        }
        st = cwba_weights_add(w, t->name, t->ndim, t->shape, x, err);
    }
    free(specs);
    if (st) {
        cwba_weights_free(w);
        return st;
    }
    *out = w;
    return CWBA_OK;
}
