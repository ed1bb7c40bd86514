/* Exhaustive comparison of the quantizers' logf/expf (src/quant/qmath.c)
 * with the C library's, over every float of a domain:
 *
 *   qmath_exhaustive log [THREADS]   every float in [1, FLT_MAX] (the log
 *                                    quantizer's arguments: x - mn + 1 >= 1)
 *   qmath_exhaustive exp [THREADS]   every float in [0, 89] (its levels:
 *                                    code * M / n in [0, ln(FLT_MAX + 1)])
 *   qmath_exhaustive logall|expall   every finite float
 *   qmath_exhaustive bracket [THREADS]  every float t in [1, FLT_MAX]: the
 *                                    log quantizer's float logarithm
 *                                    cwba__qlog_approx (src/quant/quantize.c)
 *                                    is within 2^-20 of both cwba__logf and
 *                                    the C library's logf, relative, and
 *                                    its vector kernel gives its bits
 *   STRIDE=K ...                     every K-th float only
 *
 * For each input it checks that the vector path (the library's ISA, capped
 * by CWBA_MAX_ISA) gives the scalar path's bits, and counts the inputs where
 * the C library differs; each difference is judged against long double
 * (logl/expl), which says which of the two is the correctly rounded one.
 * Prints one JSON object. Minutes with 2 threads; not run by CTest (the
 * strided check of tests/test_quant_qmath.c is). */
#include "quant/quant_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    int is_log;
    uint32_t lo, hi, stride; /* float bit patterns [lo, hi] */
    int tid, nthreads;
    uint64_t count, vec_diff, lib_diff, lib_wrong, ours_wrong, undecided;
    uint32_t first[8];
    int nfirst;
    double max_rel_ours, max_rel_lib; /* bracket mode */
} job;

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* 1 if a is at least as close to the long double reference as b. */
static int closer(float a, float b, long double ref)
{
    long double da = fabsl((long double)a - ref), db = fabsl((long double)b - ref);
    return da <= db;
}

/* |L - l| / l, in double (exact enough to compare with 2^-20); l = 0
 * only passes with L = 0. */
static double rel_err(float L, float l)
{
    if (l == 0.0f) return L == 0.0f ? 0.0 : INFINITY;
    double d = fabs((double)L - (double)l) / fabs((double)l);
    return d == d ? d : INFINITY;
}

static void bracket_block(job *j, const float *x, int n, float *yv)
{
    cwba__qlog_approx_n(x, yv, (size_t)n);
    for (int i = 0; i < n; i++) {
        float a = cwba__qlog_approx(x[i]);
        j->count++;
        if (memcmp(&a, &yv[i], sizeof a) != 0) j->vec_diff++;
        double eo = rel_err(cwba__logf(x[i]), a), el = rel_err(logf(x[i]), a);
        if (eo > j->max_rel_ours) j->max_rel_ours = eo;
        if (el > j->max_rel_lib) j->max_rel_lib = el;
        if (eo > 0x1p-20 || el > 0x1p-20) {
            j->lib_diff++; /* counts bracket failures in this mode */
            if (j->nfirst < 8) memcpy(&j->first[j->nfirst++], &x[i], 4);
        }
    }
}

