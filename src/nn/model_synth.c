/* Deterministic synthetic weights (docs/synthetic-weights.md). */
#include "nn/model_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ synthetic weights */

/* The generator of docs/synthetic-weights.md. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001B3ULL;
    }
    return h;
}

void cwba_synthetic_fill(const char *name, uint64_t seed, float *x, size_t n)
{
    uint64_t s = fnv1a64(name) ^ seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = s + (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        float u = (float)(z >> 40) * 0x1p-24f; /* exact: 24-bit integer times 2^-24 */
        x[i] = 2.0f * u - 1.0f;                /* exact in float32 */
    }
}

cwba_status cwba_weights_synthetic(cwba_arch arch, int num_classes, uint64_t seed,
                                   cwba_weights **out, cwba_error *err)
{
    if (!out) return cwba_fail(err, CWBA_E_ARG, "cwba_weights_synthetic: out is NULL");
    *out = NULL;
    if (!nn_model_valid_arch(arch))
        return cwba_fail(err, CWBA_E_ARG, "cwba_weights_synthetic: unknown architecture %d", (int)arch);
    if (num_classes < 1 || num_classes > MAX_CLASSES)
        return cwba_fail(err, CWBA_E_ARG, "num_classes %d out of range (1..%d)", num_classes,
                         MAX_CLASSES);
    cwba_model *m = calloc(1, sizeof *m);
    speclist *specs = malloc(sizeof *specs);
    cwba_weights *w = cwba_weights_new();
    if (!m || !specs || !w) {
        free(m);
        free(specs);
        cwba_weights_free(w);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    nn_model_build(m, arch, num_classes);
    nn_model_specs(m, specs);
    free(m); /* structure only: nothing allocated inside */
    cwba_status st = CWBA_OK;
    for (int i = 0; i < specs->n && !st; i++) {
        const tspec *t = &specs->v[i];
        size_t n = 1, fan_in = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        for (int d = 1; d < t->ndim; d++) fan_in *= (size_t)t->shape[d];
        float *x = nn_alloc_floats(n);
        if (!x) {
            st = cwba_fail(err, CWBA_E_NOMEM, "out of memory (tensor %s)", t->name);
            break;
        }
        cwba_synthetic_fill(t->name, seed, x, n);
        float a = (float)sqrt(6.0 / (double)fan_in);
        for (size_t j = 0; j < n; j++) {
            float r = x[j];
            switch (t->kind) {
            case T_WEIGHT: x[j] = r * a; break;
            case T_BIAS: x[j] = r * 0.01f; break;
            case T_BN_WEIGHT: x[j] = 1.0f + 0.1f * r; break;
            case T_BN_BIAS:
            case T_BN_MEAN: x[j] = 0.1f * r; break;
            case T_BN_VAR: x[j] = 1.0f + 0.5f * r; break;
            }
        }
        st = cwba_weights_add(w, t->name, t->ndim, t->shape, x, err);
    }
    free(specs);
    if (st) {
        cwba_weights_free(w);
        return st;
    }
    *out = w;
    return CWBA_OK;
}
