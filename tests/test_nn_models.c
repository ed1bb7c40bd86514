/* The three torchvision models built from synthetic weights: split points and
 * their shapes, the three determinism properties (thread count, batching,
 * front + back == whole), weight validation and the synthetic generator's
 * test vectors (docs/synthetic-weights.md). Numerical agreement with PyTorch
 * itself is checked against reference data in test_ref_*.c. */
#include "testutil.h"

#include "cwba/nn.h"
#include "nn/model_internal.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    cwba_model *resnet32, *resnet64, *alexnet64, *vgg32;
    cwba_weights *resnet_w; /* kept for the validation tests */
    cwba_weights *alexnet_w;
} fixture;

static cwba_model *make_model(cwba_arch a, int size, cwba_weights **keep)
{
    cwba_error err;
    cwba_weights *w = NULL;
    cwba_model *m = NULL;
    if (cwba_weights_synthetic(a, 10, 1, &w, &err) != CWBA_OK) return NULL;
    if (cwba_model_create(a, w, size, &m, &err) != CWBA_OK) m = NULL;
    if (keep)
        *keep = w;
    else
        cwba_weights_free(w);
    return m;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    cwba_set_threads(1);
    f->resnet32 = make_model(CWBA_ARCH_RESNET18, 32, &f->resnet_w);
    f->alexnet64 = make_model(CWBA_ARCH_ALEXNET, 64, &f->alexnet_w);
    f->vgg32 = make_model(CWBA_ARCH_VGG16, 32, NULL);
    cwba_error err;
    if (f->resnet_w && cwba_model_create(CWBA_ARCH_RESNET18, f->resnet_w, 64, &f->resnet64, &err))
        f->resnet64 = NULL;
    *state = f;
    return f->resnet32 && f->resnet64 && f->alexnet64 && f->vgg32 ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cwba_model_free(f->resnet32);
    cwba_model_free(f->resnet64);
    cwba_model_free(f->alexnet64);
    cwba_model_free(f->vgg32);
    cwba_weights_free(f->resnet_w);
    cwba_weights_free(f->alexnet_w);
    free(f);
    cwba_set_threads(1);
    return 0;
}

static float *input(cwba_model *m, int batch, const char *name)
{
    size_t s = (size_t)cwba_model_input_size(m);
    float *x = malloc((size_t)batch * 3 * s * s * sizeof *x);
    assert_non_null(x);
    cwba_synthetic_fill(name, 7, x, (size_t)batch * 3 * s * s);
    return x;
}

static size_t feat_size(cwba_model *m, int split)
{
    int c, h, w;
    cwba_model_split_shape(m, split, &c, &h, &w);
    return (size_t)c * h * w;
}

/* ------------------------------------------------------------ generator */

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void test_synthetic_vectors(void **state)
{
    (void)state;
    float x[4];
    cwba_synthetic_fill("input", 0, x, 4);
    const uint32_t in0[4] = {0xbf7a3d08, 0xbf4deac2, 0x3e9c045c, 0xbf17be90};
    for (int i = 0; i < 4; i++) assert_int_equal(bits(x[i]), in0[i]);
    cwba_synthetic_fill("features.0.weight", 1, x, 4);
    const uint32_t fw[4] = {0x3de3c7c0, 0xbcd57200, 0xbec4e9a4, 0x3f13f092};
    for (int i = 0; i < 4; i++) assert_int_equal(bits(x[i]), fw[i]);
    cwba_synthetic_fill("fc.bias", 12345, x, 4);
    const uint32_t fb[4] = {0xbed75d1c, 0x3f5793b6, 0x3f13e3f6, 0x3f1c068c};
    for (int i = 0; i < 4; i++) assert_int_equal(bits(x[i]), fb[i]);

    cwba_error err;
    cwba_weights *w = NULL;
    assert_int_equal(cwba_weights_synthetic(CWBA_ARCH_RESNET18, 10, 7, &w, &err), CWBA_OK);
    const cwba_tensor_entry *e = cwba_weights_find(w, "conv1.weight");
    assert_non_null(e);
    assert_int_equal(e->ndim, 4);
    const uint32_t cw[3] = {0x3dc49a5f, 0x3ddbd0bb, 0xbe41f2db};
    for (int i = 0; i < 3; i++) assert_int_equal(bits(e->data[i]), cw[i]);
    /* Every float tensor of torchvision's state_dict, nothing else. */
    assert_int_equal((int)w->count, 102);
    e = cwba_weights_find(w, "layer3.1.bn2.running_var");
    assert_non_null(e);
    float r[256];
    cwba_synthetic_fill("layer3.1.bn2.running_var", 7, r, 256);
    for (int i = 0; i < 256; i++) {
        assert_true(e->data[i] == 1.0f + 0.5f * r[i]);
        assert_true(e->data[i] >= 0.5f && e->data[i] < 1.5f);
    }
    e = cwba_weights_find(w, "layer2.0.downsample.1.weight");
    assert_non_null(e);
    cwba_synthetic_fill("layer2.0.downsample.1.weight", 7, r, 128);
    for (int i = 0; i < 128; i++) assert_true(e->data[i] == 1.0f + 0.1f * r[i]);
    e = cwba_weights_find(w, "fc.bias");
    assert_non_null(e);
    cwba_synthetic_fill("fc.bias", 7, r, 10);
    for (int i = 0; i < 10; i++) assert_true(e->data[i] == r[i] * 0.01f);
    cwba_weights_free(w);

    assert_int_equal(cwba_weights_synthetic(CWBA_ARCH_ALEXNET, 3, 1, &w, &err), CWBA_OK);
    assert_int_equal((int)w->count, 16);
    e = cwba_weights_find(w, "classifier.1.weight");
    assert_non_null(e);
    assert_true(e->shape[0] == 4096 && e->shape[1] == 9216);
    float a = (float)sqrt(6.0 / 9216.0);
    cwba_synthetic_fill("classifier.1.weight", 1, r, 16);
    for (int i = 0; i < 16; i++) assert_true(e->data[i] == r[i] * a);
    cwba_weights_free(w);

    assert_int_equal(cwba_weights_synthetic(CWBA_ARCH_VGG16, 0, 1, &w, &err), CWBA_E_ARG);
    assert_null(w);
}

