/* The C synthetic-weight generator against the numpy one in
 * tools/make_reference.py (docs/synthetic-weights.md defines both).
 *
 * tests/data/ref/synthetic_vectors.json holds raw streams as float32 bit
 * patterns and, for every float tensor of the three synthetic state dicts
 * (1000 classes, seed 1), its shape, first 8 values and the sha256 of its
 * float32 bytes. Everything here is compared bit for bit: the generator is
 * pure integer arithmetic plus exactly rounded float32 operations, so any
 * difference is a bug, not rounding noise. */
#include "testutil.h"

#include <cwba.h>
#include <jansson.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *load_vectors(void) {
    json_error_t jerr;
    json_t *root = json_load_file(tu_path("tests/data/ref/synthetic_vectors.json"), 0, &jerr);
    if (root == NULL) {
        fail_msg("synthetic_vectors.json: %s (line %d)", jerr.text, jerr.line);
    }
    assert_string_equal(json_string_value(json_object_get(root, "format")), "cwba-ref-1");
    return root;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint32_t parse_bits(json_t *s) {
    const char *txt = json_string_value(s);
    assert_non_null(txt);
    return (uint32_t)strtoul(txt, NULL, 16);
}

/* Raw streams r_0..r_7 for a few (name, seed) pairs, including seed 2^64-1. */
static void test_streams(void **state) {
    (void)state;
    json_t *root = load_vectors();
    json_t *streams = json_object_get(root, "streams");
    assert_true(json_array_size(streams) >= 4);
    size_t k;
    json_t *s;
    json_array_foreach(streams, k, s) {
        const char *name = json_string_value(json_object_get(s, "name"));
        uint64_t seed = strtoull(json_string_value(json_object_get(s, "seed")), NULL, 10);
        json_t *bits = json_object_get(s, "bits");
        size_t n = json_array_size(bits);
        assert_true(n > 0 && n <= 16);
        float x[16];
        cwba_synthetic_fill(name, seed, x, n);
        for (size_t i = 0; i < n; i++) {
            uint32_t want = parse_bits(json_array_get(bits, i));
            if (f32_bits(x[i]) != want) {
                fail_msg("stream %s seed %" PRIu64 " [%zu]: C 0x%08" PRIx32 " numpy 0x%08" PRIx32,
                         name, seed, i, f32_bits(x[i]), want);
            }
        }
    }
    json_decref(root);
}

/* Every tensor of cwba_weights_synthetic for one arch: the set of names, the
 * shapes, the first values and the sha256 of the whole tensor. */
static void check_arch(cwba_arch arch) {
    const char *aname = cwba_arch_name(arch);
    json_t *root = load_vectors();
    long num_classes = (long)json_integer_value(json_object_get(root, "num_classes"));
    long seed = (long)json_integer_value(json_object_get(root, "weight_seed"));
    cwba_error err;
    cwba_weights *w = NULL;
    cwba_status st = cwba_weights_synthetic(arch, (int)num_classes, (uint64_t)seed, &w, &err);
    if (st != CWBA_OK) {
        fail_msg("cwba_weights_synthetic(%s): %s", aname, err.msg);
    }
    size_t expected = 0, k;
    json_t *t;
    json_array_foreach(json_object_get(root, "tensors"), k, t) {
        if (strcmp(json_string_value(json_object_get(t, "arch")), aname) != 0) {
            continue;
        }
        expected++;
        const char *name = json_string_value(json_object_get(t, "name"));
        const cwba_tensor_entry *e = cwba_weights_find(w, name);
        if (e == NULL) {
            fail_msg("%s: tensor %s missing from cwba_weights_synthetic", aname, name);
        }
        json_t *shape = json_object_get(t, "shape");
        assert_int_equal(e->ndim, (int)json_array_size(shape));
        for (int d = 0; d < e->ndim; d++) {
            assert_int_equal(e->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
        }
        json_t *first = json_object_get(t, "first_bits");
        for (size_t i = 0; i < json_array_size(first) && i < e->numel; i++) {
            uint32_t want = parse_bits(json_array_get(first, i));
            if (f32_bits(e->data[i]) != want) {
                fail_msg("%s %s[%zu]: C 0x%08" PRIx32 " numpy 0x%08" PRIx32, aname, name, i,
                         f32_bits(e->data[i]), want);
            }
        }
        /* The float32 bytes are little-endian on every platform we build for. */
        char hex[65];
        cwba_sha256_hex(e->data, e->numel * sizeof(float), hex);
        const char *want_hex = json_string_value(json_object_get(t, "sha256"));
        if (strcmp(hex, want_hex) != 0) {
            double sum = 0.0;
            for (size_t i = 0; i < e->numel; i++) {
                sum += e->data[i];
            }
            fail_msg("%s %s: sha256 differs (C sum %.17g, numpy sum %.17g)", aname, name, sum,
                     json_real_value(json_object_get(t, "sum")));
        }
    }
    /* No extra float tensors either (num_batches_tracked is never generated). */
    size_t have = 0;
    for (size_t i = 0; i < w->count; i++) {
        if (!w->entries[i].is_integer) {
            have++;
        }
    }
    print_message("%s: %zu synthetic tensors bit-identical to numpy\n", aname, expected);
    assert_true(expected > 0);
    assert_int_equal(have, expected);
    cwba_weights_free(w);
    json_decref(root);
}

static void test_alexnet(void **state) {
    (void)state;
    check_arch(CWBA_ARCH_ALEXNET);
}
static void test_vgg16(void **state) {
    (void)state;
    check_arch(CWBA_ARCH_VGG16);
}
static void test_resnet18(void **state) {
    (void)state;
    check_arch(CWBA_ARCH_RESNET18);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_alexnet),
        cmocka_unit_test(test_vgg16),
        cmocka_unit_test(test_resnet18),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
