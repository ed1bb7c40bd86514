/* Range coder (docs/bitstream.md §4). The encoder keeps a 33-bit low so that
 * a carry out of the 32-bit window can be propagated into bytes already
 * produced but held back (one cached byte and a run of 0xFF bytes); the
 * decoder works on code = value - low and so never sees carries. Everything
 * is integer arithmetic: both sides follow the same operations exactly. */
#include "codec/rc.h"

#include <stdlib.h>
#include <string.h>

#define RC_TOP (1u << 24)

static void rc_emit(rc_enc *e, uint8_t b)
{
    if (e->first) {
        /* The interval starts inside [0, 2^32), so the byte above the window
         * (the first one out) is 0 in every stream; the format omits it. */
        e->first = 0;
        if (b != 0) e->bad = 1;
        return;
    }
    if (e->pos >= e->limit) {
        e->over = 1;
        e->pos++;
        return;
    }
    if (e->pos >= e->alloc) {
        size_t na = e->alloc ? e->alloc * 2 : 256;
        if (na > e->limit) na = e->limit;
        uint8_t *nb = realloc(e->buf, na);
        if (!nb) {
            e->nomem = 1;
            e->over = 1;
            e->pos++;
            return;
        }
        e->buf = nb;
        e->alloc = na;
    }
    e->buf[e->pos++] = b;
}

