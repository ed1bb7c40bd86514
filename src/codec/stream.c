/* The bitstream of docs/bitstream.md (version 1): header, coded n_c, coded
 * codes, CRC32. The decoder treats the buffer as hostile: every read is
 * bounds-checked, every field range-checked, and the entropy decoders stop
 * with an error status on data no encoder produces. */
#include "cwba/codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/rc.h"
#include "quant/quant_internal.h"

static const uint8_t MAGIC[4] = {'C', 'W', 'B', 'A'};

enum { NCODE_CONST = 0, NCODE_FIXED = 1, NCODE_ADAPTIVE = 2, NCODE_EXP = 3 };
/* flags bit 0: n_c = 0 (a dropped channel: no codes travel, x̂ = mn) may
 * occur. A decoder that predates it rejects the flag instead of misreading. */
#define FLAG_DROP 0x01u
#define EXP_KMAX 24 /* n coding 3: n_c = 2^k_c - 1, k_c <= 24 */
enum { HEADER_MAX = 128 };

/* Neighbourhood classes of the adaptive payload model (§6): 0 = no
 * neighbour, 1 + bitlength(mean of left and up codes) otherwise. */
#define NB_CLASSES 26
#define K_CLASSES 24 /* bitlength(n_c) is 1..24 */

const char *cwba_stream_mode_name(cwba_stream_mode m)
{
    switch (m) {
    case CWBA_STREAM_FIXED: return "fixed";
    case CWBA_STREAM_ADAPTIVE: return "adaptive";
    case CWBA_STREAM_AUTO: return "auto";
    }
    return "unknown";
}

cwba_status cwba_stream_mode_parse(const char *name, cwba_stream_mode *out, cwba_error *err)
{
    static const cwba_stream_mode all[] = {CWBA_STREAM_FIXED, CWBA_STREAM_ADAPTIVE,
                                           CWBA_STREAM_AUTO};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, cwba_stream_mode_name(all[i])) == 0) {
            *out = all[i];
            return CWBA_OK;
        }
    return cwba_fail(err, CWBA_E_ARG, "unknown bitstream mode '%s' (fixed, adaptive, auto)",
                     name ? name : "(null)");
}

/* ------------------------------------------------------------ validation */

static int name_ok(const char *s)
{
    size_t L = strnlen(s, CWBA_STREAM_NAME_MAX + 1);
    if (L == 0 || L > CWBA_STREAM_NAME_MAX) return 0;
    for (size_t i = 0; i < L; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7E) return 0;
    return 1;
}

static int shape_ok(long C, long H, long W)
{
    return C >= 1 && C <= CWBA_STREAM_MAX_C && H >= 1 && H <= CWBA_STREAM_MAX_HW && W >= 1 &&
           W <= CWBA_STREAM_MAX_HW && C * H * W <= CWBA_STREAM_MAX_ELEMS;
}

static uint32_t dorefa_n(int bits) { return (1u << bits) - 1u; }

/* Largest DoReFa code: round(clamp(x, 0, clip) * (2^b - 1)) exceeds 2^b - 1
 * when clip > 1 (the original's formula does not renormalise by clip), so the
 * alphabet is 0..max(2^b - 1, round(clip * (2^b - 1))). Callers have checked
 * that clip * (2^b - 1) <= CWBA_STREAM_MAX_N. */
static uint32_t dorefa_top(int bits, float clip)
{
    uint32_t n = dorefa_n(bits);
    float t = rintf(clip * (float)n);
    return t > (float)n ? (uint32_t)t : n;
}

static int dorefa_clip_ok(int bits, float clip)
{
    return isfinite(clip) && clip > 0 && (double)clip * (double)dorefa_n(bits) <= CWBA_STREAM_MAX_N;
}

static double log2_1p(uint32_t n) { return log2((double)n + 1.0); }

/* Bytes a fixed-alphabet section of `count` symbols of (n+1)-ary alphabets
 * can take: log2(M) + 0.02 bits a symbol covers the coder's truncation loss
 * (< 0.006 bits per 16-bit step, at most 3 steps), +16 for the flush. */
static size_t fixed_bound_bytes(double bits)
{
    return (size_t)ceil(bits / 8.0) + 16;
}

static size_t side_bound(int C, uint32_t span)
{
    return fixed_bound_bytes((double)C * (log2_1p(span) + 0.02));
}

static size_t payload_bound_fixed(const cwba_stream_info *si, const int *n)
{
    size_t HW = (size_t)si->H * (size_t)si->W;
    double bits = 0;
    for (int c = 0; c < si->C; c++) {
        uint32_t nc = si->quant == CWBA_QUANT_DOREFA ? dorefa_top(si->bits, si->clip)
                      : n                            ? (uint32_t)n[c]
                                                     : (uint32_t)CWBA_STREAM_MAX_N;
        bits += (double)HW * (log2_1p(nc) + 0.02);
    }
    return fixed_bound_bytes(bits);
}

/* Worst case of the adaptive model: at most 25 binary decisions of at most
 * 11.06 bits each (probabilities stay within [31, 65505]/65536) plus 23
 * uniform bits: < 37.5 bytes an element. */
static size_t payload_bound_adaptive(const cwba_stream_info *si)
{
    return (size_t)si->C * (size_t)si->H * (size_t)si->W * 40 + 16;
}

