/* CWBA_TEST_SLOW: full-size models; runs in the Release build only (see tests/CMakeLists.txt). */
/* The three shipped reference models: load (plain F32 and xz-compressed F16)
 * and verify each against its card. Slow: vgg16 inflates to ~270 MB. */
#include "testutil.h"

#include "cwba/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_model(const char *name, const char *weights, size_t want_float,
                        size_t want_int, const char *probe, int probe_ndim, const int64_t *probe_shape)
{
    char card_rel[256], w_rel[256];
    snprintf(card_rel, sizeof card_rel, "models/%s.json", name);
    snprintf(w_rel, sizeof w_rel, "models/%s", weights);
    cwba_card card;
    cwba_error err;
    assert_int_equal(cwba_card_load(tu_path(card_rel), &card, &err), CWBA_OK);
    double t0 = cwba_now();
    cwba_status st = cwba_card_verify(&card, tu_path(w_rel), &err);
    if (st) printf("  %s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    double t1 = cwba_now();

    cwba_weights *w = NULL;
    st = cwba_weights_load(tu_path(w_rel), &w, &err);
    if (st) printf("  %s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    double t2 = cwba_now();
    size_t nf = 0, ni = 0, params = 0;
    for (size_t i = 0; i < w->count; i++) {
        if (w->entries[i].is_integer) {
            ni++;
        } else {
            nf++;
            params += w->entries[i].numel;
        }
    }
    printf("  %s: sha256 ok (%.2f s), %zu float tensors (%zu values) + %zu integer, loaded in %.2f s\n",
           name, t1 - t0, nf, params, ni, t2 - t1);
    assert_int_equal(nf, want_float);
    assert_int_equal(ni, want_int);
    const cwba_tensor_entry *e = cwba_weights_find(w, probe);
    assert_non_null(e);
    assert_int_equal(e->ndim, probe_ndim);
    for (int i = 0; i < probe_ndim; i++) assert_int_equal(e->shape[i], probe_shape[i]);
    cwba_weights_free(w);

    /* A card whose sha256 differs by one digit must reject the same file. */
    card.sha256[0] = card.sha256[0] == '0' ? '1' : '0';
    assert_int_equal(cwba_card_verify(&card, tu_path(w_rel), &err), CWBA_E_FORMAT);
    assert_non_null(strstr(err.msg, "does not match"));
    cwba_card_free(&card);
}

static void test_resnet18(void **state)
{
    (void)state;
    const int64_t fc[2] = {10, 512};
    /* 102 F32 tensors + 20 I64 num_batches_tracked */
    check_model("resnet18_fmnist64", "resnet18_fmnist64.safetensors", 102, 20, "fc.weight", 2, fc);
}

static void test_alexnet(void **state)
{
    (void)state;
    const int64_t c0[4] = {64, 3, 11, 11};
    check_model("alexnet_fmnist64", "alexnet_fmnist64.safetensors.xz", 16, 0, "features.0.weight", 4,
                c0);
}

static void test_vgg16(void **state)
{
    (void)state;
    const int64_t cl[2] = {10, 4096};
    check_model("vgg16_fmnist64", "vgg16_fmnist64.safetensors.xz", 32, 0, "classifier.6.weight", 2,
                cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet18),
        cmocka_unit_test(test_alexnet),
        cmocka_unit_test(test_vgg16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
