/* cwba/core.h — status reporting, file helpers and threading shared by every module.
 *
 * Error model: every fallible function returns a cwba_status and, when given a
 * non-NULL cwba_error, fills it with one human-readable line (no trailing
 * newline). The library never prints and never exits; the CLI shows err->msg. */
#ifndef CWBA_CORE_H
#define CWBA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cwba_status {
    CWBA_OK = 0,
    CWBA_E_ARG,         /* invalid argument or option value */
    CWBA_E_IO,          /* file missing, unreadable or unwritable */
    CWBA_E_FORMAT,      /* malformed or inconsistent input file */
    CWBA_E_NOMEM,       /* allocation failed or size overflow */
    CWBA_E_SHAPE,       /* tensor shape / count mismatch */
    CWBA_E_UNSUPPORTED, /* valid input we do not handle */
    CWBA_E_INTERNAL     /* a bug: an invariant did not hold */
} cwba_status;

typedef struct cwba_error {
    cwba_status status;
    char msg[512];
} cwba_error;

/* Sets err (if non-NULL) and returns st. printf-style message, one line. */
cwba_status cwba_fail(cwba_error *err, cwba_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void cwba_error_clear(cwba_error *err);
const char *cwba_status_name(cwba_status st);

/* Overflow-checked size arithmetic: return 0 on overflow. */
int cwba_size_mul(size_t a, size_t b, size_t *out);
int cwba_size_add(size_t a, size_t b, size_t *out);

/* Reads a whole file into a malloc'd buffer (caller frees). Rejects files
 * larger than max_bytes (0 = no limit beyond SIZE_MAX). */
cwba_status cwba_file_read_all(const char *path, size_t max_bytes, uint8_t **out,
                               size_t *out_len, cwba_error *err);

/* Atomic output file: data goes to "<path>.tmp.XXXXXX" beside the target and is
 * renamed over it on commit; abort (or a failed commit) removes the temp file. */
typedef struct cwba_atomic_file cwba_atomic_file;
cwba_status cwba_atomic_open(const char *path, cwba_atomic_file **out, cwba_error *err);
cwba_status cwba_atomic_write(cwba_atomic_file *f, const void *data, size_t len, cwba_error *err);
cwba_status cwba_atomic_printf(cwba_atomic_file *f, cwba_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Flushes, fsyncs, renames; frees f in every case. */
cwba_status cwba_atomic_commit(cwba_atomic_file *f, cwba_error *err);
/* Removes the temp file and frees f; NULL is accepted. */
void cwba_atomic_abort(cwba_atomic_file *f);

/* Whole-buffer convenience wrapper around the above. */
cwba_status cwba_write_file_atomic(const char *path, const void *data, size_t len, cwba_error *err);

/* SHA-256 of a buffer / file as 64 lowercase hex chars + NUL. */
void cwba_sha256_hex(const void *data, size_t len, char hex[65]);
cwba_status cwba_sha256_file(const char *path, char hex[65], cwba_error *err);

/* Thread count used by every parallel kernel (GEMM included). Results never
 * depend on it. n <= 0 selects 1. */
void cwba_set_threads(int n);
int cwba_get_threads(void);

/* Monotonic wall clock in seconds. */
double cwba_now(void);

/* Instruction sets of the vector kernels (src/nn, src/quant). The library
 * picks the best one this CPU has at run time; the environment variable
 * CWBA_MAX_ISA=scalar|avx2|avx512|neon caps the choice (as oneDNN's
 * ONEDNN_MAX_CPU_ISA), so one machine can run every slower path. For a given
 * arithmetic every ISA gives the same bits (docs/architecture.md). */
typedef enum cwba_isa {
    CWBA_ISA_SCALAR = 0, /* portable C, fmaf */
    CWBA_ISA_AVX2,       /* x86-64 AVX2 + FMA */
    CWBA_ISA_AVX512,     /* x86-64 AVX-512F */
    CWBA_ISA_NEON        /* AArch64 Advanced SIMD */
} cwba_isa;
/* The ISA in use (detected once, capped by CWBA_MAX_ISA). */
cwba_isa cwba_isa_current(void);
/* "scalar", "avx2", "avx512", "neon"; "?" for a value out of range. */
const char *cwba_isa_name(cwba_isa isa);
/* Parses a name as above (CWBA_E_ARG with one line listing them otherwise). */
cwba_status cwba_isa_parse(const char *s, cwba_isa *out, cwba_error *err);
/* Whether this CPU (and this build) can run isa. */
int cwba_isa_supported(cwba_isa isa);
/* CWBA_E_ARG when CWBA_MAX_ISA is set to something that is not an ISA of this
 * architecture (the library then ignores it and uses the best ISA); the
 * CLI calls this first so that a typo is an error, not a silent default. */
cwba_status cwba_isa_env_check(cwba_error *err);
/* Makes isa the current one, for all kernels, if supported (returns 0
 * otherwise). For tests and benchmarks comparing ISAs in one process; not
 * thread-safe against running kernels, and data packed for one ISA's kernels
 * must not be used after a switch. */
int cwba_isa_set(cwba_isa isa);

/* Strict number parsing for command-line and file values: the whole string must
 * be consumed, no overflow, finite for doubles. Return 0 on failure. */
int cwba_parse_int(const char *s, long *out);
int cwba_parse_double(const char *s, double *out);

#ifdef __cplusplus
}
#endif
#endif
