/* Fashion-MNIST dataset: spec parsing, IDX validation, labels. */
#include "testutil.h"

#include "cwba/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The group's scratch directory (tu_group_setup / tu_group_teardown). */
#define dir tu_group_dir

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX file (gzip unless name lacks ".gz"): magic, dims, payload. */
static void write_idx(const char *name, uint32_t magic, int ndim, const uint32_t *dims,
                      const uint8_t *data, size_t len)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    uint8_t hdr[16];
    be32(hdr, magic);
    for (int i = 0; i < ndim; i++) be32(hdr + 4 + 4 * i, dims[i]);
    size_t hl = 4 + 4 * (size_t)ndim;
    if (strstr(name, ".gz")) {
        gzFile f = gzopen(p, "wb");
        assert_non_null(f);
        gzwrite(f, hdr, (unsigned)hl);
        if (len) gzwrite(f, data, (unsigned)len);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        fwrite(hdr, 1, hl, f);
        if (len) fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* A valid 3-image 4x5 test split in dir. */
static void write_small_set(const char *suffix)
{
    uint8_t img[3 * 4 * 5], lab[3] = {7, 0, 9};
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 13);
    uint32_t idims[3] = {3, 4, 5}, ldims[1] = {3};
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "t10k-images-idx3-ubyte%s", suffix);
    snprintf(n2, sizeof n2, "t10k-labels-idx1-ubyte%s", suffix);
    write_idx(n1, 0x803, 3, idims, img, sizeof img);
    write_idx(n2, 0x801, 1, ldims, lab, sizeof lab);
}

static void expect_open_fail(const char *spec, cwba_status st, const char *n1, const char *n2)
{
    cwba_dataset *d = (cwba_dataset *)0x1;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_status got = cwba_dataset_open(spec, NULL, &d, &err);
    printf("  -> %s: %s\n", cwba_status_name(got), err.msg);
    assert_int_equal(got, st);
    assert_null(d);
    if (n1) assert_non_null(strstr(err.msg, n1));
    if (n2) assert_non_null(strstr(err.msg, n2));
}

static char spec[4300];

static const char *dir_spec(const char *suffix)
{
    snprintf(spec, sizeof spec, "fmnist:%s%s", dir, suffix);
    return spec;
}

static void test_small_set(void **state)
{
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        write_small_set(gz ? ".gz" : "");
        cwba_preprocess pp = cwba_preprocess_fmnist();
        pp.size = 8;
        cwba_dataset *d = NULL;
        cwba_error err;
        assert_int_equal(cwba_dataset_open(dir_spec(":test"), &pp, &d, &err), CWBA_OK);
        assert_int_equal(cwba_dataset_count(d), 3);
        assert_true(cwba_dataset_has_labels(d));
        float out[3 * 8 * 8];
        int label = -5;
        assert_int_equal(cwba_dataset_get(d, 2, out, &label, &err), CWBA_OK);
        assert_int_equal(label, 9);
        /* Pixel (0,0) of the 8x8 output samples source (0,0) = 2*20*13 mod 256. */
        float x0 = (float)(uint8_t)(40 * 13) / 255.0f;
        assert_true(out[0] == (x0 - 0.2860f) / 0.3530f);
        assert_true(out[64] == out[0] && out[128] == out[0]); /* replicated channels */
        assert_int_equal(cwba_dataset_get(d, 3, out, &label, &err), CWBA_E_ARG);
        assert_non_null(strstr(err.msg, "out of range"));
        assert_int_equal(label, -1);
        assert_int_equal(cwba_dataset_get(d, -1, out, NULL, &err), CWBA_E_ARG);
        cwba_dataset_free(d);
        char cmd[4300];
        snprintf(cmd, sizeof cmd, "rm -f %s/*", dir);
        assert_int_equal(system(cmd), 0);
    }
}

