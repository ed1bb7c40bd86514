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
    /* Image datasets (imagenet:, folder:) only: torchvision Resize(resize) of the
     * shorter side before CenterCrop(size); 0 = resize the shorter side to size.
     * Ignored by fmnist:, which resizes straight to size x size. */
    int resize;
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

/* ------------------------------------------ ImageNet path: PyTorch checkpoints
 * (src/io/pth.c) */

/* 1 if buf starts like a torch.save file: a zip archive ("PK\3\4") or the
 * legacy pickle stream (PROTO 2 + the torch magic number). */
int cwba_is_pth(const uint8_t *buf, size_t len);
/* Parses an in-memory torch.save image, zip or legacy format, holding a state
 * dict (or a checkpoint dict whose "state_dict"/"model" entry is one). Float
 * storages F32/F16/BF16/F64 become float32; integer tensors are kept as
 * is_integer entries. Any strides are honoured; a leading "module." (DataParallel)
 * is removed from names. Unknown pickle opcodes or globals are CWBA_E_UNSUPPORTED,
 * naming `what`. On success *out is owned by the caller. */
cwba_status cwba_weights_parse_pth(const uint8_t *buf, size_t len, const char *what,
                                   cwba_weights **out, cwba_error *err);

/* ------------------------------------------ ImageNet path: images (src/io/image.c) */

/* An 8-bit RGB image. */
typedef struct cwba_image {
    int width, height;
    uint8_t *rgb; /* (height, width, 3), owned; free with cwba_image_free */
} cwba_image;

/* Decodes a JPEG (libjpeg-turbo, Pillow's decoder settings) or PNG (libpng),
 * chosen by content, to RGB exactly as Pillow's Image.open(f).convert('RGB'):
 * greyscale replicated, CMYK/YCCK JPEG converted with Pillow's rule, palette
 * looked up, alpha dropped. Corrupt, truncated or other formats fail naming
 * `what` (CWBA_E_FORMAT / CWBA_E_UNSUPPORTED). */
cwba_status cwba_image_decode(const uint8_t *buf, size_t len, const char *what, cwba_image *img,
                              cwba_error *err);
cwba_status cwba_image_load(const char *path, cwba_image *img, cwba_error *err);
void cwba_image_free(cwba_image *img); /* NULL or empty accepted */
/* Pillow's Image.resize((out_w, out_h), Image.BILINEAR): antialiased, fixed
 * point, horizontal then vertical pass; bit-exact. *out owned by the caller. */
cwba_status cwba_image_resize_bilinear(const cwba_image *in, int out_w, int out_h, cwba_image *out,
                                       cwba_error *err);
/* torchvision Resize(size) output size: shorter side -> size, longer side
 * int(size * long / short). */
void cwba_resize_shorter_side(int w, int h, int size, int *out_w, int *out_h);
/* torchvision CenterCrop((ch, cw)): zero padding if the image is smaller,
 * offsets round((dim - crop) / 2) half to even. */
cwba_status cwba_image_center_crop(const cwba_image *in, int cw, int ch, cwba_image *out,
                                   cwba_error *err);
/* Resize(resize) (skipped when the size already matches, as torchvision does;
 * resize <= 0 means size) then CenterCrop(size): out is (size, size). */
cwba_status cwba_image_resize_crop(const cwba_image *in, int resize, int size, cwba_image *out,
                                   cwba_error *err);
/* ToTensor + Normalize: out (3, height, width) = (rgb / 255 - mean[c]) / std[c] in float32. */
void cwba_image_to_tensor(const cwba_image *img, const float mean[3], const float std[3], float *out);
/* torchvision's ImageNet evaluation transform: resize 256, size 224,
 * mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225). */
cwba_preprocess cwba_preprocess_imagenet(void);
/* Load + resize/crop + normalise one file into out (3, pp->size, pp->size). */
cwba_status cwba_image_preprocess_file(const char *path, const cwba_preprocess *pp, float *out,
                                       cwba_error *err);

