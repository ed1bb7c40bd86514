/* Bitstream round trips, rates and argument checks (docs/bitstream.md). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/codec.h"
#include "cwba/quant.h"

typedef struct shape {
    const char *model, *split;
    int C, H, W;
} shape;

/* Our split points at the Fashion-MNIST 64 px input and at ImageNet 224 px. */
static const shape SHAPES[] = {
    {"resnet18", "layer1", 64, 16, 16},     {"resnet18", "layer2", 128, 8, 8},
    {"resnet18", "layer3", 256, 4, 4},      {"alexnet", "features.5", 192, 3, 3},
    {"vgg16", "features.30", 512, 2, 2},    {"resnet18", "layer1", 64, 56, 56},
    {"resnet18", "layer2", 128, 28, 28},    {"resnet18", "layer3", 256, 14, 14},
    {"alexnet", "features.5", 192, 13, 13}, {"vgg16", "features.30", 512, 7, 7},
};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rnd_unit(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static double rnd_gauss(void)
{
    double u = rnd_unit() + 1e-300, v = rnd_unit();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static cwba_stream_info make_info(const shape *s, cwba_quant q, cwba_stream_mode mode)
{
    cwba_stream_info si;
    memset(&si, 0, sizeof si);
    snprintf(si.model, sizeof si.model, "%s", s->model);
    snprintf(si.split, sizeof si.split, "%s", s->split);
    si.C = s->C;
    si.H = s->H;
    si.W = s->W;
    si.quant = q;
    si.mn = -1.5f;
    si.mx = 7.25f;
    si.bits = 4;
    si.clip = 0.9f;
    si.mode = mode;
    return si;
}

/* A random allocation with sum(n) = (2^b - 1) * C, every n_c >= 1, skewed
 * towards low channel indices as greedy allocations are. */
static void random_allocation(int *n, int C, int bits)
{
    long T = ((1L << bits) - 1) * C;
    for (int c = 0; c < C; c++) n[c] = 1;
    for (long k = C; k < T; k++) {
        int c = (int)((rnd() % (uint64_t)C) * (rnd() % (uint64_t)C) / (uint64_t)C);
        n[c]++;
    }
}

/* Encodes, decodes, and checks n and the codes come back; returns stats. */
static cwba_stream_stats roundtrip_codes(const cwba_stream_info *si, const int *n,
                                         const uint32_t *codes)
{
    size_t total = (size_t)si->C * si->H * si->W;
    size_t cap = cwba_stream_bound(si, n);
    assert_true(cap > 0);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t len = 0;
    cwba_stream_stats stats;
    cwba_error err;
    cwba_status st = cwba_stream_encode(si, n, codes, buf, cap, &len, &stats, &err);
    if (st) fprintf(stderr, "encode: %s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    assert_true(len <= cap);
    assert_int_equal(stats.total_bytes, len);
    assert_int_equal(stats.header_bytes + stats.side_bytes + stats.payload_bytes, len);

    cwba_stream_info got;
    st = cwba_stream_decode_header(buf, len, &got, &err);
    assert_int_equal(st, CWBA_OK);
    assert_string_equal(got.model, si->model);
    assert_string_equal(got.split, si->split);
    assert_int_equal(got.C, si->C);
    assert_int_equal(got.H, si->H);
    assert_int_equal(got.W, si->W);
    assert_int_equal(got.quant, si->quant);
    assert_int_equal(got.mode, stats.mode);
    if (si->mode != CWBA_STREAM_AUTO) assert_int_equal(got.mode, si->mode);

    int *n2 = malloc((size_t)si->C * sizeof *n2);
    uint32_t *c2 = malloc(total * sizeof *c2);
    assert_non_null(n2);
    assert_non_null(c2);
    st = cwba_stream_decode(buf, len, &got, n2, (size_t)si->C, c2, NULL, total, &err);
    if (st) fprintf(stderr, "decode: %s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    for (int c = 0; c < si->C; c++)
        assert_int_equal(n2[c], si->quant == CWBA_QUANT_DOREFA ? (1 << si->bits) - 1 : n[c]);
    assert_memory_equal(c2, codes, total * sizeof *c2);
    free(n2);
    free(c2);
    free(buf);
    return stats;
}

static void fill_random_codes(uint32_t *codes, const int *n, int C, int HW)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HW; i++)
            codes[(size_t)c * HW + i] = (uint32_t)(rnd() % ((uint64_t)n[c] + 1));
}

/* Random codes at every split shape, both modes and auto, constant and
 * allocated n_c, n_c = 1 and large n_c. */
static void test_roundtrip_random_codes(void **state)
{
    (void)state;
    const cwba_stream_mode modes[] = {CWBA_STREAM_FIXED, CWBA_STREAM_ADAPTIVE, CWBA_STREAM_AUTO};
    for (size_t s = 0; s < NSHAPES; s++) {
        const shape *sh = &SHAPES[s];
        int C = sh->C, HW = sh->H * sh->W;
        int *n = malloc((size_t)C * sizeof *n);
        uint32_t *codes = malloc((size_t)C * HW * sizeof *codes);
        for (int pattern = 0; pattern < 5; pattern++) {
            for (int c = 0; c < C; c++) {
                switch (pattern) {
                case 0: n[c] = 1; break;
                case 1: n[c] = 3; break;
                case 2: n[c] = 1 + (int)(rnd() % 4096); break;
                case 3: n[c] = c % 7 == 0 ? CWBA_STREAM_MAX_N - (int)(rnd() % 3) : 1 + c % 5; break;
                default: break;
                }
            }
            if (pattern == 4) random_allocation(n, C, 3);
            fill_random_codes(codes, n, C, HW);
            for (size_t m = 0; m < 3; m++) {
                cwba_stream_info si = make_info(sh, CWBA_QUANT_UNIFORM, modes[m]);
                roundtrip_codes(&si, n, codes);
            }
        }
        free(n);
        free(codes);
    }
}

/* Extreme codes: all zero, all at n_c, in both modes and every octave edge. */
static void test_roundtrip_extremes(void **state)
{
    (void)state;
    const shape sh = {"resnet18", "layer3", 256, 4, 4};
    int C = sh.C, HW = 16;
    int n[256];
    uint32_t codes[256 * 16];
    for (int which = 0; which < 3; which++) {
        for (int c = 0; c < C; c++) {
            /* Full octaves 2^k-1, single-value last octaves 2^k, then others. */
            if (c < 24)
                n[c] = (1 << (c + 1)) - 1;
            else if (c < 47)
                n[c] = 1 << (c - 23);
            else
                n[c] = 1 + (c * 37) % 300;
            for (int i = 0; i < HW; i++) {
                uint32_t v = which == 0 ? 0u : which == 1 ? (uint32_t)n[c] : (uint32_t)(i * n[c] / (HW - 1));
                codes[c * HW + i] = v;
            }
        }
        for (int m = 0; m < 2; m++) {
            cwba_stream_info si = make_info(&sh, CWBA_QUANT_LOG, (cwba_stream_mode)m);
            roundtrip_codes(&si, n, codes);
        }
    }
}

/* A ReLU-like feature: per channel a negative-mean Gaussian clipped at 0, so
 * most values are 0 and the rest skewed small, with spatial smoothness. */
static void relu_feature(float *x, int C, int H, int W, double zero_bias)
{
    for (int c = 0; c < C; c++) {
        double mu = -zero_bias * rnd_unit() - 0.2 * (c % 3), sd = 0.5 + rnd_unit();
        float *xc = x + (size_t)c * H * W; /* (H, W) */
        for (int y = 0; y < H; y++)
            for (int w = 0; w < W; w++) {
                double v = mu + sd * rnd_gauss();
                if (w > 0) v = 0.5 * v + 0.5 * xc[y * W + w - 1];
                xc[y * W + w] = v > 0 ? (float)v : 0.0f;
            }
    }
}

/* decode(encode(x)) gives exactly the quantizer's xhat: uniform and log with
 * allocation off (n = 2^b-1) and on, DoReFa, and the mn == mx feature. */
static void test_roundtrip_quantizers(void **state)
{
    (void)state;
    for (size_t s = 0; s < NSHAPES; s++) {
        const shape *sh = &SHAPES[s];
        int C = sh->C, HW = sh->H * sh->W;
        size_t total = (size_t)C * HW;
        float *x = malloc(total * sizeof *x), *xq = malloc(total * sizeof *xq);
        float *xd = malloc(total * sizeof *xd);
        uint32_t *codes = malloc(total * sizeof *codes);
        int *n = malloc((size_t)C * sizeof *n), *n2 = malloc((size_t)C * sizeof *n2);
        assert_true(x && xq && xd && codes && n && n2);
        relu_feature(x, C, sh->H, sh->W, 1.0);
        for (int qi = 0; qi < 3; qi++) {
            cwba_quant q = (cwba_quant)qi;
            for (int bits = 2; bits <= 7; bits += (s < 5 ? 1 : 5)) {
                for (int alloc = 0; alloc < 2; alloc++) {
                    if (q == CWBA_QUANT_DOREFA && alloc) continue;
                    cwba_stream_info si = make_info(sh, q, CWBA_STREAM_AUTO);
                    cwba_error err;
                    if (q == CWBA_QUANT_DOREFA) {
                        si.bits = bits;
                        si.clip = 0.9f;
                        int levels = (1 << bits) - 1;
                        for (int c = 0; c < C; c++) n[c] = levels;
                        cwba_dorefa(x, total, bits, si.clip, xq);
                        for (size_t i = 0; i < total; i++)
                            codes[i] = cwba_quant_code_ref(q, x[i], 0.0f, si.clip, levels);
                    } else {
                        if (alloc)
                            random_allocation(n, C, bits);
                        else
                            for (int c = 0; c < C; c++) n[c] = (1 << bits) - 1;
                        cwba_feature_range(x, total, &si.mn, &si.mx);
                        assert_int_equal(cwba_quantize_feature(q, x, C, HW, n, xq, codes, &err),
                                         CWBA_OK);
                    }
                    size_t cap = cwba_stream_bound(&si, n);
                    uint8_t *buf = malloc(cap);
                    size_t len;
                    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err),
                                     CWBA_OK);
                    cwba_status st = cwba_stream_decode(buf, len, NULL, n2, (size_t)C, NULL, xd,
                                                        total, &err);
                    if (st) fprintf(stderr, "%s\n", err.msg);
                    assert_int_equal(st, CWBA_OK);
                    /* Bit for bit, not within a tolerance. */
                    assert_memory_equal(xd, xq, total * sizeof *xd);
                    assert_memory_equal(n2, n, (size_t)C * sizeof *n);
                    free(buf);
                }
            }
        }
        /* A constant feature: the range is empty, the payload too. */
        for (size_t i = 0; i < total; i++) x[i] = 0.375f;
        for (int c = 0; c < C; c++) n[c] = 1 + c % 4;
        cwba_stream_info si = make_info(sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_AUTO);
        cwba_feature_range(x, total, &si.mn, &si.mx);
        cwba_error err;
        assert_int_equal(cwba_quantize_feature(si.quant, x, C, HW, n, xq, codes, &err), CWBA_OK);
        size_t cap = cwba_stream_bound(&si, n), len;
        uint8_t *buf = malloc(cap);
        cwba_stream_stats stats;
        assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, &stats, &err), CWBA_OK);
        assert_int_equal(stats.payload_bytes, 0);
        assert_int_equal(cwba_stream_decode(buf, len, NULL, n2, (size_t)C, NULL, xd, total, &err),
                         CWBA_OK);
        assert_memory_equal(xd, xq, total * sizeof *xd);
        free(buf);
        free(x);
        free(xq);
        free(xd);
        free(codes);
        free(n);
        free(n2);
    }
}

