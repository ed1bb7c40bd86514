/* safetensors parsing, dtype conversion, xz sniffing and hostile headers. */
#include "testutil.h"

#include "cwba/io.h"
#include "io/io_internal.h"

#include <lzma.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A safetensors image built in memory: header JSON + raw data section. */
typedef struct {
    uint8_t *buf;
    size_t len;
} blob;

static blob make_st(const char *header, const void *data, size_t data_len)
{
    size_t h = strlen(header);
    blob b;
    b.len = 8 + h + data_len;
    b.buf = malloc(b.len);
    assert_non_null(b.buf);
    for (int i = 0; i < 8; i++) b.buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b.buf + 8, header, h);
    if (data_len) memcpy(b.buf + 8 + h, data, data_len);
    return b;
}

/* Parses and expects failure with `st` and a message containing each needle. */
static void expect_fail(blob b, cwba_status st, const char *needle1, const char *needle2)
{
    cwba_weights *w = (cwba_weights *)0x1;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_status got = cwba_weights_parse_safetensors(b.buf, b.len, "fixture.safetensors", &w, &err);
    printf("  -> %s: %s\n", cwba_status_name(got), err.msg);
    assert_int_equal(got, st);
    assert_null(w);
    assert_non_null(strstr(err.msg, "fixture.safetensors"));
    if (needle1) assert_non_null(strstr(err.msg, needle1));
    if (needle2) assert_non_null(strstr(err.msg, needle2));
    free(b.buf);
}

/* Data section of the valid fixture: a (2,2) F32, a (3) F16, a (2) BF16 and a
 * () I64, little-endian. */
static const uint8_t good_data[] = {
    /* a: F32 1, -2, 0.5, 3e38 */
    0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x3F, 0xF6, 0xB3, 0x61, 0x7F,
    /* b: F16 1, -0.333251953125 (0xB555), 65504 */
    0x00, 0x3C, 0x55, 0xB5, 0xFF, 0x7B,
    /* c: BF16 1, -5 */
    0x80, 0x3F, 0xA0, 0xC0,
    /* n: I64 7 */
    0x07, 0, 0, 0, 0, 0, 0, 0};
static const char good_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
    "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[22,26]},"
    "\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[26,34]}}";

static void check_good(const cwba_weights *w)
{
    assert_int_equal(w->count, 4);
    const cwba_tensor_entry *a = cwba_weights_find(w, "a");
    assert_non_null(a);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->numel, 4);
    assert_true(a->data[0] == 1.0f && a->data[1] == -2.0f && a->data[2] == 0.5f);
    uint32_t bits;
    memcpy(&bits, &a->data[3], 4);
    assert_int_equal(bits, 0x7F61B3F6u);
    const cwba_tensor_entry *b = cwba_weights_find(w, "b");
    assert_non_null(b);
    assert_true(b->data[0] == 1.0f && b->data[1] == -0.333251953125f && b->data[2] == 65504.0f);
    const cwba_tensor_entry *c = cwba_weights_find(w, "c");
    assert_true(c->data[0] == 1.0f && c->data[1] == -5.0f);
    const cwba_tensor_entry *n = cwba_weights_find(w, "n");
    assert_non_null(n);
    assert_true(n->is_integer);
    assert_null(n->data);
    assert_int_equal(n->ndim, 0);
    assert_int_equal(n->numel, 1);
    assert_null(cwba_weights_find(w, "__metadata__"));
}

static void test_valid(void **state)
{
    (void)state;
    blob b = make_st(good_header, good_data, sizeof good_data);
    cwba_weights *w = NULL;
    cwba_error err;
    assert_int_equal(cwba_weights_parse_safetensors(b.buf, b.len, "x", &w, &err), CWBA_OK);
    check_good(w);
    cwba_weights_free(w);
    free(b.buf);
}

