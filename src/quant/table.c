/* Interval tables: CSV files of allocation vectors, one row per calibration
 * image, C positive integers a row, no header (the original's file format).
 * Reading is strict (every problem is reported as file:line); appending
 * rewrites the whole file atomically so an interrupted run never leaves a
 * half-written row. */
#include "quant/quant_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A table file is small text; anything this large is not one. */
#define TABLE_BYTES_MAX ((size_t)256 << 20)

void cwba_table_free(cwba_table *t)
{
    if (!t) return;
    free(t->data);
    t->data = NULL;
    t->rows = 0;
    t->C = 0;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

/* Parses one line [p, end) into row[] (cap entries). Returns the number of
 * values, or -1 with err set. */
static int parse_line(const char *path, long line, const char *p, const char *end, int *row,
                      int cap, cwba_error *err)
{
    int count = 0;
    for (;;) {
        while (p < end && is_blank(*p)) p++;
        if (p == end || *p < '0' || *p > '9') {
            cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: value %d is not a positive integer", path, line,
                      count + 1);
            return -1;
        }
        long v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            if (v > INT_MAX) {
                cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: value %d is too large", path, line,
                          count + 1);
                return -1;
            }
            p++;
        }
        if (v < 1) {
            cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: value %d is %ld, intervals must be >= 1", path,
                      line, count + 1, v);
            return -1;
        }
        if (count == cap) {
            cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: more than %d values", path, line, cap);
            return -1;
        }
        row[count++] = (int)v;
        while (p < end && is_blank(*p)) p++;
        if (p == end) return count;
        if (*p != ',') {
            cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: unexpected character '%c' after value %d", path,
                      line, *p, count);
            return -1;
        }
        p++;
    }
}

/* allow_empty: a zero-byte file is a table with no rows (used by append). */
static cwba_status table_parse(const char *path, const char *buf, size_t len, int expected_C,
                               int allow_empty, cwba_table *t, cwba_error *err)
{
    memset(t, 0, sizeof *t);
    if (len == 0 && allow_empty) {
        t->C = expected_C;
        return CWBA_OK;
    }
    if (len == 0) return cwba_fail(err, CWBA_E_FORMAT, "%s: empty interval table", path);
    if (memchr(buf, '\0', len))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: binary data in an interval table", path);
    /* The widest possible row bounds the column count before it is known. */
    int cap = expected_C > 0 ? expected_C : (int)(len / 2 + 1 < INT_MAX ? len / 2 + 1 : INT_MAX);
    int *row = malloc((size_t)cap * sizeof *row);
    if (!row) return cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", path);
    size_t rows_cap = 0;
    long line = 0;
    cwba_status st = CWBA_OK;
    const char *p = buf, *stop = buf + len;
    while (p < stop) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        const char *end = nl ? nl : stop;
        const char *next = nl ? nl + 1 : stop;
        if (end > p && end[-1] == '\r') end--; /* Python's csv module writes \r\n */
        const char *q = p;
        while (q < end && is_blank(*q)) q++;
        if (q == end) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: empty line", path, line);
            break;
        }
        int k = parse_line(path, line, p, end, row, cap, err);
        if (k < 0) {
            st = err ? err->status : CWBA_E_FORMAT;
            break;
        }
        if (t->C == 0) t->C = expected_C > 0 ? expected_C : k;
        if (k != t->C) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s:%ld: %d values, expected %d", path, line, k,
                           t->C);
            break;
        }
        if ((size_t)t->rows == rows_cap) {
            size_t ncap = rows_cap ? rows_cap * 2 : 16, bytes;
            if (ncap > INT_MAX || !cwba_size_mul(ncap, (size_t)t->C, &bytes) ||
                !cwba_size_mul(bytes, sizeof(int), &bytes)) {
                st = cwba_fail(err, CWBA_E_NOMEM, "%s: too many rows", path);
                break;
            }
            int *nd = realloc(t->data, bytes);
            if (!nd) {
                st = cwba_fail(err, CWBA_E_NOMEM, "%s: out of memory", path);
                break;
            }
            t->data = nd;
            rows_cap = ncap;
        }
        memcpy(t->data + (size_t)t->rows * (size_t)t->C, row, (size_t)k * sizeof *row);
        t->rows++;
        p = next;
    }
    free(row);
    if (st != CWBA_OK) {
        cwba_table_free(t);
        return st;
    }
    return CWBA_OK;
}