static cwba_status check_info(const cwba_stream_info *si, cwba_error *err)
{
    if (!si) return cwba_fail(err, CWBA_E_ARG, "bitstream: info is NULL");
    if (!name_ok(si->model))
        return cwba_fail(err, CWBA_E_ARG,
                         "bitstream: model name must be 1..%d printable characters without spaces",
                         CWBA_STREAM_NAME_MAX);
    if (!name_ok(si->split))
        return cwba_fail(err, CWBA_E_ARG,
                         "bitstream: split name must be 1..%d printable characters without spaces",
                         CWBA_STREAM_NAME_MAX);
    if (!shape_ok(si->C, si->H, si->W))
        return cwba_fail(err, CWBA_E_ARG,
                         "bitstream: shape %dx%dx%d outside the format's limits (C <= %d, H, W <= "
                         "%d, C*H*W <= 2^28)",
                         si->C, si->H, si->W, CWBA_STREAM_MAX_C, CWBA_STREAM_MAX_HW);
    switch (si->quant) {
    case CWBA_QUANT_UNIFORM:
    case CWBA_QUANT_LOG:
        if (!isfinite(si->mn) || !isfinite(si->mx) || !(si->mn <= si->mx))
            return cwba_fail(err, CWBA_E_ARG,
                             "bitstream: range mn=%g mx=%g must be finite with mn <= mx",
                             (double)si->mn, (double)si->mx);
        break;
    case CWBA_QUANT_DOREFA:
        if (si->bits < 1 || si->bits > CWBA_STREAM_DOREFA_BITS_MAX)
            return cwba_fail(err, CWBA_E_ARG, "bitstream: dorefa bits %d out of range 1..%d",
                             si->bits, CWBA_STREAM_DOREFA_BITS_MAX);
        if (!dorefa_clip_ok(si->bits, si->clip))
            return cwba_fail(err, CWBA_E_ARG,
                             "bitstream: dorefa clip %g must be finite, > 0 and at most %d/(2^b-1)",
                             (double)si->clip, CWBA_STREAM_MAX_N);
        break;
    default:
        return cwba_fail(err, CWBA_E_ARG, "bitstream: unknown quantizer %d", (int)si->quant);
    }
    if (si->mode != CWBA_STREAM_FIXED && si->mode != CWBA_STREAM_ADAPTIVE &&
        si->mode != CWBA_STREAM_AUTO)
        return cwba_fail(err, CWBA_E_ARG, "bitstream: unknown mode %d", (int)si->mode);
    return CWBA_OK;
}

size_t cwba_stream_bound(const cwba_stream_info *info, const int *n)
{
    if (!info) return 0;
    cwba_stream_info copy = *info;
    const cwba_stream_info *si = &copy;
    copy.mn = copy.mx = 0.0f; /* the range does not change the size */
    if (check_info(si, NULL) != CWBA_OK) return 0;
    uint32_t span = CWBA_STREAM_MAX_N - 1;
    if (n && si->quant != CWBA_QUANT_DOREFA) {
        int lo = n[0], hi = n[0];
        for (int c = 0; c < si->C; c++) {
            if (n[c] < 0 || n[c] > CWBA_STREAM_MAX_N) return 0;
            if (n[c] < lo) lo = n[c];
            if (n[c] > hi) hi = n[c];
        }
        span = (uint32_t)(hi - lo);
    }
    size_t side = side_bound(si->C, span);
    size_t pay = si->mode == CWBA_STREAM_ADAPTIVE ? payload_bound_adaptive(si)
                                                  : payload_bound_fixed(si, n);
    return HEADER_MAX + side + pay;
}

/* --------------------------------------------------------------- writing */

typedef struct hdr_buf {
    uint8_t b[HEADER_MAX];
    size_t n;
} hdr_buf;

static void put_u8(hdr_buf *h, uint32_t v) { h->b[h->n++] = (uint8_t)v; }
static void put_u16(hdr_buf *h, uint32_t v)
{
    put_u8(h, v & 0xFF);
    put_u8(h, (v >> 8) & 0xFF);
}
static void put_u32(hdr_buf *h, uint32_t v)
{
    for (int i = 0; i < 4; i++) put_u8(h, (v >> (8 * i)) & 0xFF);
}
static void put_f32(hdr_buf *h, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(h, u);
}
static void put_varint(hdr_buf *h, uint32_t v)
{
    while (v >= 0x80) {
        put_u8(h, (v & 0x7F) | 0x80);
        v >>= 7;
    }
    put_u8(h, v);
}
static void put_name(hdr_buf *h, const char *s)
{
    size_t L = strlen(s);
    put_u8(h, (uint32_t)L);
    memcpy(h->b + h->n, s, L);
    h->n += L;
}

/* Neighbourhood class of element (y, x) of one channel's codes q (H, W). */
static inline int nb_class(const uint32_t *q, int W, int y, int x)
{
    uint32_t m;
    if (y > 0 && x > 0)
        m = (q[y * W + x - 1] + q[(y - 1) * W + x] + 1) >> 1;
    else if (x > 0)
        m = q[x - 1];
    else if (y > 0)
        m = q[(y - 1) * W];
    else
        return 0;
    return 1 + rc_bitlength(m);
}

static uint16_t *ctx_table_new(size_t sets)
{
    uint16_t *t = malloc(sets * RC_VM_SLOTS * sizeof *t);
    if (t) rc_vm_reset(t, sets * RC_VM_SLOTS);
    return t;
}

/* Payload, mode 0: every code uniform over its channel's n_c + 1 symbols. */
static void encode_fixed(rc_enc *e, int C, int HW, const uint32_t *nc, const uint32_t *codes)
{
    for (int c = 0; c < C && !e->over; c++) {
        const uint32_t *q = codes + (size_t)c * HW; /* (H, W) */
        for (int i = 0; i < HW; i++) rc_enc_uniform(e, q[i], nc[c] + 1);
    }
    rc_enc_finish(e);
}

/* Payload, mode 1: the value model with context set (bitlength(n_c), class). */
static void encode_adaptive(rc_enc *e, int C, int H, int W, const uint32_t *nc,
                            const uint32_t *codes, uint16_t *ctx)
{
    size_t HW = (size_t)H * W;
    for (int c = 0; c < C && !e->over; c++) {
        const uint32_t *q = codes + (size_t)c * HW; /* (H, W) */
        int k = rc_bitlength(nc[c]);
        if (k == 0) continue; /* a dropped channel carries no codes */
        uint16_t *base = ctx + (size_t)(k - 1) * NB_CLASSES * RC_VM_SLOTS;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                rc_vm_encode(e, base + (size_t)nb_class(q, W, y, x) * RC_VM_SLOTS,
                             q[y * W + x], nc[c]);
    }
    rc_enc_finish(e);
}

