/* The range coder and value model on their own (src/codec/rc.c): exact round
 * trips over mixed alphabets and adaptive bits, cost against the
 * information content, the canonical end, and hostile input. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/rc.h"
#ifndef CWBA_MINIMAL
#include <zlib.h>
#endif

static uint64_t s = 0x243F6A8885A308D3ull;
static uint32_t rnd32(void)
{
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (uint32_t)(s >> 16);
}

/* Random interleaving of uniform symbols (alphabets 1..2^24) and skewed
 * adaptive bits: decoded exactly, and the uniform part costs its log2. */
static void test_mixed_roundtrip(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint32_t *kind = malloc(N * sizeof *kind), *M = malloc(N * sizeof *M), *v = malloc(N * sizeof *v);
    assert_true(kind && M && v);
    double info = 0;
    for (int i = 0; i < N; i++) {
        kind[i] = rnd32() % 3;
        if (kind[i] == 0) { /* small alphabet */
            M[i] = 1 + rnd32() % 300;
        } else if (kind[i] == 1) { /* any alphabet up to 2^24 */
            M[i] = 1 + rnd32() % (1u << (1 + rnd32() % 24));
        } else { /* a bit, 0 with probability 0.9 */
            M[i] = 2;
        }
        v[i] = kind[i] == 2 ? (rnd32() % 10 == 0) : rnd32() % M[i];
        if (kind[i] != 2) info += log2((double)M[i]);
    }
    rc_enc e;
    rc_enc_init(&e, SIZE_MAX);
    uint16_t p = RC_PROB_INIT;
    for (int i = 0; i < N; i++) {
        if (kind[i] == 2)
            rc_enc_bit(&e, &p, (int)v[i]);
        else
            rc_enc_uniform(&e, v[i], M[i]);
    }
    rc_enc_finish(&e);
    assert_false(e.over || e.bad || e.nomem);
    /* Bits cost about H(0.1) = 0.469 bits; the uniform symbols their log2. */
    double bits_ideal = info + (N / 3.0) * 0.469;
    printf("  %zu bytes for %.0f ideal bytes\n", e.pos, bits_ideal / 8);
    assert_true(e.pos * 8.0 < bits_ideal * 1.02);

    rc_dec d;
    rc_dec_init(&d, e.buf, e.pos);
    p = RC_PROB_INIT;
    for (int i = 0; i < N; i++) {
        uint32_t got;
        if (kind[i] == 2)
            got = (uint32_t)rc_dec_bit(&d, &p);
        else
            assert_int_equal(rc_dec_uniform(&d, M[i], &got), 0);
        assert_int_equal(got, v[i]);
    }
    assert_int_equal(rc_dec_finish(&d), 0);
    rc_enc_free(&e);
    free(kind);
    free(M);
    free(v);
}

/* Values through the value model at every n from 1 to 2^24-1 in powers and
 * their neighbours, and all values of small alphabets. */
static void test_value_model(void **state)
{
    (void)state;
    uint32_t ns[200], vs[200 * 8];
    int cnt = 0;
    for (int k = 0; k < 24; k++) {
        uint32_t base = 1u << k;
        uint32_t cand[] = {base - 1, base, base + 1, base + base / 2};
        for (int j = 0; j < 4; j++)
            if (cand[j] >= 1 && cand[j] <= 16777215u) ns[cnt++] = cand[j];
    }
    rc_enc e;
    rc_enc_init(&e, SIZE_MAX);
    uint16_t ctx[RC_VM_SLOTS];
    rc_vm_reset(ctx, RC_VM_SLOTS);
    for (int i = 0; i < cnt; i++)
        for (int j = 0; j < 8; j++) {
            uint32_t n = ns[i];
            uint32_t v = j == 0 ? 0 : j == 1 ? n : j == 2 ? n / 2 : j == 3 ? 1 : rnd32() % (n + 1);
            vs[i * 8 + j] = v;
            rc_vm_encode(&e, ctx, v, n);
        }
    for (uint32_t n = 1; n < 70; n++)
        for (uint32_t v = 0; v <= n; v++) rc_vm_encode(&e, ctx, v, n);
    rc_enc_finish(&e);
    rc_dec d;
    rc_dec_init(&d, e.buf, e.pos);
    rc_vm_reset(ctx, RC_VM_SLOTS);
    for (int i = 0; i < cnt; i++)
        for (int j = 0; j < 8; j++) {
            uint32_t got;
            assert_int_equal(rc_vm_decode(&d, ctx, ns[i], &got), 0);
            assert_int_equal(got, vs[i * 8 + j]);
        }
    for (uint32_t n = 1; n < 70; n++)
        for (uint32_t v = 0; v <= n; v++) {
            uint32_t got;
            assert_int_equal(rc_vm_decode(&d, ctx, n, &got), 0);
            assert_int_equal(got, v);
        }
    assert_int_equal(rc_dec_finish(&d), 0);
    rc_enc_free(&e);
}