cwba_status cwba_table_parse(const char *buf, size_t len, const char *what, int expected_C,
                             cwba_table *t, cwba_error *err)
{
    if (len > TABLE_BYTES_MAX)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: %zu bytes is too large for an interval table", what,
                         len);
    return table_parse(what, buf, len, expected_C, 0, t, err);
}

cwba_status cwba_table_read(const char *path, int expected_C, cwba_table *t, cwba_error *err)
{
    if (!path || !t) return cwba_fail(err, CWBA_E_ARG, "table_read: missing path or table");
    memset(t, 0, sizeof *t);
    uint8_t *buf;
    size_t len;
    cwba_status st = cwba_file_read_all(path, TABLE_BYTES_MAX, &buf, &len, err);
    if (st != CWBA_OK) return st;
    st = table_parse(path, (const char *)buf, len, expected_C, 0, t, err);
    free(buf);
    return st;
}

cwba_status cwba_table_append(const char *path, const int *rows, int nrows, int C, cwba_error *err)
{
    if (!path || C < 1 || nrows < 0 || (nrows > 0 && !rows))
        return cwba_fail(err, CWBA_E_ARG, "table_append: invalid arguments (C=%d, rows=%d)", C,
                         nrows);
    for (size_t i = 0; i < (size_t)nrows * (size_t)C; i++)
        if (rows[i] < 1)
            return cwba_fail(err, CWBA_E_ARG, "table_append: row %zu, column %zu has %d intervals",
                             i / (size_t)C, i % (size_t)C, rows[i]);
    cwba_table old = {0};
    struct stat sb;
    if (stat(path, &sb) == 0) {
        uint8_t *buf;
        size_t len;
        cwba_status st = cwba_file_read_all(path, TABLE_BYTES_MAX, &buf, &len, err);
        if (st != CWBA_OK) return st;
        st = table_parse(path, (const char *)buf, len, C, 1, &old, err);
        free(buf);
        if (st != CWBA_OK) return st;
    } else if (errno != ENOENT) {
        return cwba_fail(err, CWBA_E_IO, "cannot access %s: %s", path, strerror(errno));
    }
    cwba_atomic_file *f;
    cwba_status st = cwba_atomic_open(path, &f, err);
    if (st != CWBA_OK) {
        cwba_table_free(&old);
        return st;
    }
    for (int pass = 0; pass < 2 && st == CWBA_OK; pass++) {
        const int *d = pass == 0 ? old.data : rows;
        int nr = pass == 0 ? old.rows : nrows;
        for (int r = 0; r < nr && st == CWBA_OK; r++)
            for (int c = 0; c < C && st == CWBA_OK; c++)
                st = cwba_atomic_printf(f, err, c + 1 < C ? "%d," : "%d\n",
                                        d[(size_t)r * (size_t)C + (size_t)c]);
    }
    cwba_table_free(&old);
    if (st != CWBA_OK) {
        cwba_atomic_abort(f);
        return st;
    }
    return cwba_atomic_commit(f, err);
}

void cwba_table_column_means(const cwba_table *t, double *avg)
{
    for (int c = 0; c < t->C; c++) {
        /* Integer sums are exact in double up to 2^53. */
        double s = 0.0;
        for (int r = 0; r < t->rows; r++) s += t->data[(size_t)r * (size_t)t->C + (size_t)c];
        avg[c] = t->rows > 0 ? s / t->rows : 0.0;
    }
}
