/* Shared helpers for the cmocka tests. */
#ifndef CWBA_TESTUTIL_H
#define CWBA_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Root of the source tree (env CWBA_SOURCE_DIR, set by CTest). */
const char *tu_source_dir(void);
/* "<source>/<rel>" in a static rotating buffer (8 slots). */
const char *tu_path(const char *rel);
/* A fresh temporary directory, removed by tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* A scratch directory for a whole cmocka group: tu_group_setup makes it in
 * tu_group_dir, tu_group_teardown removes it (pass both to
 * cmocka_run_group_tests). */
extern char *tu_group_dir;
int tu_group_setup(void **state);
int tu_group_teardown(void **state);

/* 1 if the file exists. */
int tu_exists(const char *path);
/* Directory of the Debian Fashion-MNIST package, or NULL (tests then skip). */
const char *tu_fmnist_dir(void);

/* Per-thread GEMM packing scratch for nn_gemm_run (src/nn), k the inner
 * dimension; asserts on allocation failure. */
float **tu_gemm_scratch_new(int threads, int k);
void tu_gemm_scratch_free(float **s, int threads);

#endif
