/* imagenet:/folder: datasets (src/io/imagenet.c) against torchvision's
 * ImageFolder on the tiny layouts of tests/data/imagenet/datasets
 * (tools/make_imagenet_reference.py datasets). */
#include "testutil.h"

#include "cwba/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DS "tests/data/imagenet/datasets/"
#define NPIX (3 * 224 * 224)

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static cwba_dataset *open_ok(const char *spec, const cwba_dataset_options *opt)
{
    cwba_dataset *d = NULL;
    cwba_error err = {0};
    cwba_status st = cwba_dataset_open_ex(spec, NULL, opt, &d, &err);
    if (st) fprintf(stderr, "%s: %s\n", spec, err.msg);
    assert_int_equal(st, CWBA_OK);
    return d;
}

typedef struct expected {
    char rel[128];
    int label;
    char hash[65];
} expected;

static int read_expected(expected *e, int max)
{
    FILE *f = fopen(tu_path(DS "tree_expected.txt"), "r");
    assert_non_null(f);
    int n = 0;
    while (n < max && fscanf(f, "%127s %d %64s", e[n].rel, &e[n].label, e[n].hash) == 3) n++;
    fclose(f);
    return n;
}

/* Same files, order, labels and tensors as torchvision's ImageFolder + the
 * ImageNet transform; undecodable files fail naming themselves. */
static void test_tree_matches_imagefolder(void **s)
{
    (void)s;
    expected e[32];
    int n = read_expected(e, 32);
    assert_int_equal(n, 9);
    char spec[4200];
    snprintf(spec, sizeof spec, "imagenet:%s", tu_path(DS "tree"));
    cwba_dataset *d = open_ok(spec, NULL);
    assert_int_equal(cwba_dataset_count(d), n);
    assert_true(cwba_dataset_has_labels(d));
    float *x = malloc(NPIX * sizeof(float)); /* (3, 224, 224) */
    for (int i = 0; i < n; i++) {
        const char *p = cwba_dataset_item_path(d, i);
        assert_non_null(p);
        assert_true(ends_with(p, e[i].rel));
        int label = -2;
        cwba_error err = {0};
        cwba_status st = cwba_dataset_get(d, i, x, &label, &err);
        if (strcmp(e[i].hash, "unreadable") == 0 || ends_with(p, ".BMP")) {
            fprintf(stderr, "  [%d] %s -> %s: %s\n", i, e[i].rel, cwba_status_name(st), err.msg);
            assert_int_not_equal(st, CWBA_OK);
            assert_non_null(strstr(err.msg, p));
            continue;
        }
        assert_int_equal(st, CWBA_OK);
        assert_int_equal(label, e[i].label);
        char hex[65];
        cwba_sha256_hex(x, NPIX * sizeof(float), hex);
        fprintf(stderr, "  [%d] %-26s label %d tensor %s\n", i, e[i].rel, label,
                strcmp(hex, e[i].hash) == 0 ? "bit-exact" : "DIFFERS");
        assert_string_equal(hex, e[i].hash);
    }
    free(x);
    cwba_dataset_free(d);
}

