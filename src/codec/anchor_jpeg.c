/* JPEG anchor (libjpeg-turbo): one 8-bit grayscale baseline frame with
 * optimised Huffman tables and no JFIF marker (the decoder needs neither the
 * density nor the version it carries). */
#include "codec/anchor_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

typedef struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int warned;
    char msg[JMSG_LENGTH_MAX];
} jerr;

static void on_error(j_common_ptr ci)
{
    jerr *e = (jerr *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jump, 1);
}

/* The library never prints; any warning (a truncated or corrupt stream)
 * makes the decode fail. */
static void on_message(j_common_ptr ci, int level)
{
    jerr *e = (jerr *)ci->err;
    if (level < 0 && !e->warned) {
        e->warned = 1;
        (*ci->err->format_message)(ci, e->msg);
    }
}

static void err_init(jerr *e, struct jpeg_error_mgr **slot)
{
    *slot = jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error;
    e->pub.emit_message = on_message;
    e->warned = 0;
    e->msg[0] = 0;
}

typedef struct enc_job {
    struct jpeg_compress_struct ci;
    jerr e;
    unsigned char *mem;
    unsigned long mem_len;
    JSAMPLE row[]; /* one scanline */
} enc_job;

/* Everything that can longjmp runs here, with its state in *j. */
static int enc_run(enc_job *j, const uint16_t *pix, int w, int h, int quality)
{
    if (setjmp(j->e.jump)) return 0;
    jpeg_create_compress(&j->ci);
    jpeg_mem_dest(&j->ci, &j->mem, &j->mem_len);
    j->ci.image_width = (JDIMENSION)w;
    j->ci.image_height = (JDIMENSION)h;
    j->ci.input_components = 1;
    j->ci.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&j->ci);
    jpeg_set_quality(&j->ci, quality, TRUE);
    j->ci.optimize_coding = TRUE;
    j->ci.write_JFIF_header = FALSE;
    j->ci.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&j->ci, TRUE);
    while (j->ci.next_scanline < j->ci.image_height) {
        const uint16_t *src = pix + (size_t)j->ci.next_scanline * w;
        for (int x = 0; x < w; x++) j->row[x] = (JSAMPLE)src[x];
        JSAMPROW r = j->row;
        jpeg_write_scanlines(&j->ci, &r, 1);
    }
    jpeg_finish_compress(&j->ci);
    return 1;
}

cwba_status anchor_jpeg_encode(const uint16_t *pix, int w, int h, int quality, anchor_buf *out,
                               cwba_error *err)
{
    enc_job *j = calloc(1, sizeof *j + (size_t)w);
    if (!j) return cwba_fail(err, CWBA_E_NOMEM, "jpeg anchor: out of memory");
    err_init(&j->e, &j->ci.err);
    cwba_status st = enc_run(j, pix, w, h, quality)
                         ? anchor_buf_append(out, j->mem, j->mem_len, err)
                         : cwba_fail(err, CWBA_E_INTERNAL, "jpeg anchor: libjpeg: %s", j->e.msg);
    jpeg_destroy_compress(&j->ci);
    free(j->mem);
    free(j);
    return st;
}

typedef struct dec_job {
    struct jpeg_decompress_struct ci;
    jerr e;
    int bad_shape;
    JSAMPLE row[]; /* one scanline */
} dec_job;

static int dec_run(dec_job *j, const uint8_t *src, size_t len, int w, int h, uint16_t *pix)
{
    if (setjmp(j->e.jump)) return 0;
    jpeg_create_decompress(&j->ci);
    jpeg_mem_src(&j->ci, src, (unsigned long)len);
    jpeg_read_header(&j->ci, TRUE);
    if (j->ci.num_components != 1 || (int)j->ci.image_width != w || (int)j->ci.image_height != h) {
        j->bad_shape = 1;
        return 0;
    }
    j->ci.out_color_space = JCS_GRAYSCALE;
    j->ci.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&j->ci);
    while (j->ci.output_scanline < j->ci.output_height) {
        uint16_t *dst = pix + (size_t)j->ci.output_scanline * w;
        JSAMPROW r = j->row;
        jpeg_read_scanlines(&j->ci, &r, 1);
        for (int x = 0; x < w; x++) dst[x] = j->row[x];
    }
    jpeg_finish_decompress(&j->ci);
    return !j->e.warned;
}

cwba_status anchor_jpeg_decode(const uint8_t *src, size_t len, int w, int h, uint16_t *pix,
                               cwba_error *err)
{
    dec_job *j = calloc(1, sizeof *j + (size_t)w);
    if (!j) return cwba_fail(err, CWBA_E_NOMEM, "jpeg anchor: out of memory");
    err_init(&j->e, &j->ci.err);
    cwba_status st = CWBA_OK;
    if (len == 0 || !dec_run(j, src, len, w, h, pix))
        st = j->bad_shape
                 ? cwba_fail(err, CWBA_E_FORMAT,
                             "jpeg anchor: stream is not one %dx%d grayscale frame", w, h)
                 : cwba_fail(err, CWBA_E_FORMAT, "jpeg anchor: %s",
                             j->e.msg[0] ? j->e.msg : "empty stream");
    jpeg_destroy_decompress(&j->ci);
    free(j);
    return st;
}
