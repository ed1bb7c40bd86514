/* Shared by the libFuzzer targets: the contract every parser keeps on any
 * input. A failure returns a status and exactly one non-empty line of
 * message (the library never prints, never aborts); a success leaves a
 * result that the target walks, so that ASan sees every byte of it. */
#ifndef CWBA_FUZZ_UTIL_H
#define CWBA_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts (a finding) unless st is OK or a documented error whose message is
 * one line that the error carries. With CWBA_FUZZ_VERBOSE set in the
 * environment, each status is shown (to see what a seed exercises). */
static inline void fuzz_check_status(cwba_status st, const cwba_error *err)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("CWBA_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "  %s%s%s\n", cwba_status_name(st), st ? ": " : "", st ? err->msg : "");
    if (st == CWBA_OK) return;
    /* E_INTERNAL is a bug; E_NOMEM from a small input is an allocation far
     * beyond what the input holds (libFuzzer stops at 2 GB, the replay
     * limits its address space). */
    if (st < CWBA_E_ARG || st > CWBA_E_UNSUPPORTED || st == CWBA_E_NOMEM) abort();
    if (err->status != st || err->msg[0] == '\0' || strchr(err->msg, '\n')) abort();
}

/* A copy of exactly `size` bytes, so that ASan catches a read past the end
 * (libFuzzer's own buffer may have slack). Never NULL for size 0. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
    uint8_t *buf = calloc(size ? size : 1, 1);
    if (!buf) abort();
    if (size) memcpy(buf, data, size);
    return buf;
}

/* Reads every float of a result so that ASan checks its extent (the
 * volatile store keeps the loop from being dropped). */
static inline void fuzz_touch(const float *p, size_t n)
{
    volatile double sink = 0.0;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)p[i];
    sink = s;
    (void)sink;
}

/* The same for bytes. */
static inline void fuzz_touch_bytes(const uint8_t *p, size_t n)
{
    volatile unsigned sink = 0;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += p[i];
    sink = s;
    (void)sink;
}

/* Every tensor of a parsed weights file: a shape that gives its numel, data
 * that holds numel floats; the first ones and the last found by name (a
 * search for each would make the check quadratic). */
static inline void fuzz_check_tensor(const cwba_weights *w, size_t i)
{
    const cwba_tensor_entry *e = &w->entries[i];
    if (e->ndim < 0 || e->ndim > CWBA_MAX_DIMS) abort();
    size_t numel = 1;
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] < 0) abort();
        numel *= (size_t)e->shape[d];
    }
    if (numel != e->numel || (!e->is_integer && !e->data)) abort();
    if (!e->is_integer) fuzz_touch(e->data, e->numel);
    if ((i < 16 || i + 1 == w->count) && cwba_weights_find(w, e->name) != e) abort();
}

#endif