/* ------------------------------- ImageNet path: datasets (src/io/imagenet.c)
 *
 * Specs (docs/imagenet.md): "imagenet:DIR" — class sub-folders, sorted names
 * are the labels (torchvision ImageFolder order), or a flat DIR with a labels
 * file (val.txt, labels.txt, ground_truth.txt, LOC_val_solution.csv) holding
 * one label per line for the sorted images or "file label" rows;
 * "imagenet:DIR:LABELS" names the labels file; "folder:DIR" — unlabelled
 * images, sorted. pp NULL selects cwba_preprocess_imagenet(). */

typedef struct cwba_dataset_options {
    /* > 1: only images 0, K, 2K, ... (the original's protocol: 50,000
     * validation images, every = 50 -> 1,000). 0 or 1: all images. */
    int every;
    /* Image datasets: cwba_dataset_get_or_skip reports unreadable images
     * (corrupt, truncated, unsupported, unreadable file) as skipped instead of
     * failing; cwba_dataset_skipped counts them. Ignored by other kinds. */
    int skip_unreadable;
} cwba_dataset_options;

/* cwba_dataset_open followed by the options (opt may be NULL). */
cwba_status cwba_dataset_open_ex(const char *spec, const cwba_preprocess *pp,
                                 const cwba_dataset_options *opt, cwba_dataset **out,
                                 cwba_error *err);
/* A view of images 0, every, 2*every, ... of inner; takes ownership of inner
 * (freed with the view, and on failure). */
cwba_status cwba_dataset_every(cwba_dataset *inner, int every, cwba_dataset **out, cwba_error *err);
/* cwba_dataset_get, except that with skip_unreadable an unreadable image
 * returns CWBA_OK with *skipped = 1 (out untouched, err holding the reason).
 * Thread-safe like cwba_dataset_get. */
cwba_status cwba_dataset_get_or_skip(const cwba_dataset *d, int index, float *out, int *label,
                                     int *skipped, cwba_error *err);
/* Distinct images of this view found unreadable so far (0 for other kinds). */
int cwba_dataset_skipped(const cwba_dataset *d);
/* The file behind image `index` of an image dataset (owned by d), else NULL. */
const char *cwba_dataset_item_path(const cwba_dataset *d, int index);

/* ------------------------------------ ImageNet path: downloads (src/io/fetch.c) */

/* Progress: bytes received so far and the total (0 while unknown). Return
 * non-zero to cancel the download. */
typedef int (*cwba_fetch_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Downloads url (http/https, redirects followed) to dest_path, creating its
 * directories. The data goes to a temporary file beside dest_path and is
 * renamed over it only when the transfer is complete and its sha256 starts
 * with expected_sha_prefix (hex, case-insensitive; NULL or "" = no check), so
 * a failure (HTTP error, truncated transfer: CWBA_E_IO; digest mismatch:
 * CWBA_E_FORMAT; cancelled: CWBA_E_ARG) never leaves a partial file and never
 * replaces an existing one. progress may be NULL. */
cwba_status cwba_fetch(const char *url, const char *expected_sha_prefix, const char *dest_path,
                       cwba_fetch_progress_fn progress, void *user, cwba_error *err);
/* torchvision's published ImageNet weights for "alexnet", "resnet18",
 * "vgg16" (static string), or NULL for another name. */
const char *cwba_torchvision_url(const char *arch);
/* torch.hub's hash prefix of a file name or URL: the hex digits of the first
 * "-<hex>." ("alexnet-owt-7be5be79.pth" -> "7be5be79"). 0 if there is none. */
int cwba_hash_prefix_from_name(const char *url_or_name, char *out, size_t out_size);
/* torch.hub's checkpoint directory: $TORCH_HOME/hub/checkpoints, TORCH_HOME
 * defaulting to ${XDG_CACHE_HOME:-$HOME/.cache}/torch. */
cwba_status cwba_fetch_cache_dir(char *out, size_t out_size, cwba_error *err);

#ifdef __cplusplus
}
#endif
#endif
