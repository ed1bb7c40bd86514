/* The same bits on every ISA and every architecture: for fixed inputs this
 * test computes the values an edge encoder and a cloud decoder exchange or
 * derive -- GEMM products on every kernel path, a whole ResNet18 forward
 * (synthetic weights, 32 px, batch 2: the split feature, the logits direct
 * and Winograd, the back end's logits from the dequantized feature), the
 * uniform and log quantizers' codes and outputs, the bitstreams (fixed and
 * adaptive) and what the decoder rebuilds from them, and the interval table rows of a
 * calibration whose back end runs on the GEMM -- once per ISA this CPU has
 * (tu_for_each_isa), and compares a 64-bit FNV-1a digest of each one's raw
 * bits with tests/data/isa/golden.txt. That file was produced on x86-64 and
 * the test runs unchanged in the AArch64 cross build under qemu (make
 * arm-test), so NEON, scalar, AVX2 and AVX-512 are all held to the same
 * bits: the direct arithmetic throughout, and the logits with Winograd.
 * Every digest is printed as "golden NAME HEX" (the file's format), so a
 * deliberate change of arithmetic regenerates the file with
 *   CWBA_GOLDEN_GEN=1 ./test_nn_isa_golden | sed -n 's/^golden //p' | sort -u \
 *       > tests/data/isa/golden.txt
 * (CWBA_GOLDEN_GEN: print without comparing). */
#include "testutil.h"

#include "cwba/codec.h"
#include "cwba/nn.h"
#include "cwba/quant.h"
#include "nn/nn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXD 64

typedef struct digest {
    char name[48];
    uint64_t h;
} digest;

static digest g_want[MAXD];
static int g_nwant;
static int g_checked;
static int g_gen; /* CWBA_GOLDEN_GEN set: print only */

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void load_golden(void)
{
    g_gen = getenv("CWBA_GOLDEN_GEN") != NULL;
    FILE *f = fopen(tu_path("tests/data/isa/golden.txt"), "r");
    if (!f) return; /* then every check fails: not in the file */
    char name[48];
    unsigned long long h;
    g_nwant = 0;
    while (g_nwant < MAXD && fscanf(f, "%47s %llx", name, &h) == 2) {
        snprintf(g_want[g_nwant].name, sizeof g_want[g_nwant].name, "%s", name);
        g_want[g_nwant++].h = h;
    }
    fclose(f);
}

/* Compares the digest of n bytes at p with the file's entry `name`. */
static void check(const char *name, const void *p, size_t n)
{
    uint64_t h = fnv1a(p, n);
    print_message("golden %s %016llx\n", name, (unsigned long long)h);
    if (g_gen) return;
    for (int i = 0; i < g_nwant; i++)
        if (strcmp(g_want[i].name, name) == 0) {
            if (g_want[i].h != h)
                fail_msg("%s on %s: digest %016llx, golden %016llx", name, nn_gemm_isa(),
                         (unsigned long long)h, (unsigned long long)g_want[i].h);
            g_checked++;
            return;
        }
    fail_msg("%s: not in tests/data/isa/golden.txt", name);
}

/* ------------------------------------------------------------------ GEMM */

/* (m, n, k) cases: the main kernel with edge tiles and k-blocks (k > 256),
 * the narrow kernels (n = 1..4), and a narrow tail (n = 16 q + 1..4). */
static const int GEMM_CASES[][3] = {{64, 49, 300}, {37, 33, 70}, {72, 1, 520}, {24, 3, 129},
                                    {40, 4, 64},   {16, 17, 257}, {8, 2, 1000}};

static void gemm_case(void)
{
    for (size_t c = 0; c < sizeof GEMM_CASES / sizeof GEMM_CASES[0]; c++) {
        const int m = GEMM_CASES[c][0], n = GEMM_CASES[c][1], k = GEMM_CASES[c][2];
        float *a = tu_random_floats("isa.a", c, (size_t)m * k, 7);
        float *b = tu_random_floats("isa.b", c, (size_t)k * n, 11);
        float *ap = nn_alloc_floats(nn_gemm_packed_a_size(m, k));
        float *out = calloc((size_t)m * n, sizeof *out), *ref = calloc((size_t)m * n, sizeof *ref);
        assert_true(ap && out && ref);
        nn_gemm_pack_a(m, k, a, (size_t)k, ap);
        for (int threads = 1; threads <= 2; threads++) {
            nn_pool *pool = nn_pool_create(threads);
            float **scr = tu_gemm_scratch_new(threads, k);
            nn_matrix_ctx mc = {.b = b, .k = k, .n = n, .ld = (size_t)n};
            nn_gemm g = {.m = m, .n = n, .k = k, .apack = ap, .pack_b = nn_pack_b_matrix,
                         .pack_ctx = &mc, .c = out, .ldc = (size_t)n};
            nn_gemm_run(pool, &g, scr);
            char name[48];
            snprintf(name, sizeof name, "gemm.%dx%dx%d", m, n, k);
            check(name, out, (size_t)m * n * sizeof *out);
            tu_gemm_scratch_free(scr, threads);
            nn_pool_free(pool);
        }
        nn_gemm_ref(m, n, k, a, (size_t)k, b, (size_t)n, ref, (size_t)n);
        assert_memory_equal(out, ref, (size_t)m * n * sizeof *out);
        free(a), free(b), free(ap), free(out), free(ref);
    }
}

