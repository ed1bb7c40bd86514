/* cwba_bench — the cwba contender of bench/run.sh, and the timings of cwba's
 * own algorithm (calibration, evaluation, quantizer, bitstream).
 *
 * This program only measures; bench/bench.py runs it next to PyTorch
 * (tools/bench_torch.py) and ONNX Runtime (bench/ort_bench.js), interleaves
 * the contenders and turns the medians into same-run ratios. Every answer is
 * one JSON object on one line of stdout; times are wall-clock seconds.
 *
 *   cwba_bench serve DIR               line protocol on stdin (below)
 *   cwba_bench mem forward ARCH SIZE BATCH DIR   peak memory, fresh process
 *   cwba_bench mem probe SIZE BATCH DIR
 *   cwba_bench evaluate ARCH SIZE SPLIT BITS RESERVE IMAGES
 *   cwba_bench calibrate ARCH SIZE SPLIT IMAGES MAXSTEPS   (0 = full calibration)
 *   cwba_bench quant                   quantize+dequantize throughput, one core
 *                                      (gbps: wall clock; cpu_gbps: thread CPU time)
 *   cwba_bench codec                   bitstream encode/decode throughput, one core
 *   cwba_bench peak                    clock and FMA throughput of this machine
 *
 * serve commands (one per line):
 *   forward ARCH SIZE BATCH REPS   whole network, input DIR/input_SIZE_bBATCH.f32
 *   probe SIZE BATCH REPS          ResNet18 back end after layer3 on
 *                                  DIR/probe_SIZE_bBATCH.f32 (perturbed copies of a feature)
 *   quit
 * The first command for a case loads the model and runs two untimed passes.
 *
 * Weights: SIZE 64 = the reference models in models/ (10 classes); SIZE 224 =
 * cwba_weights_synthetic(arch, 1000, seed 1) (timing does not depend on the
 * values). Images: SIZE 64 = Fashion-MNIST test images from index 0; SIZE 224 =
 * the synthetic stream "input" with seed 2 + image index. The thread count is
 * CWBA_BENCH_THREADS (default 2). */
#include "cwba.h"
#include "cwba/codec.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define BENCH_X86 1
#include <immintrin.h>
#endif

#define MAX_MODELS 8

static void fail_exit(const cwba_error *err)
{
    fprintf(stderr, "cwba_bench: %s\n", err->msg);
    exit(1);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((call) != CWBA_OK) fail_exit(&err);                                                    \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "cwba_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------ memory */

/* A field of /proc/self/status in kB, or -1. */
static long proc_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0), so the next peak reading
 * covers only what runs after this call. Returns 0 on success. */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* ------------------------------------------------------------ models */

typedef struct loaded_model {
    cwba_arch arch;
    int size;
    cwba_model *m;
    double weight_bytes; /* float32 bytes of every float tensor of the weights */
    int warm_forward[256]; /* batch sizes already warmed up (index = batch, capped) */
    int warm_probe[1024];
} loaded_model;

static loaded_model g_models[MAX_MODELS];
static int g_nmodels;

static int file_exists(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Weights for (arch, size): models/ at 64 px, synthetic 1000 classes at 224. */
static cwba_status weights_for(cwba_arch arch, int size, cwba_weights **w, cwba_error *err)
{
    if (size == 224) return cwba_weights_synthetic(arch, 1000, 1, w, err);
    if (size != 64) return cwba_fail(err, CWBA_E_ARG, "size %d: use 64 or 224", size);
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s_fmnist64.safetensors", CWBA_SOURCE_DIR,
             cwba_arch_name(arch));
    if (!file_exists(path))
        snprintf(path, sizeof path, "%s/models/%s_fmnist64.safetensors.xz", CWBA_SOURCE_DIR,
                 cwba_arch_name(arch));
    return cwba_weights_load(path, w, err);
}

static double weights_f32_bytes(const cwba_weights *w)
{
    double b = 0;
    for (size_t i = 0; i < w->count; i++)
        if (!w->entries[i].is_integer) b += 4.0 * (double)w->entries[i].numel;
    return b;
}

