/* The run-time ISA choice: names round-trip, unknown names are rejected in
 * one line, the current ISA is supported, and switching follows the GEMM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cwba/core.h"
#include "nn/nn_internal.h"

static void test_names(void **state)
{
    (void)state;
    for (int i = CWBA_ISA_SCALAR; i <= CWBA_ISA_NEON; i++) {
        cwba_isa x;
        assert_int_equal(cwba_isa_parse(cwba_isa_name((cwba_isa)i), &x, NULL), CWBA_OK);
        assert_int_equal(x, i);
    }
    cwba_error err;
    cwba_isa x;
    assert_int_equal(cwba_isa_parse("sse2", &x, &err), CWBA_E_ARG);
    assert_non_null(strstr(err.msg, "'sse2'"));
    assert_null(strchr(err.msg, '\n'));
    assert_string_equal(cwba_isa_name((cwba_isa)42), "?");
}

static void test_current_and_set(void **state)
{
    (void)state;
    cwba_isa best = cwba_isa_current();
    assert_true(cwba_isa_supported(best));
    assert_true(cwba_isa_supported(CWBA_ISA_SCALAR));
#if defined(__x86_64__)
    assert_false(cwba_isa_supported(CWBA_ISA_NEON));
#elif defined(__aarch64__)
    assert_true(cwba_isa_supported(CWBA_ISA_NEON));
    assert_false(cwba_isa_supported(CWBA_ISA_AVX2));
    /* NEON picked unless capped (the cross build's CTest runs this test
     * both ways), and the GEMM follows it. */
    const char *cap = getenv("CWBA_MAX_ISA");
    assert_int_equal(best, cap && strcmp(cap, "scalar") == 0 ? CWBA_ISA_SCALAR : CWBA_ISA_NEON);
    assert_string_equal(nn_gemm_isa(), cwba_isa_name(best));
#endif
    assert_true(cwba_isa_set(CWBA_ISA_SCALAR));
    assert_int_equal(cwba_isa_current(), CWBA_ISA_SCALAR);
    assert_string_equal(nn_gemm_isa(), "scalar");
    assert_true(nn_gemm_set_isa(cwba_isa_name(best)));
    assert_int_equal(cwba_isa_current(), best);
    assert_false(nn_gemm_set_isa("bogus"));
    assert_int_equal(cwba_isa_env_check(NULL), CWBA_OK); /* no cap, or a valid one */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_current_and_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
