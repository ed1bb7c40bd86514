/* One thread-count setting for the whole library; GEMM threads follow it. */
#include "cwba/core.h"

void openblas_set_num_threads(int num_threads); /* from libopenblas */

static int g_threads = 1;

void cwba_set_threads(int n)
{
    if (n <= 0) n = 1;
    g_threads = n;
    openblas_set_num_threads(n);
}

int cwba_get_threads(void) { return g_threads; }