/* --------------------------------------------------------- split points */

typedef struct split_row {
    const char *name;
    int c, h, w;
} split_row;

static void check_splits(cwba_model *m, const split_row *rows, int n)
{
    assert_int_equal(cwba_model_num_splits(m), n);
    for (int i = 0; i < n; i++) {
        int c, h, w, idx = -1;
        cwba_error err;
        assert_string_equal(cwba_model_split_name(m, i), rows[i].name);
        cwba_model_split_shape(m, i, &c, &h, &w);
        if (c != rows[i].c || h != rows[i].h || w != rows[i].w)
            fail_msg("%s at %d px: (%d, %d, %d), expected (%d, %d, %d)", rows[i].name,
                     cwba_model_input_size(m), c, h, w, rows[i].c, rows[i].h, rows[i].w);
        assert_int_equal(cwba_model_find_split(m, rows[i].name, &idx, &err), CWBA_OK);
        assert_int_equal(idx, i);
    }
    assert_null(cwba_model_split_name(m, n));
    assert_null(cwba_model_split_name(m, -1));
}

static void test_split_shapes(void **state)
{
    fixture *f = *state;
    static const split_row r32[] = {
        {"conv1", 64, 16, 16},     {"bn1", 64, 16, 16},       {"relu", 64, 16, 16},
        {"maxpool", 64, 8, 8},     {"layer1.0", 64, 8, 8},    {"layer1.1", 64, 8, 8},
        {"layer1", 64, 8, 8},      {"layer2.0", 128, 4, 4},   {"layer2.1", 128, 4, 4},
        {"layer2", 128, 4, 4},     {"layer3.0", 256, 2, 2},   {"layer3.1", 256, 2, 2},
        {"layer3", 256, 2, 2},     {"layer4.0", 512, 1, 1},   {"layer4.1", 512, 1, 1},
        {"layer4", 512, 1, 1}};
    check_splits(f->resnet32, r32, 16);
    static const split_row r64[] = {
        {"conv1", 64, 32, 32},     {"bn1", 64, 32, 32},       {"relu", 64, 32, 32},
        {"maxpool", 64, 16, 16},   {"layer1.0", 64, 16, 16},  {"layer1.1", 64, 16, 16},
        {"layer1", 64, 16, 16},    {"layer2.0", 128, 8, 8},   {"layer2.1", 128, 8, 8},
        {"layer2", 128, 8, 8},     {"layer3.0", 256, 4, 4},   {"layer3.1", 256, 4, 4},
        {"layer3", 256, 4, 4},     {"layer4.0", 512, 2, 2},   {"layer4.1", 512, 2, 2},
        {"layer4", 512, 2, 2}};
    check_splits(f->resnet64, r64, 16);
    static const split_row a64[] = {
        {"features.0", 64, 15, 15},  {"features.1", 64, 15, 15},  {"features.2", 64, 7, 7},
        {"features.3", 192, 7, 7},   {"features.4", 192, 7, 7},   {"features.5", 192, 3, 3},
        {"features.6", 384, 3, 3},   {"features.7", 384, 3, 3},   {"features.8", 256, 3, 3},
        {"features.9", 256, 3, 3},   {"features.10", 256, 3, 3},  {"features.11", 256, 3, 3},
        {"features.12", 256, 1, 1}};
    check_splits(f->alexnet64, a64, 13);
    static const split_row v32[] = {
        {"features.0", 64, 32, 32},  {"features.1", 64, 32, 32},  {"features.2", 64, 32, 32},
        {"features.3", 64, 32, 32},  {"features.4", 64, 16, 16},  {"features.5", 128, 16, 16},
        {"features.6", 128, 16, 16}, {"features.7", 128, 16, 16}, {"features.8", 128, 16, 16},
        {"features.9", 128, 8, 8},   {"features.10", 256, 8, 8},  {"features.11", 256, 8, 8},
        {"features.12", 256, 8, 8},  {"features.13", 256, 8, 8},  {"features.14", 256, 8, 8},
        {"features.15", 256, 8, 8},  {"features.16", 256, 4, 4},  {"features.17", 512, 4, 4},
        {"features.18", 512, 4, 4},  {"features.19", 512, 4, 4},  {"features.20", 512, 4, 4},
        {"features.21", 512, 4, 4},  {"features.22", 512, 4, 4},  {"features.23", 512, 2, 2},
        {"features.24", 512, 2, 2},  {"features.25", 512, 2, 2},  {"features.26", 512, 2, 2},
        {"features.27", 512, 2, 2},  {"features.28", 512, 2, 2},  {"features.29", 512, 2, 2},
        {"features.30", 512, 1, 1}};
    check_splits(f->vgg32, v32, 31);

    int idx;
    cwba_error err;
    assert_int_equal(cwba_model_find_split(f->resnet32, "layer5", &idx, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "layer5"));
    assert_int_equal(cwba_model_find_split(f->alexnet64, "features.13", &idx, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_num_classes(f->vgg32), 10);
    assert_int_equal(cwba_model_arch(f->alexnet64), CWBA_ARCH_ALEXNET);
    assert_string_equal(cwba_arch_name(CWBA_ARCH_VGG16), "vgg16");
    cwba_arch a;
    assert_int_equal(cwba_arch_parse("resnet18", &a, &err), CWBA_OK);
    assert_int_equal(a, CWBA_ARCH_RESNET18);
    assert_int_equal(cwba_arch_parse("resnet50", &a, &err), CWBA_OK);
    assert_int_equal(a, CWBA_ARCH_RESNET50);
    assert_int_equal(cwba_arch_parse("resnet200", &a, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "vgg19_bn"));
    for (int i = 0; i < cwba_arch_count(); i++) { /* names round-trip */
        assert_int_equal(cwba_arch_parse(cwba_arch_name(cwba_arch_at(i)), &a, &err), CWBA_OK);
        assert_int_equal(a, cwba_arch_at(i));
    }
    assert_int_equal(cwba_arch_count(), 14);
}

/* ------------------------------------------------------------ properties */

/* (c) front(split) then back(split) equals the whole network, for every split. */
static void check_front_back(cwba_model *m)
{
    const int batch = 2;
    int k = cwba_model_num_classes(m);
    float *x = input(m, batch, "input");
    float *full = malloc((size_t)batch * k * sizeof *full), *y = malloc((size_t)batch * k * sizeof *y);
    cwba_error err;
    assert_int_equal(cwba_model_forward(m, x, batch, full, &err), CWBA_OK);
    for (int i = 0; i < k * batch; i++) assert_true(isfinite(full[i]));
    for (int s = 0; s < cwba_model_num_splits(m); s++) {
        float *feat = malloc((size_t)batch * feat_size(m, s) * sizeof *feat);
        assert_int_equal(cwba_model_forward_front(m, s, x, batch, feat, &err), CWBA_OK);
        assert_int_equal(cwba_model_forward_back(m, s, feat, batch, y, &err), CWBA_OK);
        if (memcmp(y, full, (size_t)batch * k * sizeof *y) != 0)
            fail_msg("%s split %s: front+back differs from forward",
                     cwba_arch_name(cwba_model_arch(m)), cwba_model_split_name(m, s));
        free(feat);
    }
    free(x);
    free(full);
    free(y);
}

/* ------------------------------------------------ the other architectures */

static cwba_model *synthetic_model(cwba_arch a, int classes, int size)
{
    cwba_error err;
    cwba_weights *w = NULL;
    cwba_model *m = NULL;
    if (cwba_weights_synthetic(a, classes, 1, &w, &err) != CWBA_OK) fail_msg("%s", err.msg);
    if (cwba_model_create(a, w, size, &m, &err) != CWBA_OK) fail_msg("%s", err.msg);
    cwba_weights_free(w);
    return m;
}

/* ResNets and VGGs at 32 px: torchvision's split points and shapes
 * (counted from the family tables: VGG one unit per conv, batch norm, ReLU
 * and pool; ResNet 4 stem units, one split per block and one per layer),
 * front + back == forward for a Bottleneck ResNet and a VGG with batch norm. */
static void test_more_archs(void **state)
{
    (void)state;
    static const struct {
        cwba_arch a;
        int nsplits, feat_c; /* the last split's channels */
        const char *last;
    } rows[] = {
        {CWBA_ARCH_RESNET34, 4 + 16 + 4, 512, "layer4"},
        {CWBA_ARCH_RESNET50, 4 + 16 + 4, 2048, "layer4"},
        {CWBA_ARCH_RESNET152, 4 + 50 + 4, 2048, "layer4"},
        {CWBA_ARCH_VGG11_BN, 8 * 3 + 5, 512, "features.28"},
        {CWBA_ARCH_VGG19, 16 * 2 + 5, 512, "features.36"},
    }; /* the others: test_ref_models_{resnet,vgg} (every split against torchvision) */
    cwba_error err;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        cwba_model *m = synthetic_model(rows[r].a, 10, 32);
        int n = cwba_model_num_splits(m), c, h, w, idx;
        assert_int_equal(n, rows[r].nsplits);
        assert_string_equal(cwba_model_split_name(m, n - 1), rows[r].last);
        cwba_model_split_shape(m, n - 1, &c, &h, &w);
        assert_int_equal(c, rows[r].feat_c);
        assert_int_equal(h, 1);
        assert_int_equal(cwba_model_num_classes(m), 10);
        if (rows[r].a == CWBA_ARCH_RESNET50) {
            /* layer1.0: Bottleneck 64 -> 256 at 8x8; layer2.0: stride 2 on conv2 */
            assert_int_equal(cwba_model_find_split(m, "layer1.0", &idx, &err), CWBA_OK);
            cwba_model_split_shape(m, idx, &c, &h, &w);
            assert_true(c == 256 && h == 8 && w == 8);
            assert_int_equal(cwba_model_find_split(m, "layer2.0", &idx, &err), CWBA_OK);
            cwba_model_split_shape(m, idx, &c, &h, &w);
            assert_true(c == 512 && h == 4 && w == 4);
            assert_int_equal(cwba_model_find_split(m, "layer3", &idx, &err), CWBA_OK);
            assert_string_equal(cwba_model_split_name(m, idx), "layer3");
            assert_int_equal(cwba_model_find_split(m, "layer3.6", &idx, &err), CWBA_E_ARG);
            assert_non_null(strstr(err.msg, "layerN.M"));
        }
        if (rows[r].a == CWBA_ARCH_RESNET50 || rows[r].a == CWBA_ARCH_VGG11_BN)
            check_front_back(m);
        cwba_model_free(m);
    }
}