static float bits_to_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_f16_values(void **state)
{
    (void)state;
    assert_true(cwba_f16_to_f32(0x0000) == 0.0f && !signbit(cwba_f16_to_f32(0x0000)));
    assert_true(cwba_f16_to_f32(0x8000) == 0.0f && signbit(cwba_f16_to_f32(0x8000)));
    assert_true(cwba_f16_to_f32(0x0001) == ldexpf(1.0f, -24));     /* smallest subnormal */
    assert_true(cwba_f16_to_f32(0x83FF) == -ldexpf(1023.0f, -24)); /* largest subnormal */
    assert_true(cwba_f16_to_f32(0x0400) == ldexpf(1.0f, -14));     /* smallest normal */
    assert_true(cwba_f16_to_f32(0x3C00) == 1.0f);
    assert_true(cwba_f16_to_f32(0xC000) == -2.0f);
    assert_true(cwba_f16_to_f32(0x3555) == 0.333251953125f);
    assert_true(cwba_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(isinf(cwba_f16_to_f32(0x7C00)) && cwba_f16_to_f32(0x7C00) > 0);
    assert_true(isinf(cwba_f16_to_f32(0xFC00)) && cwba_f16_to_f32(0xFC00) < 0);
    assert_true(isnan(cwba_f16_to_f32(0x7E00)));
    assert_true(isnan(cwba_f16_to_f32(0xFC01)));
#ifdef __FLT16_MAX__
    /* Every one of the 65536 patterns against the compiler's own _Float16. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        _Float16 x;
        uint16_t hb = (uint16_t)h;
        memcpy(&x, &hb, 2);
        float want = (float)x, got = cwba_f16_to_f32(hb);
        if (isnan(want) ? !isnan(got) : memcmp(&want, &got, 4) != 0) bad++;
    }
    printf("  exhaustive F16 check: %d mismatches of 65536\n", bad);
    assert_int_equal(bad, 0);
#endif
}

static void test_bf16_values(void **state)
{
    (void)state;
    assert_true(cwba_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(cwba_bf16_to_f32(0xC0A0) == -5.0f);
    assert_true(cwba_bf16_to_f32(0x0001) == bits_to_f(0x00010000u)); /* subnormal */
    assert_true(isinf(cwba_bf16_to_f32(0x7F80)));
    assert_true(isnan(cwba_bf16_to_f32(0x7FC0)));
    assert_true(signbit(cwba_bf16_to_f32(0x8000)));
}

static void test_truncated(void **state)
{
    (void)state;
    blob b = make_st(good_header, good_data, sizeof good_data);
    b.len = 5;
    expect_fail(b, CWBA_E_FORMAT, "truncated", NULL);
}

static void test_header_beyond_file(void **state)
{
    (void)state;
    blob b = make_st(good_header, good_data, sizeof good_data);
    b.len = 8 + 20; /* cut inside the header */
    expect_fail(b, CWBA_E_FORMAT, "header length", "beyond the end");
    b = make_st(good_header, good_data, sizeof good_data);
    b.buf[6] = 0x01; /* header length ~2^48 */
    expect_fail(b, CWBA_E_FORMAT, "header length", "exceeds");
}

static void test_bad_json(void **state)
{
    (void)state;
    expect_fail(make_st("{\"a\": {\"dtype\": \"F32\", ", NULL, 0), CWBA_E_FORMAT, "JSON", NULL);
    expect_fail(make_st("[1, 2]", NULL, 0), CWBA_E_FORMAT, "not a JSON object", NULL);
    expect_fail(make_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                        "\0\0\0\0", 4),
                CWBA_E_FORMAT, "duplicate", NULL);
    expect_fail(make_st("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "\0\0\0\0", 4),
                CWBA_E_FORMAT, "tensor a", "missing shape");
    expect_fail(make_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                        "\0\0\0\0", 4),
                CWBA_E_FORMAT, "tensor a", "shape[0]");
    expect_fail(make_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
                        "\0\0\0\0", 4),
                CWBA_E_FORMAT, "tensor a", "data_offsets");
    expect_fail(make_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                        "\"data_offsets\":[0,4]}}",
                        "\0\0\0\0", 4),
                CWBA_E_UNSUPPORTED, "tensor a", "dimensions");
}

static void test_unknown_dtype(void **state)
{
    (void)state;
    expect_fail(make_st("{\"layer.weight\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],"
                        "\"data_offsets\":[0,4]}}",
                        "\0\0\0\0", 4),
                CWBA_E_UNSUPPORTED, "layer.weight", "F8_E4M3");
}

