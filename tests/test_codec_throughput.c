/* Encoding and decoding throughput of the bitstream, in MB/s of feature data
 * (float32, 4 bytes an element), for both payload modes on ReLU-like
 * features quantized with the uniform quantizer. Also checks the round trip
 * of what it timed. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/codec.h"
#include "cwba/quant.h"

static uint64_t s = 0xD1B54A32D192ED03ull;
static double unit(void)
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / 9007199254740992.0;
}

static void bench_shape(const char *model, const char *split, int C, int H, int W, int bits)
{
    int HW = H * W;
    size_t total = (size_t)C * HW;
    float *x = malloc(total * sizeof *x), *xq = malloc(total * sizeof *xq);
    float *xd = malloc(total * sizeof *xd);
    uint32_t *codes = malloc(total * sizeof *codes);
    int *n = malloc((size_t)C * sizeof *n);
    assert_true(x && xq && xd && codes && n);
    for (size_t i = 0; i < total; i++) {
        double g = sqrt(-2 * log(unit() + 1e-300)) * cos(6.283185307 * unit()) - 0.6;
        x[i] = g > 0 ? (float)g : 0.0f;
    }
    long T = ((1L << bits) - 1) * C;
    for (int c = 0; c < C; c++) n[c] = 1;
    for (long k = C; k < T; k++) n[(size_t)(unit() * C)]++;
    cwba_stream_info si;
    memset(&si, 0, sizeof si);
    snprintf(si.model, sizeof si.model, "%s", model);
    snprintf(si.split, sizeof si.split, "%s", split);
    si.C = C;
    si.H = H;
    si.W = W;
    si.quant = CWBA_QUANT_UNIFORM;
    cwba_feature_range(x, total, &si.mn, &si.mx);
    cwba_error err;
    assert_int_equal(cwba_quantize_feature(si.quant, x, C, HW, n, xq, codes, &err), CWBA_OK);
    for (int mode = 0; mode < 2; mode++) {
        si.mode = (cwba_stream_mode)mode;
        size_t cap = cwba_stream_bound(&si, n), len = 0;
        uint8_t *buf = malloc(cap);
        assert_non_null(buf);
        double mb = (double)total * 4 / 1e6;
        int reps = 0;
        double t0 = cwba_now(), t1;
        do {
            assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err), CWBA_OK);
            reps++;
            t1 = cwba_now();
        } while (t1 - t0 < 0.2);
        double enc = mb * reps / (t1 - t0);
        reps = 0;
        t0 = cwba_now();
        do {
            assert_int_equal(cwba_stream_decode(buf, len, NULL, NULL, 0, NULL, xd, total, &err),
                             CWBA_OK);
            reps++;
            t1 = cwba_now();
        } while (t1 - t0 < 0.2);
        double dec = mb * reps / (t1 - t0);
        assert_memory_equal(xd, xq, total * sizeof *xd);
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%dx%d", C, H, W);
        printf("  %-8s %-11s %-10s b=%d %-8s %8zu B (%.3f bit/elem)  encode %7.1f MB/s  "
               "decode %7.1f MB/s\n",
               model, split, shape, bits, cwba_stream_mode_name(si.mode), len, len * 8.0 / total,
               enc, dec);
        free(buf);
    }
    free(x);
    free(xq);
    free(xd);
    free(codes);
    free(n);
}

static void test_throughput(void **state)
{
    (void)state;
    bench_shape("resnet18", "layer1", 64, 56, 56, 4);
    bench_shape("resnet18", "layer3", 256, 14, 14, 2);
    bench_shape("vgg16", "features.30", 512, 7, 7, 7);
    bench_shape("resnet18", "layer3", 256, 4, 4, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_throughput)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
