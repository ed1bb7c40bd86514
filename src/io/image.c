/* Image files in, torchvision's ImageNet input tensor out.
 *
 * The goal is bit-exactness with what a PyTorch user gets from
 *     Image.open(path).convert('RGB')                 (torchvision's pil_loader)
 *     -> Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(mean, std)
 * so every step mirrors the behaviour of Pillow / torchvision (as documented
 * and as observed on Debian's python3-pil 9.4 and python3-torchvision 0.14),
 * written from that behaviour, not from their code:
 *  - JPEG through libjpeg(-turbo) with its defaults, as Pillow decodes: ISLOW
 *    DCT, fancy upsampling, no scaling; CMYK/YCCK files are read as Adobe
 *    (inverted) CMYK and converted with Pillow's CMYK->RGB rule.
 *  - PNG through libpng: palette looked up, grey replicated, alpha dropped (not
 *    composited), 16-bit samples reduced as Pillow's unpackers do (high byte;
 *    16-bit grey is clamped to 255, Pillow's I -> RGB conversion), no gamma.
 *  - Bilinear resize with Pillow's antialiasing convolution: triangle filter
 *    whose support grows with the downscale factor, weights normalised in
 *    double, then fixed point with 22 fractional bits, horizontal pass then
 *    vertical pass, each rounded and clipped to uint8.
 * Decoding failures (corrupt, truncated, unsupported) name the file. */
#include "cwba/io.h"
#include "io_internal.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

/* Refuse images whose pixel count suggests a malformed or hostile header:
 * Pillow's decompression-bomb limit (it refuses more than twice its
 * MAX_IMAGE_PIXELS, 89478485), 537 MB of RGB. */
#define IMG_MAX_PIXELS ((size_t)178956970)
/* libjpeg's budget for the whole-image coefficient buffers of progressive
 * and multi-scan files: three full-resolution components of the largest
 * image (2 bytes a coefficient), so that with the RGB output a hostile
 * header stays under 2 GB. Beyond it libjpeg fails ("backing store"). */
#define IMG_JPEG_MAX_MEMORY (IMG_MAX_PIXELS * 3 * 2)
/* A Huffman-coded JPEG spends at least a bit on every 8x8 block of its
 * first scan, so it holds at most 512 pixels a byte; one that claims more
 * than 4096 would only be decoded from filler (libjpeg zero-fills what is
 * missing after a marker), a bomb of seconds from a few bytes. */
#define IMG_JPEG_MAX_PIXELS_PER_BYTE 4096
/* Deflate expands by at most 1032:1, so a PNG whose pixels need more than
 * 1032 times its size cannot hold them (checked before allocating them). */
#define IMG_DEFLATE_MAX_RATIO 1032
#define IMG_MAX_FILE ((size_t)1 << 30)

void cwba_image_free(cwba_image *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

static cwba_status image_alloc(cwba_image *img, int w, int h, const char *what, cwba_error *err)
{
    size_t n;
    if (w <= 0 || h <= 0 || !cwba_size_mul((size_t)w, (size_t)h, &n) || n > IMG_MAX_PIXELS)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: implausible image size %dx%d", what, w, h);
    img->rgb = malloc(n * 3);
    if (!img->rgb) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory for a %dx%d image", what, w, h);
    img->width = w;
    img->height = h;
    return CWBA_OK;
}

/* Pillow's CMYK -> RGB: each channel is (255-K) - round((255-K)*C/255), with its
 * integer "divide by 255" (t = a*b + 128; (t + (t >> 8)) >> 8). */
static uint8_t cmyk_channel(int c, int k)
{
    int nk = 255 - k;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* ------------------------------------------------------------------- JPEG */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jump, 1);
}

/* Warnings do not stop Pillow either, except running out of data, which
 * Pillow reports as a truncated image. The library never prints. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        /* Stop at once: libjpeg would go on decoding the whole image from
         * nothing (zeros), which for a huge header is seconds of work. */
        c->truncated = 1;
        longjmp(c->jump, 1);
    }
}

typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    uint8_t *row; /* one decoded scanline, (width * components) */
    cwba_image *img;
} jpeg_job;

/* Everything that can longjmp happens in here; state lives in *j (not in
 * locals of this frame), so nothing needs to be volatile. */
