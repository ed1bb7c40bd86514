/* The cloud half of split inference, shared by `cwba decode` (files) and
 * `cwba serve` (HTTP): one stream -> checked against the model -> dequantized
 * feature, and the JSON object both print for a decoded stream. */
#ifndef CWBA_CLOUD_H
#define CWBA_CLOUD_H

#include "cwba.h"

#include <stddef.h>

typedef enum cloud_outcome {
    CLOUD_OK = 0,
    CLOUD_BAD_STREAM, /* not a valid stream: the decoder's message */
    CLOUD_MISMATCH,   /* a valid stream for another model, split or shape */
    CLOUD_NOMEM
} cloud_outcome;

/* Validates buf (len bytes) as a stream for model m (arch) and, when
 * want_split >= 0, for that split; decodes it. On CLOUD_OK: *si filled,
 * *split set, *xhat a malloc'd (C, H, W) feature the caller frees. Otherwise
 * err holds one line (without a file name) and *xhat is NULL. */
cloud_outcome cloud_decode_feature(cwba_model *m, cwba_arch arch, const uint8_t *buf, size_t len,
                                   int want_split, cwba_stream_info *si, int *split, float **xhat,
                                   cwba_error *err);

/* The min(K, 5) largest logits' classes, best first (ties: lowest class);
 * returns their count. lg: (K). */
int cloud_top5(const float *lg, int K, int top[5]);

/* Writes the JSON object of one decoded stream to out (capacity cap, NUL
 * terminated): {"file":...,"model":...,"split":...,"bytes":...,"top5":[...],
 * "logits_top5":[...]}, with "file" only when file is non-NULL. Returns the
 * length, or -1 when cap is too small. lg: the logits (K). */
int cloud_result_json(char *out, size_t cap, const char *file, const cwba_stream_info *si,
                      size_t bytes, const float *lg, int K);

/* out = s as a JSON string body (quotes, backslashes and control characters
 * escaped; no surrounding quotes). Returns the length, or -1 when too small. */
int cloud_json_escape(char *out, size_t cap, const char *s);

#endif
