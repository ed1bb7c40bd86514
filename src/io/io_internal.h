/* Private helpers shared by the files of src/io (not part of the public API). */
#ifndef CWBA_IO_INTERNAL_H
#define CWBA_IO_INTERNAL_H

#include "cwba/io.h"

/* Largest decompressed .xz payload we accept (4 GiB): far above any model we
 * ship, low enough that a hostile stream cannot exhaust memory unnoticed. */
#define CWBA_XZ_MAX_OUT ((size_t)4 << 30)

/* 1 if buf starts with the xz stream magic FD 37 7A 58 5A 00. */
int cwba_is_xz(const uint8_t *buf, size_t len);

/* Decompresses a complete .xz image held in memory into a malloc'd buffer
 * (caller frees *out). Output larger than max_out is CWBA_E_FORMAT; `what`
 * names the input in messages. */
cwba_status cwba_xz_decompress(const uint8_t *in, size_t in_len, size_t max_out, const char *what,
                               uint8_t **out, size_t *out_len, cwba_error *err);

/* Reads a whole file and, when its content (not its name) is an xz stream,
 * decompresses it. Caller frees *out. */
cwba_status cwba_read_maybe_xz(const char *path, uint8_t **out, size_t *out_len, cwba_error *err);

/* In-memory forms of cwba_npy_read_f32 and cwba_card_load (the file
 * readers call them; the fuzz targets feed them directly); `what` names the
 * input in messages. */
cwba_status cwba_npy_parse_f32(const uint8_t *buf, size_t len, const char *what, float **data,
                               int *ndim, int64_t shape[CWBA_MAX_DIMS], cwba_error *err);
cwba_status cwba_card_parse(const uint8_t *buf, size_t len, const char *what, cwba_card *card,
                            cwba_error *err);

/* cwba_weights_add without its duplicate check, for parsers that have
 * checked their names once (a linear search per tensor made a file of many
 * small tensors quadratic: 20000 took 12 s). */
cwba_status cwba_weights_add_unique(cwba_weights *w, const char *name, int ndim,
                                    const int64_t *shape, float *data, cwba_error *err);

/* IEEE binary16 / bfloat16 bit patterns -> float32, exact for every input
 * (subnormals, infinities and NaNs included). */
float cwba_f16_to_f32(uint16_t h);
float cwba_bf16_to_f32(uint16_t b);

#endif

/* ---------------------------------------------------------------- datasets
 *
 * A dataset is a kind-specific implementation behind a small vtable. To add a
 * kind: write cwba_dataset_open_<kind>() filling a cwba_dataset (ops, pp,
 * count, has_labels, impl) and add one row to the table in src/io/dataset.c. */

typedef struct cwba_dataset_ops {
    const char *kind;
    /* Image `index` (already range-checked) preprocessed into out (3, S, S);
     * *label = class or -1 (label never NULL here). */
    cwba_status (*get)(const cwba_dataset *d, int index, float *out, int *label, cwba_error *err);
    /* Frees d->impl (not d itself). */
    void (*destroy)(cwba_dataset *d);
    /* Kinds backed by image files only (NULL otherwise), for the options of
     * cwba_dataset_open_ex: turn on skip_unreadable; whether it is on;
     * whether image `index` failed to decode so far; its file. */
    void (*set_skip_unreadable)(cwba_dataset *d);
    int (*skips_unreadable)(const cwba_dataset *d);
    int (*is_unreadable)(const cwba_dataset *d, int index);
    const char *(*item_path)(const cwba_dataset *d, int index);
} cwba_dataset_ops;

struct cwba_dataset {
    const cwba_dataset_ops *ops;
    cwba_preprocess pp; /* validated by cwba_dataset_open */
    int count;
    int has_labels;
    void *impl;
};

/* Opener signature: `args` is the spec after "<kind>:" or NULL for a bare
 * "<kind>"; pp is the caller's preprocessing or NULL (kind's default). On
 * success *out is a calloc'd cwba_dataset owned by the caller. */
typedef cwba_status (*cwba_dataset_open_fn)(const char *args, const cwba_preprocess *pp,
                                            cwba_dataset **out, cwba_error *err);

cwba_status cwba_dataset_open_fmnist(const char *args, const cwba_preprocess *pp,
                                     cwba_dataset **out, cwba_error *err);
/* ImageFolder-style and flat+labels image directories / unlabelled image
 * folders (src/io/imagenet.c, docs/imagenet.md). */
cwba_status cwba_dataset_open_imagenet(const char *args, const cwba_preprocess *pp,
                                       cwba_dataset **out, cwba_error *err);
cwba_status cwba_dataset_open_folder(const char *args, const cwba_preprocess *pp,
                                     cwba_dataset **out, cwba_error *err);

/* Checks size (1..4096), finite means and std > 0; `what` names the caller. */
cwba_status cwba_preprocess_check(const cwba_preprocess *pp, const char *what, cwba_error *err);

/* One gray uint8 plane (h, w) -> network input (3, S, S): x/255, bilinear
 * resize to S x S (cwba_resize_bilinear), then (x - mean[c]) / std[c] for
 * each of the 3 channels. `work` holds h*w + S*S floats. */
void cwba_preprocess_gray_u8(const uint8_t *img, int h, int w, const cwba_preprocess *pp,
                             float *work, float *out);