/* Side information, method 2: d_c = n_c - nmin with the value model, context
 * class 0 for the first channel, 1 + bitlength(d_{c-1}) after. */
static void encode_side_adaptive(rc_enc *e, int C, const uint32_t *nc, uint32_t nmin,
                                 uint32_t span, uint16_t *ctx)
{
    uint32_t prev = 0;
    for (int c = 0; c < C && !e->over; c++) {
        int t = c == 0 ? 0 : 1 + rc_bitlength(prev);
        prev = nc[c] - nmin;
        rc_vm_encode(e, ctx + (size_t)t * RC_VM_SLOTS, prev, span);
    }
    rc_enc_finish(e);
}

/* n_c = 2^k - 1 for some k (0 included), the form of the rate-distortion
 * allocation's candidates; *k receives it. */
static int exp_form(uint32_t n, uint32_t *k)
{
    *k = (uint32_t)rc_bitlength(n);
    return *k <= EXP_KMAX && n == (*k == 32 ? UINT32_MAX : (1u << *k) - 1u);
}

/* Side information, method 3: every n_c = 2^k_c - 1; k_c with the value
 * model (bound kmax), context class 0 for the first channel, 1 + k_{c-1}
 * after. */
static void encode_side_exp(rc_enc *e, int C, const uint32_t *nc, uint32_t kmax, uint16_t *ctx)
{
    uint32_t prev = 0;
    for (int c = 0; c < C && !e->over; c++) {
        int t = c == 0 ? 0 : 1 + (int)prev;
        exp_form(nc[c], &prev);
        rc_vm_encode(e, ctx + (size_t)t * RC_VM_SLOTS, prev, kmax);
    }
    rc_enc_finish(e);
}

static cwba_status rc_status(const rc_enc *e, const char *what, cwba_error *err)
{
    if (e->nomem) return cwba_fail(err, CWBA_E_NOMEM, "bitstream: out of memory coding %s", what);
    if (e->bad) return cwba_fail(err, CWBA_E_INTERNAL, "bitstream: range coder invariant failed (%s)", what);
    return CWBA_OK;
}

