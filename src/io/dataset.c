/* The dataset abstraction: the accessors and the views every kind shares
 * (every K-th image, skipping unreadable images). Opening by spec:
 * src/io/dataset_open.c; preprocessing: src/io/preprocess.c. */
#include "io_internal.h"

#include <stdlib.h>
#include <string.h>

int cwba_dataset_count(const cwba_dataset *d) { return d ? d->count : 0; }

int cwba_dataset_has_labels(const cwba_dataset *d) { return d ? d->has_labels : 0; }

cwba_status cwba_dataset_get(const cwba_dataset *d, int index, float *out, int *label,
                             cwba_error *err)
{
    if (label) *label = -1;
    if (!d || !out) return cwba_fail(err, CWBA_E_ARG, "cwba_dataset_get: NULL argument");
    if (index < 0 || index >= d->count)
        return cwba_fail(err, CWBA_E_ARG, "%s image index %d out of range (dataset has %d images)",
                         d->ops->kind, index, d->count);
    int lab = -1;
    cwba_status st = d->ops->get(d, index, out, &lab, err);
    if (label) *label = st ? -1 : lab;
    return st;
}

void cwba_dataset_free(cwba_dataset *d)
{
    if (!d) return;
    if (d->ops && d->ops->destroy) d->ops->destroy(d);
    free(d);
}

/* --------------------------------------------------------- every K-th view */

typedef struct every_view {
    cwba_dataset *inner;
    int every;
} every_view;

static cwba_status every_get(const cwba_dataset *d, int index, float *out, int *label, cwba_error *err)
{
    const every_view *v = d->impl;
    return cwba_dataset_get(v->inner, index * v->every, out, label, err);
}

static void every_destroy(cwba_dataset *d)
{
    every_view *v = d->impl;
    if (!v) return;
    cwba_dataset_free(v->inner);
    free(v);
    d->impl = NULL;
}

static const cwba_dataset_ops every_ops = {.kind = "every", .get = every_get, .destroy = every_destroy};

cwba_status cwba_dataset_every(cwba_dataset *inner, int every, cwba_dataset **out, cwba_error *err)
{
    *out = NULL;
    if (!inner || every < 1) {
        cwba_dataset_free(inner);
        return cwba_fail(err, CWBA_E_ARG, "every: step %d must be at least 1", every);
    }
    cwba_dataset *d = calloc(1, sizeof *d);
    every_view *v = calloc(1, sizeof *v);
    if (!d || !v) {
        free(d);
        free(v);
        cwba_dataset_free(inner);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    v->inner = inner;
    v->every = every;
    d->ops = &every_ops;
    d->impl = v;
    d->pp = inner->pp;
    d->count = inner->count / every + (inner->count % every != 0);
    d->has_labels = inner->has_labels;
    *out = d;
    return CWBA_OK;
}

/* The image-backed dataset (one with the image hooks) under any number of
 * every-views, with the index mapped into it; NULL for other kinds. */
static const cwba_dataset *image_base(const cwba_dataset *d, int *index)
{
    while (d && d->ops == &every_ops) {
        const every_view *v = d->impl;
        if (index) *index *= v->every;
        d = v->inner;
    }
    return d && d->ops->item_path ? d : NULL;
}

cwba_status cwba_dataset_get_or_skip(const cwba_dataset *d, int index, float *out, int *label, int *skipped,
                                     cwba_error *err)
{
    *skipped = 0;
    cwba_status st = cwba_dataset_get(d, index, out, label, err);
    if (st == CWBA_OK || st == CWBA_E_NOMEM || st == CWBA_E_ARG) return st;
    int base_index = index;
    const cwba_dataset *b = image_base(d, &base_index);
    if (!b || !b->ops->skips_unreadable(b)) return st;
    *skipped = 1; /* err keeps the reason; the image is counted by cwba_dataset_skipped */
    return CWBA_OK;
}

int cwba_dataset_skipped(const cwba_dataset *d)
{
    const cwba_dataset *b = image_base(d, NULL);
    if (!b) return 0;
    int n = 0;
    /* Counted over the images this view can reach. */
    for (int i = 0; i < d->count; i++) {
        int k = i;
        image_base(d, &k);
        n += b->ops->is_unreadable(b, k);
    }
    return n;
}

const char *cwba_dataset_item_path(const cwba_dataset *d, int index)
{
    if (!d || index < 0 || index >= d->count) return NULL;
    const cwba_dataset *b = image_base(d, &index);
    return b ? b->ops->item_path(b, index) : NULL;
}
