/* The runner and checks behind tests/minimal/cmocka.h. */
#include "cmocka.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf g_jmp;
static int g_in_test;

void cm_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[  ERROR   ] %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (!g_in_test) abort(); /* a check outside any test (a fixture): nothing to return to */
    longjmp(g_jmp, 1);
}

void cm_skip(const char *file, int line)
{
    fprintf(stderr, "[  SKIPPED ] at %s:%d\n", file, line);
    if (!g_in_test) abort();
    longjmp(g_jmp, 2);
}

void cm_check_int(intmax_t a, intmax_t b, int want_equal, const char *ea, const char *eb,
                  const char *file, int line)
{
    if ((a == b) != !!want_equal)
        cm_fail(file, line, "%s (%jd) %s %s (%jd)", ea, a, want_equal ? "!=" : "==", eb, b);
}

void cm_check_string(const char *a, const char *b, const char *ea, const char *eb,
                     const char *file, int line)
{
    if (!a || !b || strcmp(a, b) != 0)
        cm_fail(file, line, "%s (\"%s\") != %s (\"%s\")", ea, a ? a : "(null)", eb,
                b ? b : "(null)");
}

void cm_check_memory(const void *a, const void *b, size_t n, const char *ea, const char *eb,
                     const char *file, int line)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            cm_fail(file, line, "%s and %s differ at byte %zu of %zu (0x%02x != 0x%02x)", ea, eb, i,
                    n, x[i], y[i]);
}

/* One test: 0 passed, 1 failed, 2 skipped. */
static int run_one(const struct CMUnitTest *t, void *gstate)
{
    void *state = t->initial_state ? t->initial_state : gstate;
    if (t->setup_func && t->setup_func(&state) != 0) return 1;
    g_in_test = 1;
    int r = setjmp(g_jmp);
    if (r == 0) t->test_func(&state);
    g_in_test = 0;
    if (t->teardown_func) t->teardown_func(&state);
    return r;
}

int cm_run_group(const char *group, const struct CMUnitTest *tests, size_t n,
                 CMFixtureFunction setup, CMFixtureFunction teardown)
{
    void *gstate = NULL;
    int failed = 0, skipped = 0;
    printf("[==========] %s: running %zu test(s).\n", group, n);
    if (setup && setup(&gstate) != 0) {
        printf("[  FAILED  ] %s: group setup failed\n", group);
        return (int)n;
    }
    for (size_t i = 0; i < n; i++) {
        printf("[ RUN      ] %s\n", tests[i].name);
        fflush(stdout);
        int r = run_one(&tests[i], gstate);
        printf("[ %s ] %s\n", r == 1 ? " FAILED " : r == 2 ? " SKIPPED" : "      OK", tests[i].name);
        failed += r == 1;
        skipped += r == 2;
        fflush(stdout);
    }
    if (teardown) teardown(&gstate);
    printf("[==========] %s: %zu test(s) run, %d failed, %d skipped.\n", group, n, failed, skipped);
    return failed;
}