/* The fast paths reach the new layer kinds: in the blocked layout (AVX-512)
 * every convolution of ResNet50 at batch 1, the 1x1 ones and the stride-2
 * 1x1 downsamples included, runs through the channels-on-lanes kernel
 * ("blocked"), the 7x7 stem through the padded image copy; none through
 * im2col or the plain paths. */
static void test_fast_paths(void **state)
{
    (void)state;
    cwba_model *m = synthetic_model(CWBA_ARCH_RESNET50, 10, 96);
    float *x = input(m, 1, "input"), y[10];
    cwba_error err;
    nn_model_conv_calls_reset(m);
    assert_int_equal(cwba_model_forward(m, x, 1, y, &err), CWBA_OK);
    long blocked = nn_model_conv_calls(m, "blocked"), image = nn_model_conv_calls(m, "blocked-image");
    long im2col = nn_model_conv_calls(m, "gemm-im2col"), mat = nn_model_conv_calls(m, "gemm-1x1");
    print_message("resnet50 96 px b1 (%s): blocked %ld, blocked-image %ld, gemm-1x1 %ld, "
                  "gemm-im2col %ld\n", nn_gemm_isa(), blocked, image, mat, im2col);
    assert_int_equal(nn_model_conv_calls(m, "no-such-path"), -1);
    /* 53 convolutions: the stem, 16 Bottlenecks x 3, 4 downsamples */
    long total = 0;
    static const char *const paths[] = {"taps", "direct", "gemm-1x1", "gemm-im2col", "winograd",
                                        "blocked", "blocked-image", "image-via-plain"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) total += nn_model_conv_calls(m, paths[i]);
    assert_int_equal(total, 53);
    if (nn_isa_avx512()) { /* the blocked layout's CPUs */
        assert_int_equal(blocked, 52);
        assert_int_equal(image, 1);
    }
    free(x);
    cwba_model_free(m);
}

