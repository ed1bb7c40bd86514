/* Standard-codec anchors (cwba_anchor_*): tiling round trips, each codec's
 * decode of its encode, rates and errors against quality, determinism and
 * argument checks. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/codec.h"

static const cwba_anchor_codec CODECS[] = {CWBA_ANCHOR_JPEG, CWBA_ANCHOR_WEBP, CWBA_ANCHOR_HEVC};

/* A ReLU-like feature (C, H, W): smooth per-channel blobs, a third of the
 * values exactly zero, and a channel-dependent scale. */
static float *make_feature(int C, int H, int W)
{
    float *x = malloc(sizeof(float) * (size_t)C * H * W);
    assert_non_null(x);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int i = 0; i < W; i++) {
                double v = sin(0.7 * y + 0.3 * c) * cos(0.5 * i - 0.11 * c) * (1.0 + (c % 7)) +
                           0.4 * ((c * 31 + y * 7 + i * 3) % 11) / 11.0;
                x[((size_t)c * H + y) * W + i] = v > 0 ? (float)v : 0.0f;
            }
    return x;
}

static void test_grid(void **state)
{
    (void)state;
    cwba_anchor_grid g;
    /* the five reference splits at 64 px */
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_JPEG, 256, 4, 4, &g, NULL), CWBA_OK);
    assert_int_equal(g.cols, 16);
    assert_int_equal(g.rows, 16);
    assert_int_equal(g.frame_w, 64);
    assert_int_equal(g.frame_h, 64);
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_JPEG, 128, 8, 8, &g, NULL), CWBA_OK);
    assert_int_equal(g.cols, 16);
    assert_int_equal(g.rows, 8);
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_WEBP, 192, 3, 3, &g, NULL), CWBA_OK);
    assert_int_equal(g.cols, 16);
    assert_int_equal(g.rows, 12);
    assert_int_equal(g.frame_w, 48);
    assert_int_equal(g.frame_h, 36);
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_JPEG, 512, 2, 2, &g, NULL), CWBA_OK);
    assert_int_equal(g.frame_w, 64);
    assert_int_equal(g.frame_h, 32);
    /* HEVC pads up to 16 samples a side */
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_HEVC, 3, 2, 5, &g, NULL), CWBA_OK);
    assert_int_equal(g.cols, 2);
    assert_int_equal(g.rows, 2);
    assert_int_equal(g.frame_w, 16);
    assert_int_equal(g.frame_h, 16);
    /* wide tiles: fewer columns */
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_JPEG, 64, 2, 32, &g, NULL), CWBA_OK);
    assert_int_equal(g.cols, 2);
    assert_int_equal(g.rows, 32);
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_JPEG, 1, 1, 1, &g, NULL), CWBA_OK);
    assert_int_equal(g.cols * g.rows, 1);
    cwba_error err;
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_JPEG, 0, 4, 4, &g, &err), CWBA_E_ARG);
    assert_int_equal(cwba_anchor_grid_make(CWBA_ANCHOR_WEBP, 1, 20000, 1, &g, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "16383"));
}