/* Mode 0 reaches the exact cost of the codes: payload within 1% of
 * sum_c HW*log2(n_c+1) at every split shape, bits 1..7, allocation on/off. */
static void test_fixed_rate_near_ideal(void **state)
{
    (void)state;
    double worst = 0;
    printf("  shape                 bits alloc  ideal(B)  payload(B)  overhead  side(B) header(B)\n");
    for (size_t s = 0; s < NSHAPES; s++) {
        const shape *sh = &SHAPES[s];
        int C = sh->C, HW = sh->H * sh->W;
        int *n = malloc((size_t)C * sizeof *n);
        uint32_t *codes = malloc((size_t)C * HW * sizeof *codes);
        for (int bits = 1; bits <= 7; bits++)
            for (int alloc = 0; alloc < 2; alloc++) {
                if (alloc && bits == 1) continue;
                if (alloc)
                    random_allocation(n, C, bits);
                else
                    for (int c = 0; c < C; c++) n[c] = (1 << bits) - 1;
                fill_random_codes(codes, n, C, HW);
                cwba_stream_info si = make_info(sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_FIXED);
                cwba_stream_stats st = roundtrip_codes(&si, n, codes);
                double over = st.payload_bytes * 8.0 / st.ideal_bits - 1.0;
                if (over > worst) worst = over;
                if (bits == 2 || bits == 4 || bits == 7)
                    printf("  %-9s %-11s %dx%dx%d  %d  %-5s %9.1f %11zu  %+7.3f%% %7zu %8zu\n",
                           sh->model, sh->split, C, sh->H, sh->W, bits, alloc ? "on" : "off",
                           st.ideal_bits / 8, st.payload_bytes, 100 * over, st.side_bytes,
                           st.header_bytes);
                assert_true(over < 0.01);
                /* Random codes carry their full information: no magic below it. */
                assert_true(st.payload_bytes * 8.0 >= st.ideal_bits * 0.99);
            }
        free(n);
        free(codes);
    }
    printf("  worst mode-0 payload overhead: %.3f%%\n", 100 * worst);
}

