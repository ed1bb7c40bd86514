/* PyTorch checkpoints (.pth / .pt) read without Python.
 *
 * Two container layouts exist and both are read here:
 *  - zip (torch.save since 1.6): "<prefix>/data.pkl" is a pickle of the state
 *    dict whose tensors name their storages by persistent id; the storage bytes
 *    are the entries "<prefix>/data/<key>" (stored or deflated).
 *  - legacy (torch.save(..., _use_new_zipfile_serialization=False), and the
 *    files torchvision published before that): five things back to back — a
 *    pickled magic number, a pickled protocol version (1001), a pickled sys_info
 *    dict, the pickled object, a pickled list of storage keys — followed by the
 *    raw storages in the order of that list, each prefixed by its element count
 *    as a little-endian int64.
 *
 * The unpickler below is deliberately small: it knows the opcodes that state
 * dicts use (protocols 0-5 binary forms) and the handful of globals torch.save
 * emits for tensors; anything else is rejected with a message naming the file,
 * the opcode or global and its offset. Every length, count, offset and stride
 * from the file is checked before use. */
#include "cwba/io.h"
#include "io_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Caps that keep a hostile pickle from exhausting memory before it fails. */
/* Objects created by one pickle: each takes about 256 bytes, so 2^20 is
 * 256 MB at most (2^24 let a 16 MB pickle ask for 4 GB); a state dict
 * needs a few tens per tensor. */
#define PK_MAX_VALUES ((size_t)1 << 20)
#define PK_MAX_MEMO ((size_t)1 << 22)   /* memo slots */
#define ZIP_MAX_ENTRIES 1000000u

/* ------------------------------------------------------------ byte access */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* ------------------------------------------------------------ pickle values */

typedef enum pk_kind {
    PK_MARK,
    PK_NONE,
    PK_BOOL,
    PK_INT,    /* fits int64 */
    PK_BIGINT, /* LONG1/LONG4 wider than 64 bits: raw little-endian bytes in s */
    PK_FLOAT,
    PK_STR,    /* unicode or bytes: s, slen (NUL-terminated copy) */
    PK_TUPLE,
    PK_LIST,
    PK_DICT,   /* items hold key, value, key, value, ... */
    PK_GLOBAL, /* s = "module name" */
    PK_STORAGE,
    PK_TENSOR
} pk_kind;

typedef enum pth_dtype {
    DT_F32,
    DT_F16,
    DT_BF16,
    DT_F64,
    DT_I64,
    DT_I32,
    DT_I16,
    DT_I8,
    DT_U8,
    DT_BOOL
} pth_dtype;

static const struct {
    const char *global;
    pth_dtype dt;
    size_t size;
} k_storage_types[] = {
    {"torch FloatStorage", DT_F32, 4}, {"torch HalfStorage", DT_F16, 2},
    {"torch BFloat16Storage", DT_BF16, 2}, {"torch DoubleStorage", DT_F64, 8},
    {"torch LongStorage", DT_I64, 8}, {"torch IntStorage", DT_I32, 4},
    {"torch ShortStorage", DT_I16, 2}, {"torch CharStorage", DT_I8, 1},
    {"torch ByteStorage", DT_U8, 1}, {"torch BoolStorage", DT_BOOL, 1},
};

typedef struct pk_val {
    pk_kind kind;
    int64_t i;
    double f;
    char *s;
    size_t slen;
    struct pk_val **items;
    size_t n, cap;
    /* PK_STORAGE: s = key, dtype, numel (of the storage, or of the legacy view),
     * view_offset = element offset of a legacy view inside its root storage. */
    pth_dtype dtype;
    size_t elsize;
    int64_t numel;
    int64_t view_offset;
    /* PK_TENSOR */
    struct pk_val *storage;
    int64_t offset;
    int ndim;
    int64_t shape[CWBA_MAX_DIMS], stride[CWBA_MAX_DIMS];
} pk_val;

static pk_val k_mark = {.kind = PK_MARK};

typedef struct pk_state {
    const char *what; /* file name for messages */
    const uint8_t *buf;
    size_t len, pos;
    pk_val **stack;
    size_t sp, scap;
    pk_val **memo;
    size_t memo_cap;
    pk_val **all; /* every value created, freed together */
    size_t nall, allcap;
    cwba_error *err;
} pk_state;

static void pk_free_all(pk_state *u)
{
    for (size_t i = 0; i < u->nall; i++) {
        free(u->all[i]->s);
        free(u->all[i]->items);
        free(u->all[i]);
    }
    free(u->all);
    free(u->stack);
    free(u->memo);
    memset(u, 0, sizeof *u);
}

static pk_val *pk_new(pk_state *u, pk_kind kind)
{
    if (u->nall >= PK_MAX_VALUES) {
        cwba_fail(u->err, CWBA_E_FORMAT, "%s: pickle creates more than %zu objects", u->what,
                  PK_MAX_VALUES);
        return NULL;
    }
    if (u->nall == u->allcap) {
        size_t cap = u->allcap ? 2 * u->allcap : 256;
        pk_val **a = realloc(u->all, cap * sizeof *a);
        if (!a) {
            cwba_fail(u->err, CWBA_E_NOMEM, "%s: out of memory", u->what);
            return NULL;
        }
        u->all = a;
        u->allcap = cap;
    }
    pk_val *v = calloc(1, sizeof *v);
    if (!v) {
        cwba_fail(u->err, CWBA_E_NOMEM, "%s: out of memory", u->what);
        return NULL;
    }
    v->kind = kind;
    u->all[u->nall++] = v;
    return v;
}

static int pk_append(pk_state *u, pk_val *c, pk_val *item)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        pk_val **a = realloc(c->items, cap * sizeof *a);
        if (!a) {
            cwba_fail(u->err, CWBA_E_NOMEM, "%s: out of memory", u->what);
            return 0;
        }
        c->items = a;
        c->cap = cap;
    }
    c->items[c->n++] = item;
    return 1;
}

static int pk_push(pk_state *u, pk_val *v)
{
    if (!v) return 0;
    if (u->sp == u->scap) {
        size_t cap = u->scap ? 2 * u->scap : 64;
        pk_val **a = realloc(u->stack, cap * sizeof *a);
        if (!a) {
            cwba_fail(u->err, CWBA_E_NOMEM, "%s: out of memory", u->what);
            return 0;
        }
        u->stack = a;
        u->scap = cap;
    }
    u->stack[u->sp++] = v;
    return 1;
}