cwba_status cwba_stream_encode(const cwba_stream_info *si, const int *n, const uint32_t *codes,
                               uint8_t *dst, size_t cap, size_t *written,
                               cwba_stream_stats *stats, cwba_error *err)
{
    cwba_status st = check_info(si, err);
    if (st) return st;
    if (!codes || !written || (!dst && cap > 0))
        return cwba_fail(err, CWBA_E_ARG, "bitstream encode: codes, dst and written are required");
    int is_dorefa = si->quant == CWBA_QUANT_DOREFA;
    if (!n && !is_dorefa)
        return cwba_fail(err, CWBA_E_ARG, "bitstream encode: n (interval counts) is required");
    int C = si->C, HW = si->H * si->W;
    size_t total = (size_t)C * HW;

    uint32_t *nc = malloc((size_t)C * sizeof *nc);
    if (!nc) return cwba_fail(err, CWBA_E_NOMEM, "bitstream encode: out of memory");
    uint32_t nmin = UINT32_MAX, nmax = 0;
    for (int c = 0; c < C; c++) {
        if (is_dorefa) {
            nc[c] = dorefa_top(si->bits, si->clip);
            if (n && (uint32_t)n[c] != dorefa_n(si->bits)) {
                free(nc);
                return cwba_fail(err, CWBA_E_ARG,
                                 "bitstream encode: dorefa with %d bits needs n_c = %u, channel %d "
                                 "has %d",
                                 si->bits, dorefa_n(si->bits), c, n[c]);
            }
        } else {
            if (n[c] < 0 || n[c] > CWBA_STREAM_MAX_N) {
                free(nc);
                return cwba_fail(err, CWBA_E_ARG,
                                 "bitstream encode: n_c = %d for channel %d out of range 0..%d",
                                 n[c], c, CWBA_STREAM_MAX_N);
            }
            nc[c] = (uint32_t)n[c];
        }
        if (nc[c] < nmin) nmin = nc[c];
        if (nc[c] > nmax) nmax = nc[c];
    }
    int degenerate = !is_dorefa && si->mn == si->mx;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HW; i++) {
            uint32_t q = codes[(size_t)c * HW + i];
            if (q > nc[c] || (degenerate && q != 0)) {
                uint32_t limit = degenerate ? 0u : nc[c];
                free(nc);
                return cwba_fail(err, CWBA_E_ARG,
                                 "bitstream encode: code %u at channel %d element %d exceeds "
                                 "n_c = %u%s",
                                 q, c, i, limit, degenerate ? " (mn == mx: codes must be 0)" : "");
            }
        }

    /* Side information: the smaller of fixed-alphabet and adaptive. */
    int ncode = NCODE_CONST;
    uint32_t span = nmax - nmin;
    rc_enc side, side2, side3, pay, pay2;
    uint32_t exp_kmax = 0;
    rc_enc_init(&side, 0);
    rc_enc_init(&side2, 0);
    rc_enc_init(&side3, 0);
    rc_enc_init(&pay, 0);
    rc_enc_init(&pay2, 0);
    uint16_t *ctx = NULL;
    rc_enc *side_used = NULL, *pay_used = NULL;
    if (!is_dorefa && span > 0) {
        ncode = NCODE_FIXED;
        rc_enc_init(&side, side_bound(C, span));
        for (int c = 0; c < C; c++) rc_enc_uniform(&side, nc[c] - nmin, span + 1);
        rc_enc_finish(&side);
        if ((st = rc_status(&side, "side information", err))) goto out;
        ctx = ctx_table_new(NB_CLASSES);
        if (!ctx) {
            st = cwba_fail(err, CWBA_E_NOMEM, "bitstream encode: out of memory");
            goto out;
        }
        rc_enc_init(&side2, side.pos);
        encode_side_adaptive(&side2, C, nc, nmin, span, ctx);
        if ((st = rc_status(&side2, "side information", err))) goto out;
        side_used = &side;
        if (!side2.over && side2.pos < side.pos) {
            ncode = NCODE_ADAPTIVE;
            side_used = &side2;
        }
        /* Method 3 when every n_c has the form 2^k - 1 and it is shorter. */
        int all_exp = 1;
        uint32_t k, kmax = 0;
        for (int c = 0; c < C && all_exp; c++) {
            all_exp = exp_form(nc[c], &k);
            if (k > kmax) kmax = k;
        }
        if (all_exp && kmax >= 1) {
            rc_vm_reset(ctx, (size_t)NB_CLASSES * RC_VM_SLOTS);
            rc_enc_init(&side3, side_used->pos);
            encode_side_exp(&side3, C, nc, kmax, ctx);
            if ((st = rc_status(&side3, "side information", err))) goto out;
            if (!side3.over && side3.pos < side_used->pos) {
                ncode = NCODE_EXP;
                exp_kmax = kmax;
                side_used = &side3;
            }
        }
        free(ctx);
        ctx = NULL;
    }

    /* Payload. */
    cwba_stream_mode mode = CWBA_STREAM_FIXED;
    if (!degenerate) {
        if (si->mode != CWBA_STREAM_ADAPTIVE) {
            rc_enc_init(&pay, payload_bound_fixed(si, n));
            encode_fixed(&pay, C, HW, nc, codes);
            if ((st = rc_status(&pay, "payload", err))) goto out;
            pay_used = &pay;
        }
        if (si->mode != CWBA_STREAM_FIXED) {
            ctx = ctx_table_new((size_t)K_CLASSES * NB_CLASSES);
            if (!ctx) {
                st = cwba_fail(err, CWBA_E_NOMEM, "bitstream encode: out of memory");
                goto out;
            }
            rc_enc_init(&pay2, pay_used ? pay_used->pos : payload_bound_adaptive(si));
            encode_adaptive(&pay2, C, si->H, si->W, nc, codes, ctx);
            if ((st = rc_status(&pay2, "payload", err))) goto out;
            if (!pay_used || (!pay2.over && pay2.pos < pay_used->pos)) {
                pay_used = &pay2;
                mode = CWBA_STREAM_ADAPTIVE;
            }
        }
        if (pay_used->over) {
            st = cwba_fail(err, CWBA_E_INTERNAL, "bitstream encode: payload exceeded its bound");
            goto out;
        }
    }

    /* Header (§3). */
    hdr_buf h = {.n = 0};
    memcpy(h.b, MAGIC, 4);
    h.n = 4;
    put_u8(&h, CWBA_STREAM_VERSION);
    put_u8(&h, !is_dorefa && nmin == 0 ? FLAG_DROP : 0); /* flags */
    put_name(&h, si->model);
    put_name(&h, si->split);
    put_u16(&h, (uint32_t)si->C);
    put_u16(&h, (uint32_t)si->H);
    put_u16(&h, (uint32_t)si->W);
    put_u8(&h, (uint32_t)si->quant);
    if (is_dorefa) {
        put_u8(&h, (uint32_t)si->bits);
        put_f32(&h, si->clip);
    } else {
        put_f32(&h, si->mn);
        put_f32(&h, si->mx);
    }
    put_u8(&h, (uint32_t)mode);
    size_t side_len = side_used ? side_used->pos : 0;
    if (!is_dorefa) {
        put_u8(&h, (uint32_t)ncode);
        if (ncode == NCODE_CONST) {
            put_varint(&h, nmin);
        } else if (ncode == NCODE_EXP) {
            put_varint(&h, exp_kmax);
            put_varint(&h, (uint32_t)side_len);
        } else {
            put_varint(&h, nmin);
            put_varint(&h, span);
            put_varint(&h, (uint32_t)side_len);
        }
    }
    size_t hdr_side = h.n; /* bytes before the side section */
    size_t pay_len = pay_used ? pay_used->pos : 0;
    if (pay_len > UINT32_MAX) {
        /* Only a forced adaptive payload of a huge, incompressible feature. */
        st = cwba_fail(err, CWBA_E_UNSUPPORTED,
                       "bitstream encode: payload of %zu bytes exceeds the format's 2^32-1 "
                       "(use mode auto)",
                       pay_len);
        goto out;
    }
    hdr_buf h2 = {.n = 0};
    put_varint(&h2, (uint32_t)pay_len);
    size_t need = hdr_side + side_len + h2.n + pay_len + 4;
    *written = need;
    if (need > cap) {
        st = cwba_fail(err, CWBA_E_ARG,
                       "bitstream encode: destination holds %zu bytes, the stream needs %zu "
                       "(size it with cwba_stream_bound)",
                       cap, need);
        goto out;
    }
    uint8_t *p = dst;
    memcpy(p, h.b, hdr_side);
    p += hdr_side;
    if (side_len) memcpy(p, side_used->buf, side_len);
    p += side_len;
    memcpy(p, h2.b, h2.n);
    p += h2.n;
    if (pay_len) memcpy(p, pay_used->buf, pay_len);
    p += pay_len;
    uint32_t crc = codec_crc32(dst, need - 4);
    for (int i = 0; i < 4; i++) *p++ = (uint8_t)(crc >> (8 * i));

    if (stats) {
        stats->side_bytes = side_len;
        stats->payload_bytes = pay_len;
        stats->total_bytes = need;
        stats->header_bytes = need - side_len - pay_len;
        stats->mode = mode;
        double ideal = 0;
        for (int c = 0; c < C; c++) ideal += (double)HW * log2_1p(nc[c]);
        stats->ideal_bits = ideal;
    }
    (void)total;
    st = CWBA_OK;
out:
    free(ctx);
    free(nc);
    rc_enc_free(&side);
    rc_enc_free(&side2);
    rc_enc_free(&side3);
    rc_enc_free(&pay);
    rc_enc_free(&pay2);
    return st;
}

