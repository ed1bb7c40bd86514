/* Model cards: parsing the shipped cards, bad cards, sha256 verification. */
#include "testutil.h"

#include "cwba/io.h"

#include <lzma.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The group's scratch directory (tu_group_setup / tu_group_teardown). */
#define dir tu_group_dir

static const char *tmp(const char *name)
{
    static char p[2][4096];
    static int k;
    char *b = p[k++ & 1];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void test_shipped_cards(void **state)
{
    (void)state;
    static const struct {
        const char *file, *arch;
        double top1;
        float logit00;
    } want[3] = {
        {"models/resnet18_fmnist64.json", "resnet18", 0.9394, 0},
        {"models/alexnet_fmnist64.json", "alexnet", 0.9029, -0.6948099732398987f},
        {"models/vgg16_fmnist64.json", "vgg16", 0.9167, 0},
    };
    for (int i = 0; i < 3; i++) {
        cwba_card c;
        cwba_error err;
        cwba_status st = cwba_card_load(tu_path(want[i].file), &c, &err);
        if (st) printf("  %s\n", err.msg);
        assert_int_equal(st, CWBA_OK);
        assert_string_equal(c.arch, want[i].arch);
        assert_int_equal(strlen(c.sha256), 64);
        assert_true(c.test_top1 == want[i].top1);
        assert_int_equal(c.input_size, 64);
        assert_true(c.mean == 0.286 && c.std == 0.353);
        assert_int_equal(c.num_ref_logits, 16);
        assert_int_equal(c.num_classes, 10);
        assert_non_null(c.ref_logits);
        if (want[i].logit00 != 0) assert_true(c.ref_logits[0] == want[i].logit00);
        for (int k = 0; k < 160; k++) assert_true(isfinite(c.ref_logits[k]));
        cwba_card_free(&c);
        cwba_card_free(&c); /* idempotent */
    }
}

static const char *card_json(const char *sha)
{
    static char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"arch\": \"resnet18 (torchvision)\", \"sha256\": \"%s\", \"test_top1\": 0.5,"
             " \"input\": {\"size\": 32, \"mean\": 0.1, \"std\": 0.2},"
             " \"reference_logits_first16\": [[1, 2], [3, 4.5]]}",
             sha);
    return buf;
}

static void expect_card_fail(const char *json, cwba_status st, const char *needle)
{
    const char *p = tmp("bad.json");
    write_file(p, json, strlen(json));
    cwba_card c;
    cwba_error err;
    cwba_status got = cwba_card_load(p, &c, &err);
    printf("  -> %s: %s\n", cwba_status_name(got), err.msg);
    assert_int_equal(got, st);
    assert_non_null(strstr(err.msg, "bad.json"));
    assert_non_null(strstr(err.msg, needle));
    assert_null(c.ref_logits);
}

static void test_bad_cards(void **state)
{
    (void)state;
    const char *zero = "0000000000000000000000000000000000000000000000000000000000000000";
    expect_card_fail("{\"arch\": \"x\",", CWBA_E_FORMAT, "bad JSON");
    expect_card_fail("[]", CWBA_E_FORMAT, "not a JSON object");
    expect_card_fail("{\"sha256\": \"00\"}", CWBA_E_FORMAT, "\"arch\"");
    expect_card_fail(card_json("abc"), CWBA_E_FORMAT, "\"sha256\"");
    expect_card_fail(card_json("zz00000000000000000000000000000000000000000000000000000000000000"),
                     CWBA_E_FORMAT, "\"sha256\"");
    char j[1024];
    snprintf(j, sizeof j, "%s", card_json(zero));
    char *q = strstr(j, "\"std\": 0.2");
    memcpy(q, "\"std\": 0.0", 10);
    expect_card_fail(j, CWBA_E_FORMAT, "input.std");
    snprintf(j, sizeof j, "%s", card_json(zero));
    q = strstr(j, "[3, 4.5]");
    memcpy(q, "[3, \"x\"]", 8);
    expect_card_fail(j, CWBA_E_FORMAT, "[1][1]");
    snprintf(j, sizeof j, "%s", card_json(zero));
    q = strstr(j, "[3, 4.5]");
    memcpy(q, "[3     ]", 8);
    expect_card_fail(j, CWBA_E_FORMAT, "row 1");
    cwba_card c;
    cwba_error err;
    assert_int_equal(cwba_card_load(tmp("missing.json"), &c, &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "missing.json"));
}

static void test_verify(void **state)
{
    (void)state;
    const char payload[] = "pretend these are safetensors bytes";
    char hex[65];
    cwba_sha256_hex(payload, sizeof payload - 1, hex);
    write_file(tmp("w.safetensors"), payload, sizeof payload - 1);
    uint8_t xz[1024];
    size_t xz_len = 0;
    assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, (const uint8_t *)payload,
                                             sizeof payload - 1, xz, &xz_len, sizeof xz),
                     LZMA_OK);
    write_file(tmp("w.safetensors.xz"), xz, xz_len);

    const char *cp = tmp("card.json");
    const char *js = card_json(hex);
    write_file(cp, js, strlen(js));
    cwba_card c;
    cwba_error err;
    assert_int_equal(cwba_card_load(cp, &c, &err), CWBA_OK);
    assert_int_equal(c.num_ref_logits, 2);
    assert_int_equal(c.num_classes, 2);
    assert_true(c.ref_logits[3] == 4.5f);
    assert_int_equal(cwba_card_verify(&c, tmp("w.safetensors"), &err), CWBA_OK);
    /* The sha is of the uncompressed bytes. */
    assert_int_equal(cwba_card_verify(&c, tmp("w.safetensors.xz"), &err), CWBA_OK);

    write_file(tmp("other.safetensors"), payload, sizeof payload - 2);
    assert_int_equal(cwba_card_verify(&c, tmp("other.safetensors"), &err), CWBA_E_FORMAT);
    printf("  -> %s\n", err.msg);
    assert_non_null(strstr(err.msg, "other.safetensors"));
    assert_non_null(strstr(err.msg, "does not match"));
    assert_int_equal(cwba_card_verify(&c, tmp("nope.safetensors"), &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "nope.safetensors"));
    cwba_card_free(&c);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_cards),
        cmocka_unit_test(test_bad_cards),
        cmocka_unit_test(test_verify),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