static int pk_bad(pk_state *u, const char *why)
{
    cwba_fail(u->err, CWBA_E_FORMAT, "%s: malformed pickle at byte %zu: %s", u->what, u->pos, why);
    return 0;
}

static pk_val *pk_pop(pk_state *u)
{
    if (u->sp == 0 || u->stack[u->sp - 1] == &k_mark) {
        pk_bad(u, "stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static pk_val *pk_top(pk_state *u)
{
    if (u->sp == 0 || u->stack[u->sp - 1] == &k_mark) {
        pk_bad(u, "stack underflow");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

/* Index of the topmost MARK, or -1 (error set). */
static long pk_find_mark(pk_state *u)
{
    for (size_t i = u->sp; i > 0; i--)
        if (u->stack[i - 1] == &k_mark) return (long)(i - 1);
    pk_bad(u, "no MARK on the stack");
    return -1;
}

static int pk_need(pk_state *u, size_t n)
{
    if (n > u->len - u->pos) return pk_bad(u, "truncated");
    return 1;
}

static pk_val *pk_make_str(pk_state *u, const uint8_t *p, size_t n)
{
    pk_val *v = pk_new(u, PK_STR);
    if (!v) return NULL;
    size_t sz;
    if (!cwba_size_add(n, 1, &sz) || !(v->s = malloc(sz))) {
        cwba_fail(u->err, CWBA_E_NOMEM, "%s: out of memory", u->what);
        return NULL;
    }
    memcpy(v->s, p, n);
    v->s[n] = '\0';
    v->slen = n;
    return v;
}

static int pk_memo_put(pk_state *u, uint64_t key, pk_val *v)
{
    if (key >= PK_MAX_MEMO) return pk_bad(u, "memo key too large");
    if (key >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= key) cap *= 2;
        pk_val **m = realloc(u->memo, cap * sizeof *m);
        if (!m) {
            cwba_fail(u->err, CWBA_E_NOMEM, "%s: out of memory", u->what);
            return 0;
        }
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *m);
        u->memo = m;
        u->memo_cap = cap;
    }
    u->memo[key] = v;
    return 1;
}

static int pk_memo_get(pk_state *u, uint64_t key)
{
    if (key >= u->memo_cap || !u->memo[key]) return pk_bad(u, "memo key not defined");
    return pk_push(u, u->memo[key]);
}

/* Reads a '\n'-terminated line (GLOBAL, PUT, GET); *out points into buf. */
static int pk_line(pk_state *u, const char **out, size_t *n)
{
    const uint8_t *s = u->buf + u->pos;
    const uint8_t *nl = memchr(s, '\n', u->len - u->pos);
    if (!nl) return pk_bad(u, "unterminated line");
    *out = (const char *)s;
    *n = (size_t)(nl - s);
    u->pos += *n + 1;
    return 1;
}

static int pk_line_uint(pk_state *u, uint64_t *out)
{
    const char *s;
    size_t n;
    if (!pk_line(u, &s, &n)) return 0;
    if (n == 0 || n > 18) return pk_bad(u, "bad decimal");
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return pk_bad(u, "bad decimal");
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static pk_val *pk_make_global(pk_state *u, const char *mod, size_t nm, const char *name, size_t nn)
{
    if (nm > 256 || nn > 256) {
        pk_bad(u, "global name too long");
        return NULL;
    }
    char tmp[520];
    memcpy(tmp, mod, nm);
    tmp[nm] = ' ';
    memcpy(tmp + nm + 1, name, nn);
    pk_val *v = pk_make_str(u, (const uint8_t *)tmp, nm + 1 + nn);
    if (v) v->kind = PK_GLOBAL;
    return v;
}

/* Signed little-endian integer of n bytes (LONG1/LONG4). */
static pk_val *pk_make_long(pk_state *u, const uint8_t *p, size_t n)
{
    if (n <= 8) {
        pk_val *v = pk_new(u, PK_INT);
        if (!v) return NULL;
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++) x |= (uint64_t)p[i] << (8 * i);
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) x |= ~(uint64_t)0 << (8 * n);
        memcpy(&v->i, &x, sizeof x);
        return v;
    }
    pk_val *v = pk_make_str(u, p, n);
    if (v) v->kind = PK_BIGINT;
    return v;
}

static int is_int(const pk_val *v) { return v && (v->kind == PK_INT || v->kind == PK_BOOL); }

/* A tuple of ints (tensor sizes / strides) into out[]; returns count or -1. */
static int pk_int_tuple(const pk_val *t, int64_t *out)
{
    if (!t || (t->kind != PK_TUPLE && t->kind != PK_LIST) || t->n > CWBA_MAX_DIMS) return -1;
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PK_INT || t->items[i]->i < 0) return -1;
        out[i] = t->items[i]->i;
    }
    return (int)t->n;
}

static const char *kind_name(pk_kind k)
{
    switch (k) {
    case PK_MARK: return "mark";
    case PK_NONE: return "None";
    case PK_BOOL: return "bool";
    case PK_INT:
    case PK_BIGINT: return "int";
    case PK_FLOAT: return "float";
    case PK_STR: return "str";
    case PK_TUPLE: return "tuple";
    case PK_LIST: return "list";
    case PK_DICT: return "dict";
    case PK_GLOBAL: return "global";
    case PK_STORAGE: return "storage";
    case PK_TENSOR: return "tensor";
    }
    return "?";
}

/* Applies a callable GLOBAL to an argument tuple (REDUCE / NEWOBJ): only the
 * constructors torch.save emits for state dicts are known. */
