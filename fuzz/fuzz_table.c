/* libFuzzer target: interval tables (CSV of positive integers), read with
 * the column count unknown and then with one given, as calibrate and
 * evaluate read them. */
#include "fuzz_util.h"

#include "cwba/quant.h"
#include "quant/quant_internal.h"

static void check(const cwba_table *t)
{
    if (t->rows < 1 || t->C < 1 || !t->data) abort();
    size_t n = (size_t)t->rows * (size_t)t->C;
    for (size_t i = 0; i < n; i++)
        if (t->data[i] < 1) abort();
    double *avg = malloc((size_t)t->C * sizeof *avg);
    if (!avg) abort();
    cwba_table_column_means(t, avg);
    for (int c = 0; c < t->C; c++)
        if (!(avg[c] >= 1.0)) abort();
    free(avg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = (char *)fuzz_copy(data, size);
    cwba_table t;
    cwba_error err = {0};
    cwba_status st = cwba_table_parse(buf, size, "fuzz.csv", 0, &t, &err);
    fuzz_check_status(st, &err);
    /* With a column count: the one just found, or one the input suggests. */
    int C = st == CWBA_OK ? t.C : size ? 1 + (unsigned char)buf[0] % 16 : 1;
    if (st == CWBA_OK) check(&t);
    cwba_table_free(&t);
    st = cwba_table_parse(buf, size, "fuzz.csv", C, &t, &err);
    fuzz_check_status(st, &err);
    if (st == CWBA_OK) {
        if (t.C != C) abort();
        check(&t);
    }
    cwba_table_free(&t);
    free(buf);
    return 0;
}
