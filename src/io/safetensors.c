/* safetensors reader (the loader that picks the format: src/io/weights_load.c).
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {...}}, then the data section; offsets are relative to it. */
#include "io_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A header this large is not a model header but a malformed or hostile file. */
#define SAFETENSORS_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_INT } dtype_kind;

typedef struct {
    const char *name;
    dtype_kind kind;
    size_t size;
} dtype_info;

static const dtype_info dtypes[] = {
    {"F32", DT_F32, 4},  {"F16", DT_F16, 2}, {"BF16", DT_BF16, 2}, {"F64", DT_F64, 8},
    {"I64", DT_INT, 8},  {"I32", DT_INT, 4}, {"I16", DT_INT, 2},   {"I8", DT_INT, 1},
    {"U64", DT_INT, 8},  {"U32", DT_INT, 4}, {"U16", DT_INT, 2},   {"U8", DT_INT, 1},
    {"BOOL", DT_INT, 1},
};

static const dtype_info *find_dtype(const char *s)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, s) == 0) return &dtypes[i];
    return NULL;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* A JSON value that must be a non-negative integer (jansson keeps integers as
 * json_int_t, so anything above INT64_MAX is already a parse error). */
static int json_nonneg(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0) return 0;
    *out = (uint64_t)x;
    return 1;
}

static cwba_status parse_tensor(const uint8_t *data, size_t data_len, const char *what,
                                const char *name, json_t *desc, cwba_weights *w, cwba_error *err)
{
    if (!json_is_object(desc))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: header entry is not an object", what,
                         name);
    json_t *jdt = json_object_get(desc, "dtype");
    json_t *jshape = json_object_get(desc, "shape");
    json_t *joff = json_object_get(desc, "data_offsets");
    if (!json_is_string(jdt))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: missing dtype", what, name);
    const dtype_info *dt = find_dtype(json_string_value(jdt));
    if (!dt)
        return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: tensor %s: unknown dtype \"%s\"", what, name,
                         json_string_value(jdt));
    if (!json_is_array(jshape))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: missing shape", what, name);
    size_t ndim = json_array_size(jshape);
    if (ndim > CWBA_MAX_DIMS)
        return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: tensor %s: %zu dimensions (at most %d)", what,
                         name, ndim, CWBA_MAX_DIMS);
    int64_t shape[CWBA_MAX_DIMS];
    size_t numel = 1;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!json_nonneg(json_array_get(jshape, i), &d) || d > (uint64_t)INT64_MAX)
            return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: shape[%zu] is not a size", what,
                             name, i);
        if (d > SIZE_MAX || !cwba_size_mul(numel, (size_t)d, &numel))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: shape overflows", what, name);
        shape[i] = (int64_t)d;
    }
    uint64_t begin, end;
    if (!json_is_array(joff) || json_array_size(joff) != 2 ||
        !json_nonneg(json_array_get(joff, 0), &begin) || !json_nonneg(json_array_get(joff, 1), &end))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: data_offsets must be [begin, end]", what,
                         name);
    if (begin > end)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: data_offsets begin %llu > end %llu",
                         what, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: tensor %s: data_offsets end %llu beyond the %zu-byte data section",
                         what, name, (unsigned long long)end, data_len);
    size_t nbytes;
    if (!cwba_size_mul(numel, dt->size, &nbytes) || nbytes != end - begin)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: tensor %s: shape needs %zu x %zu bytes but data_offsets span %llu",
                         what, name, numel, dt->size, (unsigned long long)(end - begin));

    /* Names are unique: the header is parsed with JSON_REJECT_DUPLICATES. */
    if (dt->kind == DT_INT) return cwba_weights_add_unique(w, name, (int)ndim, shape, NULL, err);

    size_t fbytes;
    if (!cwba_size_mul(numel, sizeof(float), &fbytes))
        return cwba_fail(err, CWBA_E_NOMEM, "%s: tensor %s too large", what, name);
    float *out = malloc(fbytes ? fbytes : 1);
    if (!out) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory for tensor %s", what, name);
    const uint8_t *src = data + begin; /* (numel) elements of dt, little-endian */
    for (size_t i = 0; i < numel; i++) {
        switch (dt->kind) {
        case DT_F32: {
            uint32_t b = rd32(src + 4 * i);
            memcpy(&out[i], &b, sizeof b);
            break;
        }
        case DT_F16: out[i] = cwba_f16_to_f32(rd16(src + 2 * i)); break;
        case DT_BF16: out[i] = cwba_bf16_to_f32(rd16(src + 2 * i)); break;
        case DT_F64: {
            uint64_t b = rd64(src + 8 * i);
            double d;
            memcpy(&d, &b, sizeof d);
            out[i] = (float)d;
            break;
        }
        case DT_INT: break; /* handled above */
        }
    }
    return cwba_weights_add_unique(w, name, (int)ndim, shape, out, err);
}

cwba_status cwba_weights_parse_safetensors(const uint8_t *buf, size_t len, const char *what,
                                           cwba_weights **out, cwba_error *err)
{
    *out = NULL;
    if (len < 8)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: truncated safetensors file (%zu bytes)", what, len);
    uint64_t hlen = rd64(buf);
    if (hlen > SAFETENSORS_MAX_HEADER)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: safetensors header length %llu exceeds %llu bytes",
                         what, (unsigned long long)hlen, (unsigned long long)SAFETENSORS_MAX_HEADER);
    if (hlen > len - 8)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: safetensors header length %llu beyond the end of the file (%zu bytes)",
                         what, (unsigned long long)hlen, len);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: bad safetensors JSON header: %s (offset %d)", what,
                         jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return cwba_fail(err, CWBA_E_FORMAT, "%s: safetensors header is not a JSON object", what);
    }
    cwba_weights *w = cwba_weights_new();
    if (!w) {
        json_decref(root);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    const uint8_t *data = buf + 8 + hlen; /* the data section */
    size_t data_len = len - 8 - (size_t)hlen;
    const char *key;
    json_t *val;
    cwba_status st = CWBA_OK;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) continue;
        st = parse_tensor(data, data_len, what, key, val, w, err);
        if (st) break;
    }
    json_decref(root);
    if (st) {
        cwba_weights_free(w);
        return st;
    }
    *out = w;
    return CWBA_OK;
}