static pk_val *pk_call(pk_state *u, const pk_val *fn, const pk_val *args, int depth)
{
    if (fn->kind != PK_GLOBAL) {
        pk_bad(u, "REDUCE on a non-global callable");
        return NULL;
    }
    if (args->kind != PK_TUPLE) {
        pk_bad(u, "REDUCE arguments are not a tuple");
        return NULL;
    }
    const char *g = fn->s;
    if (strcmp(g, "collections OrderedDict") == 0 || strcmp(g, "builtins dict") == 0) {
        if (args->n != 0) {
            cwba_fail(u->err, CWBA_E_UNSUPPORTED, "%s: %s called with arguments (not understood)",
                      u->what, g);
            return NULL;
        }
        return pk_new(u, PK_DICT);
    }
    if (strcmp(g, "torch._utils _rebuild_tensor_v2") == 0 ||
        strcmp(g, "torch._utils _rebuild_tensor") == 0) {
        /* (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]]) */
        if (args->n < 4 || args->items[0]->kind != PK_STORAGE || args->items[1]->kind != PK_INT ||
            args->items[1]->i < 0) {
            pk_bad(u, "unexpected arguments to _rebuild_tensor");
            return NULL;
        }
        pk_val *t = pk_new(u, PK_TENSOR);
        if (!t) return NULL;
        t->storage = args->items[0];
        t->offset = args->items[1]->i;
        int nd = pk_int_tuple(args->items[2], t->shape);
        int ns = pk_int_tuple(args->items[3], t->stride);
        if (nd < 0 || ns != nd) {
            cwba_fail(u->err, CWBA_E_FORMAT,
                      "%s: tensor size/stride are not matching tuples of at most %d non-negative ints",
                      u->what, CWBA_MAX_DIMS);
            return NULL;
        }
        t->ndim = nd;
        return t;
    }
    if (strcmp(g, "torch._utils _rebuild_parameter") == 0 ||
        strcmp(g, "torch._utils _rebuild_parameter_with_state") == 0) {
        if (args->n < 1 || args->items[0]->kind != PK_TENSOR) {
            pk_bad(u, "unexpected arguments to _rebuild_parameter");
            return NULL;
        }
        return args->items[0];
    }
    if (strcmp(g, "torch._tensor _rebuild_from_type_v2") == 0) {
        /* (func, type, args, state): a tensor subclass; the data is func(*args). */
        if (depth > 4 || args->n < 3 || args->items[0]->kind != PK_GLOBAL ||
            args->items[2]->kind != PK_TUPLE) {
            pk_bad(u, "unexpected arguments to _rebuild_from_type_v2");
            return NULL;
        }
        return pk_call(u, args->items[0], args->items[2], depth + 1);
    }
    cwba_fail(u->err, CWBA_E_UNSUPPORTED,
              "%s: the pickle calls %s, which a state dict of tensors does not use", u->what, g);
    return NULL;
}

/* Persistent id -> storage: ('storage', <torch XStorage>, key, location, numel
 * [, view_metadata]) */
static pk_val *pk_persid(pk_state *u, const pk_val *pid)
{
    if (pid->kind != PK_TUPLE || pid->n < 5 || pid->items[0]->kind != PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0 || pid->items[1]->kind != PK_GLOBAL ||
        pid->items[2]->kind != PK_STR || pid->items[4]->kind != PK_INT || pid->items[4]->i < 0) {
        pk_bad(u, "persistent id is not a ('storage', type, key, location, numel) tuple");
        return NULL;
    }
    const char *type = pid->items[1]->s;
    size_t k = 0, nk = sizeof k_storage_types / sizeof k_storage_types[0];
    while (k < nk && strcmp(k_storage_types[k].global, type) != 0) k++;
    if (k == nk) {
        cwba_fail(u->err, CWBA_E_UNSUPPORTED, "%s: unsupported storage type %s", u->what, type);
        return NULL;
    }
    pk_val *s = pk_make_str(u, (const uint8_t *)pid->items[2]->s, pid->items[2]->slen);
    if (!s) return NULL;
    s->kind = PK_STORAGE;
    s->dtype = k_storage_types[k].dt;
    s->elsize = k_storage_types[k].size;
    s->numel = pid->items[4]->i;
    if (pid->n >= 6 && pid->items[5]->kind != PK_NONE) {
        /* Legacy views: (view_key, offset, view_size) inside the root storage. */
        const pk_val *vm = pid->items[5];
        if (vm->kind != PK_TUPLE || vm->n != 3 || vm->items[1]->kind != PK_INT ||
            vm->items[2]->kind != PK_INT || vm->items[1]->i < 0 || vm->items[2]->i < 0) {
            pk_bad(u, "bad storage view metadata");
            return NULL;
        }
        s->view_offset = vm->items[1]->i;
        s->numel = vm->items[2]->i;
    }
    return s;
}

/* Runs one pickle starting at buf[*pos]; on success *result is the value left
 * by STOP and *pos is just past it. */