static void test_gemm(void **state)
{
    (void)state;
    tu_for_each_isa(gemm_case);
}

/* ---------------------------------------------- a linear back end on the GEMM */

/* logits (batch, K) = W (K, C*H*W) x feature, through nn_gemm_run: the
 * probe batches of a calibration become GEMM widths 1..max_batch. */
typedef struct lin_ctx {
    int K, D;
    const float *wpack;
    nn_pool *pool;
    float **scr;
    float *bt; /* (D, max_batch) */
} lin_ctx;

static cwba_status lin_backend(void *vctx, const float *feat, int batch, float *logits,
                               cwba_error *err)
{
    (void)err;
    lin_ctx *c = vctx;
    for (int j = 0; j < batch; j++)
        for (int p = 0; p < c->D; p++) c->bt[(size_t)p * batch + j] = feat[(size_t)j * c->D + p];
    float out[10 * 64];
    nn_matrix_ctx mc = {.b = c->bt, .k = c->D, .n = batch, .ld = (size_t)batch};
    nn_gemm g = {.m = c->K, .n = batch, .k = c->D, .apack = c->wpack, .pack_b = nn_pack_b_matrix,
                 .pack_ctx = &mc, .c = out, .ldc = (size_t)batch};
    nn_gemm_run(c->pool, &g, c->scr);
    for (int j = 0; j < batch; j++)
        for (int i = 0; i < c->K; i++) logits[j * c->K + i] = out[i * batch + j];
    return CWBA_OK;
}

static void calib_case(void)
{
    enum { C = 6, H = 2, W = 2, K = 10, D = C * H * W, MB = 64 };
    float *w = tu_random_floats("isa.linw", 1, (size_t)K * D, 0);
    float *x = tu_random_floats("isa.linx", 1, D, 5);
    lin_ctx lc = {.K = K, .D = D, .pool = nn_pool_create(2)};
    float *wpack = nn_alloc_floats(nn_gemm_packed_a_size(K, D));
    lc.bt = malloc((size_t)D * MB * sizeof(float));
    assert_true(wpack && lc.bt && lc.pool);
    nn_gemm_pack_a(K, D, w, D, wpack);
    lc.wpack = wpack;
    lc.scr = tu_gemm_scratch_new(2, D);
    cwba_backend be = {C, H, W, K, MB, lin_backend, &lc};
    static const cwba_quant qs[] = {CWBA_QUANT_UNIFORM, CWBA_QUANT_LOG};
    for (int qi = 0; qi < 2; qi++) {
        int rows[6 * C];
        cwba_error err;
        assert_int_equal(cwba_calibrate_image(&be, qs[qi], x, NULL, rows, NULL, &err), CWBA_OK);
        char name[48];
        snprintf(name, sizeof name, "table.%s", cwba_quant_name(qs[qi]));
        check(name, rows, sizeof rows);
    }
    tu_gemm_scratch_free(lc.scr, 2);
    nn_pool_free(lc.pool);
    free(lc.bt), free(wpack), free(w), free(x);
}

static void test_calibration(void **state)
{
    (void)state;
    tu_for_each_isa(calib_case);
}

/* ------------------------------------------- a whole model, quantizer, codec */

static cwba_weights *g_w;