static cwba_status model_load(cwba_arch arch, int size, cwba_model **m, double *wbytes,
                              cwba_error *err)
{
    cwba_weights *w = NULL;
    cwba_status st = weights_for(arch, size, &w, err);
    if (st != CWBA_OK) return st;
    *wbytes = weights_f32_bytes(w);
    st = cwba_model_create(arch, w, size, m, err);
    cwba_weights_free(w); /* the model keeps its own copy */
    /* CWBA_BENCH_CONV=winograd: the models run with Winograd arithmetic */
    const char *conv = getenv("CWBA_BENCH_CONV");
    cwba_conv_algo algo = CWBA_CONV_DIRECT;
    if (st == CWBA_OK && conv) st = cwba_conv_algo_parse(conv, &algo, err);
    if (st == CWBA_OK) st = cwba_model_set_conv_algo(*m, algo, err);
    return st;
}

static loaded_model *model_get(cwba_arch arch, int size, cwba_error *err)
{
    for (int i = 0; i < g_nmodels; i++)
        if (g_models[i].arch == arch && g_models[i].size == size) return &g_models[i];
    if (g_nmodels == MAX_MODELS) {
        cwba_fail(err, CWBA_E_ARG, "too many models");
        return NULL;
    }
    loaded_model *lm = &g_models[g_nmodels];
    memset(lm, 0, sizeof *lm);
    lm->arch = arch;
    lm->size = size;
    if (model_load(arch, size, &lm->m, &lm->weight_bytes, err) != CWBA_OK) return NULL;
    g_nmodels++;
    return lm;
}

/* Reads exactly n float32 values from a raw little-endian file. */
static cwba_status read_f32(const char *path, size_t n, float *out, cwba_error *err)
{
    uint8_t *buf;
    size_t len;
    cwba_status st = cwba_file_read_all(path, 0, &buf, &len, err);
    if (st != CWBA_OK) return st;
    if (len != n * sizeof(float)) {
        free(buf);
        return cwba_fail(err, CWBA_E_FORMAT, "%s: %zu bytes, expected %zu", path, len,
                         n * sizeof(float));
    }
    memcpy(out, buf, len);
    free(buf);
    return CWBA_OK;
}

/* ------------------------------------------------------------ serve */

typedef struct bench_case {
    cwba_model *m;
    int split; /* -1 = whole network */
    int batch;
    const float *in;
    float *out;
} bench_case;

static cwba_status case_run(const bench_case *bc, cwba_error *err)
{
    if (bc->split < 0) return cwba_model_forward(bc->m, bc->in, bc->batch, bc->out, err);
    return cwba_model_forward_back(bc->m, bc->split, bc->in, bc->batch, bc->out, err);
}

/* Builds the input of a forward or probe case (caller frees *in and *out). */
static cwba_status case_prepare(const char *dir, int probe, loaded_model *lm, int batch,
                                bench_case *bc, float **in, float **out, cwba_error *err)
{
    cwba_model *m = lm->m;
    int K = cwba_model_num_classes(m), S = lm->size;
    char path[1024];
    bc->m = m;
    bc->batch = batch;
    *out = xmalloc((size_t)batch * (size_t)K * sizeof(float));
    bc->out = *out;
    if (!probe) {
        size_t n = (size_t)batch * 3 * (size_t)S * (size_t)S;
        *in = xmalloc(n * sizeof(float));
        snprintf(path, sizeof path, "%s/input_%d_b%d.f32", dir, S, batch);
        bc->split = -1;
        bc->in = *in;
        return read_f32(path, n, *in, err);
    }
    cwba_status st = cwba_model_find_split(m, "layer3", &bc->split, err);
    if (st != CWBA_OK) return st;
    int C, H, W;
    cwba_model_split_shape(m, bc->split, &C, &H, &W);
    size_t n = (size_t)batch * (size_t)C * (size_t)H * (size_t)W;
    *in = xmalloc(n * sizeof(float));
    /* (batch, C, H, W): copy b of the feature with channel b mod C quantized
     * (tools/bench_torch.py prepare writes it for every contender). */
    snprintf(path, sizeof path, "%s/probe_%d_b%d.f32", dir, S, batch);
    st = read_f32(path, n, *in, err);
    if (st != CWBA_OK) return st;
    bc->in = *in;
    return CWBA_OK;
}