static cwba_status pk_run(pk_state *u, size_t *pos, pk_val **result)
{
    u->pos = *pos;
    u->sp = 0;
    for (;;) {
        if (!pk_need(u, 1)) return u->err ? u->err->status : CWBA_E_FORMAT;
        size_t op_pos = u->pos;
        uint8_t op = u->buf[u->pos++];
        const uint8_t *p = u->buf + u->pos;
        int ok = 1;
        switch (op) {
        case 0x80: /* PROTO */
            ok = pk_need(u, 1);
            if (ok && p[0] > 5) ok = pk_bad(u, "pickle protocol above 5");
            if (ok) u->pos += 1;
            break;
        case 0x95: /* FRAME: a length hint only */
            ok = pk_need(u, 8);
            if (ok) u->pos += 8;
            break;
        case '.': { /* STOP */
            pk_val *v = pk_pop(u);
            if (!v) return CWBA_E_FORMAT;
            *result = v;
            *pos = u->pos;
            return CWBA_OK;
        }
        case '(': ok = pk_push(u, &k_mark); break;
        case ')': ok = pk_push(u, pk_new(u, PK_TUPLE)); break;
        case ']': ok = pk_push(u, pk_new(u, PK_LIST)); break;
        case '}': ok = pk_push(u, pk_new(u, PK_DICT)); break;
        case 'N': ok = pk_push(u, pk_new(u, PK_NONE)); break;
        case 0x88:
        case 0x89: {
            pk_val *v = pk_new(u, PK_BOOL);
            if (v) v->i = op == 0x88;
            ok = pk_push(u, v);
            break;
        }
        case 'K':
        case 'M':
        case 'J': {
            size_t n = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            ok = pk_need(u, n);
            if (!ok) break;
            pk_val *v = pk_new(u, PK_INT);
            if (v) v->i = op == 'K' ? p[0] : op == 'M' ? rd16(p) : (int64_t)(int32_t)rd32(p);
            u->pos += n;
            ok = pk_push(u, v);
            break;
        }
        case 0x8a: /* LONG1 */
        case 0x8b: { /* LONG4 */
            size_t hn = op == 0x8a ? 1 : 4;
            ok = pk_need(u, hn);
            if (!ok) break;
            size_t n = op == 0x8a ? p[0] : rd32(p);
            u->pos += hn;
            if (n > 64) {
                ok = pk_bad(u, "integer wider than 512 bits");
                break;
            }
            ok = pk_need(u, n);
            if (!ok) break;
            ok = pk_push(u, pk_make_long(u, u->buf + u->pos, n));
            u->pos += n;
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            ok = pk_need(u, 8);
            if (!ok) break;
            uint64_t x = 0;
            for (int i = 0; i < 8; i++) x = (x << 8) | p[i];
            pk_val *v = pk_new(u, PK_FLOAT);
            if (v) memcpy(&v->f, &x, sizeof x);
            u->pos += 8;
            ok = pk_push(u, v);
            break;
        }
        case 'X': case 0x8c: case 0x8d: /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
        case 'T': case 'U':             /* BINSTRING, SHORT_BINSTRING */
        case 'B': case 'C': case 0x8e: { /* BINBYTES, SHORT_BINBYTES, BINBYTES8 */
            size_t hn = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            ok = pk_need(u, hn);
            if (!ok) break;
            uint64_t n = hn == 1 ? p[0] : hn == 4 ? rd32(p) : rd64(p);
            if (op == 'T' && (int32_t)n < 0) {
                ok = pk_bad(u, "negative string length");
                break;
            }
            u->pos += hn;
            if (n > u->len - u->pos) {
                ok = pk_bad(u, "string runs past the end");
                break;
            }
            ok = pk_push(u, pk_make_str(u, u->buf + u->pos, (size_t)n));
            u->pos += (size_t)n;
            break;
        }
        case 'c': { /* GLOBAL module\nname\n */
            const char *m, *n;
            size_t nm, nn;
            ok = pk_line(u, &m, &nm) && pk_line(u, &n, &nn);
            if (ok) ok = pk_push(u, pk_make_global(u, m, nm, n, nn));
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            pk_val *n = pk_pop(u), *m = n ? pk_pop(u) : NULL;
            if (!m) return CWBA_E_FORMAT;
            if (m->kind != PK_STR || n->kind != PK_STR) {
                ok = pk_bad(u, "STACK_GLOBAL on non-strings");
                break;
            }
            ok = pk_push(u, pk_make_global(u, m->s, m->slen, n->s, n->slen));
            break;
        }
        case 'q': case 'r': case 'p': { /* BINPUT, LONG_BINPUT, PUT */
            pk_val *v = pk_top(u);
            if (!v) return CWBA_E_FORMAT;
            uint64_t key = 0;
            if (op == 'p') {
                ok = pk_line_uint(u, &key);
            } else {
                size_t n = op == 'q' ? 1 : 4;
                ok = pk_need(u, n);
                if (ok) {
                    key = n == 1 ? p[0] : rd32(p);
                    u->pos += n;
                }
            }
            if (ok) ok = pk_memo_put(u, key, v);
            break;
        }
        case 0x94: { /* MEMOIZE */
            pk_val *v = pk_top(u);
            if (!v) return CWBA_E_FORMAT;
            size_t key = 0;
            while (key < u->memo_cap && u->memo[key]) key++;
            ok = pk_memo_put(u, key, v);
            break;
        }
        case 'h': case 'j': case 'g': { /* BINGET, LONG_BINGET, GET */
            uint64_t key = 0;
            if (op == 'g') {
                ok = pk_line_uint(u, &key);
            } else {
                size_t n = op == 'h' ? 1 : 4;
                ok = pk_need(u, n);
                if (ok) {
                    key = n == 1 ? p[0] : rd32(p);
                    u->pos += n;
                }
            }
            if (ok) ok = pk_memo_get(u, key);
            break;
        }
        case 't': case 'l': case 'd': { /* TUPLE, LIST, DICT from MARK */
            long m = pk_find_mark(u);
            if (m < 0) return CWBA_E_FORMAT;
            size_t cnt = u->sp - (size_t)m - 1;
            if (op == 'd' && cnt % 2) {
                ok = pk_bad(u, "odd number of dict items");
                break;
            }
            pk_val *c = pk_new(u, op == 't' ? PK_TUPLE : op == 'l' ? PK_LIST : PK_DICT);
            if (!c) return u->err->status;
            for (size_t i = 0; i < cnt && ok; i++) ok = pk_append(u, c, u->stack[(size_t)m + 1 + i]);
            u->sp = (size_t)m;
            if (ok) ok = pk_push(u, c);
            break;
        }
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            size_t cnt = (size_t)(op - 0x84);
            if (u->sp < cnt) {
                ok = pk_bad(u, "stack underflow");
                break;
            }
            for (size_t i = 0; i < cnt; i++)
                if (u->stack[u->sp - cnt + i] == &k_mark) ok = pk_bad(u, "MARK inside TUPLEn");
            if (!ok) break;
            pk_val *c = pk_new(u, PK_TUPLE);
            if (!c) return u->err->status;
            for (size_t i = 0; i < cnt && ok; i++) ok = pk_append(u, c, u->stack[u->sp - cnt + i]);
            u->sp -= cnt;
            if (ok) ok = pk_push(u, c);
            break;
        }
        case 'a': { /* APPEND */
            pk_val *v = pk_pop(u), *l = v ? pk_top(u) : NULL;
            if (!l) return CWBA_E_FORMAT;
            if (l->kind != PK_LIST) {
                ok = pk_bad(u, "APPEND to a non-list");
                break;
            }
            ok = pk_append(u, l, v);
            break;
        }
        case 'e': case 'u': { /* APPENDS, SETITEMS */
            long m = pk_find_mark(u);
            if (m < 1) {
                if (m == 0) pk_bad(u, "no container below MARK");
                return CWBA_E_FORMAT;
            }
            pk_val *c = u->stack[m - 1];
            size_t cnt = u->sp - (size_t)m - 1;
            if (c == &k_mark || c->kind != (op == 'e' ? PK_LIST : PK_DICT) || (op == 'u' && cnt % 2)) {
                ok = pk_bad(u, op == 'e' ? "APPENDS to a non-list" : "bad SETITEMS");
                break;
            }
            for (size_t i = 0; i < cnt && ok; i++) ok = pk_append(u, c, u->stack[(size_t)m + 1 + i]);
            u->sp = (size_t)m;
            break;
        }
        case 's': { /* SETITEM */
            pk_val *v = pk_pop(u), *k = v ? pk_pop(u) : NULL, *d = k ? pk_top(u) : NULL;
            if (!d) return CWBA_E_FORMAT;
            if (d->kind != PK_DICT) {
                ok = pk_bad(u, "SETITEM on a non-dict");
                break;
            }
            ok = pk_append(u, d, k) && pk_append(u, d, v);
            break;
        }
        case '0': ok = pk_pop(u) != NULL; break; /* POP */
        case '1': { /* POP_MARK */
            long m = pk_find_mark(u);
            if (m < 0) return CWBA_E_FORMAT;
            u->sp = (size_t)m;
            break;
        }
        case '2': { /* DUP */
            pk_val *v = pk_top(u);
            ok = v && pk_push(u, v);
            break;
        }
        case 'Q': { /* BINPERSID */
            pk_val *pid = pk_pop(u);
            if (!pid) return CWBA_E_FORMAT;
            ok = pk_push(u, pk_persid(u, pid));
            break;
        }
        case 'R': case 0x81: { /* REDUCE, NEWOBJ */
            pk_val *args = pk_pop(u), *fn = args ? pk_pop(u) : NULL;
            if (!fn) return CWBA_E_FORMAT;
            ok = pk_push(u, pk_call(u, fn, args, 0));
            break;
        }
        case 'b': { /* BUILD: state of an OrderedDict (state_dict._metadata) or tensor */
            pk_val *state = pk_pop(u), *obj = state ? pk_top(u) : NULL;
            if (!obj) return CWBA_E_FORMAT;
            if (obj->kind != PK_DICT && obj->kind != PK_TENSOR)
                ok = pk_bad(u, "BUILD on an object that is not a dict or tensor");
            break;
        }
        default:
            cwba_fail(u->err, CWBA_E_UNSUPPORTED,
                      "%s: unsupported pickle opcode 0x%02x at byte %zu (not a plain state dict?)",
                      u->what, op, op_pos);
            return CWBA_E_UNSUPPORTED;
        }
        if (!ok) return u->err && u->err->status ? u->err->status : CWBA_E_FORMAT;
    }
}

