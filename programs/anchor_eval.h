/* cwba evaluate --codec jpeg|webp|hevc --quality Q[,Q...]: the standard-codec
 * anchors on the same features, images and metrics as evaluate's methods. */
#ifndef CWBA_ANCHOR_EVAL_H
#define CWBA_ANCHOR_EVAL_H

#include "cli.h"

/* Runs the anchor evaluation for parsed evaluate options (o has --codec).
 * Returns the exit code. */
int anchor_evaluate(const cli_opts *o);

#endif