static void test_bad_specs(void **state)
{
    (void)state;
    expect_open_fail("cifar10:/data", CWBA_E_ARG, "unknown dataset kind", "fmnist");
    expect_open_fail("", CWBA_E_ARG, "fmnist", NULL);
    expect_open_fail(dir_spec("/empty"), CWBA_E_IO, "t10k-images-idx3-ubyte.gz", NULL);
    expect_open_fail(dir_spec("/empty:train"), CWBA_E_IO, "train-images-idx3-ubyte.gz", NULL);
    cwba_preprocess pp = cwba_preprocess_fmnist();
    pp.std[1] = 0;
    cwba_dataset *d = NULL;
    cwba_error err;
    assert_int_equal(cwba_dataset_open("fmnist", &pp, &d, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "std"));
}

static void test_bad_idx(void **state)
{
    (void)state;
    uint8_t img[3 * 4 * 5] = {0}, lab[3] = {1, 2, 3};
    uint32_t idims[3] = {3, 4, 5}, ldims[1] = {3};

    write_small_set(".gz");
    write_idx("t10k-images-idx3-ubyte.gz", 0x801, 3, idims, img, sizeof img);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "t10k-images-idx3-ubyte.gz", "magic");

    write_small_set(".gz");
    uint32_t ld2[1] = {2};
    write_idx("t10k-labels-idx1-ubyte.gz", 0x801, 1, ld2, lab, 2);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "3 images", "2 labels");

    write_small_set(".gz");
    uint8_t badlab[3] = {1, 10, 3};
    write_idx("t10k-labels-idx1-ubyte.gz", 0x801, 1, ldims, badlab, 3);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "label 10", "t10k-labels");

    write_small_set(".gz");
    write_idx("t10k-images-idx3-ubyte.gz", 0x803, 3, idims, img, sizeof img - 1);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "truncated", "t10k-images");

    write_small_set(".gz");
    uint8_t more[3 * 4 * 5 + 1] = {0};
    write_idx("t10k-images-idx3-ubyte.gz", 0x803, 3, idims, more, sizeof more);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "trailing", "t10k-images");

    write_small_set(".gz");
    uint32_t huge[3] = {3, 100000, 5};
    write_idx("t10k-images-idx3-ubyte.gz", 0x803, 3, huge, img, sizeof img);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "dimension 1", "t10k-images");

    /* A corrupt gzip body: valid gzip header, garbage deflate data. */
    write_small_set(".gz");
    char p[4200];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    FILE *f = fopen(p, "wb");
    fwrite("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff\xff\xff\xff\xff\xff", 1, 18, f);
    fclose(f);
    expect_open_fail(dir_spec(""), CWBA_E_FORMAT, "t10k-images", NULL);
}

static void test_real_fmnist(void **state)
{
    (void)state;
    if (!tu_fmnist_dir()) skip();
    static const int first16[16] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1};
    cwba_dataset *d = NULL;
    cwba_error err;
    assert_int_equal(cwba_dataset_open("fmnist", NULL, &d, &err), CWBA_OK);
    assert_int_equal(cwba_dataset_count(d), 10000);
    float *x = malloc(3 * 64 * 64 * sizeof *x);
    for (int i = 0; i < 16; i++) {
        int label = -1;
        assert_int_equal(cwba_dataset_get(d, i, x, &label, &err), CWBA_OK);
        assert_int_equal(label, first16[i]);
    }
    free(x);
    cwba_dataset_free(d);
    assert_int_equal(cwba_dataset_open("fmnist::train", NULL, &d, &err), CWBA_OK);
    assert_int_equal(cwba_dataset_count(d), 60000);
    cwba_dataset_free(d);
    snprintf(spec, sizeof spec, "fmnist:%s:train", tu_fmnist_dir());
    assert_int_equal(cwba_dataset_open(spec, NULL, &d, &err), CWBA_OK);
    assert_int_equal(cwba_dataset_count(d), 60000);
    cwba_dataset_free(d);
    cwba_dataset_free(NULL);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_set),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_bad_idx),
        cmocka_unit_test(test_real_fmnist),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