static int serve_one(const char *dir, char *line)
{
    char cmd[32] = "", arch_name[32] = "";
    int size = 0, batch = 0, reps = 0;
    cwba_error err;
    cwba_error_clear(&err);
    if (sscanf(line, "%31s", cmd) != 1) return 0;
    if (strcmp(cmd, "quit") == 0) return 1;
    int probe = strcmp(cmd, "probe") == 0;
    int ok;
    if (probe) {
        strcpy(arch_name, "resnet18");
        ok = sscanf(line, "%*s %d %d %d", &size, &batch, &reps) == 3;
    } else if (strcmp(cmd, "forward") == 0) {
        ok = sscanf(line, "%*s %31s %d %d %d", arch_name, &size, &batch, &reps) == 4;
    } else {
        ok = 0;
    }
    if (!ok || batch < 1 || batch > 1023 || reps < 1 || reps > 10000) {
        printf("{\"ok\":false,\"error\":\"bad command\"}\n");
        fflush(stdout);
        return 0;
    }
    cwba_arch arch;
    float *in = NULL, *out = NULL;
    double *t = xmalloc((size_t)reps * sizeof *t);
    bench_case bc;
    loaded_model *lm = NULL;
    cwba_status st = cwba_arch_parse(arch_name, &arch, &err);
    if (st == CWBA_OK) {
        lm = model_get(arch, size, &err);
        if (!lm) st = err.status ? err.status : CWBA_E_INTERNAL;
    }
    if (st == CWBA_OK) st = case_prepare(dir, probe, lm, batch, &bc, &in, &out, &err);
    int *warm = NULL;
    if (st == CWBA_OK)
        warm = probe ? &lm->warm_probe[batch] : &lm->warm_forward[batch < 256 ? batch : 255];
    if (st == CWBA_OK && !*warm) {
        for (int i = 0; i < 2 && st == CWBA_OK; i++) st = case_run(&bc, &err);
        *warm = 1;
    }
    for (int r = 0; r < reps && st == CWBA_OK; r++) {
        double t0 = cwba_now();
        st = case_run(&bc, &err);
        t[r] = cwba_now() - t0;
    }
    if (st != CWBA_OK) {
        /* keep the message JSON-safe */
        for (char *p = err.msg; *p; p++)
            if (*p == '"' || *p == '\\') *p = '\'';
        printf("{\"ok\":false,\"error\":\"%s\"}\n", err.msg);
    } else {
        printf("{\"ok\":true,\"t\":[");
        for (int r = 0; r < reps; r++) printf("%s%.9g", r ? "," : "", t[r]);
        printf("]}\n");
    }
    fflush(stdout);
    free(t);
    free(in);
    free(out);
    return 0;
}

static int cmd_serve(const char *dir)
{
    char line[512];
    const char *conv = getenv("CWBA_BENCH_CONV");
    printf("{\"ok\":true,\"ready\":\"cwba\",\"threads\":%d,\"conv\":\"%s\",\"isa\":\"%s\"}\n",
           cwba_get_threads(), conv && !strcmp(conv, "winograd") ? "winograd" : "direct",
           cwba_isa_name(cwba_isa_current()));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        if (serve_one(dir, line)) break;
    for (int i = 0; i < g_nmodels; i++) cwba_model_free(g_models[i].m);
    return 0;
}

/* ------------------------------------------------------------ mem */

static int cmd_mem(int argc, char **argv)
{
    /* mem forward ARCH SIZE BATCH DIR | mem probe SIZE BATCH DIR */
    cwba_error err;
    int probe = argc >= 1 && strcmp(argv[0], "probe") == 0;
    if ((probe && argc != 4) || (!probe && argc != 5)) {
        fprintf(stderr, "usage: cwba_bench mem forward ARCH SIZE BATCH DIR | probe SIZE BATCH DIR\n");
        return 2;
    }
    const char *arch_name = probe ? "resnet18" : argv[1];
    int size = atoi(argv[probe ? 1 : 2]), batch = atoi(argv[probe ? 2 : 3]);
    const char *dir = argv[probe ? 3 : 4];
    cwba_arch arch;
    CHECK(cwba_arch_parse(arch_name, &arch, &err));
    loaded_model lm;
    memset(&lm, 0, sizeof lm);
    lm.arch = arch;
    lm.size = size;
    CHECK(model_load(arch, size, &lm.m, &lm.weight_bytes, &err));
    bench_case bc;
    float *in, *out;
    CHECK(case_prepare(dir, probe, &lm, batch, &bc, &in, &out, &err));
    long load_peak = proc_status_kb("VmHWM");
    long before = proc_status_kb("VmRSS");
    int reset = reset_peak_rss();
    CHECK(case_run(&bc, &err));
    long run_peak = proc_status_kb("VmHWM");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"ok\":true,\"weights_f32_bytes\":%.0f,\"load_peak_kb\":%ld,\"rss_before_run_kb\":%ld,"
           "\"run_peak_kb\":%ld,\"peak_reset\":%s,\"ru_maxrss_kb\":%ld}\n",
           lm.weight_bytes, load_peak, before, reset == 0 ? run_peak : -1,
           reset == 0 ? "true" : "false", (long)ru.ru_maxrss);
    free(in);
    free(out);
    cwba_model_free(lm.m);
    return 0;
}