/* The adaptive mode goes below the fixed-alphabet cost on ReLU-like codes. */
static void test_adaptive_gain_on_skewed(void **state)
{
    (void)state;
    printf("  shape                  bits  zeros  fixed(B) adaptive(B)  gain\n");
    for (size_t s = 0; s < NSHAPES; s++) {
        const shape *sh = &SHAPES[s];
        int C = sh->C, HW = sh->H * sh->W;
        size_t total = (size_t)C * HW;
        float *x = malloc(total * sizeof *x), *xq = malloc(total * sizeof *xq);
        uint32_t *codes = malloc(total * sizeof *codes);
        int *n = malloc((size_t)C * sizeof *n);
        relu_feature(x, C, sh->H, sh->W, 1.5);
        for (int bits = 2; bits <= 7; bits++) {
            for (int c = 0; c < C; c++) n[c] = (1 << bits) - 1;
            cwba_stream_info si = make_info(sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_FIXED);
            cwba_feature_range(x, total, &si.mn, &si.mx);
            cwba_error err;
            assert_int_equal(cwba_quantize_feature(si.quant, x, C, HW, n, xq, codes, &err), CWBA_OK);
            size_t zeros = 0;
            for (size_t i = 0; i < total; i++) zeros += codes[i] == 0;
            cwba_stream_stats f = roundtrip_codes(&si, n, codes);
            si.mode = CWBA_STREAM_ADAPTIVE;
            cwba_stream_stats a = roundtrip_codes(&si, n, codes);
            si.mode = CWBA_STREAM_AUTO;
            cwba_stream_stats au = roundtrip_codes(&si, n, codes);
            double gain = 1.0 - (double)a.payload_bytes / (double)f.payload_bytes;
            if (bits == 2 || bits == 4 || bits == 7)
                printf("  %-9s %-11s %dx%dx%d %d %5.1f%% %9zu %11zu %6.1f%%\n", sh->model,
                       sh->split, C, sh->H, sh->W, bits, 100.0 * zeros / total, f.payload_bytes,
                       a.payload_bytes, 100 * gain);
            assert_true(a.payload_bytes < f.payload_bytes);
            assert_int_equal(au.mode, CWBA_STREAM_ADAPTIVE);
            assert_int_equal(au.payload_bytes, a.payload_bytes);
        }
        free(x);
        free(xq);
        free(codes);
        free(n);
    }
}

