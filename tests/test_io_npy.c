/* .npy writer/reader: round trips, numpy's other versions/dtypes, bad files. */
#include "testutil.h"

#include "cwba/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The group's scratch directory (tu_group_setup / tu_group_teardown). */
#define dir tu_group_dir

static const char *tmp(const char *name)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* Writes a .npy by hand: version, header dict (padded to 64), payload. */
static const char *hand_npy(const char *name, int major, const char *dict, const void *data,
                            size_t len)
{
    const char *path = tmp(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t pre = major == 1 ? 10 : 12, d = strlen(dict);
    size_t total = (pre + d + 1 + 63) / 64 * 64, hlen = total - pre;
    uint8_t h[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (uint8_t)major, 0};
    h[8] = (uint8_t)hlen;
    h[9] = (uint8_t)(hlen >> 8);
    fwrite(h, 1, pre, f);
    fwrite(dict, 1, d, f);
    for (size_t i = pre + d; i + 1 < total; i++) fputc(' ', f);
    fputc('\n', f);
    if (len) fwrite(data, 1, len, f);
    fclose(f);
    return path;
}

static void expect_bad(const char *path, cwba_status st, const char *needle)
{
    float *data = (float *)0x1;
    int ndim;
    int64_t shape[CWBA_MAX_DIMS];
    cwba_error err;
    cwba_error_clear(&err);
    cwba_status got = cwba_npy_read_f32(path, &data, &ndim, shape, &err);
    printf("  -> %s: %s\n", cwba_status_name(got), err.msg);
    assert_int_equal(got, st);
    assert_null(data);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, needle));
}

static void test_round_trip(void **state)
{
    (void)state;
    const int64_t shapes[4][4] = {{0}, {5}, {2, 3, 4}, {1, 1, 7, 3}};
    const int ndims[4] = {0, 1, 3, 4};
    for (int k = 0; k < 4; k++) {
        size_t n = 1;
        for (int i = 0; i < ndims[k]; i++) n *= (size_t)shapes[k][i];
        float *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = (float)i * 0.37f - 3.0f;
        if (n > 2) {
            v[1] = -0.0f;
            v[2] = INFINITY;
        }
        cwba_error err;
        const char *p = tmp("rt.npy");
        assert_int_equal(cwba_npy_write_f32(p, v, ndims[k], shapes[k], &err), CWBA_OK);
        FILE *f = fopen(p, "rb");
        uint8_t h[10];
        assert_int_equal(fread(h, 1, 10, f), 10);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fclose(f);
        size_t hdr_total = 10 + (size_t)(h[8] | (h[9] << 8));
        assert_int_equal(hdr_total % 64, 0); /* data aligned as numpy does */
        assert_int_equal((size_t)size, hdr_total + n * 4);

        float *r = NULL;
        int nd = -1;
        int64_t sh[CWBA_MAX_DIMS];
        assert_int_equal(cwba_npy_read_f32(p, &r, &nd, sh, &err), CWBA_OK);
        assert_int_equal(nd, ndims[k]);
        for (int i = 0; i < nd; i++) assert_int_equal(sh[i], shapes[k][i]);
        assert_memory_equal(r, v, n * sizeof *v);
        free(r);
        free(v);
    }
    /* No temp files left behind by the atomic writer. */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp > /dev/null", dir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_numpy_variants(void **state)
{
    (void)state;
    cwba_error err;
    float *r = NULL;
    int nd;
    int64_t sh[CWBA_MAX_DIMS];
    /* '<f8' in a version 2.0 file, shape with a space and Python-2 style key order */
    double d[3] = {1.5, -2.25, 1e-3};
    const char *p = hand_npy("f8v2.npy", 2, "{'shape': (3,), 'fortran_order': False, 'descr': '<f8'}",
                             d, sizeof d);
    assert_int_equal(cwba_npy_read_f32(p, &r, &nd, sh, &err), CWBA_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], 3);
    assert_true(r[0] == 1.5f && r[1] == -2.25f && r[2] == (float)1e-3);
    free(r);
    /* '<f2', version 3.0, 2-D */
    uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7C00};
    p = hand_npy("f2v3.npy", 3, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }", h,
                 sizeof h);
    assert_int_equal(cwba_npy_read_f32(p, &r, &nd, sh, &err), CWBA_OK);
    assert_int_equal(nd, 2);
    assert_true(r[0] == 1.0f && r[1] == -2.0f && r[2] == ldexpf(1.0f, -24) && isinf(r[3]));
    free(r);
}

static void test_bad_files(void **state)
{
    (void)state;
    float v[4] = {1, 2, 3, 4};
    const char *p = tmp("magic.npy");
    FILE *f = fopen(p, "wb");
    fputs("NOTNUMPY--------------------", f);
    fclose(f);
    expect_bad(p, CWBA_E_FORMAT, "magic");

    expect_bad(hand_npy("v9.npy", 9, "{}", NULL, 0), CWBA_E_UNSUPPORTED, "version 9");
    expect_bad(hand_npy("be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }",
                        v, sizeof v),
               CWBA_E_UNSUPPORTED, "'>f4'");
    expect_bad(hand_npy("i4.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }",
                        v, sizeof v),
               CWBA_E_UNSUPPORTED, "'<i4'");
    expect_bad(hand_npy("fo.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                        v, sizeof v),
               CWBA_E_UNSUPPORTED, "fortran_order");
    expect_bad(hand_npy("short.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }",
                        v, sizeof v),
               CWBA_E_FORMAT, "16 bytes");
    expect_bad(hand_npy("long.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
                        v, sizeof v),
               CWBA_E_FORMAT, "16 bytes");
    expect_bad(hand_npy("noshape.npy", 1, "{'descr': '<f4', 'fortran_order': False, }", v, sizeof v),
               CWBA_E_FORMAT, "'shape'");
    expect_bad(hand_npy("badshape.npy", 1,
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }", v, sizeof v),
               CWBA_E_FORMAT, "shape");
    expect_bad(hand_npy("overflow.npy", 1,
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, "
                        "4294967296), }",
                        v, sizeof v),
               CWBA_E_FORMAT, "overflow");
    expect_bad(hand_npy("junk.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x",
                        v, sizeof v),
               CWBA_E_FORMAT, "trailing");
    /* header length field pointing past the end of the file */
    p = tmp("hlen.npy");
    f = fopen(p, "wb");
    fwrite("\x93NUMPY\x01\x00\xff\x7f{}", 1, 12, f);
    fclose(f);
    expect_bad(p, CWBA_E_FORMAT, "header length");
    expect_bad(tmp("does-not-exist.npy"), CWBA_E_IO, "does-not-exist.npy");
}

static void test_write_errors(void **state)
{
    (void)state;
    float v = 1;
    int64_t shape[1] = {1};
    cwba_error err;
    char p[4200];
    snprintf(p, sizeof p, "%s/no/such/dir/x.npy", dir);
    assert_int_equal(cwba_npy_write_f32(p, &v, 1, shape, &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "x.npy"));
    assert_int_equal(cwba_npy_write_f32(tmp("x.npy"), &v, 9, shape, &err), CWBA_E_ARG);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_numpy_variants),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
