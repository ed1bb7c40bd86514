/* Opening a dataset by spec: the one place that knows every dataset kind. */
#include "io_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- kind dispatch: add new dataset kinds here ---- */
static const struct {
    const char *kind;
    cwba_dataset_open_fn open;
} dataset_kinds[] = {
    {"fmnist", cwba_dataset_open_fmnist},
    {"imagenet", cwba_dataset_open_imagenet}, /* src/io/imagenet.c */
    {"folder", cwba_dataset_open_folder},     /* src/io/imagenet.c */
};
#define DATASET_KINDS_USAGE "fmnist[:DIR[:train|:test]], imagenet:DIR[:LABELS], folder:DIR"

cwba_status cwba_dataset_open(const char *spec, const cwba_preprocess *pp, cwba_dataset **out,
                              cwba_error *err)
{
    *out = NULL;
    if (!spec || !*spec)
        return cwba_fail(err, CWBA_E_ARG, "empty dataset spec (valid: " DATASET_KINDS_USAGE ")");
    if (pp) {
        cwba_status st = cwba_preprocess_check(pp, spec, err);
        if (st) return st;
    }
    const char *colon = strchr(spec, ':');
    size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
    for (size_t i = 0; i < sizeof dataset_kinds / sizeof dataset_kinds[0]; i++) {
        if (strlen(dataset_kinds[i].kind) == klen &&
            strncmp(dataset_kinds[i].kind, spec, klen) == 0)
            return dataset_kinds[i].open(colon ? colon + 1 : NULL, pp, out, err);
    }
    return cwba_fail(err, CWBA_E_ARG, "unknown dataset kind in \"%s\" (valid: " DATASET_KINDS_USAGE
                     ")", spec);
}

cwba_status cwba_dataset_open_ex(const char *spec, const cwba_preprocess *pp, const cwba_dataset_options *opt,
                                 cwba_dataset **out, cwba_error *err)
{
    *out = NULL;
    cwba_dataset *d = NULL;
    if (opt && opt->every < 0) return cwba_fail(err, CWBA_E_ARG, "every: step %d must be at least 1", opt->every);
    cwba_status st = cwba_dataset_open(spec, pp, &d, err);
    if (st) return st;
    if (opt && opt->skip_unreadable) {
        if (d->ops->set_skip_unreadable) d->ops->set_skip_unreadable(d);
    }
    if (opt && opt->every > 1) return cwba_dataset_every(d, opt->every, out, err);
    *out = d;
    return CWBA_OK;
}
