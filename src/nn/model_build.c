/* The structure of every network, built from its family's table (VGG
 * configuration lists, ResNet block type and layer counts, AlexNet's
 * features), the tensors it expects, and the shapes it propagates. */
#include "nn/model_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* features.K units of AlexNet / VGG: 'C' conv (cout, k, stride, pad), 'B'
 * batch norm, 'R', 'M' (k, stride). */
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

/* torchvision's VGG configurations: channel counts of the 3x3 convolutions,
 * M a 2x2 max-pool. */
#define M 0
static const int VGG_A[] = {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
static const int VGG_B[] = {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M};
static const int VGG_D[] = {64, 64, M, 128, 128, M, 256, 256, 256, M,
                            512, 512, 512, M, 512, 512, 512, M};
static const int VGG_E[] = {64, 64, M, 128, 128, M, 256, 256, 256, 256, M,
                            512, 512, 512, 512, M, 512, 512, 512, 512, M};
#undef M

typedef enum family { FAM_ALEXNET, FAM_VGG, FAM_RESNET } family;

/* One row per network: its family and the family's parameters. */
typedef struct arch_def {
    cwba_arch arch;
    const char *name;
    family fam;
    const int *cfg;  /* VGG: configuration */
    int ncfg;
    int batch_norm;  /* VGG: BatchNorm2d after every convolution */
    int bottleneck;  /* ResNet: Bottleneck (expansion 4) instead of BasicBlock */
    int layers[4];   /* ResNet: blocks of layer1..layer4 */
} arch_def;

#define VGG(a, n, cfg, bn) {a, n, FAM_VGG, cfg, (int)(sizeof cfg / sizeof *cfg), bn, 0, {0}}
#define RESNET(a, n, bneck, l1, l2, l3, l4) {a, n, FAM_RESNET, NULL, 0, 0, bneck, {l1, l2, l3, l4}}
static const arch_def ARCHS[] = {
    {CWBA_ARCH_ALEXNET, "alexnet", FAM_ALEXNET, NULL, 0, 0, 0, {0}},
    VGG(CWBA_ARCH_VGG11, "vgg11", VGG_A, 0),
    VGG(CWBA_ARCH_VGG11_BN, "vgg11_bn", VGG_A, 1),
    VGG(CWBA_ARCH_VGG13, "vgg13", VGG_B, 0),
    VGG(CWBA_ARCH_VGG13_BN, "vgg13_bn", VGG_B, 1),
    VGG(CWBA_ARCH_VGG16, "vgg16", VGG_D, 0),
    VGG(CWBA_ARCH_VGG16_BN, "vgg16_bn", VGG_D, 1),
    VGG(CWBA_ARCH_VGG19, "vgg19", VGG_E, 0),
    VGG(CWBA_ARCH_VGG19_BN, "vgg19_bn", VGG_E, 1),
    RESNET(CWBA_ARCH_RESNET18, "resnet18", 0, 2, 2, 2, 2),
    RESNET(CWBA_ARCH_RESNET34, "resnet34", 0, 3, 4, 6, 3),
    RESNET(CWBA_ARCH_RESNET50, "resnet50", 1, 3, 4, 6, 3),
    RESNET(CWBA_ARCH_RESNET101, "resnet101", 1, 3, 4, 23, 3),
    RESNET(CWBA_ARCH_RESNET152, "resnet152", 1, 3, 8, 36, 3),
};
#undef VGG
#undef RESNET
#define NARCHS ((int)(sizeof ARCHS / sizeof *ARCHS))

static const arch_def *arch_find(cwba_arch a)
{
    for (int i = 0; i < NARCHS; i++)
        if (ARCHS[i].arch == a) return &ARCHS[i];
    return NULL;
}

static void build_features(cwba_model *m, const feat_def *defs, int n)
{
    int c = 3;
    for (int i = 0; i < n; i++) {
        char name[24];
        snprintf(name, sizeof name, "features.%d", i);
        unit_kind kind = defs[i].op == 'C'   ? U_CONV
                         : defs[i].op == 'B' ? U_BN
                         : defs[i].op == 'R' ? U_RELU
                                             : U_MAXPOOL;
        unit *u = unit_add(m, kind, name);
        if (kind == U_CONV) {
            conv_def(&u->conv, name, c, defs[i].cout, defs[i].k, defs[i].stride, defs[i].pad, 1);
            c = defs[i].cout;
        } else if (kind == U_BN) {
            bn_def(&u->bn, name, c);
        } else if (kind == U_MAXPOOL) {
            u->pk = defs[i].k;
            u->ps = defs[i].stride;
            u->pp = 0;
        }
        split_add(m, name, m->nunits - 1);
    }
}

/* torchvision's make_layers: conv 3x3 pad 1 (+ batch norm) + ReLU per
 * channel count, a 2x2 max-pool per M; then the classifier. */
static void build_vgg(cwba_model *m, const arch_def *d, int num_classes)
{
    feat_def defs[3 * 32];
    int n = 0;
    for (int i = 0; i < d->ncfg; i++) {
        if (d->cfg[i] == 0) {
            defs[n++] = (feat_def){'M', 0, 2, 2, 0};
        } else {
            defs[n++] = (feat_def){'C', d->cfg[i], 3, 1, 1};
            if (d->batch_norm) defs[n++] = (feat_def){'B', 0, 0, 0, 0};
            defs[n++] = (feat_def){'R', 0, 0, 0, 0};
        }
    }
    build_features(m, defs, n);
    m->pool_out = 7;
    linear_def(m, "classifier.0", 512 * 7 * 7, 4096, 1);
    linear_def(m, "classifier.3", 4096, 4096, 1);
    linear_def(m, "classifier.6", 4096, num_classes, 0);
}

/* torchvision's ResNet (v1.5: a Bottleneck's stride is on its 3x3). */
static void build_resnet(cwba_model *m, const arch_def *d, int num_classes)
{
    const int expansion = d->bottleneck ? 4 : 1;
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
        int planes = 64 << (l - 1), cout = planes * expansion;
        for (int b = 0; b < d->layers[l - 1]; b++) {
            char name[24], p[48];
            snprintf(name, sizeof name, "layer%d.%d", l, b);
            int stride = (l > 1 && b == 0) ? 2 : 1;
            u = unit_add(m, U_BLOCK, name);
            snprintf(p, sizeof p, "%s.conv1", name);
            if (d->bottleneck)
                conv_def(&u->conv, p, cin, planes, 1, 1, 0, 0);
            else
                conv_def(&u->conv, p, cin, planes, 3, stride, 1, 0);
            snprintf(p, sizeof p, "%s.bn1", name);
            bn_def(&u->bn, p, planes);
            snprintf(p, sizeof p, "%s.conv2", name);
            conv_def(&u->conv2, p, planes, planes, 3, d->bottleneck ? stride : 1, 1, 0);
            snprintf(p, sizeof p, "%s.bn2", name);
            bn_def(&u->bn2, p, planes);
            if (d->bottleneck) {
                u->bottleneck = 1;
                snprintf(p, sizeof p, "%s.conv3", name);
                conv_def(&u->conv3, p, planes, cout, 1, 1, 0, 0);
                snprintf(p, sizeof p, "%s.bn3", name);
                bn_def(&u->bn3, p, cout);
            }
            if (stride != 1 || cin != cout) {
                u->has_down = 1;
                snprintf(p, sizeof p, "%s.downsample.0", name);
                conv_def(&u->down, p, cin, cout, 1, stride, 0, 0);
                snprintf(p, sizeof p, "%s.downsample.1", name);
                bn_def(&u->down_bn, p, cout);
            }
            cin = cout;
            split_add(m, name, m->nunits - 1);
        }
        char lname[16];
        snprintf(lname, sizeof lname, "layer%d", l);
        split_add(m, lname, m->nunits - 1);
    }
    m->pool_out = 1;
    linear_def(m, "fc", 512 * expansion, num_classes, 0);
}

