/* Interval table files: strict reading with file:line errors, atomic append. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cwba/quant.h"

/* The group's scratch directory (tu_group_setup / tu_group_teardown). */
#define dir tu_group_dir


static const char *write_tmp(const char *name, const char *text)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return path;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_read_good(void **state)
{
    (void)state;
    cwba_table t;
    cwba_error err;
    /* \r\n (Python's csv module), blanks around values, no final newline. */
    const char *p = write_tmp("good.csv", "1,2,3\r\n 4 , 5,6\n7,8,9");
    assert_int_equal(cwba_table_read(p, 3, &t, &err), CWBA_OK);
    assert_int_equal(t.rows, 3);
    assert_int_equal(t.C, 3);
    for (int i = 0; i < 9; i++) assert_int_equal(t.data[i], i + 1);
    double avg[3];
    cwba_table_column_means(&t, avg);
    assert_true(avg[0] == 4.0 && avg[1] == 5.0 && avg[2] == 6.0);
    cwba_table_free(&t);
    /* expected_C = 0 takes the column count from the first row. */
    assert_int_equal(cwba_table_read(p, 0, &t, &err), CWBA_OK);
    assert_int_equal(t.C, 3);
    cwba_table_free(&t);
    cwba_table_free(&t); /* idempotent */
}

static void expect_bad(const char *name, const char *text, int C, cwba_status want,
                       const char *fragment)
{
    cwba_table t = {7, 7, NULL};
    cwba_error err;
    const char *p = write_tmp(name, text);
    cwba_status st = cwba_table_read(p, C, &t, &err);
    if (st != want || !strstr(err.msg, fragment))
        fail_msg("%s: status %d (%s), wanted %d with '%s'", name, st, err.msg, want, fragment);
    assert_null(t.data);
}

static void test_read_bad(void **state)
{
    (void)state;
    expect_bad("empty.csv", "", 3, CWBA_E_FORMAT, "empty.csv: empty");
    expect_bad("zero.csv", "1,2,3\n1,0,3\n", 3, CWBA_E_FORMAT, "zero.csv:2:");
    expect_bad("neg.csv", "1,-2,3\n", 3, CWBA_E_FORMAT, "neg.csv:1: value 2");
    expect_bad("text.csv", "1,2,3\n4,5,x\n", 3, CWBA_E_FORMAT, "text.csv:2: value 3");
    expect_bad("float.csv", "1,2.5,3\n", 3, CWBA_E_FORMAT, "float.csv:1:");
    expect_bad("short.csv", "1,2,3\n4,5\n", 3, CWBA_E_FORMAT, "short.csv:2: 2 values, expected 3");
    expect_bad("long.csv", "1,2,3,4\n", 3, CWBA_E_FORMAT, "long.csv:1: more than 3");
    expect_bad("ragged.csv", "1,2,3\n4,5\n", 0, CWBA_E_FORMAT, "ragged.csv:2: 2 values, expected 3");
    expect_bad("trail.csv", "1,2,3,\n", 3, CWBA_E_FORMAT, "trail.csv:1: value 4");
    expect_bad("blank.csv", "1,2,3\n\n4,5,6\n", 3, CWBA_E_FORMAT, "blank.csv:2: empty line");
    expect_bad("huge.csv", "1,2,99999999999\n", 3, CWBA_E_FORMAT, "huge.csv:1: value 3 is too large");
    expect_bad("header.csv", "a,b,c\n1,2,3\n", 3, CWBA_E_FORMAT, "header.csv:1:");
    cwba_table t;
    cwba_error err;
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nope.csv", dir);
    assert_int_equal(cwba_table_read(missing, 3, &t, &err), CWBA_E_IO);
    assert_non_null(strstr(err.msg, "nope.csv"));
}

static void test_append(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/4.csv", dir);
    cwba_error err;
    const int r1[] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(cwba_table_append(path, r1, 2, 3, &err), CWBA_OK);
    assert_string_equal(slurp(path), "1,2,3\n4,5,6\n");
    const int r2[] = {7, 8, 9};
    assert_int_equal(cwba_table_append(path, r2, 1, 3, &err), CWBA_OK);
    assert_string_equal(slurp(path), "1,2,3\n4,5,6\n7,8,9\n");
    /* A different column count is refused and the file is left alone. */
    const int r3[] = {1, 1};
    assert_int_equal(cwba_table_append(path, r3, 1, 2, &err), CWBA_E_FORMAT);
    assert_non_null(strstr(err.msg, "4.csv:1:"));
    assert_string_equal(slurp(path), "1,2,3\n4,5,6\n7,8,9\n");
    /* Rows with intervals < 1 are refused. */
    const int r4[] = {1, 0, 1};
    assert_int_equal(cwba_table_append(path, r4, 1, 3, &err), CWBA_E_ARG);
    /* An existing file without final newline (written by another tool) and
     * with \r\n is normalised, and an empty file counts as no rows. */
    const char *p = write_tmp("5.csv", "3,2,1\r\n6,5,4");
    assert_int_equal(cwba_table_append(p, r2, 1, 3, &err), CWBA_OK);
    assert_string_equal(slurp(p), "3,2,1\n6,5,4\n7,8,9\n");
    p = write_tmp("6.csv", "");
    assert_int_equal(cwba_table_append(p, r2, 1, 3, &err), CWBA_OK);
    assert_string_equal(slurp(p), "7,8,9\n");
    /* No temp files left behind. */
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", dir);
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_good),
        cmocka_unit_test(test_read_bad),
        cmocka_unit_test(test_append),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