static void test_front_back_equals_forward(void **state)
{
    fixture *f = *state;
    check_front_back(f->resnet32);
    check_front_back(f->resnet64);
    check_front_back(f->alexnet64);
    check_front_back(f->vgg32);
}

/* (b) A batch of 5 gives each image exactly what it gets alone. */
static void check_batching(cwba_model *m, const char *const *splits, int nsplits)
{
    const int batch = 5;
    int k = cwba_model_num_classes(m), s2 = cwba_model_input_size(m);
    size_t in1 = (size_t)3 * s2 * s2;
    float *x = input(m, batch, "batch-input");
    float *yb = malloc((size_t)batch * k * sizeof *yb), *y1 = malloc((size_t)k * sizeof *y1);
    cwba_error err;
    assert_int_equal(cwba_model_forward(m, x, batch, yb, &err), CWBA_OK);
    for (int n = 0; n < batch; n++) {
        assert_int_equal(cwba_model_forward(m, x + n * in1, 1, y1, &err), CWBA_OK);
        assert_memory_equal(y1, yb + (size_t)n * k, (size_t)k * sizeof *y1);
    }
    for (int i = 0; i < nsplits; i++) {
        int s;
        assert_int_equal(cwba_model_find_split(m, splits[i], &s, &err), CWBA_OK);
        size_t fs = feat_size(m, s);
        float *fb = malloc(batch * fs * sizeof *fb), *f1 = malloc(fs * sizeof *f1);
        assert_int_equal(cwba_model_forward_front(m, s, x, batch, fb, &err), CWBA_OK);
        /* Perturb the batch's features so the back-end check sees distinct inputs. */
        for (size_t j = 0; j < batch * fs; j += 3) fb[j] *= 1.5f;
        assert_int_equal(cwba_model_forward_back(m, s, fb, batch, yb, &err), CWBA_OK);
        for (int n = 0; n < batch; n++) {
            assert_int_equal(cwba_model_forward_front(m, s, x + n * in1, 1, f1, &err), CWBA_OK);
            for (size_t j = 0; j < fs; j++) {
                float v = f1[j];
                if ((n * fs + j) % 3 == 0) v *= 1.5f;
                if (memcmp(&v, &fb[n * fs + j], sizeof v) != 0)
                    fail_msg("%s %s: image %d feature %zu differs in a batch", cwba_arch_name(cwba_model_arch(m)),
                             splits[i], n, j);
            }
            assert_int_equal(cwba_model_forward_back(m, s, fb + n * fs, 1, y1, &err), CWBA_OK);
            if (memcmp(y1, yb + (size_t)n * k, (size_t)k * sizeof *y1) != 0)
                fail_msg("%s %s: back end of image %d differs in a batch",
                         cwba_arch_name(cwba_model_arch(m)), splits[i], n);
        }
        free(fb);
        free(f1);
    }
    free(x);
    free(yb);
    free(y1);
}