cwba_status cwba_stream_encode_feature(const cwba_stream_info *info, const float *x, const int *n,
                                       uint8_t *dst, size_t cap, size_t *written, float *xhat,
                                       cwba_stream_stats *stats, cwba_error *err)
{
    if (!info || !x) return cwba_fail(err, CWBA_E_ARG, "bitstream encode: info or feature is NULL");
    cwba_stream_info si = *info;
    si.mn = si.mx = 0.0f; /* set from x below */
    cwba_status st = check_info(&si, err);
    if (st) return st;
    int HW = si.H * si.W;
    size_t total = (size_t)si.C * HW;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(x[i]))
            return cwba_fail(err, CWBA_E_ARG, "bitstream encode: feature value %zu is not finite", i);
    uint32_t *codes = malloc(total * sizeof *codes);   /* (C, H, W) */
    float *tmp = xhat ? NULL : malloc(total * sizeof *tmp);
    if (!codes || (!xhat && !tmp)) {
        free(codes);
        free(tmp);
        return cwba_fail(err, CWBA_E_NOMEM, "bitstream encode: out of memory");
    }
    float *xq = xhat ? xhat : tmp; /* (C, H, W) */
    if (si.quant == CWBA_QUANT_DOREFA) {
        int levels = (int)dorefa_n(si.bits);
        for (size_t i = 0; i < total; i++) {
            codes[i] = cwba_quant_code_ref(si.quant, x[i], 0.0f, si.clip, levels);
            xq[i] = cwba_quant_dequant_ref(si.quant, codes[i], 0.0f, si.clip, levels);
        }
    } else {
        cwba_feature_range(x, total, &si.mn, &si.mx);
        if (si.quant == CWBA_QUANT_LOG && si.mx > si.mn && !(cwba__qlogf(si.mx - si.mn + 1.0f) > 0.0f))
            st = cwba_fail(err, CWBA_E_UNSUPPORTED,
                           "bitstream encode: range [%g, %g] is below float32 resolution for the "
                           "log quantizer, which then passes the feature through uncoded",
                           (double)si.mn, (double)si.mx);
        else if (!n)
            st = cwba_fail(err, CWBA_E_ARG, "bitstream encode: n (interval counts) is required");
        else
            st = cwba_quantize_feature(si.quant, x, si.C, HW, n, xq, codes, err);
    }
    if (st == CWBA_OK) st = cwba_stream_encode(&si, n, codes, dst, cap, written, stats, err);
    free(codes);
    free(tmp);
    return st;
}

/* --------------------------------------------------------------- reading */

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
} reader;

static cwba_status truncated(const reader *r, const char *field, cwba_error *err)
{
    return cwba_fail(err, CWBA_E_FORMAT,
                     "truncated bitstream: it ends inside field '%s' (byte %zu of %zu)", field,
                     r->pos, r->len);
}

static cwba_status rd_bytes(reader *r, size_t n, const uint8_t **out, const char *field,
                            cwba_error *err)
{
    *out = NULL;
    if (n > r->len - r->pos) return truncated(r, field, err);
    *out = r->p + r->pos;
    r->pos += n;
    return CWBA_OK;
}

static cwba_status rd_le(reader *r, int nbytes, uint32_t *v, const char *field, cwba_error *err)
{
    const uint8_t *b = NULL;
    cwba_status st = rd_bytes(r, (size_t)nbytes, &b, field, err);
    if (st || !b) return st ? st : CWBA_E_INTERNAL;
    uint32_t x = 0;
    for (int i = nbytes - 1; i >= 0; i--) x = (x << 8) | b[i];
    *v = x;
    return CWBA_OK;
}

static cwba_status rd_f32(reader *r, float *f, const char *field, cwba_error *err)
{
    uint32_t u;
    cwba_status st = rd_le(r, 4, &u, field, err);
    if (st) return st;
    memcpy(f, &u, 4);
    if (!isfinite(*f))
        return cwba_fail(err, CWBA_E_FORMAT, "bitstream field '%s' is not a finite number", field);
    return CWBA_OK;
}

static cwba_status rd_varint(reader *r, uint32_t *v, const char *field, cwba_error *err)
{
    uint64_t x = 0;
    for (int i = 0; i < 5; i++) {
        if (r->pos >= r->len) return truncated(r, field, err);
        uint8_t b = r->p[r->pos++];
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                return cwba_fail(err, CWBA_E_FORMAT,
                                 "bitstream field '%s': varint is not in its shortest form", field);
            if (x > UINT32_MAX)
                return cwba_fail(err, CWBA_E_FORMAT, "bitstream field '%s': varint exceeds 32 bits",
                                 field);
            *v = (uint32_t)x;
            return CWBA_OK;
        }
    }
    return cwba_fail(err, CWBA_E_FORMAT, "bitstream field '%s': varint longer than 5 bytes", field);
}

static cwba_status rd_name(reader *r, char *out, const char *field, cwba_error *err)
{
    uint32_t L;
    const uint8_t *b = NULL;
    cwba_status st = rd_le(r, 1, &L, field, err);
    if (st) return st;
    if (L < 1 || L > CWBA_STREAM_NAME_MAX)
        return cwba_fail(err, CWBA_E_FORMAT, "bitstream %s length %u out of range 1..%d", field, L,
                         CWBA_STREAM_NAME_MAX);
    if ((st = rd_bytes(r, L, &b, field, err))) return st;
    for (uint32_t i = 0; i < L; i++)
        if (b[i] < 0x21 || b[i] > 0x7E)
            return cwba_fail(err, CWBA_E_FORMAT,
                             "bitstream %s contains byte 0x%02x (printable ASCII only)", field, b[i]);
    memcpy(out, b, L);
    out[L] = '\0';
    return CWBA_OK;
}

/* A stream checked field by field, with its sections located. */
typedef struct parsed {
    cwba_stream_info info;
    int ncode;
    int drop; /* flags bit 0: n_c = 0 allowed */
    uint32_t nmin, span;
    const uint8_t *side;
    size_t side_len;
    const uint8_t *payload;
    size_t payload_len;
} parsed;

