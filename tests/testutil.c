#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/nn_internal.h"

const char *tu_source_dir(void)
{
    const char *s = getenv("CWBA_SOURCE_DIR");
    return s ? s : CWBA_SOURCE_DIR;
}

const char *tu_path(const char *rel)
{
    static char bufs[8][4096];
    static int slot = 0;
    char *b = bufs[slot++ & 7];
    snprintf(b, 4096, "%s/%s", tu_source_dir(), rel);
    return b;
}

char *tu_tmpdir(void)
{
    char tmpl[] = "/tmp/cwba-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) return NULL;
    return strdup(d);
}

void tu_rmtree(const char *dir)
{
    if (!dir || strncmp(dir, "/tmp/cwba-test-", 15) != 0) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) { /* best effort */ }
}

int tu_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

const char *tu_fmnist_dir(void)
{
    const char *d = "/usr/share/datasets/fashion-mnist";
    char p[256];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", d);
    return tu_exists(p) ? d : NULL;
}

char *tu_group_dir = NULL;

int tu_group_setup(void **state)
{
    (void)state;
    tu_group_dir = tu_tmpdir();
    return tu_group_dir ? 0 : -1;
}

int tu_group_teardown(void **state)
{
    (void)state;
    tu_rmtree(tu_group_dir);
    free(tu_group_dir);
    tu_group_dir = NULL;
    return 0;
}

float **tu_gemm_scratch_new(int threads, int k)
{
    float **s = calloc((size_t)threads, sizeof *s);
    assert_non_null(s);
    for (int t = 0; t < threads; t++) {
        s[t] = malloc(nn_gemm_scratch_size(k) * sizeof(float));
        assert_non_null(s[t]);
    }
    return s;
}

void tu_gemm_scratch_free(float **s, int threads)
{
    for (int t = 0; t < threads; t++) free(s[t]);
    free(s);
}