static void rc_shift_low(rc_enc *e)
{
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t b = e->cache;
        do {
            rc_emit(e, (uint8_t)(b + carry));
            b = 0xFF;
        } while (--e->pending != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

void rc_enc_init(rc_enc *e, size_t limit)
{
    memset(e, 0, sizeof *e);
    e->limit = limit;
    e->range = 0xFFFFFFFFu;
    e->pending = 1;
    e->first = 1;
}

void rc_enc_free(rc_enc *e)
{
    free(e->buf);
    e->buf = NULL;
    e->alloc = 0;
}

static void rc_enc_normalize(rc_enc *e)
{
    while (e->range < RC_TOP) {
        e->range <<= 8;
        rc_shift_low(e);
    }
}

void rc_enc_uniform16(rc_enc *e, uint32_t sym, uint32_t M)
{
    uint32_t r = e->range / M;
    e->low += (uint64_t)r * sym;
    e->range = r;
    rc_enc_normalize(e);
}

void rc_enc_uniform(rc_enc *e, uint32_t sym, uint32_t M)
{
    /* Alphabets above 2^16 would leave range/M too coarse (rate loss), so the
     * low bytes go first, 256-ary, until the rest fits in 16 bits. */
    while (M > 65536u) {
        rc_enc_uniform16(e, sym & 0xFFu, 256);
        sym >>= 8;
        M = (M + 255u) >> 8;
    }
    if (M > 1) rc_enc_uniform16(e, sym, M);
}

void rc_enc_bit(rc_enc *e, uint16_t *p, int bit)
{
    uint32_t bound = (e->range >> 16) * *p;
    if (!bit) {
        e->range = bound;
        *p = (uint16_t)(*p + ((65536u - *p) >> 5));
    } else {
        e->low += bound;
        e->range -= bound;
        *p = (uint16_t)(*p - (*p >> 5));
    }
    rc_enc_normalize(e);
}

void rc_enc_finish(rc_enc *e)
{
    /* Any value in [low, low+range) decodes the same symbols; take the one
     * with the most trailing zero bytes, since the decoder supplies zeros
     * past the end and trailing zeros are then dropped. */
    uint64_t hi = e->low + e->range; /* exclusive */
    for (int s = 32; s >= 8; s -= 8) {
        uint64_t mask = ((uint64_t)1 << s) - 1;
        uint64_t v = (e->low + mask) & ~mask;
        if (v < hi) {
            e->low = v;
            break;
        }
    }
    for (int i = 0; i < 5; i++) rc_shift_low(e);
    if (!e->over)
        while (e->pos > 0 && e->buf[e->pos - 1] == 0) e->pos--;
}

/* ------------------------------------------------------------- decoder */

static uint8_t rc_next(rc_dec *d)
{
    uint8_t b = d->pos < d->len ? d->buf[d->pos] : 0;
    d->pos++;
    return b;
}

void rc_dec_init(rc_dec *d, const uint8_t *buf, size_t len)
{
    d->buf = buf;
    d->len = len;
    d->pos = 0;
    d->range = 0xFFFFFFFFu;
    d->code = 0;
    for (int i = 0; i < 4; i++) d->code = (d->code << 8) | rc_next(d);
}

static void rc_dec_normalize(rc_dec *d)
{
    while (d->range < RC_TOP) {
        d->range <<= 8;
        d->code = (d->code << 8) | rc_next(d);
    }
}

int rc_dec_uniform16(rc_dec *d, uint32_t M, uint32_t *sym)
{
    uint32_t r = d->range / M;
    uint32_t v = d->code / r;
    if (v >= M) return -1; /* code lies in the tail no encoder uses */
    d->code -= v * r;
    d->range = r;
    rc_dec_normalize(d);
    *sym = v;
    return 0;
}

int rc_dec_uniform(rc_dec *d, uint32_t M, uint32_t *sym)
{
    uint32_t origM = M, v = 0, part;
    int shift = 0;
    while (M > 65536u) {
        if (rc_dec_uniform16(d, 256, &part)) return -1;
        v |= part << shift;
        shift += 8;
        M = (M + 255u) >> 8;
    }
    if (M > 1) {
        if (rc_dec_uniform16(d, M, &part)) return -1;
        v |= part << shift;
    }
    if (v >= origM) return -1;
    *sym = v;
    return 0;
}

int rc_dec_bit(rc_dec *d, uint16_t *p)
{
    uint32_t bound = (d->range >> 16) * *p;
    int bit;
    if (d->code < bound) {
        d->range = bound;
        *p = (uint16_t)(*p + ((65536u - *p) >> 5));
        bit = 0;
    } else {
        d->code -= bound;
        d->range -= bound;
        *p = (uint16_t)(*p - (*p >> 5));
        bit = 1;
    }
    rc_dec_normalize(d);
    return bit;
}

int rc_dec_finish(const rc_dec *d)
{
    if (d->len > d->pos) return -1;
    if (d->len > 0 && d->buf[d->len - 1] == 0) return -1;
    return 0;
}

/* ----------------------------------------------------------- value model */

void rc_vm_reset(uint16_t *probs, size_t count)
{
    for (size_t i = 0; i < count; i++) probs[i] = RC_PROB_INIT;
}

void rc_vm_encode(rc_enc *e, uint16_t *ctx, uint32_t v, uint32_t n)
{
    rc_enc_bit(e, &ctx[0], v != 0);
    if (v == 0) return;
    int emax = rc_bitlength(n) - 1;
    int ev = rc_bitlength(v) - 1;
    for (int i = 0; i < emax; i++) {
        int more = ev > i;
        rc_enc_bit(e, &ctx[1 + i], more);
        if (!more) break;
    }
    if (ev == 0) return;
    uint32_t base = 1u << ev;
    uint32_t r = v - base;
    uint32_t count = ev == emax ? n - base + 1 : base; /* values in this octave */
    if (count == base) {
        uint32_t half = base >> 1;
        rc_enc_bit(e, &ctx[24 + ev], r >= half);
        rc_enc_uniform(e, r & (half - 1), half);
    } else {
        rc_enc_uniform(e, r, count);
    }
}

int rc_vm_decode(rc_dec *d, uint16_t *ctx, uint32_t n, uint32_t *v)
{
    if (!rc_dec_bit(d, &ctx[0])) {
        *v = 0;
        return 0;
    }
    int emax = rc_bitlength(n) - 1;
    int ev = 0;
    while (ev < emax && rc_dec_bit(d, &ctx[1 + ev])) ev++;
    if (ev == 0) {
        *v = 1;
        return 0;
    }
    uint32_t base = 1u << ev;
    uint32_t count = ev == emax ? n - base + 1 : base;
    uint32_t r;
    if (count == base) {
        uint32_t half = base >> 1, low;
        int top = rc_dec_bit(d, &ctx[24 + ev]);
        if (rc_dec_uniform(d, half, &low)) return -1;
        r = (top ? half : 0) + low;
    } else {
        if (rc_dec_uniform(d, count, &r)) return -1;
    }
    *v = base + r;
    return 0;
}