static int jpeg_run(jpeg_job *j, const uint8_t *buf, size_t len)
{
    struct jpeg_decompress_struct *ci = &j->cinfo;
    if (setjmp(j->ctx.jump)) return 0;
    jpeg_create_decompress(ci);
    ci->mem->max_memory_to_use = (long)IMG_JPEG_MAX_MEMORY;
    jpeg_mem_src(ci, buf, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    size_t claimed;
    if (!cwba_size_mul(ci->image_width, ci->image_height, &claimed) ||
        claimed / IMG_JPEG_MAX_PIXELS_PER_BYTE > len) {
        snprintf(j->ctx.msg, sizeof j->ctx.msg, "%ux%u pixels cannot be coded in %zu bytes",
                 (unsigned)ci->image_width, (unsigned)ci->image_height, len);
        return 0;
    }
    int comps = ci->num_components;
    if (comps == 1)
        ci->out_color_space = JCS_GRAYSCALE;
    else if (comps == 3)
        ci->out_color_space = JCS_RGB;
    else if (comps == 4)
        ci->out_color_space = JCS_CMYK; /* libjpeg turns YCCK into CMYK */
    else {
        snprintf(j->ctx.msg, sizeof j->ctx.msg, "JPEG with %d components is not supported", comps);
        return 0;
    }
    /* The library defaults are Pillow's settings; spelled out to pin them. */
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    ci->scale_num = ci->scale_denom = 1;
    jpeg_start_decompress(ci);
    int w = (int)ci->output_width, h = (int)ci->output_height;
    if (ci->output_components != comps) {
        snprintf(j->ctx.msg, sizeof j->ctx.msg, "unexpected JPEG output components");
        return 0;
    }
    size_t npix;
    if (w <= 0 || h <= 0 || !cwba_size_mul((size_t)w, (size_t)h, &npix) || npix > IMG_MAX_PIXELS) {
        snprintf(j->ctx.msg, sizeof j->ctx.msg, "image size %dx%d is implausible or too large", w, h);
        return 0;
    }
    j->row = malloc((size_t)w * (size_t)comps);
    if (!j->row) {
        snprintf(j->ctx.msg, sizeof j->ctx.msg, "out of memory");
        return 0;
    }
    /* The output grows with the rows decoded, so that a short file whose
     * header claims a huge image fails at its end without first allocating
     * all of it. */
    size_t rows_cap = 0;
    j->img->width = w;
    j->img->height = h;
    while (ci->output_scanline < ci->output_height) {
        if (ci->output_scanline == rows_cap) {
            size_t n = rows_cap ? (rows_cap > (size_t)h / 2 ? (size_t)h : 2 * rows_cap)
                                : ((size_t)h < 64 ? (size_t)h : 64);
            uint8_t *grown = realloc(j->img->rgb, n * (size_t)w * 3);
            if (!grown) {
                snprintf(j->ctx.msg, sizeof j->ctx.msg, "out of memory for a %dx%d image", w, h);
                return 0;
            }
            j->img->rgb = grown;
            rows_cap = n;
        }
        uint8_t *dst = j->img->rgb + (size_t)ci->output_scanline * (size_t)w * 3;
        JSAMPROW rp = j->row;
        jpeg_read_scanlines(ci, &rp, 1);
        const uint8_t *s = j->row;
        for (int x = 0; x < w; x++, dst += 3, s += comps) {
            if (comps == 1) {
                dst[0] = dst[1] = dst[2] = s[0];
            } else if (comps == 3) {
                dst[0] = s[0];
                dst[1] = s[1];
                dst[2] = s[2];
            } else {
                /* Pillow reads JPEG CMYK as Adobe-inverted ("CMYK;I"). */
                int k = 255 - s[3];
                dst[0] = cmyk_channel(255 - s[0], k);
                dst[1] = cmyk_channel(255 - s[1], k);
                dst[2] = cmyk_channel(255 - s[2], k);
            }
        }
        if (j->ctx.truncated) return 0;
    }
    jpeg_finish_decompress(ci);
    return !j->ctx.truncated;
}

static cwba_status decode_jpeg(const uint8_t *buf, size_t len, const char *what, cwba_image *img,
                               cwba_error *err)
{
    jpeg_job *j = calloc(1, sizeof *j);
    if (!j) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", what);
    j->img = img;
    j->cinfo.err = jpeg_std_error(&j->ctx.pub);
    j->ctx.pub.error_exit = jpeg_on_error;
    j->ctx.pub.emit_message = jpeg_on_message;
    int ok = jpeg_run(j, buf, len);
    jpeg_destroy_decompress(&j->cinfo);
    cwba_status st = CWBA_OK;
    if (!ok) {
        cwba_image_free(img);
        if (j->ctx.truncated)
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: truncated JPEG (premature end of data)", what);
        else
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: cannot decode JPEG: %s", what, j->ctx.msg);
    }
    free(j->row);
    free(j);
    return st;
}

/* -------------------------------------------------------------------- PNG */

typedef struct png_job {
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
    png_structp png;
    png_infop info;
    uint8_t *pixels; /* (height, rowbytes) as libpng delivers them */
    png_bytep *rows;
    cwba_image *img;
} png_job;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* the library never prints; warnings do not fail a decode */
}

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    png_job *j = png_get_io_ptr(png);
    if (n > j->len - j->pos) png_error(png, "truncated PNG (premature end of data)");
    memcpy(out, j->buf + j->pos, n);
    j->pos += n;
}

