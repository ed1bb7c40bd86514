/* Rates on real features: the reference Fashion-MNIST models split at our
 * split points, features of the first test images quantized (uniform and
 * log, b = 2..7, no allocation), coded in both payload modes. Prints the
 * real bits per element and checks that the adaptive mode is below the
 * fixed-alphabet cost on these ReLU features, and that every stream decodes
 * to the quantizer's output bit for bit. Skips without the dataset. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba.h"

#define IMAGES 4

typedef struct model_case {
    cwba_arch arch;
    const char *weights;
    const char *splits[3];
} model_case;

static const model_case CASES[] = {
    {CWBA_ARCH_RESNET18, "models/resnet18_fmnist64.safetensors", {"layer1", "layer2", "layer3"}},
    {CWBA_ARCH_ALEXNET, "models/alexnet_fmnist64.safetensors.xz", {"features.5", NULL, NULL}},
    {CWBA_ARCH_VGG16, "models/vgg16_fmnist64.safetensors.xz", {"features.30", NULL, NULL}},
};

static void run_split(cwba_model *m, const char *arch, const char *split, const float *in)
{
    cwba_error err;
    int s, C, H, W;
    assert_int_equal(cwba_model_find_split(m, split, &s, &err), CWBA_OK);
    cwba_model_split_shape(m, s, &C, &H, &W);
    int HW = H * W;
    size_t total = (size_t)C * HW;
    float *feat = malloc(IMAGES * total * sizeof *feat); /* (IMAGES, C, H, W) */
    float *xq = malloc(total * sizeof *xq), *xd = malloc(total * sizeof *xd);
    uint32_t *codes = malloc(total * sizeof *codes);
    int *n = malloc((size_t)C * sizeof *n);
    assert_true(feat && xq && xd && codes && n);
    assert_int_equal(cwba_model_forward_front(m, s, in, IMAGES, feat, &err), CWBA_OK);
    for (int qi = 0; qi < 2; qi++) {
        cwba_quant q = (cwba_quant)qi;
        for (int bits = 2; bits <= 7; bits++) {
            size_t bytes[2] = {0, 0}, zeros = 0, all_bytes = 0;
            double ideal = 0;
            for (int c = 0; c < C; c++) n[c] = (1 << bits) - 1;
            for (int img = 0; img < IMAGES; img++) {
                const float *x = feat + img * total; /* (C, H, W) */
                cwba_stream_info si;
                memset(&si, 0, sizeof si);
                snprintf(si.model, sizeof si.model, "%s", arch);
                snprintf(si.split, sizeof si.split, "%s", split);
                si.C = C;
                si.H = H;
                si.W = W;
                si.quant = q;
                cwba_feature_range(x, total, &si.mn, &si.mx);
                assert_int_equal(cwba_quantize_feature(q, x, C, HW, n, xq, codes, &err), CWBA_OK);
                for (size_t i = 0; i < total; i++) zeros += codes[i] == 0;
                for (int mode = 0; mode < 3; mode++) {
                    si.mode = (cwba_stream_mode)mode;
                    size_t cap = cwba_stream_bound(&si, n), len;
                    uint8_t *buf = malloc(cap);
                    cwba_stream_stats st;
                    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, &st, &err),
                                     CWBA_OK);
                    assert_int_equal(cwba_stream_decode(buf, len, NULL, NULL, 0, NULL, xd, total, &err),
                                     CWBA_OK);
                    assert_memory_equal(xd, xq, total * sizeof *xd);
                    if (mode < 2) bytes[mode] += st.payload_bytes;
                    if (mode == 0) ideal += st.ideal_bits;
                    if (mode == 2) all_bytes += len;
                    free(buf);
                }
            }
            double per = (double)IMAGES * total;
            char shape[32];
            snprintf(shape, sizeof shape, "%dx%dx%d", C, H, W);
            printf("  %-8s %-11s %-9s %-7s b=%d zeros %5.1f%%  fixed %.3f  adaptive %.3f "
                   "bit/elem (%+.1f%%)  auto stream %.3f bit/elem\n",
                   arch, split, shape, cwba_quant_name(q), bits, 100.0 * zeros / per,
                   bytes[0] * 8.0 / per, bytes[1] * 8.0 / per,
                   100.0 * ((double)bytes[1] / bytes[0] - 1), all_bytes * 8.0 / per);
            assert_true(bytes[0] * 8.0 <= ideal * 1.01);
            assert_true(bytes[1] < bytes[0]);
        }
    }
    free(feat);
    free(xq);
    free(xd);
    free(codes);
    free(n);
}

static void test_real_features(void **state)
{
    (void)state;
    const char *dir = tu_fmnist_dir();
    if (!dir) skip();
    char spec[600];
    snprintf(spec, sizeof spec, "fmnist:%s:test", dir);
    cwba_error err;
    cwba_preprocess pp = cwba_preprocess_fmnist();
    cwba_dataset *d = NULL;
    assert_int_equal(cwba_dataset_open(spec, &pp, &d, &err), CWBA_OK);
    size_t per = 3 * (size_t)pp.size * pp.size;
    float *in = malloc(IMAGES * per * sizeof *in); /* (IMAGES, 3, S, S) */
    assert_non_null(in);
    for (int i = 0; i < IMAGES; i++)
        assert_int_equal(cwba_dataset_get(d, i, in + i * per, NULL, &err), CWBA_OK);
    cwba_dataset_free(d);
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        cwba_weights *w = NULL;
        cwba_status st = cwba_weights_load(tu_path(CASES[k].weights), &w, &err);
        if (st) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(st, CWBA_OK);
        cwba_model *m = NULL;
        assert_int_equal(cwba_model_create(CASES[k].arch, w, pp.size, &m, &err), CWBA_OK);
        cwba_weights_free(w);
        for (int j = 0; j < 3 && CASES[k].splits[j]; j++)
            run_split(m, cwba_arch_name(CASES[k].arch), CASES[k].splits[j], in);
        cwba_model_free(m);
    }
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_real_features)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