/* On uniform random codes the adaptive model cannot win; AUTO keeps mode 0. */
static void test_auto_keeps_fixed_on_random(void **state)
{
    (void)state;
    const shape sh = {"resnet18", "layer2", 128, 8, 8};
    int n[128];
    uint32_t codes[128 * 64];
    for (int c = 0; c < 128; c++) n[c] = 15;
    fill_random_codes(codes, n, 128, 64);
    cwba_stream_info si = make_info(&sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_AUTO);
    cwba_stream_stats st = roundtrip_codes(&si, n, codes);
    assert_int_equal(st.mode, CWBA_STREAM_FIXED);
    assert_int_equal(st.side_bytes, 0); /* constant n_c: no side section */
}

static void test_bound_and_capacity(void **state)
{
    (void)state;
    const shape sh = {"alexnet", "features.5", 192, 3, 3};
    int n[192];
    uint32_t codes[192 * 9];
    random_allocation(n, 192, 4);
    fill_random_codes(codes, n, 192, 9);
    cwba_stream_info si = make_info(&sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_FIXED);
    size_t cap = cwba_stream_bound(&si, n), len = 0;
    uint8_t *buf = malloc(cap);
    cwba_error err;
    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err), CWBA_OK);
    size_t need = len;
    /* One byte short: an error that names both sizes, nothing written past it. */
    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, need - 1, &len, NULL, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "cwba_stream_bound"));
    assert_int_equal(len, need);
    /* The NULL-n bound covers any allocation; bad info gives 0. */
    assert_true(cwba_stream_bound(&si, NULL) >= cap);
    si.C = 0;
    assert_int_equal(cwba_stream_bound(&si, n), 0);
    free(buf);
}