static void *run(void *arg)
{
    job *j = arg;
    enum { B = 4096 };
    float x[B], yv[B];
    uint64_t step = (uint64_t)j->stride * B;
    for (uint64_t base = (uint64_t)j->lo + (uint64_t)j->tid * step; base <= j->hi;
         base += step * (uint64_t)j->nthreads) {
        int n = 0;
        for (uint64_t u = base; u <= j->hi && n < B; u += j->stride) x[n++] = bits_f((uint32_t)u);
        if (j->is_log == 2) {
            bracket_block(j, x, n, yv);
            continue;
        }
        if (j->is_log)
            cwba__logf_n(x, yv, (size_t)n);
        else
            cwba__expf_n(x, yv, (size_t)n);
        for (int i = 0; i < n; i++) {
            float ours = j->is_log ? cwba__logf(x[i]) : cwba__expf(x[i]);
            float lib = j->is_log ? logf(x[i]) : expf(x[i]);
            j->count++;
            if (memcmp(&ours, &yv[i], sizeof ours) != 0) j->vec_diff++;
            if (memcmp(&ours, &lib, sizeof ours) == 0) continue;
            j->lib_diff++;
            if (j->nfirst < 8) memcpy(&j->first[j->nfirst++], &x[i], 4);
            long double ref = j->is_log ? logl((long double)x[i]) : expl((long double)x[i]);
            int o = closer(ours, lib, ref), l = closer(lib, ours, ref);
            if (o && !l)
                j->lib_wrong++;
            else if (l && !o)
                j->ours_wrong++;
            else
                j->undecided++;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: qmath_exhaustive log|exp|logall|expall|bracket [THREADS]\n");
        return 2;
    }
    const char *mode = argv[1];
    int nt = argc > 2 ? atoi(argv[2]) : 2;
    if (nt < 1 || nt > 64) nt = 2;
    const char *st = getenv("STRIDE");
    uint32_t stride = st ? (uint32_t)strtoul(st, NULL, 10) : 1;
    if (stride < 1) stride = 1;
    job base = {0};
    base.stride = stride;
    int two = 0; /* also the negative half */
    if (!strcmp(mode, "log")) {
        base.is_log = 1, base.lo = 0x3f800000u, base.hi = 0x7f7fffffu;
    } else if (!strcmp(mode, "logall")) {
        base.is_log = 1, base.lo = 0x00000001u, base.hi = 0x7f7fffffu;
    } else if (!strcmp(mode, "bracket")) {
        base.is_log = 2, base.lo = 0x3f800000u, base.hi = 0x7f7fffffu;
    } else if (!strcmp(mode, "exp")) {
        base.is_log = 0, base.lo = 0, base.hi = 0x42b20000u; /* 89.0 */
    } else if (!strcmp(mode, "expall")) {
        base.is_log = 0, base.lo = 0, base.hi = 0x42b20000u, two = 1;
    } else {
        fprintf(stderr, "qmath_exhaustive: unknown mode '%s'\n", mode);
        return 2;
    }
    job *jobs = calloc((size_t)nt * 2, sizeof *jobs);
    pthread_t *th = calloc((size_t)nt * 2, sizeof *th);
    if (!jobs || !th) return 1;
    int njobs = 0;
    for (int half = 0; half <= two; half++)
        for (int t = 0; t < nt; t++) {
            job *j = &jobs[njobs++];
            *j = base;
            if (half) j->lo = 0x80000000u, j->hi = 0xc2d00000u; /* [-104, -0] */
            j->tid = t;
            j->nthreads = nt;
        }
    double t0 = cwba_now();
    for (int h = 0; h <= two; h++) {
        for (int t = 0; t < nt; t++) pthread_create(&th[h * nt + t], NULL, run, &jobs[h * nt + t]);
        for (int t = 0; t < nt; t++) pthread_join(th[h * nt + t], NULL);
    }
    job sum = {0};
    for (int i = 0; i < njobs; i++) {
        sum.count += jobs[i].count;
        sum.vec_diff += jobs[i].vec_diff;
        sum.lib_diff += jobs[i].lib_diff;
        sum.lib_wrong += jobs[i].lib_wrong;
        sum.ours_wrong += jobs[i].ours_wrong;
        sum.undecided += jobs[i].undecided;
        if (jobs[i].max_rel_ours > sum.max_rel_ours) sum.max_rel_ours = jobs[i].max_rel_ours;
        if (jobs[i].max_rel_lib > sum.max_rel_lib) sum.max_rel_lib = jobs[i].max_rel_lib;
        for (int k = 0; k < jobs[i].nfirst && sum.nfirst < 8; k++) sum.first[sum.nfirst++] = jobs[i].first[k];
    }
    if (base.is_log == 2) {
        printf("{\"mode\":\"bracket\",\"isa\":\"%s\",\"stride\":%u,\"inputs\":%llu,"
               "\"vector_differs\":%llu,\"outside_2^-20\":%llu,\"max_rel_vs_cwba_logf\":%.4g,"
               "\"max_rel_vs_libc_logf\":%.4g,\"seconds\":%.1f,\"examples\":[",
               cwba_isa_name(cwba_isa_current()), stride, (unsigned long long)sum.count,
               (unsigned long long)sum.vec_diff, (unsigned long long)sum.lib_diff, sum.max_rel_ours,
               sum.max_rel_lib, cwba_now() - t0);
        for (int k = 0; k < sum.nfirst; k++)
            printf("%s\"%a\"", k ? "," : "", (double)bits_f(sum.first[k]));
        printf("]}\n");
        free(jobs);
        free(th);
        return sum.vec_diff || sum.lib_diff ? 1 : 0;
    }
    printf("{\"mode\":\"%s\",\"isa\":\"%s\",\"stride\":%u,\"inputs\":%llu,\"vector_differs\":%llu,"
           "\"libc_differs\":%llu,\"libc_not_nearest\":%llu,\"ours_not_nearest\":%llu,"
           "\"undecided\":%llu,\"seconds\":%.1f,\"examples\":[",
           mode, cwba_isa_name(cwba_isa_current()), stride, (unsigned long long)sum.count,
           (unsigned long long)sum.vec_diff, (unsigned long long)sum.lib_diff,
           (unsigned long long)sum.lib_wrong, (unsigned long long)sum.ours_wrong,
           (unsigned long long)sum.undecided, cwba_now() - t0);
    for (int k = 0; k < sum.nfirst; k++) {
        float f = bits_f(sum.first[k]);
        float o = base.is_log ? cwba__logf(f) : cwba__expf(f);
        float l = base.is_log ? logf(f) : expf(f);
        printf("%s{\"x\":\"%a\",\"ours\":\"%a\",\"libc\":\"%a\"}", k ? "," : "", (double)f,
               (double)o, (double)l);
    }
    printf("]}\n");
    free(jobs);
    free(th);
    return sum.vec_diff || sum.ours_wrong ? 1 : 0;
}
