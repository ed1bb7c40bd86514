/* Preprocessing against PyTorch (tools/make_preprocess_reference.py):
 * x/255 -> F.interpolate(bilinear, align_corners=False) -> (x-mean)/std -> RGB.
 * Tolerance: 0 — cwba reproduces torch's CPU kernel bit for bit. */
#include "testutil.h"

#include "cwba/io.h"
#include "io/io_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *load_ref(const char *name, int want_ndim, const int64_t *want_shape)
{
    float *data = NULL;
    int ndim = 0;
    int64_t shape[CWBA_MAX_DIMS];
    cwba_error err;
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/io/%s", name);
    cwba_status st = cwba_npy_read_f32(tu_path(rel), &data, &ndim, shape, &err);
    if (st) printf("  %s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    assert_int_equal(ndim, want_ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(shape[i], want_shape[i]);
    return data;
}

/* Prints and returns the largest |a-b|; counts values that differ at all. */
static double compare(const char *what, const float *a, const float *b, size_t n, size_t *ndiff)
{
    double m = 0;
    *ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (a[i] != b[i]) (*ndiff)++;
        if (d > m) m = d;
    }
    printf("  %s: max |cwba - torch| = %.3g, %zu of %zu values differ (tolerance 0)\n", what, m,
           *ndiff, n);
    return m;
}

static void test_fmnist_first4(void **state)
{
    (void)state;
    if (!tu_fmnist_dir()) skip();
    const int64_t shape[4] = {4, 3, 64, 64};
    float *ref = load_ref("fmnist_test_first4_input.npy", 4, shape); /* (4, 3, 64, 64) */
    cwba_preprocess pp = cwba_preprocess_fmnist();
    cwba_dataset *d = NULL;
    cwba_error err;
    assert_int_equal(cwba_dataset_open("fmnist", &pp, &d, &err), CWBA_OK);
    float *x = malloc(4 * 3 * 64 * 64 * sizeof *x); /* (4, 3, 64, 64) */
    for (int i = 0; i < 4; i++)
        assert_int_equal(cwba_dataset_get(d, i, x + (size_t)i * 3 * 64 * 64, NULL, &err), CWBA_OK);
    size_t ndiff;
    double m = compare("fmnist test images 0..3", x, ref, 4 * 3 * 64 * 64, &ndiff);
    assert_true(m == 0.0);
    assert_int_equal(ndiff, 0);
    free(x);
    free(ref);
    cwba_dataset_free(d);
}

static void test_ramp(void **state)
{
    (void)state;
    const int64_t s_in[2] = {28, 28}, s_out[3] = {3, 64, 64};
    float *ramp = load_ref("ramp28_u8.npy", 2, s_in);      /* (28, 28) uint8 values */
    float *ref = load_ref("ramp28_input.npy", 3, s_out);   /* (3, 64, 64) */
    uint8_t u8[28 * 28];
    for (int i = 0; i < 28 * 28; i++) {
        assert_true(ramp[i] >= 0 && ramp[i] <= 255 && ramp[i] == floorf(ramp[i]));
        u8[i] = (uint8_t)ramp[i];
    }
    cwba_preprocess pp = cwba_preprocess_fmnist();
    float work[28 * 28 + 64 * 64], out[3 * 64 * 64];
    cwba_preprocess_gray_u8(u8, 28, 28, &pp, work, out);
    size_t ndiff;
    assert_true(compare("synthetic ramp", out, ref, 3 * 64 * 64, &ndiff) == 0.0);
    free(ramp);
    free(ref);
}

static void test_resize_general(void **state)
{
    (void)state;
    const int64_t s_in[2] = {28, 28}, s_out[2] = {20, 36};
    float *src = load_ref("resize_src.npy", 2, s_in);  /* (28, 28) */
    float *ref = load_ref("resize_20x36.npy", 2, s_out); /* (20, 36) */
    float out[20 * 36];
    cwba_resize_bilinear(src, 28, 28, out, 20, 36);
    size_t ndiff;
    assert_true(compare("resize 28x28 -> 20x36", out, ref, 20 * 36, &ndiff) == 0.0);

    /* Same size is a copy; a constant plane stays constant. */
    float same[28 * 28];
    cwba_resize_bilinear(src, 28, 28, same, 28, 28);
    assert_memory_equal(same, src, sizeof same);
    float cst[5 * 7], big[13 * 3];
    for (int i = 0; i < 35; i++) cst[i] = 0.3f;
    cwba_resize_bilinear(cst, 5, 7, big, 13, 3);
    for (int i = 0; i < 39; i++) assert_true(fabsf(big[i] - 0.3f) <= 3e-8f);
    free(src);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmnist_first4),
        cmocka_unit_test(test_ramp),
        cmocka_unit_test(test_resize_general),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
