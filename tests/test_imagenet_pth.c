/* PyTorch checkpoint loading (src/io/pth.c) against files written by Debian's
 * python3-torch (tools/make_imagenet_reference.py pth). */
#include "testutil.h"

#include "cwba/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Must match value() in tools/make_imagenet_reference.py. */
static float value(float b, size_t i) { return b + (float)((int)((i * 7) % 23) - 11) * 0.125f; }

static void expect_shape(const cwba_tensor_entry *e, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    assert_non_null(e);
    assert_int_equal(e->ndim, ndim);
    int64_t s[4] = {a, b, c, d};
    for (int i = 0; i < ndim; i++) assert_int_equal(e->shape[i], s[i]);
}

/* Elements 0..n-1 of e equal value(b, first + i). */
static void expect_values(const cwba_tensor_entry *e, float b, size_t first, size_t n)
{
    assert_non_null(e);
    assert_non_null(e->data);
    assert_int_equal(e->numel, n);
    for (size_t i = 0; i < n; i++) assert_true(e->data[i] == value(b, first + i));
}

/* Checks the whole tiny state dict (see tiny_state_dict() in the generator). */
static void check_tiny(const cwba_weights *w)
{
    assert_int_equal(w->count, 12);
    const cwba_tensor_entry *e = cwba_weights_find(w, "conv.weight");
    expect_shape(e, 4, 4, 3, 3, 3);
    expect_values(e, 0, 0, 108);
    expect_values(cwba_weights_find(w, "conv.bias"), 1, 0, 4);
    expect_values(cwba_weights_find(w, "bn.running_mean"), 2, 0, 4);
    e = cwba_weights_find(w, "bn.num_batches_tracked");
    assert_non_null(e);
    assert_true(e->is_integer);
    assert_null(e->data);
    assert_int_equal(e->ndim, 0);
    e = cwba_weights_find(w, "half");
    expect_shape(e, 2, 5, 2, 0, 0);
    expect_values(e, 3, 0, 10);
    e = cwba_weights_find(w, "bf");
    expect_shape(e, 2, 3, 4, 0, 0);
    expect_values(e, 4, 0, 12);
    expect_values(cwba_weights_find(w, "dbl"), 5, 0, 4);
    /* tview = x.t() with x (3, 5): element (r, c) is x[c][r] = value(6, c*5 + r). */
    e = cwba_weights_find(w, "tview");
    expect_shape(e, 2, 5, 3, 0, 0);
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 3; c++) assert_true(e->data[r * 3 + c] == value(6, (size_t)(c * 5 + r)));
    /* Two views of one storage at offsets 2 and 5. */
    e = cwba_weights_find(w, "shared_a");
    expect_shape(e, 1, 3, 0, 0, 0);
    expect_values(e, 7, 2, 3);
    e = cwba_weights_find(w, "shared_b");
    expect_shape(e, 2, 2, 2, 0, 0);
    expect_values(e, 7, 5, 4);
    e = cwba_weights_find(w, "param");
    expect_shape(e, 2, 2, 3, 0, 0);
    expect_values(e, -1, 0, 6);
    e = cwba_weights_find(w, "empty");
    expect_shape(e, 2, 0, 4, 0, 0);
    assert_int_equal(e->numel, 0);
}

static void load_ok(const char *rel)
{
    cwba_error err = {0};
    cwba_weights *w = NULL;
    cwba_status st = cwba_weights_load(tu_path(rel), &w, &err);
    if (st) fprintf(stderr, "%s: %s\n", rel, err.msg);
    assert_int_equal(st, CWBA_OK);
    check_tiny(w);
    cwba_weights_free(w);
}

static void test_zip(void **s) { (void)s; load_ok("tests/data/imagenet/pth/tiny_zip.pth"); }
static void test_legacy(void **s) { (void)s; load_ok("tests/data/imagenet/pth/tiny_legacy.pth"); }
static void test_proto4(void **s) { (void)s; load_ok("tests/data/imagenet/pth/tiny_proto4.pth"); }
static void test_deflate(void **s) { (void)s; load_ok("tests/data/imagenet/pth/tiny_deflate.pth"); }
static void test_module_prefix(void **s)
{
    (void)s;
    load_ok("tests/data/imagenet/pth/tiny_module.pth");
    load_ok("tests/data/imagenet/pth/tiny_module_legacy.pth");
}
static void test_checkpoint_dict(void **s) { (void)s; load_ok("tests/data/imagenet/pth/tiny_ckpt.pth"); }

static void load_bad(const char *rel, cwba_status want, const char *needle)
{
    cwba_error err = {0};
    cwba_weights *w = NULL;
    const char *path = tu_path(rel);
    cwba_status st = cwba_weights_load(path, &w, &err);
    fprintf(stderr, "  %s -> %s: %s\n", rel, cwba_status_name(st), err.msg);
    assert_int_equal(st, want);
    assert_null(w);
    assert_non_null(strstr(err.msg, path)); /* names the file */
    assert_non_null(strstr(err.msg, needle));
    assert_null(strchr(err.msg, '\n'));
}

