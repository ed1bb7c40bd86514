/* The dynamic batcher of `cwba serve`: connection threads submit one decoded
 * feature each and wait; one worker thread gathers what is queued into one
 * back-end batch (at most max_batch features, waiting at most max_wait for
 * more while other requests are still arriving) and hands each its logits.
 * The back end is batch-invariant, so a feature's logits do not depend on the
 * batch it ran in. */
#ifndef CWBA_SERVE_QUEUE_H
#define CWBA_SERVE_QUEUE_H

#include "cwba.h"

#include <pthread.h>
#include <stddef.h>

/* The back end: feat (n, C, H, W) -> logits (n, K). Returns 0, or non-zero
 * with one line in err. Called from the worker thread only. */
typedef int (*serve_backend_fn)(void *ctx, const float *feat, int n, float *logits,
                                cwba_error *err);

typedef struct serve_job {
    const float *feat;  /* (C, H, W), the caller's */
    float *logits;      /* (K), the caller's; filled when status == 0 */
    int status;         /* 0, or non-zero with err set */
    cwba_error err;
    int batch;          /* size of the batch it ran in */
    /* private */
    int done;
    pthread_cond_t cv; /* signalled when done: one waiter woken per job */
    struct serve_job *next;
} serve_job;

typedef struct serve_queue serve_queue;

/* feat_elems = C*H*W; capacity: the most jobs waiting (not yet running). */
cwba_status serve_queue_create(size_t feat_elems, int K, int max_batch, double max_wait_s,
                               int capacity, serve_backend_fn fn, void *ctx, serve_queue **out,
                               cwba_error *err);
/* A request that will submit a job soon (+1) or no longer will (-1): the
 * worker waits for more jobs only while some are on their way. */
void serve_queue_arriving(serve_queue *q, int delta);
/* Queues job and waits until it ran. The job must have been announced with
 * serve_queue_arriving(q, +1); this takes it off the arriving count. Returns
 * 0, or -1 (job not queued) when capacity jobs are already waiting or the
 * queue is stopping. */
int serve_queue_run(serve_queue *q, serve_job *job);
/* Jobs waiting now. */
int serve_queue_depth(serve_queue *q);
/* Runs what is queued, stops the worker and frees q (NULL accepted). */
void serve_queue_free(serve_queue *q);

#endif
