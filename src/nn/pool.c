/* A small persistent thread pool: the back-end passes of the allocation
 * algorithm are short (a few milliseconds, a dozen parallel steps), so
 * starting threads per layer, or even sleeping between steps, would cost a
 * noticeable share. Workers spin (about a millisecond, SPIN_POLLS) on the
 * job counter before blocking on a condition variable. One pool per model
 * (a model is not shared between threads). */
#include "nn/nn_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Polls before sleeping: 65536 pauses, ~1.3 ms on the project's Zen 5 (a
 * pause is ~68 cycles there). With 4096 (~80 us) the worker fell asleep
 * once to eleven times per forward pass (AlexNet: before its first linear
 * layer; VGG16: between layers), and on a virtual machine a sleeping
 * thread's vCPU halts and takes long to come back. Same-run paired A/B,
 * 12 rounds: AlexNet 224 b1 1.04x, VGG16 224 b1 1.07x, ResNet18 224 b1
 * 1.01x; 4x the spin gained nothing more. An idle model's worker still
 * sleeps after that. */
#define SPIN_POLLS 65536

typedef struct nn_worker {
    struct nn_pool *pool;
    int tid;
} nn_worker;

struct nn_pool {
    int n;       /* threads including the caller */
    int started; /* worker threads actually running */
    pthread_t *threads;
    nn_worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    atomic_ulong generation; /* bumped (under mu) for every job */
    atomic_int pending;      /* workers still running the current job */
    atomic_int stop;
    nn_task_fn fn; /* written under mu before generation is bumped */
    void *ctx;
};

static void *worker_main(void *arg)
{
    nn_worker *wk = arg;
    nn_pool *p = wk->pool;
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_POLLS; i++) {
            if (atomic_load(&p->generation) != seen || atomic_load(&p->stop)) break;
            CPU_RELAX();
        }
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
            pthread_cond_wait(&p->cv_start, &p->mu);
        if (atomic_load(&p->stop)) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load(&p->generation);
        nn_task_fn fn = p->fn;
        void *ctx = p->ctx;
        int n = p->n;
        pthread_mutex_unlock(&p->mu);

        fn(ctx, wk->tid, n);

        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

nn_pool *nn_pool_create(int n)
{
    if (n < 1) n = 1;
    nn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = 1;
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
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
     * refuses a thread we keep the ones we have. p->n is only read by
     * workers after a job is published, when it is final. */
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
            atomic_store(&p->stop, 1);
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
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->cv_start);
    pthread_mutex_unlock(&p->mu);

    fn(ctx, 0, p->n);

    for (int i = 0; i < SPIN_POLLS && atomic_load(&p->pending) > 0; i++) CPU_RELAX();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
