/* Range coder and the code models of the bitstream (docs/bitstream.md §4-§6).
 * Internal to src/codec; tests include it to check the coder on its own. */
#ifndef CWBA_CODEC_RC_H
#define CWBA_CODEC_RC_H

#include <stddef.h>
#include <stdint.h>

/* Encoder: 33-bit low (carry in bit 32), 32-bit range kept >= 2^24, output
 * bytes delayed in `cache` + `pending` 0xFF bytes until a carry is resolved.
 * Output goes to a growable buffer; once `limit` bytes would be exceeded the
 * encoder keeps counting (`pos`) but stops storing and sets `over`. */
typedef struct rc_enc {
    uint8_t *buf;
    size_t alloc, pos, limit;
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    uint64_t pending;
    int first;   /* the first byte out is always 0 and is not stored */
    int over;    /* limit exceeded */
    int nomem;   /* realloc failed */
    int bad;     /* an invariant failed (a bug) */
} rc_enc;

void rc_enc_init(rc_enc *e, size_t limit);
void rc_enc_free(rc_enc *e);
/* 2 <= M <= 2^16, sym < M: one symbol uniform over M values. */
void rc_enc_uniform16(rc_enc *e, uint32_t sym, uint32_t M);
/* Any 1 <= M <= 2^24 (M == 1 costs nothing). */
void rc_enc_uniform(rc_enc *e, uint32_t sym, uint32_t M);
/* One binary decision with adaptive probability *p (P(bit == 0) in 1/65536). */
void rc_enc_bit(rc_enc *e, uint16_t *p, int bit);
/* Ends the stream with the fewest bytes; trailing zero bytes are dropped
 * (the decoder reads zeros past the end). After this e->pos is the size. */
void rc_enc_finish(rc_enc *e);

/* Decoder: reads zeros past the end of its input, never beyond the buffer. */
typedef struct rc_dec {
    const uint8_t *buf;
    size_t len, pos;   /* pos counts virtual (zero) bytes too */
    uint32_t range, code;
} rc_dec;

void rc_dec_init(rc_dec *d, const uint8_t *buf, size_t len);
/* Return 0 on success, -1 if the data cannot come from a valid encoder. */
int rc_dec_uniform16(rc_dec *d, uint32_t M, uint32_t *sym);
int rc_dec_uniform(rc_dec *d, uint32_t M, uint32_t *sym);
int rc_dec_bit(rc_dec *d, uint16_t *p);
/* After the last symbol: 0 if the input had no bytes the decoder did not
 * need and does not end in a zero byte (the canonical form), else -1. */
int rc_dec_finish(const rc_dec *d);

#define RC_PROB_INIT 32768

/* ----------------------------------------------------------- value model */

/* Adaptive binarization of a value v in 0..n (n >= 1): a zero flag, the
 * octave e = bitlength(v)-1 in truncated unary, the octave's top mantissa bit
 * (full octaves only), the remaining mantissa bits uniform. One context
 * set is RC_VM_SLOTS probabilities. */
#define RC_VM_SLOTS 48
void rc_vm_reset(uint16_t *probs, size_t count);
void rc_vm_encode(rc_enc *e, uint16_t *ctx, uint32_t v, uint32_t n);
int rc_vm_decode(rc_dec *d, uint16_t *ctx, uint32_t n, uint32_t *v);

/* Number of bits of v (0 for 0). */
static inline int rc_bitlength(uint32_t v)
{
    int k = 0;
    while (v) {
        k++;
        v >>= 1;
    }
    return k;
}

/* CRC-32 (ISO-HDLC, zlib's crc32) of n bytes (crc32.c). */
uint32_t codec_crc32(const uint8_t *p, size_t n);

#endif