/* ------------------------------------------------------------- zip archive */

typedef struct zip_entry {
    const uint8_t *name;
    size_t name_len;
    uint16_t method;
    uint32_t crc;
    uint64_t comp_size, size, local_off;
} zip_entry;

typedef struct zip_dir {
    zip_entry *e;
    size_t n;
} zip_dir;

static cwba_status zip_open(const uint8_t *buf, size_t len, const char *what, zip_dir *z, cwba_error *err)
{
    memset(z, 0, sizeof *z);
    if (len < 22) return cwba_fail(err, CWBA_E_FORMAT, "%s: zip archive too short", what);
    size_t eocd = SIZE_MAX;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;)
        if (rd32(buf + i) == 0x06054b50u) {
            eocd = i;
            break;
        }
    if (eocd == SIZE_MAX)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: no zip end-of-central-directory record (truncated checkpoint?)", what);
    uint64_t count = rd16(buf + eocd + 10), cd_size = rd32(buf + eocd + 12), cd_off = rd32(buf + eocd + 16);
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        /* zip64: the locator sits right before the classic record. */
        if (eocd < 20 || rd32(buf + eocd - 20) != 0x07064b50u)
            return cwba_fail(err, CWBA_E_FORMAT, "%s: zip64 locator missing", what);
        uint64_t z64 = rd64(buf + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || rd32(buf + z64) != 0x06064b50u)
            return cwba_fail(err, CWBA_E_FORMAT, "%s: bad zip64 end record", what);
        count = rd64(buf + z64 + 32);
        cd_size = rd64(buf + z64 + 40);
        cd_off = rd64(buf + z64 + 48);
    }
    if (cd_off > len || cd_size > len - cd_off)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: zip central directory out of bounds", what);
    if (count > ZIP_MAX_ENTRIES || count > cd_size / 46 + 1)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: implausible zip entry count %llu", what,
                         (unsigned long long)count);
    z->e = calloc(count ? count : 1, sizeof *z->e);
    if (!z->e) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", what);
    size_t p = (size_t)cd_off, end = (size_t)(cd_off + cd_size);
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || rd32(buf + p) != 0x02014b50u) goto bad;
        zip_entry *e = &z->e[z->n];
        e->method = rd16(buf + p + 10);
        e->crc = rd32(buf + p + 16);
        e->comp_size = rd32(buf + p + 20);
        e->size = rd32(buf + p + 24);
        size_t nl = rd16(buf + p + 28), xl = rd16(buf + p + 30), cl = rd16(buf + p + 32);
        e->local_off = rd32(buf + p + 42);
        if (end - p - 46 < nl + xl + cl) goto bad;
        e->name = buf + p + 46;
        e->name_len = nl;
        /* zip64 extra field: 64-bit values for the fields saturated above, in order. */
        const uint8_t *x = buf + p + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            uint16_t id = rd16(x), sz = rd16(x + 2);
            if ((size_t)(xe - x - 4) < sz) goto bad;
            if (id == 0x0001) {
                const uint8_t *q = x + 4, *qe = q + sz;
                if (e->size == 0xFFFFFFFFu) {
                    if (qe - q < 8) goto bad;
                    e->size = rd64(q);
                    q += 8;
                }
                if (e->comp_size == 0xFFFFFFFFu) {
                    if (qe - q < 8) goto bad;
                    e->comp_size = rd64(q);
                    q += 8;
                }
                if (e->local_off == 0xFFFFFFFFu) {
                    if (qe - q < 8) goto bad;
                    e->local_off = rd64(q);
                }
            }
            x += 4 + sz;
        }
        z->n++;
        p += 46 + nl + xl + cl;
    }
    return CWBA_OK;
bad:
    free(z->e);
    z->e = NULL;
    return cwba_fail(err, CWBA_E_FORMAT, "%s: corrupt zip central directory", what);
}

static const zip_entry *zip_find(const zip_dir *z, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < z->n; i++)
        if (z->e[i].name_len == n && memcmp(z->e[i].name, name, n) == 0) return &z->e[i];
    return NULL;
}

/* The bytes of one entry: a pointer into buf when stored, else inflated into
 * *owned (caller frees). CRC-checked either way. */