/* ------------------------------------------------- the algorithm's timings */

typedef struct be_ctx {
    cwba_model *m;
    int split;
} be_ctx;

static cwba_status be_run(void *ctx, const float *feat, int batch, float *logits, cwba_error *err)
{
    be_ctx *c = ctx;
    return cwba_model_forward_back(c->m, c->split, feat, batch, logits, err);
}

typedef struct algo_setup {
    cwba_model *m;
    int size, split, C, H, W, K;
    be_ctx ctx;
    cwba_backend be;
    cwba_dataset *ds; /* 64 px only */
    float *img;       /* (3, S, S) */
    float *x;         /* (C, H, W) */
    float *y0;        /* (K) */
} algo_setup;

static void algo_open(const char *arch_name, int size, const char *split_name, algo_setup *a)
{
    cwba_error err;
    cwba_arch arch;
    double wb;
    memset(a, 0, sizeof *a);
    CHECK(cwba_arch_parse(arch_name, &arch, &err));
    CHECK(model_load(arch, size, &a->m, &wb, &err));
    CHECK(cwba_model_find_split(a->m, split_name, &a->split, &err));
    a->size = size;
    cwba_model_split_shape(a->m, a->split, &a->C, &a->H, &a->W);
    a->K = cwba_model_num_classes(a->m);
    a->ctx.m = a->m;
    a->ctx.split = a->split;
    /* The same back end the command-line tool gives the algorithm. */
    a->be.C = a->C;
    a->be.H = a->H;
    a->be.W = a->W;
    a->be.K = a->K;
    a->be.max_batch = 64;
    a->be.run = be_run;
    a->be.ctx = &a->ctx;
    if (size == 64) {
        cwba_preprocess pp = cwba_preprocess_fmnist();
        CHECK(cwba_dataset_open("fmnist", &pp, &a->ds, &err));
    }
    a->img = xmalloc((size_t)3 * (size_t)size * (size_t)size * sizeof(float));
    a->x = xmalloc((size_t)a->C * (size_t)a->H * (size_t)a->W * sizeof(float));
    a->y0 = xmalloc((size_t)a->K * sizeof(float));
}

static void algo_close(algo_setup *a)
{
    cwba_model_free(a->m);
    cwba_dataset_free(a->ds);
    free(a->img);
    free(a->x);
    free(a->y0);
}

/* Image i of the benchmark's image set (not timed). */
static void algo_image(algo_setup *a, int i)
{
    cwba_error err;
    if (a->ds) {
        CHECK(cwba_dataset_get(a->ds, i, a->img, NULL, &err));
    } else {
        cwba_synthetic_fill("input", 2 + (uint64_t)i, a->img,
                            (size_t)3 * (size_t)a->size * (size_t)a->size);
    }
}

/* Front end and y0 of the current image (timed by the caller). */
static void algo_front(algo_setup *a)
{
    cwba_error err;
    CHECK(cwba_model_forward_front(a->m, a->split, a->img, 1, a->x, &err));
    CHECK(cwba_model_forward_back(a->m, a->split, a->x, 1, a->y0, &err));
}

/* The benchmark's synthetic interval table for `bits` (rows x C): n = 1 +
 * ((37 c + 101 r) mod (2^(b+1) - 2)); tools/original_method.py builds the
 * same. Uneven columns, so the floors of the base allocation leave a
 * leftover well above 40 intervals. */
