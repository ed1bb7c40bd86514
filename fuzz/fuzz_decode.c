/* libFuzzer target: the bitstream decoder must never crash, read out of
 * bounds or hang on any input; it either decodes or returns one error.
 *
 * Each input is decoded twice: as it is, and with its trailing CRC32
 * rewritten to match, so that mutations also reach the field checks and the
 * entropy decoders behind the CRC. Streams that decode are re-encoded and
 * must give the same codes back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cwba/codec.h"

/* Keeps one run's memory well under libFuzzer's default 2 GB limit. */
#define FUZZ_MAX_ELEMS (1u << 14)

static void run_one(const uint8_t *buf, size_t len)
{
    cwba_stream_info si;
    cwba_error err;
    if (cwba_stream_decode_header(buf, len, &si, &err) != CWBA_OK) {
        if (err.msg[0] == '\0') abort(); /* every failure explains itself */
        return;
    }
    size_t total = (size_t)si.C * (size_t)si.H * (size_t)si.W;
    if (total > FUZZ_MAX_ELEMS) return;
    int *n = malloc((size_t)si.C * sizeof *n);
    uint32_t *codes = malloc(total * sizeof *codes);
    float *xhat = malloc(total * sizeof *xhat);
    if (n && codes && xhat &&
        cwba_stream_decode(buf, len, &si, n, (size_t)si.C, codes, xhat, total, &err) == CWBA_OK) {
        /* A stream that decodes must re-encode to a stream with the same codes. */
        si.mode = CWBA_STREAM_AUTO;
        size_t cap = cwba_stream_bound(&si, n), len2;
        uint8_t *re = cap ? malloc(cap) : NULL;
        if (!re || cwba_stream_encode(&si, n, codes, re, cap, &len2, NULL, &err) != CWBA_OK) abort();
        uint32_t *codes2 = malloc(total * sizeof *codes2);
        if (!codes2 ||
            cwba_stream_decode(re, len2, NULL, NULL, 0, codes2, NULL, total, &err) != CWBA_OK ||
            memcmp(codes, codes2, total * sizeof *codes) != 0)
            abort();
        free(codes2);
        free(re);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(n);
    free(codes);
    free(xhat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* As given: a copy of exactly `size` bytes, so ASan sees any overread. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    run_one(buf, size);
    /* With the CRC made right, so mutations reach what lies behind it. */
    if (size >= 4) {
        uint32_t crc = (uint32_t)crc32(0L, buf, (uInt)(size - 4));
        for (int i = 0; i < 4; i++) buf[size - 4 + i] = (uint8_t)(crc >> (8 * i));
        run_one(buf, size);
    }
    free(buf);
    return 0;
}