static void test_encode_rejects_bad_input(void **state)
{
    (void)state;
    const shape sh = {"resnet18", "layer3", 256, 4, 4};
    int n[256];
    uint32_t codes[256 * 16];
    for (int c = 0; c < 256; c++) n[c] = 3;
    fill_random_codes(codes, n, 256, 16);
    uint8_t buf[4096];
    size_t len;
    cwba_error err;
    cwba_stream_info si = make_info(&sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_FIXED);

    codes[100] = 4; /* above n_c = 3 */
    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "exceeds n_c"));
    codes[100] = 3;
    n[7] = 0; /* a dropped channel: its codes must be 0 */
    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "exceeds n_c = 0"));
    n[7] = -1;
    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "n_c = -1"));
    n[7] = 3;
    cwba_stream_info bad = si;
    bad.mn = NAN;
    assert_int_equal(cwba_stream_encode(&bad, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    bad = si;
    bad.C = CWBA_STREAM_MAX_C + 1;
    assert_int_equal(cwba_stream_encode(&bad, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    bad = si;
    snprintf(bad.model, sizeof bad.model, "res net");
    assert_int_equal(cwba_stream_encode(&bad, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    bad = si;
    bad.quant = CWBA_QUANT_DOREFA;
    bad.bits = 3; /* n_c must then be 7 */
    assert_int_equal(cwba_stream_encode(&bad, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_E_ARG);
    assert_int_equal(cwba_stream_encode(&bad, NULL, codes, buf, sizeof buf, &len, NULL, &err), CWBA_OK);
}

static void test_expect_identity(void **state)
{
    (void)state;
    const shape sh = {"alexnet", "features.5", 192, 3, 3};
    int n[192];
    uint32_t codes[192 * 9];
    for (int c = 0; c < 192; c++) n[c] = 3;
    fill_random_codes(codes, n, 192, 9);
    cwba_stream_info si = make_info(&sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_FIXED), got;
    uint8_t buf[4096];
    size_t len;
    cwba_error err;
    assert_int_equal(cwba_stream_encode(&si, n, codes, buf, sizeof buf, &len, NULL, &err), CWBA_OK);
    assert_int_equal(cwba_stream_decode_header(buf, len, &got, &err), CWBA_OK);
    assert_int_equal(cwba_stream_expect(&got, "alexnet", "features.5", 192, 3, 3, &err), CWBA_OK);
    assert_int_equal(cwba_stream_expect(&got, "resnet18", "layer3", 256, 4, 4, &err), CWBA_E_FORMAT);
    assert_non_null(strstr(err.msg, "'alexnet'"));
    assert_non_null(strstr(err.msg, "'resnet18'"));
    assert_int_equal(cwba_stream_expect(&got, "alexnet", "features.5", 192, 6, 6, &err),
                     CWBA_E_FORMAT);
    /* Too small an output: an argument error, not an overflow. */
    int n2[192];
    uint32_t c2[192 * 9];
    assert_int_equal(cwba_stream_decode(buf, len, NULL, n2, 191, NULL, NULL, 0, &err), CWBA_E_ARG);
    assert_int_equal(cwba_stream_decode(buf, len, NULL, n2, 192, c2, NULL, 192 * 9 - 1, &err),
                     CWBA_E_ARG);
}

/* The edge convenience: quantize + encode; its xhat is what the cloud gets. */
static void test_encode_feature(void **state)
{
    (void)state;
    const shape sh = {"resnet18", "layer2", 128, 8, 8};
    int C = 128, HW = 64;
    size_t total = (size_t)C * HW;
    float *x = malloc(total * sizeof *x), *xe = malloc(total * sizeof *xe);
    float *xq = malloc(total * sizeof *xq), *xd = malloc(total * sizeof *xd);
    uint32_t *codes = malloc(total * sizeof *codes);
    int n[128];
    relu_feature(x, C, 8, 8, 1.0);
    random_allocation(n, C, 3);
    for (int qi = 0; qi < 3; qi++) {
        cwba_stream_info si = make_info(&sh, (cwba_quant)qi, CWBA_STREAM_AUTO);
        si.mn = NAN; /* ignored: set from the feature */
        si.bits = 3;
        cwba_error err;
        size_t cap = cwba_stream_bound(&si, NULL), len;
        uint8_t *buf = malloc(cap);
        cwba_stream_stats stats;
        cwba_status st = cwba_stream_encode_feature(&si, x, qi == 2 ? NULL : n, buf, cap, &len, xe,
                                                    &stats, &err);
        if (st) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(st, CWBA_OK);
        if (qi == 2)
            cwba_dorefa(x, total, 3, si.clip, xq);
        else
            assert_int_equal(cwba_quantize_feature(si.quant, x, C, HW, n, xq, codes, &err), CWBA_OK);
        assert_memory_equal(xe, xq, total * sizeof *xe);
        assert_int_equal(cwba_stream_decode(buf, len, NULL, NULL, 0, NULL, xd, total, &err), CWBA_OK);
        assert_memory_equal(xd, xq, total * sizeof *xd);
        free(buf);
    }
    x[5] = INFINITY;
    cwba_stream_info si = make_info(&sh, CWBA_QUANT_UNIFORM, CWBA_STREAM_AUTO);
    uint8_t small[64];
    size_t len;
    cwba_error err;
    assert_int_equal(cwba_stream_encode_feature(&si, x, n, small, sizeof small, &len, NULL, NULL, &err),
                     CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "not finite"));
    free(x);
    free(xe);
    free(xq);
    free(xd);
    free(codes);
}

/* DoReFa with clip > 1 (codes above 2^b - 1): decode reports n_c = 2^b - 1
 * as the format defines it, and a decoded stream re-encodes from its own n
 * and codes to the same bytes (a libFuzzer find: decode used to report the
 * alphabet top, which the encoder then rejected). */
static void test_dorefa_clip_reencode(void **state)
{
    (void)state;
    const shape sh = {"resnet18", "layer3", 16, 4, 4};
    const int C = sh.C, total = C * sh.H * sh.W;
    float *x = malloc((size_t)total * sizeof *x);
    uint32_t *codes = malloc((size_t)total * sizeof *codes);
    int n[16];
    assert_true(x && codes);
    relu_feature(x, C, sh.H, sh.W, 1.0);
    for (float clip = 0.5f; clip <= 4.0f; clip *= 2.0f) {
        for (int mode = 0; mode < 2; mode++) {
            cwba_stream_info si = make_info(&sh, CWBA_QUANT_DOREFA, (cwba_stream_mode)mode);
            si.bits = 3;
            si.clip = clip;
            cwba_error err;
            size_t cap = cwba_stream_bound(&si, NULL), len, len2;
            uint8_t *buf = malloc(cap), *re = malloc(cap);
            assert_true(buf && re);
            assert_int_equal(cwba_stream_encode_feature(&si, x, NULL, buf, cap, &len, NULL, NULL, &err),
                             CWBA_OK);
            cwba_stream_info di;
            assert_int_equal(cwba_stream_decode(buf, len, &di, n, (size_t)C, codes, NULL,
                                                (size_t)total, &err),
                             CWBA_OK);
            for (int c = 0; c < C; c++) assert_int_equal(n[c], 7);
            assert_int_equal(cwba_stream_encode(&di, n, codes, re, cap, &len2, NULL, &err), CWBA_OK);
            assert_int_equal(len2, len);
            assert_memory_equal(re, buf, len);
            free(buf);
            free(re);
        }
    }
    free(x);
    free(codes);
}

/* Rate-distortion allocations: n_c = 2^k_c - 1 with dropped channels
 * (k_c = 0). Every mode round-trips; flags bit 0 is set exactly when a
 * channel is dropped; the exponent side coding (n coding 3) is chosen and
 * costs less than the fixed alphabet over the span; a dropped channel
 * decodes to mn. */
static void test_dropped_channels_exp(void **state)
{
    (void)state;
    for (size_t s = 0; s < 5; s++) {
        const shape *sh = &SHAPES[s];
        int C = sh->C, HW = sh->H * sh->W;
        int *n = malloc((size_t)C * sizeof *n);
        uint32_t *codes = malloc((size_t)C * HW * sizeof *codes);
        float *xh = malloc((size_t)C * HW * sizeof *xh);
        assert_non_null(n);
        assert_non_null(codes);
        assert_non_null(xh);
        for (int drop = 0; drop < 2; drop++) {
            for (int m = 0; m < 3; m++) {
                for (int c = 0; c < C; c++) n[c] = (1 << (drop + (int)(rnd() % 5))) - 1;
                fill_random_codes(codes, n, C, HW);
                cwba_stream_info si = make_info(sh, CWBA_QUANT_UNIFORM,
                                                m == 0   ? CWBA_STREAM_FIXED
                                                : m == 1 ? CWBA_STREAM_ADAPTIVE
                                                         : CWBA_STREAM_AUTO);
                n[0] = 0; /* at least one dropped channel */
                for (int i = 0; i < HW; i++) codes[i] = 0;
                cwba_stream_stats st = roundtrip_codes(&si, n, codes);
                /* 4 candidates or 5 with 0: fixed costs log2(span+1) bits a channel */
                assert_true(st.side_bytes * 8.0 < C * log2(16.0 + drop * 16.0));
                size_t cap = cwba_stream_bound(&si, n), len = 0;
                uint8_t *buf = malloc(cap);
                assert_non_null(buf);
                cwba_error err;
                assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err),
                                 CWBA_OK);
                assert_int_equal(buf[5], 1); /* flags: dropped channels */
                assert_int_equal(cwba_stream_decode(buf, len, NULL, NULL, 0, NULL, xh,
                                                    (size_t)C * HW, &err),
                                 CWBA_OK);
                for (int i = 0; i < HW; i++) assert_true(xh[i] == si.mn);
                for (int c = 0; c < C; c++) n[c] += n[c] == 0; /* none dropped: flags 0 */
                free(buf);
                cap = cwba_stream_bound(&si, n);
                buf = malloc(cap);
                assert_non_null(buf);
                assert_int_equal(cwba_stream_encode(&si, n, codes, buf, cap, &len, NULL, &err),
                                 CWBA_OK);
                assert_int_equal(buf[5], 0);
                free(buf);
            }
        }
        free(n);
        free(codes);
        free(xh);
    }
}

static void test_mode_names(void **state)
{
    (void)state;
    cwba_stream_mode m;
    cwba_error err;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cwba_stream_mode_parse(cwba_stream_mode_name((cwba_stream_mode)i), &m, &err),
                         CWBA_OK);
        assert_int_equal(m, i);
    }
    assert_int_equal(cwba_stream_mode_parse("zstd", &m, &err), CWBA_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_random_codes),
        cmocka_unit_test(test_roundtrip_extremes),
        cmocka_unit_test(test_roundtrip_quantizers),
        cmocka_unit_test(test_fixed_rate_near_ideal),
        cmocka_unit_test(test_adaptive_gain_on_skewed),
        cmocka_unit_test(test_auto_keeps_fixed_on_random),
        cmocka_unit_test(test_bound_and_capacity),
        cmocka_unit_test(test_encode_rejects_bad_input),
        cmocka_unit_test(test_expect_identity),
        cmocka_unit_test(test_encode_feature),
        cmocka_unit_test(test_dorefa_clip_reencode),
        cmocka_unit_test(test_dropped_channels_exp),
        cmocka_unit_test(test_mode_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