static cwba_status parse(const uint8_t *src, size_t len, parsed *ps, cwba_error *err)
{
    if (!src && len > 0) return cwba_fail(err, CWBA_E_ARG, "bitstream decode: src is NULL");
    memset(ps, 0, sizeof *ps);
    cwba_stream_info *si = &ps->info;
    reader r = {src, len, 0};
    const uint8_t *b = NULL;
    uint32_t v, C, H, W;
    cwba_status st;
    if ((st = rd_bytes(&r, 4, &b, "magic", err)) || !b) return st ? st : CWBA_E_INTERNAL;
    if (memcmp(b, MAGIC, 4) != 0)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "not a cwba bitstream: magic is %02x %02x %02x %02x, expected \"CWBA\"",
                         b[0], b[1], b[2], b[3]);
    if ((st = rd_le(&r, 1, &v, "version", err))) return st;
    if (v != CWBA_STREAM_VERSION)
        return cwba_fail(err, CWBA_E_UNSUPPORTED,
                         "unsupported bitstream version %u (this build reads version %d)", v,
                         CWBA_STREAM_VERSION);
    if ((st = rd_le(&r, 1, &v, "flags", err))) return st;
    if (v & ~FLAG_DROP)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "bitstream flags 0x%02x: only bit 0 (dropped channels) is defined in "
                         "version 1",
                         v);
    ps->drop = (int)(v & FLAG_DROP);
    if ((st = rd_name(&r, si->model, "model name", err))) return st;
    if ((st = rd_name(&r, si->split, "split name", err))) return st;
    if ((st = rd_le(&r, 2, &C, "C", err)) || (st = rd_le(&r, 2, &H, "H", err)) ||
        (st = rd_le(&r, 2, &W, "W", err)))
        return st;
    if (C < 1 || C > CWBA_STREAM_MAX_C)
        return cwba_fail(err, CWBA_E_FORMAT, "bitstream C = %u out of range 1..%d", C,
                         CWBA_STREAM_MAX_C);
    if (H < 1 || H > CWBA_STREAM_MAX_HW || W < 1 || W > CWBA_STREAM_MAX_HW)
        return cwba_fail(err, CWBA_E_FORMAT, "bitstream H x W = %u x %u out of range 1..%d", H, W,
                         CWBA_STREAM_MAX_HW);
    if ((uint64_t)C * H * W > (uint64_t)CWBA_STREAM_MAX_ELEMS)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "bitstream shape %ux%ux%u has more than 2^28 elements", C, H, W);
    si->C = (int)C;
    si->H = (int)H;
    si->W = (int)W;
    if ((st = rd_le(&r, 1, &v, "quantizer", err))) return st;
    if (v > CWBA_QUANT_DOREFA)
        return cwba_fail(err, CWBA_E_FORMAT, "bitstream quantizer %u unknown (0..2)", v);
    si->quant = (cwba_quant)v;
    int is_dorefa = si->quant == CWBA_QUANT_DOREFA;
    if (is_dorefa) {
        if ((st = rd_le(&r, 1, &v, "dorefa bits", err))) return st;
        if (v < 1 || v > CWBA_STREAM_DOREFA_BITS_MAX)
            return cwba_fail(err, CWBA_E_FORMAT, "bitstream dorefa bits %u out of range 1..%d", v,
                             CWBA_STREAM_DOREFA_BITS_MAX);
        si->bits = (int)v;
        if ((st = rd_f32(&r, &si->clip, "dorefa clip", err))) return st;
        if (!dorefa_clip_ok(si->bits, si->clip))
            return cwba_fail(err, CWBA_E_FORMAT,
                             "bitstream dorefa clip %g is not finite, > 0 and <= %d/(2^b-1)",
                             (double)si->clip, CWBA_STREAM_MAX_N);
    } else {
        if ((st = rd_f32(&r, &si->mn, "mn", err)) || (st = rd_f32(&r, &si->mx, "mx", err)))
            return st;
        if (!(si->mn <= si->mx))
            return cwba_fail(err, CWBA_E_FORMAT, "bitstream range mn=%g > mx=%g", (double)si->mn,
                             (double)si->mx);
    }
    if ((st = rd_le(&r, 1, &v, "mode", err))) return st;
    if (v > CWBA_STREAM_ADAPTIVE)
        return cwba_fail(err, CWBA_E_FORMAT, "bitstream payload mode %u unknown (0 or 1)", v);
    si->mode = (cwba_stream_mode)v;
    int degenerate = !is_dorefa && si->mn == si->mx;
    uint32_t nmax = is_dorefa ? dorefa_top(si->bits, si->clip) : 0;
    if (!is_dorefa) {
        if ((st = rd_le(&r, 1, &v, "n coding", err))) return st;
        if (v > NCODE_EXP)
            return cwba_fail(err, CWBA_E_FORMAT, "bitstream n_c coding %u unknown (0..3)", v);
        ps->ncode = (int)v;
        if (ps->ncode == NCODE_EXP) {
            /* n_c = 2^k_c - 1: the field is kmax, the span 2^kmax - 1 */
            uint32_t kmax, side_len;
            if ((st = rd_varint(&r, &kmax, "k_c maximum", err))) return st;
            if (kmax < 1 || kmax > EXP_KMAX)
                return cwba_fail(err, CWBA_E_FORMAT, "bitstream k_c maximum %u out of range 1..%d",
                                 kmax, EXP_KMAX);
            ps->nmin = 0;
            ps->span = kmax;
            nmax = (1u << kmax) - 1u;
            if ((st = rd_varint(&r, &side_len, "side information length", err))) return st;
            size_t sb = side_bound((int)C, nmax);
            if (side_len > sb)
                return cwba_fail(err, CWBA_E_FORMAT,
                                 "bitstream side information length %u exceeds its bound %zu",
                                 side_len, sb);
            if ((st = rd_bytes(&r, side_len, &ps->side, "side information", err))) return st;
            ps->side_len = side_len;
        } else if ((st = rd_varint(&r, &ps->nmin, "n_c minimum", err))) {
            return st;
        }
        if (ps->ncode != NCODE_EXP && (ps->nmin < (ps->drop ? 0u : 1u) || ps->nmin > CWBA_STREAM_MAX_N))
            return cwba_fail(err, CWBA_E_FORMAT,
                             "bitstream n_c = %u out of range %d..%d (%s)", ps->nmin,
                             ps->drop ? 0 : 1, CWBA_STREAM_MAX_N,
                             ps->drop ? "flags allow dropped channels"
                                      : "every channel needs at least one interval unless flags "
                                        "bit 0 is set");
        if (ps->ncode != NCODE_EXP) nmax = ps->nmin;
        if (ps->ncode != NCODE_CONST && ps->ncode != NCODE_EXP) {
            uint32_t side_len;
            if ((st = rd_varint(&r, &ps->span, "n_c span", err))) return st;
            if (ps->span < 1 || (uint64_t)ps->nmin + ps->span > CWBA_STREAM_MAX_N)
                return cwba_fail(err, CWBA_E_FORMAT,
                                 "bitstream n_c range %u..%llu invalid (span >= 1, max %d)",
                                 ps->nmin, (unsigned long long)ps->nmin + ps->span,
                                 CWBA_STREAM_MAX_N);
            nmax = ps->nmin + ps->span;
            if ((st = rd_varint(&r, &side_len, "side information length", err))) return st;
            size_t sb = side_bound((int)C, ps->span);
            if (side_len > sb)
                return cwba_fail(err, CWBA_E_FORMAT,
                                 "bitstream side information length %u exceeds its bound %zu", side_len,
                                 sb);
            if ((st = rd_bytes(&r, side_len, &ps->side, "side information", err))) return st;
            ps->side_len = side_len;
        }
    }
    uint32_t pay_len;
    if ((st = rd_varint(&r, &pay_len, "payload length", err))) return st;
    if (degenerate && (pay_len != 0 || si->mode != CWBA_STREAM_FIXED))
        return cwba_fail(err, CWBA_E_FORMAT,
                         "bitstream with mn == mx must have an empty mode-0 payload (length %u)",
                         pay_len);
    size_t pb;
    if (si->mode == CWBA_STREAM_ADAPTIVE) {
        pb = payload_bound_adaptive(si);
    } else {
        /* Every n_c <= nmax, so this bounds the real fixed-mode payload. */
        double bits = (double)C * H * W * (log2_1p(nmax) + 0.02);
        pb = fixed_bound_bytes(bits);
    }
    if (pay_len > pb)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "bitstream payload length %u exceeds the bound %zu for %ux%ux%u", pay_len,
                         pb, C, H, W);
    if ((size_t)pay_len + 4 > r.len - r.pos)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "truncated bitstream: payload length says %u bytes + 4 (CRC), only %zu "
                         "remain",
                         pay_len, r.len - r.pos);
    ps->payload = r.p + r.pos;
    ps->payload_len = pay_len;
    r.pos += pay_len;
    if (r.len - r.pos != 4)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "bitstream length mismatch: the fields describe %zu bytes, the buffer has "
                         "%zu",
                         r.pos + 4, r.len);
    uint32_t stored = (uint32_t)src[r.pos] | (uint32_t)src[r.pos + 1] << 8 |
                      (uint32_t)src[r.pos + 2] << 16 | (uint32_t)src[r.pos + 3] << 24;
    uint32_t crc = codec_crc32(src, r.pos);
    if (crc != stored)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "bitstream CRC mismatch (stored %08x, computed %08x): data corrupt",
                         stored, crc);
    return CWBA_OK;
}