static cwba_status zip_read(const uint8_t *buf, size_t len, const char *what, const zip_entry *e,
                            const uint8_t **data, uint8_t **owned, cwba_error *err)
{
    *owned = NULL;
    char nm[300];
    snprintf(nm, sizeof nm, "%.*s", (int)(e->name_len < 256 ? e->name_len : 256), (const char *)e->name);
    if (e->local_off > len || len - e->local_off < 30 || rd32(buf + e->local_off) != 0x04034b50u)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s: bad local header", what, nm);
    uint64_t start = e->local_off + 30 + (uint64_t)rd16(buf + e->local_off + 26) + rd16(buf + e->local_off + 28);
    if (start > len || e->comp_size > len - start)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s runs past the end of the file (truncated?)",
                         what, nm);
    const uint8_t *src = buf + start;
    if (e->size > SIZE_MAX / 2) return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s too large", what, nm);
    if (e->method == 0) {
        if (e->comp_size != e->size)
            return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s: stored sizes differ", what, nm);
        *data = src;
    } else if (e->method == 8) {
        /* A deflated entry cannot expand by more than ~1032x; refuse claims beyond that. */
        if (e->size / 1032 > e->comp_size + 1)
            return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s: implausible size", what, nm);
        uint8_t *out = malloc(e->size ? (size_t)e->size : 1);
        if (!out) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory inflating %s", what, nm);
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) {
            free(out);
            return cwba_fail(err, CWBA_E_NOMEM, "%s: zlib init failed", what);
        }
        /* Feed in chunks so sizes above 4 GiB fit zlib's uInt counters. */
        size_t in_left = (size_t)e->comp_size, out_done = 0;
        const uint8_t *in = src;
        int rc = Z_OK;
        while (rc == Z_OK) {
            uInt ic = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            size_t ol = (size_t)e->size - out_done;
            uInt oc = ol > (1u << 30) ? (1u << 30) : (uInt)ol;
            zs.next_in = (Bytef *)(uintptr_t)in;
            zs.avail_in = ic;
            zs.next_out = out + out_done;
            zs.avail_out = oc;
            rc = inflate(&zs, Z_NO_FLUSH);
            in += ic - zs.avail_in;
            in_left -= ic - zs.avail_in;
            out_done += oc - zs.avail_out;
            if (rc == Z_OK && zs.avail_in == ic && zs.avail_out == oc) rc = Z_BUF_ERROR;
        }
        inflateEnd(&zs);
        if (rc != Z_STREAM_END || out_done != e->size) {
            free(out);
            return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s: corrupt deflate data", what, nm);
        }
        *data = out;
        *owned = out;
    } else {
        return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: zip entry %s: compression method %u", what, nm,
                         e->method);
    }
    /* crc32 in chunks (uInt lengths). */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < e->size;) {
        size_t n = (size_t)e->size - off > (1u << 30) ? (1u << 30) : (size_t)e->size - off;
        crc = crc32(crc, *data + off, (uInt)n);
        off += n;
    }
    if ((uint32_t)crc != e->crc) {
        free(*owned);
        *owned = NULL;
        return cwba_fail(err, CWBA_E_FORMAT, "%s: zip entry %s: CRC mismatch (corrupt checkpoint)", what, nm);
    }
    return CWBA_OK;
}

/* ------------------------------------------------------- tensor conversion */

/* Where one storage's bytes are (resolved after unpickling). */
typedef struct pth_storage {
    const char *key;
    const uint8_t *data;
    size_t numel; /* elements available */
    size_t elsize;
    uint8_t *owned;
} pth_storage;

typedef struct pth_ctx {
    const char *what;
    pth_storage *st;
    size_t nst;
} pth_ctx;

static const pth_storage *ctx_find(const pth_ctx *c, const char *key)
{
    for (size_t i = 0; i < c->nst; i++)
        if (strcmp(c->st[i].key, key) == 0) return &c->st[i];
    return NULL;
}

static float load_elem(const uint8_t *p, pth_dtype dt)
{
    switch (dt) {
    case DT_F32: {
        uint32_t b = rd32(p);
        float f;
        memcpy(&f, &b, sizeof f);
        return f;
    }
    case DT_F16: return cwba_f16_to_f32(rd16(p));
    case DT_BF16: return cwba_bf16_to_f32(rd16(p));
    case DT_F64: {
        uint64_t b = rd64(p);
        double d;
        memcpy(&d, &b, sizeof d);
        return (float)d;
    }
    default: return 0.0f;
    }
}

static cwba_status convert_tensor(const pth_ctx *c, const char *name, const pk_val *t, cwba_weights *w,
                                  cwba_error *err)
{
    const pk_val *s = t->storage;
    const pth_storage *ps = ctx_find(c, s->s);
    if (!ps)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: storage '%s' is missing from the file",
                         c->what, name, s->s);
    if (ps->elsize != s->elsize)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: storage '%s' used with two dtypes", c->what,
                         name, s->s);
    /* The elements this tensor may touch: [base, base + span]. */
    size_t base, numel = 1, span = 0;
    if (!cwba_size_add((size_t)s->view_offset, (size_t)t->offset, &base))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: offset overflows", c->what, name);
    for (int d = 0; d < t->ndim; d++) {
        size_t ext, sz = (size_t)t->shape[d];
        if (!cwba_size_mul(numel, sz, &numel))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: size overflows", c->what, name);
        if (sz > 0 && (!cwba_size_mul(sz - 1, (size_t)t->stride[d], &ext) || !cwba_size_add(span, ext, &span)))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: tensor %s: strides overflow", c->what, name);
    }
    /* Within the bytes present, and within the storage (or legacy view) size
     * the pickle declared. */
    size_t last;
    if (numel > 0 && (!cwba_size_add(base, span, &last) || last >= ps->numel ||
                      (size_t)t->offset + span >= (size_t)s->numel))
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: tensor %s: offset %lld + extent %zu exceeds its storage of %zu elements",
                         c->what, name, (long long)t->offset, span + 1, ps->numel);
    int is_float = s->dtype == DT_F32 || s->dtype == DT_F16 || s->dtype == DT_BF16 || s->dtype == DT_F64;
    if (!is_float) return cwba_weights_add_unique(w, name, t->ndim, t->shape, NULL, err);
    size_t bytes;
    if (!cwba_size_mul(numel ? numel : 1, sizeof(float), &bytes))
        return cwba_fail(err, CWBA_E_NOMEM, "%s: tensor %s too large", c->what, name);
    float *out = malloc(bytes); /* (shape...) C order */
    if (!out) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory for tensor %s", c->what, name);
    /* The common case: C-contiguous float32 on a little-endian host is a copy. */
    int contiguous = 1;
    size_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && (size_t)t->stride[d] != expect) contiguous = 0;
        expect *= (size_t)t->shape[d];
    }
    const uint16_t one = 1;
    uint8_t little;
    memcpy(&little, &one, 1);
    if (contiguous && little && s->dtype == DT_F32) {
        memcpy(out, ps->data + base * 4, numel * 4);
        return cwba_weights_add_unique(w, name, t->ndim, t->shape, out, err);
    }
    /* Otherwise walk the index space in C order with an odometer; strides may
     * be anything (a transposed or expanded view). */
    int64_t idx[CWBA_MAX_DIMS] = {0};
    size_t src = base;
    for (size_t i = 0; i < numel; i++) {
        out[i] = load_elem(ps->data + src * ps->elsize, s->dtype);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) {
                src += (size_t)t->stride[d];
                break;
            }
            src -= (size_t)t->stride[d] * (size_t)(t->shape[d] - 1);
            idx[d] = 0;
        }
    }
    return cwba_weights_add_unique(w, name, t->ndim, t->shape, out, err);
}

