/* A small persistent thread pool: the back-end passes of the allocation
 * algorithm are short, so starting threads per layer would cost more than the
 * layer itself. One pool per model (a model is not shared between threads). */
#include "nn/nn_internal.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct nn_worker {
    struct nn_pool *pool;
    int tid;
} nn_worker;

struct nn_pool {
    int n;        /* threads including the caller */
    int started;  /* worker threads actually running */
    pthread_t *threads;
    nn_worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    unsigned long generation;
    int pending;
    int stop;
    nn_task_fn fn;
    void *ctx;
};

static void *worker_main(void *arg)
{
    nn_worker *wk = arg;
    nn_pool *p = wk->pool;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->stop) pthread_cond_wait(&p->cv_start, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        nn_task_fn fn = p->fn;
        void *ctx = p->ctx;
        int n = p->n;
        pthread_mutex_unlock(&p->mu);

        fn(ctx, wk->tid, n);

        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

nn_pool *nn_pool_create(int n)
{
    if (n < 1) n = 1;
    nn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = 1;
    if (n == 1) return p;
    p->threads = calloc((size_t)n, sizeof *p->threads);
    p->workers = calloc((size_t)n, sizeof *p->workers);
    if (!p->threads || !p->workers) {
        free(p->threads);
        free(p->workers);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_start, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    /* The thread count only changes speed, never results: if the system
     * refuses a thread we keep the ones we have. */
    for (int t = 1; t < n; t++) {
        p->workers[t].pool = p;
        p->workers[t].tid = t;
        if (pthread_create(&p->threads[t], NULL, worker_main, &p->workers[t]) != 0) break;
        p->started++;
    }
    p->n = 1 + p->started;
    return p;
}

void nn_pool_free(nn_pool *p)
{
    if (!p) return;
    if (p->threads) {
        if (p->started > 0) {
            pthread_mutex_lock(&p->mu);
            p->stop = 1;
            pthread_cond_broadcast(&p->cv_start);
            pthread_mutex_unlock(&p->mu);
            for (int t = 1; t <= p->started; t++) pthread_join(p->threads[t], NULL);
        }
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv_start);
        pthread_cond_destroy(&p->cv_done);
    }
    free(p->threads);
    free(p->workers);
    free(p);
}

int nn_pool_size(const nn_pool *p) { return p ? p->n : 1; }

void nn_pool_run(nn_pool *p, nn_task_fn fn, void *ctx)
{
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);

    fn(ctx, 0, p->n);

    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