static void synthetic_table(int C, int bits, int rows, cwba_table *t)
{
    t->C = C;
    t->rows = rows;
    t->data = xmalloc((size_t)rows * (size_t)C * sizeof(int));
    int mod = (1 << (bits + 1)) - 2;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) t->data[(size_t)r * (size_t)C + (size_t)c] = 1 + (37 * c + 101 * r) % mod;
}

static int cmd_evaluate(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: cwba_bench evaluate ARCH SIZE SPLIT BITS RESERVE IMAGES\n");
        return 2;
    }
    cwba_error err;
    algo_setup a;
    algo_open(argv[0], atoi(argv[1]), argv[2], &a);
    int bits = atoi(argv[3]), reserve = atoi(argv[4]), images = atoi(argv[5]);
    cwba_table t;
    synthetic_table(a.C, bits, 4, &t);
    cwba_eval_params p = {.quant = CWBA_QUANT_UNIFORM, .bits = bits, .reserve = reserve,
                          .alpha = 0.9, .beta = 0.1};
    int *n = xmalloc((size_t)a.C * sizeof(int));
    int *order = xmalloc((size_t)a.C * sizeof(int));
    double *avg = xmalloc((size_t)a.C * sizeof(double));
    size_t fc = (size_t)a.C * (size_t)a.H * (size_t)a.W;
    float *xhat = xmalloc(fc * sizeof(float));
    double *secs = xmalloc((size_t)images * sizeof(double));
    cwba_alloc_stats total = {0};
    double mse_sum = 0;
    long leftover = 0;
    /* one untimed image first: page-in of the weights and workspaces */
    for (int i = -1; i < images; i++) {
        algo_image(&a, i < 0 ? 0 : i);
        cwba_alloc_stats s = {0};
        double mse, t0 = cwba_now();
        algo_front(&a);
        s.passes++; /* y0 */
        CHECK(cwba_evaluate_image(&a.be, NULL, &t, &p, a.x, a.y0, n, xhat, &mse, &s, &err));
        double dt = cwba_now() - t0;
        if (i < 0) continue;
        secs[i] = dt;
        total.passes += s.passes;
        total.steps += s.steps;
        mse_sum += mse;
        /* the leftover decides how many online steps actually ran (R' = min(R, L)) */
        cwba_priority(a.x, a.C, a.H * a.W, p.alpha, p.beta, NULL, order);
        for (int c = 0; c < a.C; c++) {
            double sc = 0;
            for (int r = 0; r < t.rows; r++) sc += t.data[(size_t)r * (size_t)a.C + (size_t)c];
            avg[c] = sc;
        }
        leftover += cwba_base_allocation(avg, a.C, bits, order, n);
    }
    double med = median(secs, images);
    printf("{\"ok\":true,\"arch\":\"%s\",\"size\":%d,\"split\":\"%s\",\"C\":%d,\"H\":%d,\"W\":%d,"
           "\"bits\":%d,\"reserve\":%d,\"images\":%d,\"seconds_per_image\":%.6g,"
           "\"passes_per_image\":%.1f,\"steps_per_image\":%.1f,\"leftover_per_image\":%.1f,"
           "\"mse\":%.6g,\"threads\":%d}\n",
           argv[0], a.size, argv[2], a.C, a.H, a.W, bits, reserve, images, med,
           (double)total.passes / images, (double)total.steps / images, (double)leftover / images,
           mse_sum / images, cwba_get_threads());
    free(n);
    free(order);
    free(avg);
    free(xhat);
    free(secs);
    cwba_table_free(&t);
    algo_close(&a);
    return 0;
}