cwba_status cwba_stream_decode_header(const uint8_t *src, size_t len, cwba_stream_info *info,
                                      cwba_error *err)
{
    parsed ps;
    cwba_status st = parse(src, len, &ps, err);
    if (st) return st;
    if (info) *info = ps.info;
    return CWBA_OK;
}

cwba_status cwba_stream_expect(const cwba_stream_info *si, const char *model, const char *split,
                               int C, int H, int W, cwba_error *err)
{
    int same = (!model || strcmp(si->model, model) == 0) && (!split || strcmp(si->split, split) == 0) &&
               (C <= 0 || si->C == C) && (H <= 0 || si->H == H) && (W <= 0 || si->W == W);
    if (same) return CWBA_OK;
    return cwba_fail(err, CWBA_E_FORMAT,
                     "bitstream is for model '%s' split '%s' (%dx%dx%d), expected model '%s' "
                     "split '%s' (%dx%dx%d)",
                     si->model, si->split, si->C, si->H, si->W, model ? model : si->model,
                     split ? split : si->split, C > 0 ? C : si->C, H > 0 ? H : si->H,
                     W > 0 ? W : si->W);
}

static cwba_status corrupt(const char *section, cwba_error *err)
{
    return cwba_fail(err, CWBA_E_FORMAT,
                     "bitstream %s corrupt: the entropy-coded data is not a valid encoding",
                     section);
}

/* The dequantized value of one code, by the quantizer's own reference
 * function so that the cloud gets the edge's values bit for bit. DoReFa's
 * clamp interval is [0, clip]; its dequantization is code / (2^b - 1). */
static inline float dequant(const cwba_stream_info *si, uint32_t code, uint32_t n)
{
    if (si->quant == CWBA_QUANT_DOREFA)
        return cwba_quant_dequant_ref(si->quant, code, 0.0f, si->clip, (int)n);
    return cwba_quant_dequant_ref(si->quant, code, si->mn, si->mx, (int)n);
}