void nn_model_build(cwba_model *m, cwba_arch arch, int num_classes)
{
    const arch_def *d = arch_find(arch);
    m->arch = arch;
    m->num_classes = num_classes;
    if (d->fam == FAM_ALEXNET) {
        build_features(m, ALEXNET_FEATURES, (int)(sizeof ALEXNET_FEATURES / sizeof *ALEXNET_FEATURES));
        m->pool_out = 6;
        linear_def(m, "classifier.1", 256 * 6 * 6, 4096, 1);
        linear_def(m, "classifier.4", 4096, 4096, 1);
        linear_def(m, "classifier.6", 4096, num_classes, 0);
    } else if (d->fam == FAM_VGG) {
        build_vgg(m, d, num_classes);
    } else {
        build_resnet(m, d, num_classes);
    }
}

void nn_model_last_layer(cwba_arch a, const char **name, int *in)
{
    const arch_def *d = arch_find(a);
    *name = d->fam == FAM_RESNET ? "fc.weight" : "classifier.6.weight";
    *in = d->fam == FAM_RESNET ? 512 * (d->bottleneck ? 4 : 1) : 4096;
}

int nn_model_is_resnet(cwba_arch a) { return arch_find(a)->fam == FAM_RESNET; }

/* ---------------------------------------------------------- tensor specs */

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
void nn_model_specs(const cwba_model *m, speclist *s)
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
            if (u->bottleneck) {
                spec_conv(s, &u->conv3);
                spec_bn(s, &u->bn3);
            }
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

const char *nn_model_shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, ")");
    return buf;
}