static int cmd_calibrate(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: cwba_bench calibrate ARCH SIZE SPLIT IMAGES MAXSTEPS\n");
        return 2;
    }
    cwba_error err;
    algo_setup a;
    algo_open(argv[0], atoi(argv[1]), argv[2], &a);
    int images = atoi(argv[3]);
    long maxsteps = atol(argv[4]);
    const long total_steps = cwba_budget(CWBA_BITS_MAX, a.C) - a.C;
    int *rows = xmalloc((size_t)6 * (size_t)a.C * sizeof(int));
    int *n = xmalloc((size_t)a.C * sizeof(int));
    double *secs = xmalloc((size_t)images * sizeof(double));
    double passes = 0, measured_steps = 0;
    int bounded = maxsteps > 0 && maxsteps < total_steps;
    for (int i = 0; i < images; i++) {
        algo_image(&a, i);
        cwba_alloc_stats s = {0};
        double t0 = cwba_now();
        algo_front(&a);
        s.passes++;
        if (!bounded) {
            CHECK(cwba_calibrate_image(&a.be, CWBA_QUANT_UNIFORM, a.x, a.y0, rows, &s, &err));
            secs[i] = cwba_now() - t0;
            passes += (double)s.passes;
            measured_steps += (double)s.steps;
            continue;
        }
        /* Bounded: the first step (which computes all C probe errors) and then
         * maxsteps further steps on the same probe cache; the remaining steps
         * are extrapolated at the measured per-step cost. */
        cwba_probe_cache *pc;
        CHECK(cwba_probe_cache_create(&a.be, CWBA_QUANT_UNIFORM, a.x, a.y0, &pc, &err));
        for (int c = 0; c < a.C; c++) n[c] = 1;
        CHECK(cwba_greedy_steps(pc, n, 1, &s, &err));
        double t1 = cwba_now();
        uint64_t p1 = s.passes;
        CHECK(cwba_greedy_steps(pc, n, maxsteps, &s, &err));
        double t2 = cwba_now();
        cwba_probe_cache_free(pc);
        double per_step = (t2 - t1) / (double)maxsteps;
        double per_step_passes = (double)(s.passes - p1) / (double)maxsteps;
        secs[i] = (t1 - t0) + per_step * (double)(total_steps - 1);
        passes += (double)p1 + per_step_passes * (double)(total_steps - 1);
        measured_steps += (double)(1 + maxsteps);
    }
    double med = median(secs, images);
    printf("{\"ok\":true,\"arch\":\"%s\",\"size\":%d,\"split\":\"%s\",\"C\":%d,\"H\":%d,\"W\":%d,"
           "\"images\":%d,\"bounded\":%s,\"measured_steps_per_image\":%.0f,\"total_steps\":%ld,"
           "\"seconds_per_image\":%.6g,\"passes_per_image\":%.1f,\"threads\":%d}\n",
           argv[0], a.size, argv[2], a.C, a.H, a.W, images, bounded ? "true" : "false",
           measured_steps / images, total_steps, med, passes / images, cwba_get_threads());
    free(rows);
    free(n);
    free(secs);
    algo_close(&a);
    return 0;
}

/* ------------------------------------------------- quantizer and bitstream */

/* A ReLU-like test feature (C, HW): the synthetic stream clipped at 0. */
static float *test_feature(int C, int HW)
{
    size_t count = (size_t)C * (size_t)HW;
    float *x = xmalloc(count * sizeof(float));
    cwba_synthetic_fill("bench.feature", 3, x, count);
    for (size_t i = 0; i < count; i++) x[i] = x[i] > 0 ? 4.0f * x[i] * x[i] : 0.0f;
    return x;
}

/* This thread's CPU time: on a shared machine, per-core throughput that
 * does not count the time other processes held the core. */
static double thread_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_quant(void)
{
    cwba_error err;
    const int shapes[2][2] = {{256, 196}, {256, 16}};
    printf("{\"ok\":true,\"cases\":[");
    int first = 1;
    for (int s = 0; s < 2; s++) {
        int C = shapes[s][0], HW = shapes[s][1];
        size_t count = (size_t)C * (size_t)HW;
        float *x = test_feature(C, HW);
        float *xhat = xmalloc(count * sizeof(float));
        uint32_t *codes = xmalloc(count * sizeof(uint32_t));
        int *n = xmalloc((size_t)C * sizeof(int));
        for (int c = 0; c < C; c++) n[c] = 1 + (37 * c) % 30; /* about 4 bits */
        for (int q = 0; q < 2; q++) {
            cwba_quant quant = q ? CWBA_QUANT_LOG : CWBA_QUANT_UNIFORM;
            double t[7], tc[7];
            for (int r = 0; r < 7; r++) {
                long iters = 0;
                double t0 = cwba_now(), c0 = thread_cpu_now(), dt;
                do {
                    CHECK(cwba_quantize_feature(quant, x, C, HW, n, xhat, codes, &err));
                    iters++;
                    dt = cwba_now() - t0;
                } while (dt < 0.05);
                t[r] = dt / (double)iters;
                tc[r] = (thread_cpu_now() - c0) / (double)iters;
            }
            double med = median(t, 7), medc = median(tc, 7);
            printf("%s{\"quant\":\"%s\",\"C\":%d,\"HW\":%d,\"seconds\":%.6g,\"gbps\":%.4g,"
                   "\"cpu_gbps\":%.4g}",
                   first ? "" : ",", cwba_quant_name(quant), C, HW, med,
                   (double)count * 4.0 / med / 1e9, (double)count * 4.0 / medc / 1e9);
            first = 0;
        }
        free(x);
        free(xhat);
        free(codes);
        free(n);
    }
    printf("]}\n");
    return 0;
}