/* Finds the dict of tensors: the root itself, or a full training checkpoint's
 * "state_dict" / "model" / "model_state_dict" entry. */
static const pk_val *find_state_dict(const pk_val *root, int depth)
{
    if (!root || root->kind != PK_DICT || depth > 3) return NULL;
    int all_tensors = 1;
    for (size_t i = 0; i + 1 < root->n; i += 2)
        if (root->items[i + 1]->kind != PK_TENSOR) all_tensors = 0;
    if (all_tensors) return root;
    static const char *const keys[] = {"state_dict", "model_state_dict", "model", "module"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t i = 0; i + 1 < root->n; i += 2)
            if (root->items[i]->kind == PK_STR && strcmp(root->items[i]->s, keys[k]) == 0) {
                const pk_val *sd = find_state_dict(root->items[i + 1], depth + 1);
                if (sd) return sd;
            }
    return NULL;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static cwba_status build_weights(const pth_ctx *c, const pk_val *root, cwba_weights **out, cwba_error *err)
{
    const pk_val *sd = find_state_dict(root, 0);
    if (!sd) {
        if (root->kind != PK_DICT)
            return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: the pickled object is a %s, not a state dict",
                             c->what, kind_name(root->kind));
        for (size_t i = 0; i + 1 < root->n; i += 2)
            if (root->items[i + 1]->kind != PK_TENSOR)
                return cwba_fail(err, CWBA_E_UNSUPPORTED,
                                 "%s: entry '%s' is a %s, not a tensor (not a state dict)", c->what,
                                 root->items[i]->kind == PK_STR ? root->items[i]->s : "?",
                                 kind_name(root->items[i + 1]->kind));
    }
    /* The tensors' names, checked for duplicates once (sorted), so that each
     * tensor is added without a search (one per tensor was quadratic). */
    size_t nt = sd->n / 2;
    const char **names = malloc((nt ? nt : 1) * 2 * sizeof *names), **sorted = names + nt;
    if (!names) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nt; i++) {
        const pk_val *k = sd->items[2 * i];
        if (k->kind != PK_STR || strlen(k->s) != k->slen || k->slen == 0) {
            free(names);
            return cwba_fail(err, CWBA_E_FORMAT, "%s: state dict key %zu is not a string", c->what, i);
        }
        /* nn.DataParallel / DistributedDataParallel save every name under "module.". */
        names[i] = sorted[i] = strncmp(k->s, "module.", 7) == 0 && k->slen > 7 ? k->s + 7 : k->s;
    }
    qsort(sorted, nt, sizeof *sorted, cmp_name);
    for (size_t i = 1; i < nt; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            cwba_status st = cwba_fail(err, CWBA_E_FORMAT, "%s: duplicate tensor %s", c->what, sorted[i]);
            free(names);
            return st;
        }
    cwba_weights *w = cwba_weights_new();
    cwba_status st = w ? CWBA_OK : cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < nt; i++) st = convert_tensor(c, names[i], sd->items[2 * i + 1], w, err);
    free(names);
    if (st) {
        cwba_weights_free(w);
        return st;
    }
    *out = w;
    return CWBA_OK;
}

/* Collects the distinct storages the unpickled values refer to. */
static cwba_status collect_storages(pk_state *u, pth_ctx *c, cwba_error *err)
{
    for (size_t i = 0; i < u->nall; i++) {
        pk_val *v = u->all[i];
        if (v->kind != PK_STORAGE || ctx_find(c, v->s)) continue;
        pth_storage *a = realloc(c->st, (c->nst + 1) * sizeof *a);
        if (!a) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
        c->st = a;
        memset(&c->st[c->nst], 0, sizeof c->st[0]);
        c->st[c->nst].key = v->s;
        c->st[c->nst].elsize = v->elsize;
        c->nst++;
    }
    return CWBA_OK;
}

static void ctx_free(pth_ctx *c)
{
    for (size_t i = 0; i < c->nst; i++) free(c->st[i].owned);
    free(c->st);
}