/* The flush costs at most about one byte: k symbols of 8 bits each take k
 * bytes (+1), and all-zero symbols take no bytes at all. */
static void test_flush_is_short(void **state)
{
    (void)state;
    for (int k = 0; k < 50; k++) {
        rc_enc e;
        rc_enc_init(&e, SIZE_MAX);
        for (int i = 0; i < k; i++) rc_enc_uniform(&e, rnd32() % 256, 256);
        rc_enc_finish(&e);
        assert_true(e.pos <= (size_t)k + 1);
        rc_enc_free(&e);
    }
    rc_enc e;
    rc_enc_init(&e, SIZE_MAX);
    for (int i = 0; i < 1000; i++) rc_enc_uniform(&e, 0, 7);
    rc_enc_finish(&e);
    assert_int_equal(e.pos, 0);
    rc_enc_free(&e);
}

/* Output limit: the encoder counts but stops storing, flagging `over`. */
static void test_limit(void **state)
{
    (void)state;
    rc_enc e;
    rc_enc_init(&e, 10);
    for (int i = 0; i < 100; i++) rc_enc_uniform(&e, rnd32() % 256, 256);
    rc_enc_finish(&e);
    assert_true(e.over);
    assert_true(e.pos > 10);
    assert_true(e.alloc <= 10);
    rc_enc_free(&e);
}

/* Random bytes: decoding never reads the buffer past its end (ASan) and
 * either yields symbols or reports invalid data; canonical-end detection
 * rejects trailing zero and surplus bytes. */
static void test_hostile_input(void **state)
{
    (void)state;
    for (int trial = 0; trial < 2000; trial++) {
        size_t len = rnd32() % 12;
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rnd32();
        rc_dec d;
        rc_dec_init(&d, buf, len);
        uint16_t p = RC_PROB_INIT;
        for (int i = 0; i < 50; i++) {
            uint32_t v;
            if (rnd32() & 1) {
                if (rc_dec_uniform(&d, 1 + rnd32() % 5000, &v)) break;
            } else {
                (void)rc_dec_bit(&d, &p);
            }
        }
        (void)rc_dec_finish(&d);
        free(buf);
    }
    uint8_t z[] = {0x12, 0x00};
    rc_dec d;
    rc_dec_init(&d, z, 2);
    assert_int_equal(rc_dec_finish(&d), -1); /* ends in zero */
    uint8_t many[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    rc_dec_init(&d, many, 16);
    uint32_t v;
    assert_int_equal(rc_dec_uniform(&d, 2, &v), 0);
    assert_int_equal(rc_dec_finish(&d), -1); /* 16 bytes for one bit */
}

/* The stream's CRC-32 (ours, crc32.c): the standard check value, the empty
 * buffer, and zlib's crc32 on random buffers of every length up to 300
 * (zlib is not in the dependency-free build). */
static void test_crc32(void **state)
{
    (void)state;
    assert_int_equal(codec_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    assert_int_equal(codec_crc32(NULL, 0), 0);
#ifndef CWBA_MINIMAL
    uint8_t buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (uint8_t)rnd32();
    for (size_t n = 0; n <= sizeof buf; n++)
        assert_int_equal(codec_crc32(buf, n), (uint32_t)crc32_z(0L, buf, n));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_roundtrip),  cmocka_unit_test(test_value_model),
        cmocka_unit_test(test_flush_is_short),   cmocka_unit_test(test_limit),
        cmocka_unit_test(test_hostile_input),    cmocka_unit_test(test_crc32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
