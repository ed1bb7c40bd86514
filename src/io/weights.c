/* The name -> float32 tensor map every model is built from, and the
 * half-precision conversions its readers share. */
#include "io_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cwba_weights *cwba_weights_new(void) { return calloc(1, sizeof(cwba_weights)); }

static cwba_status grow(cwba_weights *w, cwba_error *err)
{
    if (w->count < w->capacity) return CWBA_OK;
    size_t cap = w->capacity ? 2 * w->capacity : 64;
    cwba_tensor_entry *e = realloc(w->entries, cap * sizeof *e);
    if (!e) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    w->entries = e;
    w->capacity = cap;
    return CWBA_OK;
}

cwba_status cwba_weights_add(cwba_weights *w, const char *name, int ndim, const int64_t *shape,
                             float *data, cwba_error *err)
{
    if (cwba_weights_find(w, name)) {
        free(data);
        return cwba_fail(err, CWBA_E_FORMAT, "duplicate tensor %s", name);
    }
    return cwba_weights_add_unique(w, name, ndim, shape, data, err);
}

cwba_status cwba_weights_add_unique(cwba_weights *w, const char *name, int ndim,
                                    const int64_t *shape, float *data, cwba_error *err)
{
    if (ndim < 0 || ndim > CWBA_MAX_DIMS) {
        free(data);
        return cwba_fail(err, CWBA_E_FORMAT, "tensor %s: %d dimensions (at most %d)", name, ndim,
                         CWBA_MAX_DIMS);
    }
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !cwba_size_mul(numel, (size_t)shape[i], &numel)) {
            free(data);
            return cwba_fail(err, CWBA_E_FORMAT, "tensor %s: invalid shape", name);
        }
    }
    cwba_status st = grow(w, err);
    if (st) {
        free(data);
        return st;
    }
    char *nm = strdup(name);
    if (!nm) {
        free(data);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    cwba_tensor_entry *e = &w->entries[w->count++];
    memset(e, 0, sizeof *e);
    e->name = nm;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->numel = numel;
    e->data = data;
    e->is_integer = data == NULL;
    return CWBA_OK;
}

const cwba_tensor_entry *cwba_weights_find(const cwba_weights *w, const char *name)
{
    if (!w) return NULL;
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0) return &w->entries[i];
    return NULL;
}

void cwba_weights_free(cwba_weights *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) {
        free(w->entries[i].name);
        free(w->entries[i].data);
    }
    free(w->entries);
    free(w);
}

float cwba_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) {
        /* Inf or NaN; keep the NaN payload in the top mantissa bits. */
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* Subnormal half: man * 2^-24, exactly representable as a normal float. */
        float v = ldexpf((float)man, -24);
        float r = sign ? -v : v;
        return r;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float cwba_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