cwba_status cwba_stream_decode(const uint8_t *src, size_t len, cwba_stream_info *info, int *n,
                               size_t n_cap, uint32_t *codes, float *xhat, size_t elem_cap,
                               cwba_error *err)
{
    parsed ps;
    cwba_status st = parse(src, len, &ps, err);
    if (st) return st;
    const cwba_stream_info *si = &ps.info;
    int C = si->C, H = si->H, W = si->W, HW = H * W;
    size_t total = (size_t)C * HW;
    if (n && n_cap < (size_t)C)
        return cwba_fail(err, CWBA_E_ARG, "bitstream decode: n holds %zu channels, the stream has %d",
                         n_cap, C);
    if ((codes || xhat) && elem_cap < total)
        return cwba_fail(err, CWBA_E_ARG,
                         "bitstream decode: output holds %zu elements, the stream has %zu", elem_cap,
                         total);

    uint32_t *nc = malloc((size_t)C * sizeof *nc);
    uint32_t *scratch = codes ? NULL : malloc((size_t)HW * sizeof *scratch); /* (H, W) */
    float *lut = xhat ? malloc((size_t)HW * sizeof *lut) : NULL;
    uint16_t *ctx = NULL;
    if (!nc || (!codes && !scratch) || (xhat && !lut)) {
        st = cwba_fail(err, CWBA_E_NOMEM, "bitstream decode: out of memory");
        goto out;
    }

    /* n_c. */
    rc_dec d;
    if (si->quant == CWBA_QUANT_DOREFA || ps.ncode == NCODE_CONST) {
        uint32_t v = si->quant == CWBA_QUANT_DOREFA ? dorefa_top(si->bits, si->clip) : ps.nmin;
        for (int c = 0; c < C; c++) nc[c] = v;
    } else {
        rc_dec_init(&d, ps.side, ps.side_len);
        if (ps.ncode == NCODE_EXP) {
            ctx = ctx_table_new(NB_CLASSES);
            if (!ctx) {
                st = cwba_fail(err, CWBA_E_NOMEM, "bitstream decode: out of memory");
                goto out;
            }
            uint32_t k = 0;
            for (int c = 0; c < C; c++) {
                int t = c == 0 ? 0 : 1 + (int)k;
                if (rc_vm_decode(&d, ctx + (size_t)t * RC_VM_SLOTS, ps.span, &k) ||
                    (k == 0 && !ps.drop)) {
                    st = corrupt("side information", err);
                    goto out;
                }
                nc[c] = (1u << k) - 1u;
            }
            free(ctx);
            ctx = NULL;
        } else if (ps.ncode == NCODE_FIXED) {
            for (int c = 0; c < C; c++) {
                uint32_t dv;
                if (rc_dec_uniform(&d, ps.span + 1, &dv)) {
                    st = corrupt("side information", err);
                    goto out;
                }
                nc[c] = ps.nmin + dv;
            }
        } else {
            ctx = ctx_table_new(NB_CLASSES);
            if (!ctx) {
                st = cwba_fail(err, CWBA_E_NOMEM, "bitstream decode: out of memory");
                goto out;
            }
            uint32_t prev = 0;
            for (int c = 0; c < C; c++) {
                int t = c == 0 ? 0 : 1 + rc_bitlength(prev);
                if (rc_vm_decode(&d, ctx + (size_t)t * RC_VM_SLOTS, ps.span, &prev)) {
                    st = corrupt("side information", err);
                    goto out;
                }
                nc[c] = ps.nmin + prev;
            }
            free(ctx);
            ctx = NULL;
        }
        if (rc_dec_finish(&d)) {
            st = corrupt("side information", err);
            goto out;
        }
    }
    /* n_c as the format defines it: for DoReFa 2^bits - 1 (its alphabet,
     * nc above, is larger when clip > 1), which is also what the encoder
     * requires back. */
    if (n)
        for (int c = 0; c < C; c++)
            n[c] = si->quant == CWBA_QUANT_DOREFA ? (int)dorefa_n(si->bits) : (int)nc[c];

    /* Codes, channel by channel, each dequantized right after decoding. */
    int degenerate = si->quant != CWBA_QUANT_DOREFA && si->mn == si->mx;
    rc_dec_init(&d, ps.payload, ps.payload_len);
    if (si->mode == CWBA_STREAM_ADAPTIVE) {
        ctx = ctx_table_new((size_t)K_CLASSES * NB_CLASSES);
        if (!ctx) {
            st = cwba_fail(err, CWBA_E_NOMEM, "bitstream decode: out of memory");
            goto out;
        }
    }
    for (int c = 0; c < C; c++) {
        uint32_t *q = codes ? codes + (size_t)c * HW : scratch; /* (H, W) */
        uint32_t M = nc[c] + 1;
        if (degenerate || nc[c] == 0) { /* a dropped channel: x̂ = mn */
            memset(q, 0, (size_t)HW * sizeof *q);
            if (xhat)
                for (int i = 0; i < HW; i++) xhat[(size_t)c * HW + i] = si->mn;
            continue;
        }
        if (degenerate) {
            memset(q, 0, (size_t)HW * sizeof *q);
        } else if (si->mode == CWBA_STREAM_FIXED) {
            for (int i = 0; i < HW; i++)
                if (rc_dec_uniform(&d, M, &q[i])) {
                    st = corrupt("payload", err);
                    goto out;
                }
        } else {
            uint16_t *base = ctx + (size_t)(rc_bitlength(nc[c]) - 1) * NB_CLASSES * RC_VM_SLOTS;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    if (rc_vm_decode(&d, base + (size_t)nb_class(q, W, y, x) * RC_VM_SLOTS, nc[c],
                                     &q[y * W + x])) {
                        st = corrupt("payload", err);
                        goto out;
                    }
        }
        if (!xhat) continue;
        float *xo = xhat + (size_t)c * HW; /* (H, W) */
        if (degenerate) {
            for (int i = 0; i < HW; i++) xo[i] = si->mn;
        } else if (M <= (uint32_t)HW) {
            /* Fewer levels than elements: dequantize each level once (log
             * calls expf); the same function, so the same bits. */
            for (uint32_t l = 0; l < M; l++) lut[l] = dequant(si, l, nc[c]);
            for (int i = 0; i < HW; i++) xo[i] = lut[q[i]];
        } else {
            for (int i = 0; i < HW; i++) xo[i] = dequant(si, q[i], nc[c]);
        }
    }
    if (!degenerate && rc_dec_finish(&d)) {
        st = corrupt("payload", err);
        goto out;
    }
    if (info) *info = *si;
    st = CWBA_OK;
out:
    free(ctx);
    free(lut);
    free(scratch);
    free(nc);
    return st;
}