static void test_rejects(void **s)
{
    (void)s;
    load_bad("tests/data/imagenet/pth/bad_global.pth", CWBA_E_UNSUPPORTED, "argparse Namespace");
    load_bad("tests/data/imagenet/pth/bad_extent.pth", CWBA_E_FORMAT, "exceeds its storage");
    load_bad("tests/data/imagenet/pth/bad_missing.pth", CWBA_E_FORMAT, "data/1 is missing");
}

/* Every prefix of a valid file must fail cleanly (never crash, never succeed
 * with a partial dict); byte flips must never crash. Run under ASan too. */
static void hostile(const char *rel)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    cwba_error err = {0};
    assert_int_equal(cwba_file_read_all(tu_path(rel), 0, &buf, &len, &err), CWBA_OK);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    size_t failed = 0;
    for (size_t n = 0; n < len; n++) {
        memcpy(copy, buf, n);
        cwba_weights *w = NULL;
        cwba_status st = cwba_weights_parse_pth(copy, n, "cut", &w, &err);
        if (st) failed++;
        else cwba_weights_free(w);
    }
    /* The zip end record is the last 22 bytes and the legacy storages are at
     * the end, so no proper prefix is a complete checkpoint. */
    assert_int_equal(failed, len);
    uint32_t rng = 12345;
    size_t flips_ok = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(copy, buf, len);
        for (int k = 0; k < 3; k++) {
            rng = rng * 1103515245u + 12345u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1103515245u + 12345u;
            copy[at] ^= (uint8_t)(1u + ((rng >> 16) % 255u));
        }
        cwba_weights *w = NULL;
        if (cwba_weights_parse_pth(copy, len, "flip", &w, &err) == CWBA_OK) {
            flips_ok++;
            cwba_weights_free(w);
        }
    }
    fprintf(stderr, "  %s: %zu/%zu truncations rejected, %zu/3000 corruptions still loaded\n", rel,
            failed, len, flips_ok);
    free(copy);
    free(buf);
}

static void test_hostile(void **s)
{
    (void)s;
    hostile("tests/data/imagenet/pth/tiny_zip.pth");
    hostile("tests/data/imagenet/pth/tiny_legacy.pth");
    hostile("tests/data/imagenet/pth/tiny_deflate.pth");
}

/* A pickle that only creates objects (2^20 + 1 Nones) stops at the object
 * cap, which bounds its memory to about 256 MB (the cap was 2^24 once: a
 * 20 MB file of them took 4.5 GB before it failed). */
static void test_object_cap(void **s)
{
    (void)s;
    size_t n = ((size_t)1 << 20) + 1, len = n + 3;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    buf[0] = 0x80; /* PROTO 2: the legacy layout */
    buf[1] = 2;
    memset(buf + 2, 'N', n);
    buf[len - 1] = '.';
    cwba_weights *w = NULL;
    cwba_error err = {0};
    assert_int_equal(cwba_weights_parse_pth(buf, len, "nones", &w, &err), CWBA_E_FORMAT);
    assert_null(w);
    assert_non_null(strstr(err.msg, "more than 1048576 objects"));
    free(buf);
}

/* A torchvision ImageNet checkpoint, when one is on this machine: set
 * CWBA_TORCHVISION_PTH, or leave it in torch's hub cache. */
static void test_full_size(void **s)
{
    (void)s;
    static const char *const names[] = {"resnet18-f37072fd.pth", "alexnet-owt-7be5be79.pth",
                                        "vgg16-397923af.pth"};
    char path[4096] = "";
    const char *env = getenv("CWBA_TORCHVISION_PTH");
    if (env && tu_exists(env)) snprintf(path, sizeof path, "%s", env);
    const char *home = getenv("HOME");
    for (size_t i = 0; !path[0] && home && i < 3; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/.cache/torch/hub/checkpoints/%s", home, names[i]);
        if (tu_exists(p)) snprintf(path, sizeof path, "%s", p);
    }
    if (!path[0]) {
        fprintf(stderr, "  SKIPPED full-size checkpoint: set CWBA_TORCHVISION_PTH or put %s in "
                        "~/.cache/torch/hub/checkpoints\n", names[0]);
        skip();
    }
    cwba_error err = {0};
    cwba_weights *w = NULL;
    double t0 = cwba_now();
    cwba_status st = cwba_weights_load(path, &w, &err);
    if (st) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    size_t params = 0;
    for (size_t i = 0; i < w->count; i++) {
        params += w->entries[i].data ? w->entries[i].numel : 0;
        for (size_t j = 0; w->entries[i].data && j < w->entries[i].numel; j++)
            assert_true(isfinite(w->entries[i].data[j]));
    }
    fprintf(stderr, "  %s: %zu tensors, %zu float parameters, %.2f s\n", path, w->count, params,
            cwba_now() - t0);
    /* Every torchvision ImageNet classifier ends in a 1000-way layer. */
    const cwba_tensor_entry *fc = cwba_weights_find(w, "fc.weight");
    if (!fc) fc = cwba_weights_find(w, "classifier.6.weight");
    assert_non_null(fc);
    assert_int_equal(fc->shape[0], 1000);
    cwba_weights_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zip),          cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_proto4),       cmocka_unit_test(test_deflate),
        cmocka_unit_test(test_module_prefix), cmocka_unit_test(test_checkpoint_dict),
        cmocka_unit_test(test_rejects),      cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_full_size),    cmocka_unit_test(test_object_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