static void test_tile_roundtrip(void **state)
{
    (void)state;
    static const int shapes[][3] = {{1, 1, 1},   {3, 2, 5},   {5, 3, 3},  {64, 16, 16},
                                    {128, 8, 8}, {192, 3, 3}, {256, 4, 4}, {512, 2, 2},
                                    {7, 1, 9},   {33, 6, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < 3; k++) {
            int C = shapes[s][0], H = shapes[s][1], W = shapes[s][2];
            cwba_anchor_grid g;
            assert_int_equal(cwba_anchor_grid_make(CODECS[k], C, H, W, &g, NULL), CWBA_OK);
            assert_true(g.cols * g.rows >= C && (g.rows - 1) * g.cols < C);
            assert_true(g.frame_w >= g.cols * W && g.frame_h >= g.rows * H);
            size_t n = (size_t)C * H * W, fn = (size_t)g.frame_w * g.frame_h;
            uint16_t *codes = malloc(n * 2), *back = malloc(n * 2), *frame = malloc(fn * 2);
            assert_true(codes && back && frame);
            for (size_t i = 0; i < n; i++) codes[i] = (uint16_t)(1 + i % 1000);
            cwba_anchor_tile(&g, codes, 0, frame);
            /* every code lands once; everything else is the pad value */
            size_t nonpad = 0;
            for (size_t i = 0; i < fn; i++) nonpad += frame[i] != 0;
            assert_int_equal(nonpad, n);
            /* channel c, row y, column i sits at its tile */
            int c = C - 1, y = H - 1, i = W - 1;
            size_t at = ((size_t)(c / g.cols) * H + y) * g.frame_w + (size_t)(c % g.cols) * W + i;
            assert_int_equal(frame[at], codes[((size_t)c * H + y) * W + i]);
            cwba_anchor_untile(&g, frame, back);
            assert_memory_equal(codes, back, n * 2);
            free(codes), free(back), free(frame);
        }
}

typedef struct run {
    size_t bytes;
    double mse;
} run;

static run roundtrip(cwba_anchor_codec codec, int q, const float *x, int C, int H, int W,
                     float *xhat)
{
    uint8_t *s = NULL;
    size_t len = 0;
    cwba_anchor_stats st;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_status rc = cwba_anchor_encode(codec, q, x, C, H, W, &s, &len, &st, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, CWBA_OK);
    assert_int_equal(st.total_bytes, len);
    assert_int_equal(st.header_bytes + st.payload_bytes, len);
    assert_int_equal(st.header_bytes, CWBA_ANCHOR_HEADER_BYTES);
    rc = cwba_anchor_decode(s, len, C, H, W, xhat, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, CWBA_OK);
    /* the same input gives the same bytes (HEVC: single-threaded x265) */
    uint8_t *s2 = NULL;
    size_t len2 = 0;
    assert_int_equal(cwba_anchor_encode(codec, q, x, C, H, W, &s2, &len2, NULL, &err), CWBA_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(s, s2, len);
    free(s);
    free(s2);
    size_t n = (size_t)C * H * W;
    double se = 0;
    for (size_t i = 0; i < n; i++) se += ((double)xhat[i] - x[i]) * ((double)xhat[i] - x[i]);
    run r = {len, se / (double)n};
    return r;
}

/* Qualities from worst to best for each codec (HEVC: QP falls). */
static const int QUALITY[3][5] = {{5, 25, 50, 75, 95}, {5, 25, 50, 75, 95}, {47, 37, 27, 17, 7}};

static void test_codec_roundtrip(void **state)
{
    (void)state;
    static const int shapes[][3] = {{256, 4, 4}, {192, 3, 3}, {64, 16, 16}};
    for (size_t s = 0; s < 3; s++) {
        int C = shapes[s][0], H = shapes[s][1], W = shapes[s][2];
        size_t n = (size_t)C * H * W;
        float *x = make_feature(C, H, W), *xhat = malloc(sizeof(float) * n);
        assert_non_null(xhat);
        float mn, mx;
        cwba_feature_range(x, n, &mn, &mx);
        double range2 = ((double)mx - mn) * ((double)mx - mn);
        for (size_t k = 0; k < 3; k++) {
            run prev = {0, 0};
            for (int qi = 0; qi < 5; qi++) {
                run r = roundtrip(CODECS[k], QUALITY[k][qi], x, C, H, W, xhat);
                /* bounded: relative MSE below 3e-2 even at the worst quality */
                assert_true(r.mse < 3e-2 * range2);
                if (qi > 0) {
                    assert_true(r.bytes > prev.bytes); /* rate rises with quality */
                    assert_true(r.mse < prev.mse);     /* error falls */
                }
                prev = r;
            }
            /* near-lossless at the best setting: within ~2 quantization steps rms */
            double step = ((double)mx - mn) / ((1 << cwba_anchor_depth(CODECS[k])) - 1);
            assert_true(prev.mse < 4.0 * step * step * (CODECS[k] == CWBA_ANCHOR_HEVC ? 16 : 1));
        }
        free(x);
        free(xhat);
    }
}

/* HEVC at QP 0 and JPEG at quality 100 on a constant frame are exact; a
 * constant feature decodes to its value everywhere. */
static void test_constant_feature(void **state)
{
    (void)state;
    int C = 16, H = 4, W = 4;
    size_t n = (size_t)C * H * W;
    float x[16 * 16], xhat[16 * 16];
    for (size_t i = 0; i < n; i++) x[i] = 2.5f;
    for (size_t k = 0; k < 3; k++) {
        run r = roundtrip(CODECS[k], CODECS[k] == CWBA_ANCHOR_HEVC ? 30 : 50, x, C, H, W, xhat);
        for (size_t i = 0; i < n; i++) assert_true(xhat[i] == 2.5f);
        assert_true(r.mse == 0.0);
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    cwba_error err;
    cwba_anchor_codec c;
    assert_int_equal(cwba_anchor_codec_parse("hevc", &c, &err), CWBA_OK);
    assert_int_equal(c, CWBA_ANCHOR_HEVC);
    assert_int_equal(cwba_anchor_codec_parse("vvc", &c, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "jpeg, webp, hevc"));
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(cwba_anchor_quality_check(CWBA_ANCHOR_JPEG, 0, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "1..100"));
    assert_int_equal(cwba_anchor_quality_check(CWBA_ANCHOR_WEBP, 101, &err), CWBA_E_ARG);
    assert_int_equal(cwba_anchor_quality_check(CWBA_ANCHOR_HEVC, 52, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "QP 52"));
    assert_int_equal(cwba_anchor_quality_check(CWBA_ANCHOR_HEVC, 0, &err), CWBA_OK);

    int C = 64, H = 4, W = 4;
    size_t n = (size_t)C * H * W;
    float *x = make_feature(C, H, W), *xhat = malloc(sizeof(float) * n);
    uint8_t *s = NULL;
    size_t len = 0;
    assert_int_equal(cwba_anchor_encode(CWBA_ANCHOR_JPEG, 101, x, C, H, W, &s, &len, NULL, &err),
                     CWBA_E_ARG);
    assert_null(s);
    x[5] = NAN;
    assert_int_equal(cwba_anchor_encode(CWBA_ANCHOR_JPEG, 50, x, C, H, W, &s, &len, NULL, &err),
                     CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "not finite"));
    x[5] = 0;
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(cwba_anchor_encode(CODECS[k], 30, x, C, H, W, &s, &len, NULL, &err), CWBA_OK);
        /* wrong shape, truncations, a bad header */
        assert_int_equal(cwba_anchor_decode(s, len, C, H, 8, xhat, &err), CWBA_E_FORMAT);
        assert_non_null(strstr(err.msg, "expected"));
        assert_int_equal(cwba_anchor_decode(s, 10, C, H, W, xhat, &err), CWBA_E_FORMAT);
        assert_int_equal(cwba_anchor_decode(s, CWBA_ANCHOR_HEADER_BYTES, C, H, W, xhat, &err),
                         CWBA_E_FORMAT);
        assert_int_not_equal(cwba_anchor_decode(s, CWBA_ANCHOR_HEADER_BYTES + 8, C, H, W, xhat, &err),
                             CWBA_OK);
        uint8_t save = s[1];
        s[1] = 12;
        assert_int_equal(cwba_anchor_decode(s, len, C, H, W, xhat, &err), CWBA_E_FORMAT);
        s[1] = save;
        s[0] = (uint8_t)(s[0] % 3 + 1); /* another codec's decoder on this stream */
        assert_int_not_equal(cwba_anchor_decode(s, len, C, H, W, xhat, &err), CWBA_OK);
        free(s);
        s = NULL;
    }
    free(x);
    free(xhat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_tile_roundtrip),
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test(test_constant_feature),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