static void test_batch_invariance(void **state)
{
    fixture *f = *state;
    static const char *const rs[] = {"conv1", "maxpool", "layer1.0", "layer2", "layer3", "layer4.0"};
    check_batching(f->resnet32, rs, 6);
    check_batching(f->resnet64, rs, 6);
    static const char *const as[] = {"features.0", "features.5", "features.9", "features.12"};
    check_batching(f->alexnet64, as, 4);
    static const char *const vs[] = {"features.4", "features.17", "features.30"};
    check_batching(f->vgg32, vs, 3);
}

/* (a) 1 and 2 threads give identical results. */
static void run_all(cwba_model *m, const char *split, float *out)
{
    const int batch = 5;
    int k = cwba_model_num_classes(m), s;
    cwba_error err;
    float *x = input(m, batch, "thread-input");
    assert_int_equal(cwba_model_find_split(m, split, &s, &err), CWBA_OK);
    size_t fs = feat_size(m, s);
    float *feat = malloc(batch * fs * sizeof *feat);
    assert_int_equal(cwba_model_forward(m, x, batch, out, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward_front(m, s, x, batch, feat, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward_back(m, s, feat, batch, out + batch * k, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward_back(m, s, feat, 1, out + 2 * batch * k, &err), CWBA_OK);
    memcpy(out + 2 * batch * k + k, feat, fs * sizeof *feat);
    free(x);
    free(feat);
}

static void check_threads(cwba_model *m, const char *split)
{
    int k = cwba_model_num_classes(m), s;
    cwba_error err;
    assert_int_equal(cwba_model_find_split(m, split, &s, &err), CWBA_OK);
    size_t n = (size_t)11 * k + feat_size(m, s);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    cwba_set_threads(1);
    run_all(m, split, a);
    cwba_set_threads(2);
    run_all(m, split, b);
    cwba_set_threads(1);
    if (memcmp(a, b, n * sizeof *a) != 0)
        fail_msg("%s: results differ between 1 and 2 threads", cwba_arch_name(cwba_model_arch(m)));
    free(a);
    free(b);
}

static void test_thread_invariance(void **state)
{
    fixture *f = *state;
    check_threads(f->resnet32, "layer3");
    check_threads(f->resnet64, "layer2");
    check_threads(f->alexnet64, "features.5");
    check_threads(f->vgg32, "features.23");
}

/* The AVX-512, AVX2+FMA and scalar kernels (chosen at run time) give the
 * same logits, so results do not depend on the machine's vector unit either. */
static void test_kernel_paths_agree(void **state)
{
    fixture *f = *state;
    static const char *const isas[] = {"avx512", "avx2", "scalar"};
    const char *best = nn_gemm_isa();
    const int batch = 3;
    float *x = input(f->resnet32, batch, "isa-input");
    float ref[30], y[30];
    cwba_error err;
    assert_int_equal(cwba_model_forward(f->resnet32, x, batch, ref, &err), CWBA_OK);
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        if (!nn_gemm_set_isa(isas[i])) continue;
        /* Weights are packed for the kernel in use when the model is created. */
        cwba_model *m = NULL;
        assert_int_equal(cwba_model_create(CWBA_ARCH_RESNET18, f->resnet_w, 32, &m, &err), CWBA_OK);
        assert_int_equal(cwba_model_forward(m, x, batch, y, &err), CWBA_OK);
        if (memcmp(y, ref, sizeof y) != 0) fail_msg("%s kernels change resnet18 logits", isas[i]);
        cwba_model_free(m);
        ran++;
    }
    assert_true(nn_gemm_set_isa(best));
    assert_true(ran >= 1); /* scalar is always there */
    free(x);
}

/* With AVX-512 the models run in the channel-blocked layout (and switch to
 * the (C, N, H, W) layout for the tap-skipping convolutions of 2x2 planes
 * at batch 32); with AVX2 they run in (C, N, H, W) throughout. Both give the
 * same bits: whole passes, and front + back passes whose back half starts
 * with a lone batch norm or ReLU. */
static void blocked_case(cwba_arch a, int size, int batch, const char *split)
{
    cwba_error err;
    cwba_weights *w = NULL;
    assert_int_equal(cwba_weights_synthetic(a, 10, 3, &w, &err), CWBA_OK);
    const char *isas[2] = {nn_gemm_isa(), "avx2"};
    float *y[2] = {NULL, NULL};
    float *x = NULL;
    for (int v = 0; v < 2; v++) {
        assert_true(nn_gemm_set_isa(isas[v]));
        cwba_model *m = NULL;
        assert_int_equal(cwba_model_create(a, w, size, &m, &err), CWBA_OK);
        if (!x) x = input(m, batch, "blocked-input");
        y[v] = malloc((size_t)batch * 10 * sizeof(float));
        assert_non_null(y[v]);
        if (split) {
            int si;
            assert_int_equal(cwba_model_find_split(m, split, &si, &err), CWBA_OK);
            float *f = malloc((size_t)batch * feat_size(m, si) * sizeof *f);
            assert_non_null(f);
            assert_int_equal(cwba_model_forward_front(m, si, x, batch, f, &err), CWBA_OK);
            assert_int_equal(cwba_model_forward_back(m, si, f, batch, y[v], &err), CWBA_OK);
            free(f);
        } else {
            assert_int_equal(cwba_model_forward(m, x, batch, y[v], &err), CWBA_OK);
        }
        cwba_model_free(m);
    }
    assert_true(nn_gemm_set_isa(isas[0]));
    if (memcmp(y[0], y[1], (size_t)batch * 10 * sizeof(float)) != 0)
        fail_msg("%s %d px batch %d split %s: blocked layout changes the logits", cwba_arch_name(a),
                 size, batch, split ? split : "none");
    free(x);
    free(y[0]);
    free(y[1]);
    cwba_weights_free(w);
}

static void test_blocked_layout_agrees(void **state)
{
    (void)state;
    const char *best = nn_gemm_isa();
    if (!nn_isa_avx512() || !nn_gemm_set_isa("avx2")) skip(); /* nothing to compare */
    assert_true(nn_gemm_set_isa(best));
    cwba_set_threads(2);
    blocked_case(CWBA_ARCH_RESNET18, 64, 32, NULL);
    blocked_case(CWBA_ARCH_RESNET18, 64, 2, "conv1");
    blocked_case(CWBA_ARCH_RESNET18, 64, 2, "layer2");
    blocked_case(CWBA_ARCH_ALEXNET, 64, 2, "features.0");
    blocked_case(CWBA_ARCH_VGG16, 32, 2, NULL);
    cwba_set_threads(1);
}

/* ------------------------------------------------- Winograd arithmetic */

/* cwba_model_set_conv_algo(WINOGRAD): logits within a small tolerance of
 * the direct ones (and, with AVX-512, not equal to them: the path ran), the
 * same bits however batched and at 1 and 2 threads, and the direct bits
 * back when switched off. */
static void wino_case(cwba_model *m, const char *split, const char *const *splits, int nsplits)
{
    const int batch = 3, k = cwba_model_num_classes(m);
    cwba_error err;
    float *x = input(m, batch, "wino-input");
    float *yd = malloc((size_t)batch * k * sizeof *yd), *yw = malloc((size_t)batch * k * sizeof *yw);
    float *y2 = malloc((size_t)batch * k * sizeof *y2);
    assert_true(yd && yw && y2);
    assert_int_equal(cwba_model_conv_algo(m), CWBA_CONV_DIRECT);
    assert_int_equal(cwba_model_forward(m, x, batch, yd, &err), CWBA_OK);
    assert_int_equal(cwba_model_set_conv_algo(m, CWBA_CONV_WINOGRAD, &err), CWBA_OK);
    assert_int_equal(cwba_model_conv_algo(m), CWBA_CONV_WINOGRAD);
    assert_int_equal(cwba_model_forward(m, x, batch, yw, &err), CWBA_OK);
    double scale = 0, diff = 0;
    for (int i = 0; i < batch * k; i++) {
        if (fabs(yd[i]) > scale) scale = fabs(yd[i]);
        if (fabs((double)yd[i] - yw[i]) > diff) diff = fabs((double)yd[i] - yw[i]);
    }
    print_message("%s: Winograd logits differ from direct by %.3g (largest logit %.3g)\n",
                  cwba_arch_name(cwba_model_arch(m)), diff, scale);
    if (!(diff <= 1e-4 * scale)) fail_msg("Winograd logits off by %g of %g", diff, scale);
    if (nn_isa_avx512() && diff == 0) fail_msg("Winograd arithmetic did not run");
    check_batching(m, splits, nsplits);
    check_threads(m, split);
    assert_int_equal(cwba_model_set_conv_algo(m, CWBA_CONV_DIRECT, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward(m, x, batch, y2, &err), CWBA_OK);
    assert_memory_equal(y2, yd, (size_t)batch * k * sizeof *y2);
    free(x);
    free(yd);
    free(yw);
    free(y2);
}

static void wino_case_none(cwba_model *m)
{
    const int k = cwba_model_num_classes(m);
    cwba_error err;
    float *x = input(m, 2, "wino-input");
    float *yd = malloc((size_t)2 * k * sizeof *yd), *yw = malloc((size_t)2 * k * sizeof *yw);
    assert_true(yd && yw);
    assert_int_equal(cwba_model_forward(m, x, 2, yd, &err), CWBA_OK);
    assert_int_equal(cwba_model_set_conv_algo(m, CWBA_CONV_WINOGRAD, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward(m, x, 2, yw, &err), CWBA_OK);
    assert_int_equal(cwba_model_set_conv_algo(m, CWBA_CONV_DIRECT, &err), CWBA_OK);
    assert_memory_equal(yd, yw, (size_t)2 * k * sizeof *yd);
    free(x);
    free(yd);
    free(yw);
}

static void test_winograd_models(void **state)
{
    fixture *f = *state;
    static const char *const rs[] = {"conv1", "layer1.0", "layer2", "layer3"};
    wino_case(f->resnet64, "layer2", rs, 4);
    static const char *const vs[] = {"features.4", "features.17", "features.30"};
    wino_case(f->vgg32, "features.23", vs, 3);
    /* AlexNet at 64 px has no layer the transform applies to (3x3 planes):
     * the same bits. */
    wino_case_none(f->alexnet64);
}

static void test_conv_algo_api(void **state)
{
    fixture *f = *state;
    cwba_error err;
    cwba_conv_algo a = CWBA_CONV_DIRECT;
    assert_int_equal(cwba_conv_algo_parse("winograd", &a, &err), CWBA_OK);
    assert_int_equal(a, CWBA_CONV_WINOGRAD);
    assert_string_equal(cwba_conv_algo_name(a), "winograd");
    assert_int_equal(cwba_conv_algo_parse("direct", &a, &err), CWBA_OK);
    assert_int_equal(a, CWBA_CONV_DIRECT);
    assert_string_equal(cwba_conv_algo_name(a), "direct");
    assert_int_equal(cwba_conv_algo_parse("fft", &a, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "fft"));
    assert_int_equal(cwba_conv_algo_parse(NULL, &a, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_set_conv_algo(NULL, CWBA_CONV_WINOGRAD, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_set_conv_algo(f->resnet32, (cwba_conv_algo)7, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_conv_algo(f->resnet32), CWBA_CONV_DIRECT);
}

/* ------------------------------------------------------------ validation */

/* A copy of src without `skip`; NULL skip copies everything. */
static cwba_weights *copy_without(const cwba_weights *src, const char *skip)
{
    cwba_weights *w = cwba_weights_new();
    assert_non_null(w);
    cwba_error err;
    for (size_t i = 0; i < src->count; i++) {
        const cwba_tensor_entry *e = &src->entries[i];
        if (skip && strcmp(e->name, skip) == 0) continue;
        float *d = malloc(e->numel * sizeof *d);
        assert_non_null(d);
        memcpy(d, e->data, e->numel * sizeof *d);
        assert_int_equal(cwba_weights_add(w, e->name, e->ndim, e->shape, d, &err), CWBA_OK);
    }
    return w;
}

static void add_tensor(cwba_weights *w, const char *name, int ndim, const int64_t *shape, int integer)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float *d = integer ? NULL : calloc(n, sizeof *d);
    cwba_error err;
    assert_int_equal(cwba_weights_add(w, name, ndim, shape, d, &err), CWBA_OK);
}

static void expect_create_error(cwba_arch a, const cwba_weights *w, int size, cwba_status st,
                                const char *s1, const char *s2)
{
    cwba_model *m = (cwba_model *)1;
    cwba_error err;
    assert_int_equal(cwba_model_create(a, w, size, &m, &err), st);
    assert_null(m);
    if (s1 && !strstr(err.msg, s1)) fail_msg("message '%s' lacks '%s'", err.msg, s1);
    if (s2 && !strstr(err.msg, s2)) fail_msg("message '%s' lacks '%s'", err.msg, s2);
}

static void test_weight_validation(void **state)
{
    fixture *f = *state;
    cwba_error err;
    /* Missing tensor. */
    cwba_weights *w = copy_without(f->resnet_w, "layer3.1.bn2.running_var");
    expect_create_error(CWBA_ARCH_RESNET18, w, 32, CWBA_E_SHAPE, "missing tensor layer3.1.bn2.running_var", "(256)");
    cwba_weights_free(w);
    /* Wrong shape: both shapes named. */
    w = copy_without(f->resnet_w, "layer2.0.downsample.0.weight");
    add_tensor(w, "layer2.0.downsample.0.weight", 4, (const int64_t[]){128, 64, 3, 3}, 0);
    expect_create_error(CWBA_ARCH_RESNET18, w, 32, CWBA_E_SHAPE, "layer2.0.downsample.0.weight has shape (128, 64, 3, 3)",
                        "expected (128, 64, 1, 1)");
    cwba_weights_free(w);
    /* Unknown float tensor. */
    w = copy_without(f->resnet_w, NULL);
    add_tensor(w, "layer5.0.conv1.weight", 4, (const int64_t[]){1, 1, 1, 1}, 0);
    expect_create_error(CWBA_ARCH_RESNET18, w, 32, CWBA_E_SHAPE, "unexpected tensor layer5.0.conv1.weight", NULL);
    cwba_weights_free(w);
    /* Integer tensors (num_batches_tracked) are ignored. */
    w = copy_without(f->resnet_w, NULL);
    add_tensor(w, "bn1.num_batches_tracked", 0, NULL, 1);
    add_tensor(w, "layer1.0.bn1.num_batches_tracked", 0, NULL, 1);
    cwba_model *m = NULL;
    assert_int_equal(cwba_model_create(CWBA_ARCH_RESNET18, w, 32, &m, &err), CWBA_OK);
    cwba_model_free(m);
    cwba_weights_free(w);
    /* num_classes comes from fc.weight; fc.bias must agree. */
    w = copy_without(f->resnet_w, "fc.bias");
    add_tensor(w, "fc.bias", 1, (const int64_t[]){7}, 0);
    expect_create_error(CWBA_ARCH_RESNET18, w, 32, CWBA_E_SHAPE, "fc.bias has shape (7)", "expected (10)");
    cwba_weights_free(w);
    w = copy_without(f->resnet_w, "fc.weight");
    expect_create_error(CWBA_ARCH_RESNET18, w, 32, CWBA_E_SHAPE, "missing tensor fc.weight", NULL);
    cwba_weights_free(w);
    /* Weights of another architecture. */
    expect_create_error(CWBA_ARCH_ALEXNET, f->resnet_w, 64, CWBA_E_SHAPE, "classifier.6.weight", NULL);
    expect_create_error(CWBA_ARCH_RESNET18, f->alexnet_w, 64, CWBA_E_SHAPE, "fc.weight", NULL);

    /* Another class count is taken from the weights. */
    assert_int_equal(cwba_weights_synthetic(CWBA_ARCH_RESNET18, 7, 3, &w, &err), CWBA_OK);
    assert_int_equal(cwba_model_create(CWBA_ARCH_RESNET18, w, 32, &m, &err), CWBA_OK);
    assert_int_equal(cwba_model_num_classes(m), 7);
    float *x = input(m, 1, "input"), y[7];
    assert_int_equal(cwba_model_forward(m, x, 1, y, &err), CWBA_OK);
    for (int i = 0; i < 7; i++) assert_true(isfinite(y[i]));
    /* Call errors. */
    assert_int_equal(cwba_model_forward(m, x, 0, y, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_forward_front(m, 16, x, 1, y, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_forward_back(m, -1, x, 1, y, &err), CWBA_E_ARG);
    assert_int_equal(cwba_model_forward(m, NULL, 1, y, &err), CWBA_E_ARG);
    free(x);
    cwba_model_free(m);
    cwba_weights_free(w);
}

static void test_input_size_limits(void **state)
{
    fixture *f = *state;
    /* AlexNet at 32 px: features.12's max-pool would get a 1x1 input. */
    expect_create_error(CWBA_ARCH_ALEXNET, f->alexnet_w, 32, CWBA_E_ARG, "too small", "features.12");
    expect_create_error(CWBA_ARCH_ALEXNET, f->alexnet_w, 6, CWBA_E_ARG, "features.0", NULL);
    expect_create_error(CWBA_ARCH_RESNET18, f->resnet_w, 0, CWBA_E_ARG, "input size 0", NULL);
    expect_create_error(CWBA_ARCH_RESNET18, f->resnet_w, 100000, CWBA_E_ARG, "input size", NULL);
    /* The smallest AlexNet input (63 px) works; ResNet18 runs down to 1 px. */
    cwba_model *m = NULL;
    cwba_error err;
    assert_int_equal(cwba_model_create(CWBA_ARCH_ALEXNET, f->alexnet_w, 63, &m, &err), CWBA_OK);
    cwba_model_free(m);
    expect_create_error(CWBA_ARCH_ALEXNET, f->alexnet_w, 62, CWBA_E_ARG, "features.12", NULL);
    assert_int_equal(cwba_model_create(CWBA_ARCH_RESNET18, f->resnet_w, 1, &m, &err), CWBA_OK);
    float x[3] = {0.5f, -0.25f, 1.0f}, y[10];
    assert_int_equal(cwba_model_forward(m, x, 1, y, &err), CWBA_OK);
    cwba_model_free(m);
    cwba_model_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthetic_vectors),
        cmocka_unit_test(test_split_shapes),
        cmocka_unit_test(test_front_back_equals_forward),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_thread_invariance),
        cmocka_unit_test(test_kernel_paths_agree),
        cmocka_unit_test(test_blocked_layout_agrees),
        cmocka_unit_test(test_winograd_models),
        cmocka_unit_test(test_conv_algo_api),
        cmocka_unit_test(test_weight_validation),
        cmocka_unit_test(test_input_size_limits),
        cmocka_unit_test(test_more_archs),
        cmocka_unit_test(test_fast_paths),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
