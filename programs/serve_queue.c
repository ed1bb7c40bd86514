/* The dynamic batcher of `cwba serve` (serve_queue.h). */
#include "serve_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct serve_queue {
    size_t feat_elems;
    int K, max_batch, capacity;
    double max_wait_s;
    serve_backend_fn fn;
    void *ctx;
    float *feat, *logits; /* (max_batch, feat_elems), (max_batch, K): the worker's */
    pthread_mutex_t mu;
    pthread_cond_t more;  /* a job was queued, or arriving dropped, or stop */
    serve_job *head, *tail;
    int depth, arriving, stop;
    pthread_t worker;
};

static struct timespec deadline_after(double s)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long ns = t.tv_nsec + (long)(s * 1e9);
    t.tv_sec += ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}

static void *worker_main(void *arg)
{
    serve_queue *q = arg;
    serve_job *batch[1024];
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop) pthread_cond_wait(&q->more, &q->mu);
        if (!q->head) break;
        /* Wait for a fuller batch only while requests are still on their
         * way: a lone client pays no delay. */
        struct timespec until = deadline_after(q->max_wait_s);
        while (q->depth < q->max_batch && q->arriving > 0 && !q->stop)
            if (pthread_cond_timedwait(&q->more, &q->mu, &until) == ETIMEDOUT) break;
        int n = 0;
        while (q->head && n < q->max_batch) {
            batch[n++] = q->head;
            q->head = q->head->next;
        }
        if (!q->head) q->tail = NULL;
        q->depth -= n;
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < n; i++)
            memcpy(q->feat + q->feat_elems * (size_t)i, batch[i]->feat,
                   sizeof(float) * q->feat_elems);
        cwba_error err;
        cwba_error_clear(&err);
        int st = q->fn(q->ctx, q->feat, n, q->logits, &err);
        for (int i = 0; i < n; i++) {
            batch[i]->status = st;
            batch[i]->batch = n;
            if (st)
                batch[i]->err = err;
            else
                memcpy(batch[i]->logits, q->logits + (size_t)q->K * i, sizeof(float) * (size_t)q->K);
        }
        pthread_mutex_lock(&q->mu);
        for (int i = 0; i < n; i++) {
            batch[i]->done = 1;
            pthread_cond_signal(&batch[i]->cv);
        }
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

cwba_status serve_queue_create(size_t feat_elems, int K, int max_batch, double max_wait_s,
                               int capacity, serve_backend_fn fn, void *ctx, serve_queue **out,
                               cwba_error *err)
{
    *out = NULL;
    if (feat_elems == 0 || K <= 0 || max_batch < 1 || max_batch > 1024 || capacity < 1 ||
        max_wait_s < 0)
        return cwba_fail(err, CWBA_E_ARG, "serve queue: bad parameters");
    serve_queue *q = calloc(1, sizeof *q);
    size_t fb, lb;
    if (!q || !cwba_size_mul(feat_elems, (size_t)max_batch * sizeof(float), &fb) ||
        !cwba_size_mul((size_t)K, (size_t)max_batch * sizeof(float), &lb) ||
        !(q->feat = malloc(fb)) || !(q->logits = malloc(lb))) {
        if (q) free(q->feat), free(q->logits);
        free(q);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory for a batch of %d features",
                         max_batch);
    }
    q->feat_elems = feat_elems;
    q->K = K;
    q->max_batch = max_batch;
    q->max_wait_s = max_wait_s;
    q->capacity = capacity;
    q->fn = fn;
    q->ctx = ctx;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->more, NULL);
    if (pthread_create(&q->worker, NULL, worker_main, q)) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->more);
        free(q->feat), free(q->logits), free(q);
        return cwba_fail(err, CWBA_E_INTERNAL, "serve queue: cannot start the worker thread");
    }
    *out = q;
    return CWBA_OK;
}

void serve_queue_arriving(serve_queue *q, int delta)
{
    pthread_mutex_lock(&q->mu);
    q->arriving += delta;
    if (delta < 0) pthread_cond_signal(&q->more);
    pthread_mutex_unlock(&q->mu);
}

int serve_queue_run(serve_queue *q, serve_job *job)
{
    pthread_mutex_lock(&q->mu);
    q->arriving--;
    if (q->depth >= q->capacity || q->stop) {
        pthread_cond_signal(&q->more);
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    job->done = 0;
    job->status = 0;
    job->batch = 0;
    job->next = NULL;
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    q->depth++;
    pthread_cond_init(&job->cv, NULL);
    pthread_cond_signal(&q->more);
    while (!job->done) pthread_cond_wait(&job->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    pthread_cond_destroy(&job->cv);
    return 0;
}

int serve_queue_depth(serve_queue *q)
{
    pthread_mutex_lock(&q->mu);
    int d = q->depth;
    pthread_mutex_unlock(&q->mu);
    return d;
}

void serve_queue_free(serve_queue *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->more);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->worker, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->more);
    free(q->feat), free(q->logits), free(q);
}
