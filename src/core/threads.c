/* One thread-count setting for the whole library. The GEMM (src/nn/gemm.c)
 * sizes its worker pool from it; results never depend on it. */
#include "cwba/core.h"

static int g_threads = 1;

void cwba_set_threads(int n)
{
    if (n <= 0) n = 1;
    g_threads = n;
}

int cwba_get_threads(void) { return g_threads; }