cwba_status nn_model_check_weights(const cwba_weights *w, const speclist *s, const char *arch,
                                   cwba_error *err)
{
    char want[96], got[96];
    for (int i = 0; i < s->n; i++) {
        const tspec *t = &s->v[i];
        const cwba_tensor_entry *e = cwba_weights_find(w, t->name);
        nn_model_shape_str(want, sizeof want, t->ndim, t->shape);
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
                             arch, t->name, nn_model_shape_str(got, sizeof got, e->ndim, e->shape), want);
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
    for (int i = 0; name && i < NARCHS; i++)
        if (strcmp(name, ARCHS[i].name) == 0) {
            *out = ARCHS[i].arch;
            return CWBA_OK;
        }
    char list[256];
    size_t o = 0;
    for (int i = 0; i < NARCHS && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", ARCHS[i].name);
    return cwba_fail(err, CWBA_E_ARG, "unknown model '%s' (expected %s)", name ? name : "(null)",
                     list);
}

const char *cwba_arch_name(cwba_arch a)
{
    const arch_def *d = arch_find(a);
    return d ? d->name : "unknown";
}

int cwba_arch_count(void) { return NARCHS; }

cwba_arch cwba_arch_at(int i) { return ARCHS[i >= 0 && i < NARCHS ? i : 0].arch; }

int nn_model_valid_arch(cwba_arch a) { return arch_find(a) != NULL; }

/* Propagates the spatial sizes; fails with CWBA_E_ARG when a layer's output
 * would be empty. */
/* Sets c's geometry for an (h, w) input plane. */
static void conv_at(conv_layer *c, int h, int w)
{
    c->geom = (nn_conv_geom){.cin = c->cin, .h = h, .w = w, .k = c->k, .stride = c->stride,
                             .pad = c->pad};
    c->geom.oh = nn_out_side(h, c->k, c->stride, c->pad);
    c->geom.ow = nn_out_side(w, c->k, c->stride, c->pad);
}

cwba_status nn_model_shapes(cwba_model *m, int s, cwba_error *err)
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
            conv_at(&u->conv, h, w);
            h = nn_out_side(h, u->conv.k, u->conv.stride, u->conv.pad);
            w = nn_out_side(w, u->conv.k, u->conv.stride, u->conv.pad);
            break;
        case U_MAXPOOL:
            h = nn_out_side(h, u->pk, u->ps, u->pp);
            w = nn_out_side(w, u->pk, u->ps, u->pp);
            break;
        case U_BLOCK: {
            /* conv1 -> conv2 (-> conv3); the downsample sees the block's input. */
            conv_layer *chain[3] = {&u->conv, &u->conv2, &u->conv3};
            if (u->has_down) conv_at(&u->down, h, w);
            for (int j = 0; j < (u->bottleneck ? 3 : 2); j++) {
                conv_at(chain[j], h, w);
                c = chain[j]->cout;
                h = chain[j]->geom.oh;
                w = chain[j]->geom.ow;
                size_t act = (size_t)c * h * w;
                if (act > max_act) max_act = act;
            }
            break;
        }
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

/* In the order they run on the main path, the downsample last. */
int nn_model_unit_convs(const unit *u, const conv_layer **cs)
{
    int n = 0;
    if (u->kind != U_CONV && u->kind != U_BLOCK) return 0;
    cs[n++] = &u->conv;
    if (u->kind == U_CONV) return n;
    cs[n++] = &u->conv2;
    if (u->bottleneck) cs[n++] = &u->conv3;
    if (u->has_down) cs[n++] = &u->down;
    return n;
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

void nn_model_blocked(cwba_model *m)
{
    size_t mx = 0;
    for (int i = 0; i < m->nunits; i++) {
        unit *u = &m->units[i];
        u->out_pb = input_pad(m, i + 1);
        size_t f = nn_blk_floats(u->out_c, 1, u->out_h, u->out_w, u->out_pb);
        if (f > mx) mx = f;
        if (u->kind == U_BLOCK) { /* conv1's output, read by conv2 (and conv2's by conv3) */
            f = nn_blk_floats(u->conv.cout, 1, u->conv.geom.oh, u->conv.geom.ow, u->conv2.pad);
            if (f > mx) mx = f;
            f = nn_blk_floats(u->conv2.cout, 1, u->conv2.geom.oh, u->conv2.geom.ow, u->conv3.pad);
            if (u->bottleneck && f > mx) mx = f;
        }
    }
    m->max_blk = mx;
}


conv_layer *nn_model_conv_slot(cwba_model *m, int i)
{
    unit *u = &m->units[i / NN_UNIT_CONVS];
    switch (i % NN_UNIT_CONVS) {
    case 0: return &u->conv;
    case 1: return &u->conv2;
    case 2: return &u->conv3;
    default: return &u->down;
    }
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
    const char *hint = nn_model_is_resnet(m->arch)
                           ? "conv1, bn1, relu, maxpool, layer1..layer4, layerN.M"
                           : "features.0 .. features.N";
    return cwba_fail(err, CWBA_E_ARG, "unknown split point '%s' for %s (expected %s)", name,
                     cwba_arch_name(m->arch), hint);
}

