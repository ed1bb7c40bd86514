/* A stand-in for the part of cmocka's API the unit tests use, for builds
 * where cmocka is not available (the dependency-free cross build, see
 * cmake/minimal.cmake): same macro names and meaning, failures reported on
 * stderr with file and line, a failed or skipped test ends by longjmp back
 * to the runner, and the group returns the number of failed tests. Only
 * the build with CWBA_MINIMAL puts this directory on the include path. */
#ifndef CWBA_CMOCKA_STANDIN_H
#define CWBA_CMOCKA_STANDIN_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*CMUnitTestFunction)(void **state);
typedef int (*CMFixtureFunction)(void **state);

struct CMUnitTest {
    const char *name;
    CMUnitTestFunction test_func;
    CMFixtureFunction setup_func;
    CMFixtureFunction teardown_func;
    void *initial_state;
};

#define cmocka_unit_test(f) {#f, f, NULL, NULL, NULL}
#define cmocka_unit_test_setup_teardown(f, setup, teardown) {#f, f, setup, teardown, NULL}

int cm_run_group(const char *group, const struct CMUnitTest *tests, size_t n,
                 CMFixtureFunction setup, CMFixtureFunction teardown);
#define cmocka_run_group_tests(tests, setup, teardown)                                             \
    cm_run_group(#tests, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)

/* Failure (ends the test), skip (ends it as skipped). */
void cm_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void cm_skip(const char *file, int line) __attribute__((noreturn));
void cm_check_int(intmax_t a, intmax_t b, int want_equal, const char *ea, const char *eb,
                  const char *file, int line);
void cm_check_string(const char *a, const char *b, const char *ea, const char *eb,
                     const char *file, int line);
void cm_check_memory(const void *a, const void *b, size_t n, const char *ea, const char *eb,
                     const char *file, int line);

#define print_message(...) printf(__VA_ARGS__)
#define fail() cm_fail(__FILE__, __LINE__, "failure")
#define fail_msg(...) cm_fail(__FILE__, __LINE__, __VA_ARGS__)
#define skip() cm_skip(__FILE__, __LINE__)
#define assert_true(c)                                                                             \
    ((c) ? (void)0 : cm_fail(__FILE__, __LINE__, "%s is not true", #c))
#define assert_false(c)                                                                            \
    (!(c) ? (void)0 : cm_fail(__FILE__, __LINE__, "%s is not false", #c))
#define assert_non_null(p)                                                                         \
    ((p) != NULL ? (void)0 : cm_fail(__FILE__, __LINE__, "%s is NULL", #p))
#define assert_null(p)                                                                             \
    ((p) == NULL ? (void)0 : cm_fail(__FILE__, __LINE__, "%s is not NULL", #p))
/* cmocka compares integers as its widest unsigned type; intmax_t gives the
 * same verdict for every value the tests compare and prints signed values. */
#define assert_int_equal(a, b)                                                                     \
    cm_check_int((intmax_t)(a), (intmax_t)(b), 1, #a, #b, __FILE__, __LINE__)
#define assert_int_not_equal(a, b)                                                                 \
    cm_check_int((intmax_t)(a), (intmax_t)(b), 0, #a, #b, __FILE__, __LINE__)
#define assert_string_equal(a, b) cm_check_string((a), (b), #a, #b, __FILE__, __LINE__)
#define assert_memory_equal(a, b, n)                                                               \
    cm_check_memory((a), (b), (size_t)(n), #a, #b, __FILE__, __LINE__)

#endif