static int png_run(png_job *j, const char *what)
{
    if (setjmp(png_jmpbuf(j->png))) return 0;
    png_set_read_fn(j->png, j, png_read_mem);
    png_read_info(j->png, j->info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, ctype = 0, interlace = 0;
    png_get_IHDR(j->png, j->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (w > INT_MAX || h > INT_MAX) png_error(j->png, "image too large");
    /* The pixels' bits before deflate (w * h bounded first) against what
     * the file can hold. */
    static const int k_png_channels[7] = {1, 0, 3, 1, 2, 0, 4}; /* by colour type */
    size_t npix;
    if (!cwba_size_mul(w, h, &npix) || npix > IMG_MAX_PIXELS)
        png_error(j->png, "image size implausible or too large");
    size_t raw_bits = npix * (size_t)depth * (size_t)(ctype >= 0 && ctype < 7 ? k_png_channels[ctype] : 1);
    if (raw_bits / 8 / IMG_DEFLATE_MAX_RATIO > j->len)
        png_error(j->png, "file too short for its image size (truncated?)");
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_packing(j->png); /* one index per byte */
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(j->png);
    /* 16-bit: Pillow keeps the high byte ("RGB;16B" etc.); grey stays 16-bit
     * here because Pillow opens it as mode I and clamps to 255 on convert. */
    if (depth == 16 && ctype != PNG_COLOR_TYPE_GRAY) png_set_strip_16(j->png);
    png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    size_t rowbytes = png_get_rowbytes(j->png, j->info), total;
    int chans = png_get_channels(j->png, j->info);
    int odepth = png_get_bit_depth(j->png, j->info);
    if (image_alloc(j->img, (int)w, (int)h, what, NULL)) png_error(j->png, "image size implausible or too large");
    size_t need = (size_t)w * (size_t)chans * (size_t)(odepth / 8);
    if (rowbytes < need || !cwba_size_mul(rowbytes, h, &total)) png_error(j->png, "bad row size");
    j->pixels = malloc(total ? total : 1);
    j->rows = malloc((size_t)h * sizeof *j->rows);
    if (!j->pixels || !j->rows) png_error(j->png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) j->rows[y] = j->pixels + (size_t)y * rowbytes;
    png_read_image(j->png, j->rows);
    /* Data after the image (ancillary chunks, IEND) is not needed, and Pillow
     * does not insist on it either. */
    png_colorp pal = NULL;
    int npal = 0;
    if (ctype == PNG_COLOR_TYPE_PALETTE && !png_get_PLTE(j->png, j->info, &pal, &npal))
        png_error(j->png, "palette image without PLTE");
    for (png_uint_32 y = 0; y < h; y++) {
        const uint8_t *s = j->rows[y];
        uint8_t *d = j->img->rgb + (size_t)y * w * 3;
        for (png_uint_32 x = 0; x < w; x++, d += 3) {
            switch (ctype) {
            case PNG_COLOR_TYPE_PALETTE: {
                int i = s[x];
                if (i < npal) {
                    d[0] = pal[i].red;
                    d[1] = pal[i].green;
                    d[2] = pal[i].blue;
                } else {
                    d[0] = d[1] = d[2] = 0; /* index beyond PLTE: black */
                }
                break;
            }
            case PNG_COLOR_TYPE_GRAY:
                if (odepth == 16) {
                    unsigned v = ((unsigned)s[2 * x] << 8) | s[2 * x + 1];
                    d[0] = d[1] = d[2] = (uint8_t)(v > 255 ? 255 : v);
                } else {
                    d[0] = d[1] = d[2] = s[x];
                }
                break;
            case PNG_COLOR_TYPE_GRAY_ALPHA: d[0] = d[1] = d[2] = s[2 * x]; break;
            case PNG_COLOR_TYPE_RGB: memcpy(d, s + 3 * x, 3); break;
            case PNG_COLOR_TYPE_RGB_ALPHA: memcpy(d, s + 4 * x, 3); break;
            default: png_error(j->png, "unknown colour type");
            }
        }
    }
    return 1;
}

static cwba_status decode_png(const uint8_t *buf, size_t len, const char *what, cwba_image *img,
                              cwba_error *err)
{
    png_job *j = calloc(1, sizeof *j);
    if (!j) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", what);
    j->buf = buf;
    j->len = len;
    j->img = img;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    j->info = j->png ? png_create_info_struct(j->png) : NULL;
    cwba_status st = CWBA_OK;
    if (!j->info) {
        st = cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", what);
    } else if (!png_run(j, what)) {
        cwba_image_free(img);
        st = cwba_fail(err, CWBA_E_FORMAT, "%s: cannot decode PNG: %s", what, j->msg);
    }
    png_destroy_read_struct(j->png ? &j->png : NULL, j->info ? &j->info : NULL, NULL);
    free(j->pixels);
    free(j->rows);
    free(j);
    return st;
}

/* ----------------------------------------------------------------- decode */

static const char *sniff_other(const uint8_t *b, size_t n)
{
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return "GIF";
    if (n >= 2 && memcmp(b, "BM", 2) == 0) return "BMP";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') return "PNM";
    return NULL;
}

cwba_status cwba_image_decode(const uint8_t *buf, size_t len, const char *what, cwba_image *img,
                              cwba_error *err)
{
    memset(img, 0, sizeof *img);
    if (!what) what = "image";
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return decode_jpeg(buf, len, what, img, err);
    if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0) return decode_png(buf, len, what, img, err);
    const char *other = sniff_other(buf, len);
    if (other)
        return cwba_fail(err, CWBA_E_UNSUPPORTED, "%s: %s images are not supported (JPEG and PNG are)",
                         what, other);
    return cwba_fail(err, CWBA_E_FORMAT, "%s: not a JPEG or PNG image (%s)", what,
                     len == 0 ? "empty file" : "unknown signature");
}

cwba_status cwba_image_load(const char *path, cwba_image *img, cwba_error *err)
{
    memset(img, 0, sizeof *img);
    uint8_t *buf = NULL;
    size_t len = 0;
    cwba_status st = cwba_file_read_all(path, IMG_MAX_FILE, &buf, &len, err);
    if (st) return st;
    st = cwba_image_decode(buf, len, path, img, err);
    free(buf);
    return st;
}

/* ----------------------------------------------------------------- resize */

/* Pillow's convolution weights for one axis: output pixel i reads input
 * [bounds[2i], bounds[2i] + bounds[2i+1]) with fixed-point weights kk[i*ksize..]. */
typedef struct resample_axis {
    int ksize;
    int *bounds;  /* (out, 2): first input index, tap count */
    int32_t *kk;  /* (out, ksize) weights scaled by 2^22 */
} resample_axis;

#define RESAMPLE_BITS 22 /* Pillow's PRECISION_BITS: 32 - 8 - 2 */

static double triangle(double x)
{
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static int axis_init(resample_axis *a, int in_size, int out_size)
{
    memset(a, 0, sizeof *a);
    double scale = (double)in_size / out_size;
    /* Downscaling widens the filter by the scale factor (antialiasing). */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* the bilinear filter's support is 1 */
    a->ksize = (int)ceil(support) * 2 + 1;
    size_t nk;
    if (!cwba_size_mul((size_t)out_size, (size_t)a->ksize, &nk)) return 0;
    double *w = malloc(nk * sizeof *w);
    a->kk = malloc(nk * sizeof *a->kk);
    a->bounds = malloc((size_t)out_size * 2 * sizeof *a->bounds);
    if (!w || !a->kk || !a->bounds) {
        free(w);
        return 0;
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale;
        double ss = 1.0 / filterscale, ww = 0.0;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        double *k = w + (size_t)i * a->ksize;
        int x = 0;
        for (; x < n; x++) {
            k[x] = triangle((x + lo - center + 0.5) * ss);
            ww += k[x];
        }
        for (x = 0; x < n; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < a->ksize; x++) k[x] = 0.0;
        a->bounds[2 * i] = lo;
        a->bounds[2 * i + 1] = n;
    }
    for (size_t i = 0; i < nk; i++) {
        double v = w[i] * (double)(1 << RESAMPLE_BITS);
        a->kk[i] = (int32_t)(w[i] < 0 ? v - 0.5 : v + 0.5);
    }
    free(w);
    return 1;
}

static void axis_free(resample_axis *a)
{
    free(a->bounds);
    free(a->kk);
}

static uint8_t clip_fixed(int64_t acc)
{
    int64_t v = acc >> RESAMPLE_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

cwba_status cwba_image_resize_bilinear(const cwba_image *in, int out_w, int out_h, cwba_image *out,
                                       cwba_error *err)
{
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || out_w < 1 || out_h < 1 || out_w > 65535 || out_h > 65535)
        return cwba_fail(err, CWBA_E_ARG, "resize: bad size %dx%d", out_w, out_h);
    cwba_status st = image_alloc(out, out_w, out_h, "resize", err);
    if (st) return st;
    const int iw = in->width, ih = in->height;
    int need_h = out_w != iw, need_v = out_h != ih;
    if (!need_h && !need_v) {
        memcpy(out->rgb, in->rgb, (size_t)iw * (size_t)ih * 3);
        return CWBA_OK;
    }
    resample_axis ax, ay;
    int ok_x = axis_init(&ax, iw, out_w), ok_y = axis_init(&ay, ih, out_h);
    uint8_t *tmp = NULL;
    if (!ok_x || !ok_y) goto nomem;
    /* Horizontal pass over the input rows the vertical pass will read. */
    const uint8_t *src = in->rgb; /* (rows, src_w, 3) */
    int src_w = iw, row0 = 0;
    if (need_h) {
        int first = ay.bounds[0];
        int last = ay.bounds[2 * (out_h - 1)] + ay.bounds[2 * (out_h - 1) + 1];
        if (!need_v) {
            first = 0;
            last = ih;
        }
        tmp = malloc((size_t)(last - first) * (size_t)out_w * 3); /* (last-first, out_w, 3) */
        if (!tmp) goto nomem;
        for (int y = first; y < last; y++) {
            const uint8_t *r = in->rgb + (size_t)y * iw * 3;
            uint8_t *d = tmp + (size_t)(y - first) * out_w * 3;
            for (int x = 0; x < out_w; x++) {
                int lo = ax.bounds[2 * x], n = ax.bounds[2 * x + 1];
                const int32_t *k = ax.kk + (size_t)x * ax.ksize;
                for (int c = 0; c < 3; c++) {
                    int64_t acc = (int64_t)1 << (RESAMPLE_BITS - 1);
                    for (int t = 0; t < n; t++) acc += (int64_t)r[(size_t)(lo + t) * 3 + c] * k[t];
                    d[(size_t)x * 3 + c] = clip_fixed(acc);
                }
            }
        }
        src = tmp;
        src_w = out_w;
        row0 = first;
    }
    if (need_v) {
        for (int y = 0; y < out_h; y++) {
            int lo = ay.bounds[2 * y] - row0, n = ay.bounds[2 * y + 1];
            const int32_t *k = ay.kk + (size_t)y * ay.ksize;
            uint8_t *d = out->rgb + (size_t)y * out_w * 3;
            for (int x = 0; x < src_w * 3; x++) {
                int64_t acc = (int64_t)1 << (RESAMPLE_BITS - 1);
                for (int t = 0; t < n; t++) acc += (int64_t)src[(size_t)(lo + t) * src_w * 3 + x] * k[t];
                d[x] = clip_fixed(acc);
            }
        }
    } else {
        memcpy(out->rgb, src, (size_t)out_w * out_h * 3);
    }
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    return CWBA_OK;
nomem:
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    cwba_image_free(out);
    return cwba_fail(err, CWBA_E_NOMEM, "resize: out of memory");
}

void cwba_resize_shorter_side(int w, int h, int size, int *out_w, int *out_h)
{
    /* torchvision: new_long = int(size * long / short) in Python floats. */
    int shrt = w <= h ? w : h, lng = w <= h ? h : w;
    int nl = (int)((double)size * (double)lng / (double)shrt);
    if (w <= h) {
        *out_w = size;
        *out_h = nl;
    } else {
        *out_w = nl;
        *out_h = size;
    }
}

/* Python's round(): half to even. */
static int round_half_even(double v)
{
    double r = nearbyint(v); /* default rounding mode: to nearest, ties to even */
    return (int)r;
}

cwba_status cwba_image_center_crop(const cwba_image *in, int cw, int ch, cwba_image *out, cwba_error *err)
{
    memset(out, 0, sizeof *out);
    if (cw < 1 || ch < 1 || cw > 65535 || ch > 65535)
        return cwba_fail(err, CWBA_E_ARG, "center crop: bad size %dx%d", cw, ch);
    int w = in->width, h = in->height;
    /* torchvision pads a too-small image with zeros first (left/top get the
     * floor half), then crops at round((size - crop) / 2). */
    int pl = cw > w ? (cw - w) / 2 : 0, pt = ch > h ? (ch - h) / 2 : 0;
    int pw = cw > w ? cw : w, ph = ch > h ? ch : h;
    int left = round_half_even((pw - cw) / 2.0), top = round_half_even((ph - ch) / 2.0);
    cwba_status st = image_alloc(out, cw, ch, "center crop", err);
    if (st) return st;
    memset(out->rgb, 0, (size_t)cw * ch * 3);
    for (int y = 0; y < ch; y++) {
        int sy = y + top - pt;
        if (sy < 0 || sy >= h) continue;
        for (int x = 0; x < cw; x++) {
            int sx = x + left - pl;
            if (sx < 0 || sx >= w) continue;
            memcpy(out->rgb + ((size_t)y * cw + x) * 3, in->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    return CWBA_OK;
}

cwba_status cwba_image_resize_crop(const cwba_image *in, int resize, int size, cwba_image *out,
                                   cwba_error *err)
{
    memset(out, 0, sizeof *out);
    if (size < 1) return cwba_fail(err, CWBA_E_ARG, "crop size %d < 1", size);
    if (resize <= 0) resize = size;
    int rw, rh;
    cwba_resize_shorter_side(in->width, in->height, resize, &rw, &rh);
    if (rw < 1 || rh < 1 || rw > 65535 || rh > 65535)
        return cwba_fail(err, CWBA_E_FORMAT, "image %dx%d cannot be resized to a shorter side of %d",
                         in->width, in->height, resize);
    cwba_image r;
    cwba_status st;
    if (rw == in->width && rh == in->height) /* torchvision returns the image untouched */
        return cwba_image_center_crop(in, size, size, out, err);
    st = cwba_image_resize_bilinear(in, rw, rh, &r, err);
    if (st) return st;
    st = cwba_image_center_crop(&r, size, size, out, err);
    cwba_image_free(&r);
    return st;
}

void cwba_image_to_tensor(const cwba_image *img, const float mean[3], const float std[3], float *out)
{
    /* out: (3, H, W). ToTensor divides by 255 in float32, Normalize subtracts
     * and divides in float32: the same two roundings here. */
    size_t plane = (size_t)img->width * (size_t)img->height;
    for (int c = 0; c < 3; c++) {
        float *o = out + (size_t)c * plane; /* (H, W) */
        const uint8_t *s = img->rgb + c;
        for (size_t i = 0; i < plane; i++) o[i] = ((float)s[3 * i] / 255.0f - mean[c]) / std[c];
    }
}

cwba_preprocess cwba_preprocess_imagenet(void)
{
    cwba_preprocess pp;
    memset(&pp, 0, sizeof pp);
    pp.size = 224;
    pp.resize = 256;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        pp.mean[c] = mean[c];
        pp.std[c] = std[c];
    }
    return pp;
}

cwba_status cwba_image_preprocess_file(const char *path, const cwba_preprocess *pp, float *out,
                                       cwba_error *err)
{
    cwba_image img, crop;
    cwba_status st = cwba_image_load(path, &img, err);
    if (st) return st;
    st = cwba_image_resize_crop(&img, pp->resize, pp->size, &crop, err);
    cwba_image_free(&img);
    if (st) {
        /* name the file: the resize step does not know it */
        char msg[200];
        snprintf(msg, sizeof msg, "%.199s", err ? err->msg : "");
        return cwba_fail(err, st, "%s: %s", path, msg);
    }
    cwba_image_to_tensor(&crop, pp->mean, pp->std, out);
    cwba_image_free(&crop);
    return CWBA_OK;
}