static void test_skip_and_every(void **s)
{
    (void)s;
    char spec[4200];
    snprintf(spec, sizeof spec, "imagenet:%s", tu_path(DS "tree"));
    float *x = malloc(NPIX * sizeof(float));
    cwba_error err = {0};
    int label, skipped;

    /* Without the flag an unreadable image is an error... */
    cwba_dataset *d = open_ok(spec, NULL);
    assert_int_not_equal(cwba_dataset_get_or_skip(d, 8, x, &label, &skipped, &err), CWBA_OK);
    cwba_dataset_free(d);

    /* ...with it, the run goes on and the count is reported at the end. */
    cwba_dataset_options opt = {.every = 0, .skip_unreadable = 1};
    d = open_ok(spec, &opt);
    int used = 0;
    for (int i = 0; i < cwba_dataset_count(d); i++) {
        assert_int_equal(cwba_dataset_get_or_skip(d, i, x, &label, &skipped, &err), CWBA_OK);
        used += !skipped;
        if (skipped) fprintf(stderr, "  skipped: %s\n", err.msg);
    }
    assert_int_equal(used, 7);
    assert_int_equal(cwba_dataset_skipped(d), 2);
    cwba_dataset_free(d);

    /* every = 3: images 0, 3, 6 of the tree (the original's protocol is 50). */
    opt.every = 3;
    d = open_ok(spec, &opt);
    assert_int_equal(cwba_dataset_count(d), 3);
    assert_true(ends_with(cwba_dataset_item_path(d, 0), "n01440764/A.JPEG"));
    assert_true(ends_with(cwba_dataset_item_path(d, 1), "n01440764/sub-x/d.png"));
    assert_true(ends_with(cwba_dataset_item_path(d, 2), "n01443537/f.BMP"));
    assert_null(cwba_dataset_item_path(d, 3));
    assert_int_equal(cwba_dataset_get_or_skip(d, 1, x, &label, &skipped, &err), CWBA_OK);
    assert_int_equal(label, 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(cwba_dataset_get_or_skip(d, 2, x, &label, &skipped, &err), CWBA_OK);
    assert_int_equal(skipped, 1);
    assert_int_equal(cwba_dataset_skipped(d), 1);
    assert_int_equal(cwba_dataset_get(d, 3, x, &label, &err), CWBA_E_ARG);
    cwba_dataset_free(d);

    /* every also wraps other kinds, e.g. 10 of the 9 images -> 1 */
    opt.every = 10;
    d = open_ok(spec, &opt);
    assert_int_equal(cwba_dataset_count(d), 1);
    cwba_dataset_free(d);
    free(x);
}

static void expect_labels(const char *spec, const int *labels, int n)
{
    cwba_dataset *d = open_ok(spec, NULL);
    assert_int_equal(cwba_dataset_count(d), n);
    float *x = malloc(NPIX * sizeof(float));
    for (int i = 0; i < n; i++) {
        int label;
        cwba_error err = {0};
        assert_int_equal(cwba_dataset_get(d, i, x, &label, &err), CWBA_OK);
        char want[64];
        snprintf(want, sizeof want, "ILSVRC2012_val_0000000%d.", i + 1);
        assert_non_null(strstr(cwba_dataset_item_path(d, i), want));
        assert_int_equal(label, labels[i]);
    }
    free(x);
    cwba_dataset_free(d);
}

static void test_flat_layouts(void **s)
{
    (void)s;
    char spec[8400];
    static const int numeric[] = {65, 7, 0};
    snprintf(spec, sizeof spec, "imagenet:%s", tu_path(DS "flat")); /* finds val.txt */
    expect_labels(spec, numeric, 3);
    snprintf(spec, sizeof spec, "imagenet:%s:%s", tu_path(DS "flat"), tu_path(DS "flat_bare_labels.txt"));
    expect_labels(spec, numeric, 3);
    /* Kaggle csv: wnids numbered in sorted order, ids without extension. */
    static const int wnid[] = {1, 2, 0};
    snprintf(spec, sizeof spec, "imagenet:%s:%s", tu_path(DS "flat"), tu_path(DS "flat_solution.csv"));
    expect_labels(spec, wnid, 3);
    /* folder: the same images, unlabelled */
    snprintf(spec, sizeof spec, "folder:%s", tu_path(DS "flat"));
    cwba_dataset *d = open_ok(spec, NULL);
    assert_int_equal(cwba_dataset_count(d), 3);
    assert_false(cwba_dataset_has_labels(d));
    float *x = malloc(NPIX * sizeof(float));
    int label = 0;
    cwba_error err = {0};
    assert_int_equal(cwba_dataset_get(d, 0, x, &label, &err), CWBA_OK);
    assert_int_equal(label, -1);
    free(x);
    cwba_dataset_free(d);
}

static void open_bad(const char *spec, cwba_status want, const char *needle)
{
    cwba_dataset *d = NULL;
    cwba_error err = {0};
    cwba_status st = cwba_dataset_open(spec, NULL, &d, &err);
    fprintf(stderr, "  %s -> %s: %s\n", spec, cwba_status_name(st), err.msg);
    assert_int_equal(st, want);
    assert_null(d);
    assert_non_null(strstr(err.msg, needle));
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_errors(void **s)
{
    (void)s;
    open_bad("imagenet:/nonexistent/val", CWBA_E_IO, "/nonexistent/val");
    open_bad("imagenet:", CWBA_E_ARG, "directory");
    char spec[8400];
    /* images/ has files but neither class folders nor a labels file */
    snprintf(spec, sizeof spec, "imagenet:%s", tu_path("tests/data/imagenet/images"));
    open_bad(spec, CWBA_E_IO, "no class sub-folders");
    char *tmp = tu_tmpdir();
    char p[4200];
    snprintf(p, sizeof p, "%s/two.txt", tmp);
    write_text(p, "1\n2\n");
    snprintf(spec, sizeof spec, "imagenet:%s:%s", tu_path(DS "flat"), p);
    open_bad(spec, CWBA_E_FORMAT, "has 2 labels but");
    snprintf(p, sizeof p, "%s/ILSVRC2012_validation_ground_truth.txt", tmp);
    write_text(p, "490\n361\n171\n");
    snprintf(spec, sizeof spec, "imagenet:%s:%s", tu_path(DS "flat"), p);
    open_bad(spec, CWBA_E_UNSUPPORTED, "ILSVRC2012_IDs");
    snprintf(p, sizeof p, "%s/bad.txt", tmp);
    write_text(p, "ILSVRC2012_val_00000001.JPEG 1\nmissing.JPEG 2\n");
    snprintf(spec, sizeof spec, "imagenet:%s:%s", tu_path(DS "flat"), p);
    open_bad(spec, CWBA_E_IO, "missing.JPEG does not exist");
    write_text(p, "ILSVRC2012_val_00000001.JPEG -3\n");
    open_bad(spec, CWBA_E_FORMAT, "bad label");
    write_text(p, "../x.JPEG 3\n");
    open_bad(spec, CWBA_E_FORMAT, "must be relative");
    /* An empty class folder, as ImageFolder refuses. */
    char cls[4200];
    snprintf(cls, sizeof cls, "%s/tree/n0", tmp);
    snprintf(p, sizeof p, "%s/tree", tmp);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(mkdir(cls, 0700), 0);
    snprintf(spec, sizeof spec, "imagenet:%s/tree", tmp);
    open_bad(spec, CWBA_E_IO, "class folder has no images");
    snprintf(spec, sizeof spec, "folder:%s/tree", tmp);
    open_bad(spec, CWBA_E_IO, "no images found");
    tu_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_matches_imagefolder),
        cmocka_unit_test(test_skip_and_every),
        cmocka_unit_test(test_flat_layouts),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