static void test_offsets(void **state)
{
    (void)state;
    /* end beyond the data section */
    expect_fail(make_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                        "\0\0\0\0", 4),
                CWBA_E_FORMAT, "tensor w", "beyond");
    /* begin > end */
    expect_fail(make_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}",
                        "\0\0\0\0", 4),
                CWBA_E_FORMAT, "tensor w", "begin");
    /* shape says 3 floats (12 bytes) but offsets span 8 */
    expect_fail(make_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                        "\0\0\0\0\0\0\0\0", 8),
                CWBA_E_FORMAT, "tensor w", "span 8");
    /* shape product overflows size_t */
    expect_fail(make_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                        "\"data_offsets\":[0,8]}}",
                        "\0\0\0\0\0\0\0\0", 8),
                CWBA_E_FORMAT, "tensor w", "overflow");
}

static char *write_tmp(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return p;
}

static void test_xz_equals_plain(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    blob b = make_st(good_header, good_data, sizeof good_data);
    char *plain = write_tmp(dir, "m.safetensors", b.buf, b.len);

    uint8_t xz[4096];
    size_t xz_len = 0;
    assert_int_equal(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, b.buf, b.len, xz, &xz_len,
                                             sizeof xz),
                     LZMA_OK);
    /* Content decides, not the name: give the xz file a misleading one. */
    char *packed = write_tmp(dir, "m.bin", xz, xz_len);

    cwba_weights *w1 = NULL, *w2 = NULL;
    cwba_error err;
    assert_int_equal(cwba_weights_load(plain, &w1, &err), CWBA_OK);
    assert_int_equal(cwba_weights_load(packed, &w2, &err), CWBA_OK);
    check_good(w1);
    check_good(w2);
    for (size_t i = 0; i < w1->count; i++) {
        const cwba_tensor_entry *e = &w1->entries[i];
        const cwba_tensor_entry *f = cwba_weights_find(w2, e->name);
        assert_non_null(f);
        assert_int_equal(e->numel, f->numel);
        if (e->data) assert_memory_equal(e->data, f->data, e->numel * sizeof(float));
    }
    cwba_weights_free(w1);
    cwba_weights_free(w2);

    /* A truncated xz stream is a format error naming the file. */
    char *cut = write_tmp(dir, "cut.safetensors.xz", xz, xz_len - 10);
    cwba_weights *w3 = NULL;
    assert_int_equal(cwba_weights_load(cut, &w3, &err), CWBA_E_FORMAT);
    printf("  -> %s\n", err.msg);
    assert_non_null(strstr(err.msg, "cut.safetensors.xz"));
    assert_non_null(strstr(err.msg, "xz"));
    assert_null(w3);

    /* Decompression cap: a stream that inflates beyond max_out is refused. */
    uint8_t *o = NULL;
    size_t ol = 0;
    assert_int_equal(cwba_xz_decompress(xz, xz_len, 16, "capped", &o, &ol, &err), CWBA_E_FORMAT);
    assert_non_null(strstr(err.msg, "exceeds"));
    assert_null(o);

    free(plain);
    free(packed);
    free(cut);
    free(b.buf);
    tu_rmtree(dir);
    free(dir);
}

static void test_load_errors(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    cwba_weights *w = NULL;
    cwba_error err;
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/nope.safetensors", dir);
    assert_int_equal(cwba_weights_load(missing, &w, &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "nope.safetensors"));

    /* A zip header routes to the .pth loader (tested in its own file); a
     * broken archive must fail there, naming the file, not be read as safetensors. */
    char *pth = write_tmp(dir, "broken.pth", "PK\x03\x04rest-of-zip", 16);
    cwba_status st = cwba_weights_load(pth, &w, &err);
    printf("  -> %s: %s\n", cwba_status_name(st), err.msg);
    assert_true(st == CWBA_E_FORMAT || st == CWBA_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "broken.pth"));
    assert_null(strstr(err.msg, "safetensors"));
    assert_null(w);
    free(pth);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),          cmocka_unit_test(test_f16_values),
        cmocka_unit_test(test_bf16_values),    cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_header_beyond_file), cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_unknown_dtype),  cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_xz_equals_plain), cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
