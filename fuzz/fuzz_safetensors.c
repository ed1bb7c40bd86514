/* libFuzzer target: safetensors weights (and the .xz wrapper the loader
 * accepts), through the same in-memory entry points cwba_weights_load uses. */
#include "fuzz_util.h"

#include "cwba/io.h"
#include "io/io_internal.h"

/* A small input must not decompress into more than this (the loader's own
 * cap is 4 GiB; a fuzz run stays under libFuzzer's 2 GB limit). */
#define FUZZ_XZ_MAX ((size_t)64 << 20)

static void parse(const uint8_t *buf, size_t len)
{
    cwba_weights *w = NULL;
    cwba_error err = {0};
    cwba_status st = cwba_weights_parse_safetensors(buf, len, "fuzz.safetensors", &w, &err);
    fuzz_check_status(st, &err);
    if (st != CWBA_OK) {
        if (w) abort(); /* no result on failure */
        return;
    }
    for (size_t i = 0; i < w->count; i++) fuzz_check_tensor(w, i);
    cwba_weights_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_copy(data, size);
    if (cwba_is_xz(buf, size)) {
        uint8_t *raw = NULL;
        size_t raw_len = 0;
        cwba_error err = {0};
        cwba_status st = cwba_xz_decompress(buf, size, FUZZ_XZ_MAX, "fuzz.xz", &raw, &raw_len, &err);
        fuzz_check_status(st, &err);
        if (st == CWBA_OK) parse(raw, raw_len);
        free(raw);
    } else {
        parse(buf, size);
    }
    free(buf);
    return 0;
}
