/* The committed bitstream corpus (tests/data/codec, made by
 * tools/codec_corpus.py, an independent encoder written from
 * docs/bitstream.md): valid streams decode to the listed codes, every bad
 * stream is rejected with its listed message; plus every truncation and every
 * single-byte corruption of encoder output is rejected. Run it under ASan
 * to see that no rejection reads outside the buffer. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/codec.h"

static uint8_t *load(const char *name, size_t *len)
{
    char rel[512];
    snprintf(rel, sizeof rel, "tests/data/codec/%s", name);
    uint8_t *buf = NULL;
    cwba_error err;
    cwba_status st = cwba_file_read_all(tu_path(rel), 1 << 24, &buf, len, &err);
    if (st) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    return buf;
}

/* Full decode the way a cloud process does it: header, buffers, payload.
 * The buffer is copied to an exact-size allocation so ASan sees overreads. */
static cwba_status decode_all(const uint8_t *src, size_t len, cwba_stream_info *si, int **n,
                              uint32_t **codes, float **xhat, cwba_error *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, src, len);
    *n = NULL;
    *codes = NULL;
    *xhat = NULL;
    cwba_status st = cwba_stream_decode_header(copy, len, si, err);
    if (st == CWBA_OK) {
        size_t total = (size_t)si->C * si->H * si->W;
        *n = malloc((size_t)si->C * sizeof **n);
        *codes = malloc(total * sizeof **codes);
        *xhat = malloc(total * sizeof **xhat);
        assert_true(*n && *codes && *xhat);
        st = cwba_stream_decode(copy, len, si, *n, (size_t)si->C, *codes, *xhat, total, err);
    }
    free(copy);
    return st;
}

static void test_manifest(void **state)
{
    (void)state;
    FILE *f = fopen(tu_path("tests/data/codec/manifest.tsv"), "r");
    assert_non_null(f);
    char line[1024];
    int ok_count = 0, bad_count = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\r\n")] = '\0';
        char *file = strtok(line, "\t"), *outcome = strtok(NULL, "\t"), *text = strtok(NULL, "\t");
        assert_true(file && outcome && text);
        size_t len;
        uint8_t *buf = load(file, &len);
        cwba_stream_info si;
        cwba_error err;
        int *n;
        uint32_t *codes;
        float *xhat;
        cwba_error_clear(&err);
        cwba_status st = decode_all(buf, len, &si, &n, &codes, &xhat, &err);
        if (strcmp(outcome, "ok") == 0) {
            if (st) fprintf(stderr, "%s: %s\n", file, err.msg);
            assert_int_equal(st, CWBA_OK);
            size_t elen;
            uint8_t *ex = load(text, &elen);
            size_t total = (size_t)si.C * si.H * si.W;
            assert_int_equal(elen, 4 * (1 + (size_t)si.C + total));
            uint32_t C;
            memcpy(&C, ex, 4);
            assert_int_equal(C, (uint32_t)si.C);
            for (int c = 0; c < si.C; c++) {
                uint32_t v;
                memcpy(&v, ex + 4 + 4 * (size_t)c, 4);
                assert_int_equal((uint32_t)n[c], v);
            }
            assert_memory_equal(codes, ex + 4 + 4 * (size_t)si.C, total * 4);
            /* Dequantized values are the reference function's, finite. */
            for (size_t i = 0; i < total; i++) assert_true(isfinite(xhat[i]));
            free(ex);
            ok_count++;
        } else if (strncmp(outcome, "expect:", 7) == 0) {
            assert_int_equal(st, CWBA_OK);
            char model[64], split[64];
            assert_int_equal(sscanf(outcome + 7, "%63[^:]:%63s", model, split), 2);
            st = cwba_stream_expect(&si, model, split, 0, 0, 0, &err);
            assert_int_equal(st, CWBA_E_FORMAT);
            if (!strstr(err.msg, text)) fprintf(stderr, "%s: got '%s'\n", file, err.msg);
            assert_non_null(strstr(err.msg, text));
            bad_count++;
        } else {
            cwba_status want = strcmp(outcome, "unsupported") == 0 ? CWBA_E_UNSUPPORTED : CWBA_E_FORMAT;
            if (st != want || !strstr(err.msg, text))
                fprintf(stderr, "%s: status %d, message '%s', expected '%s'\n", file, (int)st,
                        err.msg, text);
            assert_int_equal(st, want);
            assert_int_equal(err.status, want);
            assert_non_null(strstr(err.msg, text));
            assert_null(strchr(err.msg, '\n'));
            bad_count++;
        }
        free(n);
        free(codes);
        free(xhat);
        free(buf);
    }
    fclose(f);
    printf("  corpus: %d valid streams decoded, %d bad streams rejected\n", ok_count, bad_count);
    assert_true(ok_count >= 5);
    assert_true(bad_count >= 30);
}

/* Our own encoder's output, every prefix and every single-byte change. */
static void test_every_truncation_and_flip(void **state)
{
    (void)state;
    const char *names[] = {"valid_log_fixed_side.cwb", "valid_adaptive.cwb", "valid_dorefa.cwb",
                           "valid_flat.cwb"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t len;
        uint8_t *good = load(names[k], &len);
        cwba_stream_info si;
        cwba_error err;
        int *n;
        uint32_t *codes;
        float *xhat;
        for (size_t cut = 0; cut < len; cut++) {
            cwba_status st = decode_all(good, cut, &si, &n, &codes, &xhat, &err);
            assert_int_not_equal(st, CWBA_OK);
            assert_true(err.msg[0] != '\0');
            free(n);
            free(codes);
            free(xhat);
        }
        uint8_t *bad = malloc(len);
        for (size_t i = 0; i < len; i++) {
            static const uint8_t masks[] = {0x01, 0x80, 0xFF};
            for (size_t m = 0; m < 3; m++) {
                memcpy(bad, good, len);
                bad[i] ^= masks[m];
                /* CRC-32 detects every error burst up to 32 bits long. */
                cwba_status st = decode_all(bad, len, &si, &n, &codes, &xhat, &err);
                assert_int_not_equal(st, CWBA_OK);
                assert_true(err.msg[0] != '\0');
                free(n);
                free(codes);
                free(xhat);
            }
        }
        free(bad);
        free(good);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest),
        cmocka_unit_test(test_every_truncation_and_flip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