static void model_case(void)
{
    enum { S = 32, B = 2 };
    cwba_error err;
    cwba_model *m;
    assert_int_equal(cwba_model_create(CWBA_ARCH_RESNET18, g_w, S, &m, &err), CWBA_OK);
    int split, C, H, W;
    assert_int_equal(cwba_model_find_split(m, "layer3", &split, &err), CWBA_OK);
    cwba_model_split_shape(m, split, &C, &H, &W);
    const int K = cwba_model_num_classes(m), HW = H * W;
    float *in = tu_random_floats("isa.image", 3, (size_t)B * 3 * S * S, 0);
    float *feat = malloc((size_t)B * C * HW * sizeof(float));
    float *logits = malloc((size_t)B * K * sizeof(float)), *back = malloc((size_t)K * sizeof(float));
    float *xhat = malloc((size_t)C * HW * sizeof(float)), *dec = malloc((size_t)C * HW * sizeof(float));
    uint32_t *codes = malloc((size_t)C * HW * sizeof(uint32_t));
    int *n = malloc((size_t)C * sizeof(int));
    assert_true(in && feat && logits && back && xhat && dec && codes && n);

    assert_int_equal(cwba_model_set_conv_algo(m, CWBA_CONV_WINOGRAD, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward(m, in, B, logits, &err), CWBA_OK);
    check("resnet18.winograd.logits", logits, (size_t)B * K * sizeof(float));
    assert_int_equal(cwba_model_set_conv_algo(m, CWBA_CONV_DIRECT, &err), CWBA_OK);
    assert_int_equal(cwba_model_forward(m, in, B, logits, &err), CWBA_OK);
    check("resnet18.logits", logits, (size_t)B * K * sizeof(float));
    assert_int_equal(cwba_model_forward_front(m, split, in, B, feat, &err), CWBA_OK);
    check("resnet18.layer3", feat, (size_t)B * C * HW * sizeof(float));

    /* Edge: quantize image 0's feature (n_c = 1..31 over the channels) and
     * encode it; cloud: decode, run the back end. */
    for (int c = 0; c < C; c++) n[c] = 1 + (c * 7) % 31;
    static const cwba_quant qs[] = {CWBA_QUANT_UNIFORM, CWBA_QUANT_LOG};
    static const cwba_stream_mode modes[] = {CWBA_STREAM_FIXED, CWBA_STREAM_ADAPTIVE};
    for (int qi = 0; qi < 2; qi++) {
        char name[48];
        const char *qn = cwba_quant_name(qs[qi]);
        assert_int_equal(cwba_quantize_feature(qs[qi], feat, C, HW, n, xhat, codes, &err), CWBA_OK);
        snprintf(name, sizeof name, "quant.%s.codes", qn);
        check(name, codes, (size_t)C * HW * sizeof *codes);
        snprintf(name, sizeof name, "quant.%s.xhat", qn);
        check(name, xhat, (size_t)C * HW * sizeof *xhat);
        for (int mi = 0; mi < 2; mi++) {
            cwba_stream_info si = {.model = "resnet18", .split = "layer3", .C = C, .H = H, .W = W,
                                   .quant = qs[qi], .mode = modes[mi]};
            size_t cap = cwba_stream_bound(&si, n), len;
            uint8_t *buf = malloc(cap);
            assert_non_null(buf);
            assert_int_equal(cwba_stream_encode_feature(&si, feat, n, buf, cap, &len, NULL, NULL,
                                                        &err),
                             CWBA_OK);
            snprintf(name, sizeof name, "stream.%s.%s", qn, cwba_stream_mode_name(modes[mi]));
            check(name, buf, len);
            assert_int_equal(cwba_stream_decode(buf, len, NULL, NULL, 0, NULL, dec, (size_t)C * HW,
                                                &err),
                             CWBA_OK);
            assert_memory_equal(dec, xhat, (size_t)C * HW * sizeof *dec);
            free(buf);
        }
        assert_int_equal(cwba_model_forward_back(m, split, dec, 1, back, &err), CWBA_OK);
        snprintf(name, sizeof name, "resnet18.back.%s", qn);
        check(name, back, (size_t)K * sizeof *back);
    }
    free(in), free(feat), free(logits), free(back), free(xhat), free(dec), free(codes), free(n);
    cwba_model_free(m);
}

static void test_model_quant_codec(void **state)
{
    (void)state;
    cwba_error err;
    assert_int_equal(cwba_weights_synthetic(CWBA_ARCH_RESNET18, 10, 15, &g_w, &err), CWBA_OK);
    cwba_set_threads(2);
    tu_for_each_isa(model_case);
    cwba_weights_free(g_w);
    g_w = NULL;
}

/* Every entry of the file was checked at least once. */
static void test_all_checked(void **state)
{
    (void)state;
    if (g_gen) skip();
    assert_true(g_nwant > 0);
    assert_true(g_checked >= g_nwant);
}

int main(void)
{
    load_golden();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_model_quant_codec),
        cmocka_unit_test(test_all_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
