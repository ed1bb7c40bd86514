/* cwba/io.h — weights, model cards, datasets, NumPy .npy and interval tables.
 * Everything read here comes from outside and is validated field by field. */
#ifndef CWBA_IO_H
#define CWBA_IO_H

#include "cwba/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- weights */

#define CWBA_MAX_DIMS 8

/* One named tensor, converted to float32. Integer tensors (e.g. BatchNorm's
 * num_batches_tracked) are kept with data == NULL and is_integer = 1. */
typedef struct cwba_tensor_entry {
    char *name;
    int ndim;
    int64_t shape[CWBA_MAX_DIMS];
    size_t numel;
    int is_integer;
    float *data; /* (numel) float32, owned by the cwba_weights */
} cwba_tensor_entry;

/* A name -> tensor map. Owns every entry. */
typedef struct cwba_weights {
    size_t count;
    size_t capacity;
    cwba_tensor_entry *entries;
} cwba_weights;

/* Loads a weights file, chosen by content: safetensors (F32/F16/BF16 float
 * tensors, integer tensors accepted and ignored), optionally xz-compressed
 * (".xz", read through liblzma). On success *out is owned by the caller. */
cwba_status cwba_weights_load(const char *path, cwba_weights **out, cwba_error *err);
/* Parses an in-memory safetensors image; `what` names it in messages. */
cwba_status cwba_weights_parse_safetensors(const uint8_t *buf, size_t len, const char *what,
                                           cwba_weights **out, cwba_error *err);
cwba_weights *cwba_weights_new(void);
/* Adds a float tensor; takes ownership of data (malloc'd) even on failure. */
cwba_status cwba_weights_add(cwba_weights *w, const char *name, int ndim, const int64_t *shape,
                             float *data, cwba_error *err);
const cwba_tensor_entry *cwba_weights_find(const cwba_weights *w, const char *name);
void cwba_weights_free(cwba_weights *w); /* NULL accepted */

/* ------------------------------------------------------------- model card */

/* The JSON card that ships beside each reference model (models/NAME.json). */
typedef struct cwba_card {
    char arch[32];       /* "resnet18", "alexnet", "vgg16" (first word of "arch") */
    char sha256[65];     /* of the uncompressed safetensors file */
    double test_top1;
    int input_size;      /* e.g. 64 */
    double mean, std;    /* single-channel normalisation, replicated to RGB */
    int num_ref_logits;  /* rows in ref_logits (16) */
    int num_classes;
    float *ref_logits;   /* (num_ref_logits, num_classes), owned */
} cwba_card;

cwba_status cwba_card_load(const char *path, cwba_card *card, cwba_error *err);
void cwba_card_free(cwba_card *card);
/* Checks that the sha256 of the uncompressed bytes of weights_path (".xz"
 * decompressed in memory) equals card->sha256; mismatch is CWBA_E_FORMAT. */
cwba_status cwba_card_verify(const cwba_card *card, const char *weights_path, cwba_error *err);

/* ------------------------------------------------------------------ data */

/* Per-image preprocessing: the network input is (3, size, size) float32. */
typedef struct cwba_preprocess {
    int size;
    float mean[3], std[3];
} cwba_preprocess;

/* The reference models' preprocessing (SPEC §5): 64 px, mean 0.2860, std 0.3530. */
cwba_preprocess cwba_preprocess_fmnist(void);

typedef struct cwba_dataset cwba_dataset;

/* spec: "fmnist:DIR[:train|:test]" (default test) or "fmnist" for the Debian
 * package's /usr/share/datasets/fashion-mnist. Files: {train,t10k}-{images-idx3,
 * labels-idx1}-ubyte.gz (plain files without .gz accepted too). */
cwba_status cwba_dataset_open(const char *spec, const cwba_preprocess *pp, cwba_dataset **out,
                              cwba_error *err);
int cwba_dataset_count(const cwba_dataset *d);
int cwba_dataset_has_labels(const cwba_dataset *d);
/* Writes image `index` preprocessed into out (3, size, size); *label = -1 when
 * the dataset has none (label may be NULL). */
cwba_status cwba_dataset_get(const cwba_dataset *d, int index, float *out, int *label,
                             cwba_error *err);
void cwba_dataset_free(cwba_dataset *d);

/* torch.nn.functional.interpolate(mode='bilinear', align_corners=False,
 * antialias=False) of one float plane (in_h, in_w) -> (out_h, out_w). */
void cwba_resize_bilinear(const float *in, int in_h, int in_w, float *out, int out_h, int out_w);

/* -------------------------------------------------------------- npy files */

/* Writes a little-endian float32 C-order .npy (format 1.0) atomically. */
cwba_status cwba_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                               cwba_error *err);
/* Reads a float32 ('<f4', or '<f8'/'<f2' converted) C-order .npy. Caller frees *data. */
cwba_status cwba_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[CWBA_MAX_DIMS],
                              cwba_error *err);

#ifdef __cplusplus
}
#endif
#endif