static cwba_status parse_zip(const uint8_t *buf, size_t len, const char *what, cwba_weights **out,
                             cwba_error *err)
{
    zip_dir z;
    cwba_status st = zip_open(buf, len, what, &z, err);
    if (st) return st;
    /* "<prefix>/data.pkl": the prefix is the archive name torch chose. */
    const zip_entry *pkl = NULL;
    size_t plen = 0;
    for (size_t i = 0; i < z.n; i++) {
        const zip_entry *e = &z.e[i];
        if (e->name_len >= 9 && memcmp(e->name + e->name_len - 9, "/data.pkl", 9) == 0 &&
            !memchr(e->name, '/', e->name_len - 9)) {
            pkl = e;
            plen = e->name_len - 8;
            break;
        }
    }
    if (!pkl || plen > 200) {
        free(z.e);
        return cwba_fail(err, CWBA_E_FORMAT, "%s: zip archive has no <name>/data.pkl (not a torch.save file)",
                         what);
    }
    char prefix[256];
    memcpy(prefix, pkl->name, plen);
    prefix[plen] = '\0';
    char nm[512];
    snprintf(nm, sizeof nm, "%sbyteorder", prefix);
    const zip_entry *bo = zip_find(&z, nm);
    if (bo) {
        const uint8_t *d;
        uint8_t *own;
        st = zip_read(buf, len, what, bo, &d, &own, err);
        if (st) {
            free(z.e);
            return st;
        }
        int little = bo->size == 6 && memcmp(d, "little", 6) == 0;
        free(own);
        if (!little) {
            free(z.e);
            return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: big-endian checkpoint", what);
        }
    }
    const uint8_t *pdata;
    uint8_t *pown;
    st = zip_read(buf, len, what, pkl, &pdata, &pown, err);
    if (st) {
        free(z.e);
        return st;
    }
    char pwhat[600];
    snprintf(pwhat, sizeof pwhat, "%s (%sdata.pkl)", what, prefix);
    pk_state u = {.what = pwhat, .buf = pdata, .len = (size_t)pkl->size, .err = err};
    pk_val *root = NULL;
    size_t pos = 0;
    pth_ctx c = {.what = what};
    st = pk_run(&u, &pos, &root);
    if (!st) st = collect_storages(&u, &c, err);
    for (size_t i = 0; !st && i < c.nst; i++) {
        snprintf(nm, sizeof nm, "%sdata/%s", prefix, c.st[i].key);
        const zip_entry *e = zip_find(&z, nm);
        if (!e) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: storage entry %s is missing", what, nm);
            break;
        }
        st = zip_read(buf, len, what, e, &c.st[i].data, &c.st[i].owned, err);
        c.st[i].numel = (size_t)e->size / c.st[i].elsize;
    }
    if (!st) st = build_weights(&c, root, out, err);
    ctx_free(&c);
    pk_free_all(&u);
    free(pown);
    free(z.e);
    return st;
}

/* The magic number legacy torch.save pickles first: 0x1950a86a20f9469cfc6c. */
static const uint8_t k_legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static cwba_status parse_legacy(const uint8_t *buf, size_t len, const char *what, cwba_weights **out,
                                cwba_error *err)
{
    pk_state u = {.what = what, .buf = buf, .len = len, .err = err};
    pth_ctx c = {.what = what};
    size_t pos = 0;
    pk_val *magic = NULL, *proto = NULL, *info = NULL, *root = NULL, *keys = NULL;
    cwba_status st = pk_run(&u, &pos, &magic);
    if (!st && (magic->kind != PK_BIGINT || magic->slen != 10 || memcmp(magic->s, k_legacy_magic, 10) != 0))
        st = cwba_fail(err, CWBA_E_FORMAT, "%s: not a PyTorch checkpoint (wrong magic number)", what);
    if (!st) st = pk_run(&u, &pos, &proto);
    if (!st && (proto->kind != PK_INT || proto->i != 1001))
        st = cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: legacy checkpoint protocol %lld (only 1001 is known)",
                       what, proto->kind == PK_INT ? (long long)proto->i : -1LL);
    if (!st) st = pk_run(&u, &pos, &info);
    if (!st && info->kind == PK_DICT) {
        for (size_t i = 0; i + 1 < info->n; i += 2)
            if (info->items[i]->kind == PK_STR && strcmp(info->items[i]->s, "little_endian") == 0 &&
                !(is_int(info->items[i + 1]) && info->items[i + 1]->i))
                st = cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: big-endian checkpoint", what);
    }
    if (!st) st = pk_run(&u, &pos, &root);
    if (!st) st = pk_run(&u, &pos, &keys);
    if (!st && keys->kind != PK_LIST)
        st = cwba_fail(err, CWBA_E_FORMAT, "%s: storage key list missing", what);
    if (!st) st = collect_storages(&u, &c, err);
    /* Raw storages follow, in key-list order: int64 element count, then the bytes. */
    for (size_t k = 0; !st && k < keys->n; k++) {
        const pk_val *key = keys->items[k];
        if (key->kind != PK_STR) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: storage key %zu is not a string", what, k);
            break;
        }
        pth_storage *ps = NULL;
        for (size_t i = 0; i < c.nst; i++)
            if (strcmp(c.st[i].key, key->s) == 0) ps = &c.st[i];
        if (!ps) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: storage %s is listed but never used", what, key->s);
            break;
        }
        if (len - pos < 8) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: truncated before storage %s", what, key->s);
            break;
        }
        uint64_t n = rd64(buf + pos);
        pos += 8;
        size_t bytes;
        if (n > SIZE_MAX || !cwba_size_mul((size_t)n, ps->elsize, &bytes) || bytes > len - pos) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: storage %s (%llu elements) runs past the end of the file "
                           "(truncated?)", what, key->s, (unsigned long long)n);
            break;
        }
        ps->data = buf + pos;
        ps->numel = (size_t)n;
        pos += bytes;
    }
    for (size_t i = 0; !st && i < c.nst; i++)
        if (!c.st[i].data)
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: storage %s has no data in the file", what, c.st[i].key);
    if (!st) st = build_weights(&c, root, out, err);
    ctx_free(&c);
    pk_free_all(&u);
    return st;
}

int cwba_is_pth(const uint8_t *buf, size_t len)
{
    if (len >= 4 && memcmp(buf, "PK\x03\x04", 4) == 0) return 1;
    return len >= 14 && buf[0] == 0x80 && buf[2] == 0x8a && buf[3] == 10 &&
           memcmp(buf + 4, k_legacy_magic, 10) == 0;
}

cwba_status cwba_weights_parse_pth(const uint8_t *buf, size_t len, const char *what, cwba_weights **out,
                                   cwba_error *err)
{
    *out = NULL;
    cwba_error local;
    if (!err) err = &local; /* the unpickler reads back the status it set */
    if (!what) what = "checkpoint";
    if (len >= 4 && memcmp(buf, "PK\x03\x04", 4) == 0) return parse_zip(buf, len, what, out, err);
    if (len >= 262 && memcmp(buf + 257, "ustar", 5) == 0)
        return cwba_fail(err, CWBA_E_UNSUPPORTED,
                         "%s: tar-format checkpoint (PyTorch < 0.4); re-save it with a newer torch", what);
    if (len >= 2 && buf[0] == 0x80) return parse_legacy(buf, len, what, out, err);
    return cwba_fail(err, CWBA_E_FORMAT, "%s: not a PyTorch checkpoint", what);
}