static int cmd_codec(void)
{
    cwba_error err;
    const int C = 256, H = 14, W = 14, HW = H * W;
    size_t count = (size_t)C * (size_t)HW;
    float *x = test_feature(C, HW);
    float *xhat = xmalloc(count * sizeof(float));
    float *dec = xmalloc(count * sizeof(float));
    uint32_t *codes = xmalloc(count * sizeof(uint32_t));
    int *n = xmalloc((size_t)C * sizeof(int));
    int *n2 = xmalloc((size_t)C * sizeof(int));
    printf("{\"ok\":true,\"C\":%d,\"H\":%d,\"W\":%d,\"cases\":[", C, H, W);
    int first = 1;
    for (int bits = 2; bits <= 6; bits += 2) {
        for (int c = 0; c < C; c++) n[c] = 1 + (37 * c) % (2 * ((1 << bits) - 1) - 1);
        CHECK(cwba_quantize_feature(CWBA_QUANT_UNIFORM, x, C, HW, n, xhat, codes, &err));
        float mn, mx;
        cwba_feature_range(x, count, &mn, &mx);
        for (int mode = 0; mode < 2; mode++) {
            cwba_stream_info si;
            memset(&si, 0, sizeof si);
            strcpy(si.model, "resnet18");
            strcpy(si.split, "layer3");
            si.C = C;
            si.H = H;
            si.W = W;
            si.quant = CWBA_QUANT_UNIFORM;
            si.mn = mn;
            si.mx = mx;
            si.mode = mode ? CWBA_STREAM_ADAPTIVE : CWBA_STREAM_FIXED;
            size_t cap = cwba_stream_bound(&si, n), len = 0;
            uint8_t *buf = xmalloc(cap);
            cwba_stream_stats ss;
            double te[5], td[5];
            for (int r = 0; r < 5; r++) {
                long iters = 0;
                double t0 = cwba_now(), dt;
                do {
                    CHECK(cwba_stream_encode(&si, n, codes, buf, cap, &len, &ss, &err));
                    iters++;
                    dt = cwba_now() - t0;
                } while (dt < 0.1);
                te[r] = dt / (double)iters;
                iters = 0;
                t0 = cwba_now();
                do {
                    CHECK(cwba_stream_decode(buf, len, NULL, n2, (size_t)C, NULL, dec, count, &err));
                    iters++;
                    dt = cwba_now() - t0;
                } while (dt < 0.1);
                td[r] = dt / (double)iters;
            }
            if (memcmp(dec, xhat, count * sizeof(float)) != 0) {
                fprintf(stderr, "cwba_bench: decoded feature differs from the quantized one\n");
                return 1;
            }
            double me = median(te, 5), md = median(td, 5);
            printf("%s{\"bits\":%d,\"mode\":\"%s\",\"bytes\":%zu,\"bits_per_element\":%.4g,"
                   "\"encode_s\":%.6g,\"decode_s\":%.6g,\"encode_melem_s\":%.4g,"
                   "\"decode_melem_s\":%.4g}",
                   first ? "" : ",", bits, cwba_stream_mode_name(si.mode), len,
                   8.0 * (double)len / (double)count, me, md, (double)count / me / 1e6,
                   (double)count / md / 1e6);
            first = 0;
            free(buf);
        }
    }
    printf("]}\n");
    free(x);
    free(xhat);
    free(dec);
    free(codes);
    free(n);
    free(n2);
    return 0;
}

/* ------------------------------------------------------------ peak */

