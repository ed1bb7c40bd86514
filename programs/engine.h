/* The CLI's two long-running jobs, shared by calibrate/evaluate, reproduce and
 * main_model: building interval tables and evaluating quantization methods. */
#ifndef CWBA_ENGINE_H
#define CWBA_ENGINE_H

#include "cli.h"

/* Calibrates images of cd at split and appends one row per image to
 * paths[b-2] (b = 2..7). Resumable: rows already present (the same count in
 * all six files) are taken as the first images and skipped, unless overwrite. */
int engine_calibrate(cwba_model *m, int split, const cli_data *cd, cwba_quant q,
                     char paths[6][4096], int overwrite, int quiet);

typedef enum { ALLOC_NONE = 0, ALLOC_CHANNEL = 1, ALLOC_RD = 2 } engine_alloc;

typedef struct engine_method {
    cwba_quant quant;
    engine_alloc alloc;
    int reserve;          /* channel allocation only */
    const char *label;    /* row label in tables, e.g. "Ours(10 iter)" */
    /* rate-distortion allocation only (the bits of its results are kmax):
     * lambda, or with target_bytes > 0 the smallest lambda whose real
     * stream (mode auto) fits in target_bytes, found per image */
    double lambda;
    long target_bytes;
    /* also code the same codes with zstd and xz (a lower anchor) */
    int general;
} engine_method;

typedef struct engine_result {
    engine_method method;
    int bits;
    long images;
    double mse_sum;        /* output MSE (the original's metric), summed over images */
    double feature_mse_sum;
    long correct, agree;   /* top-1 vs label, top-1 vs the float model */
    double code_bits_sum;  /* exact code cost per element, summed over images */
    double seconds;        /* allocation + quantization + final back-end pass */
    uint64_t passes;       /* back-end passes charged to this configuration */
    double stream_bytes_sum[3]; /* real bitstream size per image: fixed, adaptive payload, and
                                 * the smaller of the two (what cwba encode writes: mode auto) */
    long stream_failures;  /* images a bitstream cannot carry (log on a degenerate range) */
    double lambda_sum;     /* rate-distortion allocation: the lambda used, summed over images */
    long over_target;      /* --bytes: images whose stream exceeds the target even at the
                            * largest lambda searched */
    long dropped_sum;      /* rate-distortion allocation: dropped channels, summed */
    double general_bytes_sum[2]; /* method.general: the stream with its payload replaced by
                                  * zstd -19 / raw LZMA2 (xz -6) of the codes, summed */
} engine_result;

typedef struct engine_summary {
    int C, H, W; /* feature shape at the split */
    long input_pixels; /* input image side squared (for bits per input pixel) */
    long images, labelled, float_correct;
    double seconds_total;
    cwba_conv_algo conv; /* the model's convolution arithmetic */
} engine_summary;

/* The evaluation loop every method shares (cwba's quantizers and the
 * standard-codec anchors): per selected image, the feature x at the split
 * and the float model's logits y0 (one pass, t_y0 seconds); the method's
 * callback fills one reconstructed feature per configuration (slot) and the
 * seconds each took; then all slots go through the back end in batches and
 * their output MSE (against y0), feature MSE, top-1 and agreement are
 * summed, each charged its final pass and its share of that call's time. */
typedef struct engine_image {
    const float *x, *y0; /* (C, H, W), (K) */
    int label;           /* -1 when unlabelled */
    double t_y0;
} engine_image;

typedef struct engine_slot {
    long images, correct, agree;
    double mse_sum, feature_mse_sum, seconds;
    uint64_t passes;
} engine_slot;

/* xhat holds nslots features (C*H*W each); slot_time[s] starts at 0; rec
 * (rec_bytes, zeroed) receives this image's own figures, which merge then
 * adds to the totals on rank 0 in image order (so that one process and an
 * MPI job, docs/scale.md, sum the same numbers in the same order).
 * Returns 0, or the CLI exit code after printing the error. */
typedef int (*engine_image_fn)(void *ctx, const engine_image *im, float *xhat,
                               double *slot_time, void *rec);
typedef void (*engine_merge_fn)(void *ctx, const void *rec);

/* Runs fn on every image of cd (under MPI, the ranks take one image each
 * per round); slots[nslots] and sum are filled on rank 0. */
int engine_run_images(cwba_model *m, int split, const cli_data *cd, int nslots,
                      engine_image_fn fn, engine_merge_fn merge, size_t rec_bytes, void *ctx,
                      engine_slot *slots, engine_summary *sum);

/* tables[b-2] must be loaded for every bit depth in bits when a channel
 * method is present. results has nmethods*nbits entries, [m*nbits + b]. */
int engine_evaluate(cwba_model *m, int split, const cli_data *cd, const engine_method *methods,
                    int nmethods, const long *bits, int nbits, cwba_table tables[6],
                    double alpha, double beta, double dorefa_clip, int fresh_probes,
                    engine_result *results, engine_summary *summary);

/* Loads DIR-style tables for the listed bit depths (paths[b-2]). */
int engine_load_tables(char paths[6][4096], const long *bits, int nbits, int C,
                       cwba_table tables[6]);
void engine_free_tables(cwba_table tables[6]);
/* Replaces the table file at path with t's first keep rows, atomically
 * (resume after an interrupted run, cwba merge). */
int engine_write_rows(const char *path, const cwba_table *t, int keep);

/* Prints one result as a JSON line / a text table row. */
void engine_print_json(FILE *f, const char *model, const char *split, const engine_result *r,
                       const engine_summary *s);
void engine_print_table(FILE *f, const char *model, const char *split, int C, int H, int W,
                        const engine_result *res, int nmethods, const long *bits, int nbits,
                        const engine_summary *s);

#endif