/* Core clock: a chain of dependent integer adds retires one per cycle. */
static double measure_clock_hz(void)
{
    double best = 0;
    for (int r = 0; r < 5; r++) {
        uint64_t v = 0;
        const long iters = 20000000;
        double t0 = cwba_now();
        for (long i = 0; i < iters; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             : "+r"(v));
        double hz = (double)iters * 8.0 / (cwba_now() - t0);
        if (hz > best) best = hz;
    }
    return best;
}

typedef struct fma_job {
    long iters;
    float sink;
} fma_job;

#define FMA_CHAINS 12
/* The FMA loop of the ISA the library's kernels use (cwba_isa_current:
 * detected at run time, capped by CWBA_MAX_ISA), so that a portable build
 * measures the same peak as a native one. */
#ifdef BENCH_X86
__attribute__((target("avx512f"))) static void fma_avx512(fma_job *j)
{
    __m512 acc[FMA_CHAINS];
    const __m512 m = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < j->iters; it++)
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, b);
    float s = 0;
    for (int i = 0; i < FMA_CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    j->sink = s;
}

__attribute__((target("avx2,fma"))) static void fma_avx2(fma_job *j)
{
    __m256 acc[FMA_CHAINS];
    const __m256 m = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < j->iters; it++)
        for (int i = 0; i < FMA_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, b);
    float tmp[8], s = 0;
    for (int i = 0; i < FMA_CHAINS; i++) {
        _mm256_storeu_ps(tmp, acc[i]);
        for (int k = 0; k < 8; k++) s += tmp[k];
    }
    j->sink = s;
}
#endif

static void *fma_worker(void *arg)
{
    fma_job *j = arg;
    j->sink = 0;
#ifdef BENCH_X86
    if (cwba_isa_current() == CWBA_ISA_AVX512) fma_avx512(j);
    if (cwba_isa_current() == CWBA_ISA_AVX2) fma_avx2(j);
#endif
    return NULL;
}

static int fma_lanes(void)
{
#ifdef BENCH_X86
    if (cwba_isa_current() == CWBA_ISA_AVX512) return 16;
    if (cwba_isa_current() == CWBA_ISA_AVX2) return 8;
#endif
    return 0;
}

static int cmd_peak(void)
{
    double hz = measure_clock_hz();
    int threads = cwba_get_threads();
    double best = 0;
    if (fma_lanes() > 0) {
        for (int r = 0; r < 5; r++) {
            pthread_t th[64];
            fma_job jobs[64];
            int nt = threads < 64 ? threads : 64;
            double t0 = cwba_now();
            for (int i = 0; i < nt; i++) {
                jobs[i].iters = 20000000;
                pthread_create(&th[i], NULL, fma_worker, &jobs[i]);
            }
            for (int i = 0; i < nt; i++) pthread_join(th[i], NULL);
            double dt = cwba_now() - t0;
            double flops = (double)nt * 20000000.0 * FMA_CHAINS * fma_lanes() * 2.0;
            if (flops / dt > best) best = flops / dt;
        }
    }
    printf("{\"ok\":true,\"clock_hz\":%.6g,\"fma_lanes\":%d,\"threads\":%d,"
           "\"fma_gflops_measured\":%.5g,\"isa\":\"%s\"}\n",
           hz, fma_lanes(), threads, best / 1e9, cwba_isa_name(cwba_isa_current()));
    return 0;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *th = getenv("CWBA_BENCH_THREADS");
    cwba_error err;
    if (cwba_isa_env_check(&err) != CWBA_OK) fail_exit(&err);
    cwba_set_threads(th ? atoi(th) : 2);
    if (argc < 2) {
        fprintf(stderr, "usage: cwba_bench serve DIR | mem ... | evaluate ... | calibrate ... | "
                        "quant | codec | peak\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0 && argc == 3) return cmd_serve(argv[2]);
    if (strcmp(cmd, "mem") == 0) return cmd_mem(argc - 2, argv + 2);
    if (strcmp(cmd, "evaluate") == 0) return cmd_evaluate(argc - 2, argv + 2);
    if (strcmp(cmd, "calibrate") == 0) return cmd_calibrate(argc - 2, argv + 2);
    if (strcmp(cmd, "quant") == 0) return cmd_quant();
    if (strcmp(cmd, "codec") == 0) return cmd_codec();
    if (strcmp(cmd, "peak") == 0) return cmd_peak();
    fprintf(stderr, "cwba_bench: unknown command %s\n", cmd);
    return 2;
}
