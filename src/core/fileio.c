/* Whole-file reads and atomic writes (temp + fsync + rename). */
#include "cwba/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cwba_status cwba_file_read_all(const char *path, size_t max_bytes, uint8_t **out,
                               size_t *out_len, cwba_error *err)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cwba_fail(err, CWBA_E_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return cwba_fail(err, CWBA_E_IO, "%s is not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (max_bytes && len > max_bytes) {
        fclose(f);
        return cwba_fail(err, CWBA_E_FORMAT, "%s is too large (%zu bytes, limit %zu)", path, len,
                         max_bytes);
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory reading %s (%zu bytes)", path, len);
    }
    size_t got = len ? fread(buf, 1, len, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (got != len || bad) {
        free(buf);
        return cwba_fail(err, CWBA_E_IO, "short read on %s", path);
    }
    *out = buf;
    *out_len = len;
    return CWBA_OK;
}

struct cwba_atomic_file {
    FILE *f;
    char *path;
    char *tmp;
};

cwba_status cwba_atomic_open(const char *path, cwba_atomic_file **out, cwba_error *err)
{
    *out = NULL;
    size_t n = strlen(path);
    cwba_atomic_file *a = calloc(1, sizeof *a);
    if (!a) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    a->path = malloc(n + 1);
    a->tmp = malloc(n + 16);
    if (!a->path || !a->tmp) {
        free(a->path);
        free(a->tmp);
        free(a);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    memcpy(a->path, path, n + 1);
    snprintf(a->tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        cwba_status st = cwba_fail(err, CWBA_E_IO, "cannot create %s: %s", path, strerror(errno));
        free(a->path);
        free(a->tmp);
        free(a);
        return st;
    }
    /* mkstemp makes 0600; output files should look like ordinary ones. */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        close(fd);
        unlink(a->tmp);
        free(a->path);
        free(a->tmp);
        free(a);
        return cwba_fail(err, CWBA_E_IO, "cannot open %s for writing", path);
    }
    *out = a;
    return CWBA_OK;
}

cwba_status cwba_atomic_write(cwba_atomic_file *a, const void *data, size_t len, cwba_error *err)
{
    if (len && fwrite(data, 1, len, a->f) != len)
        return cwba_fail(err, CWBA_E_IO, "write to %s failed: %s", a->path, strerror(errno));
    return CWBA_OK;
}

cwba_status cwba_atomic_printf(cwba_atomic_file *a, cwba_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(a->f, fmt, ap);
    va_end(ap);
    if (r < 0) return cwba_fail(err, CWBA_E_IO, "write to %s failed: %s", a->path, strerror(errno));
    return CWBA_OK;
}

static void atomic_free(cwba_atomic_file *a)
{
    free(a->path);
    free(a->tmp);
    free(a);
}

cwba_status cwba_atomic_commit(cwba_atomic_file *a, cwba_error *err)
{
    cwba_status st = CWBA_OK;
    int bad = fflush(a->f) != 0 || ferror(a->f);
    if (!bad) bad = fsync(fileno(a->f)) != 0;
    if (fclose(a->f) != 0) bad = 1;
    if (bad) {
        st = cwba_fail(err, CWBA_E_IO, "write to %s failed: %s", a->path, strerror(errno));
        unlink(a->tmp);
    } else if (rename(a->tmp, a->path) != 0) {
        st = cwba_fail(err, CWBA_E_IO, "cannot rename into %s: %s", a->path, strerror(errno));
        unlink(a->tmp);
    }
    atomic_free(a);
    return st;
}

void cwba_atomic_abort(cwba_atomic_file *a)
{
    if (!a) return;
    fclose(a->f);
    unlink(a->tmp);
    atomic_free(a);
}

cwba_status cwba_write_file_atomic(const char *path, const void *data, size_t len, cwba_error *err)
{
    cwba_atomic_file *a;
    cwba_status st = cwba_atomic_open(path, &a, err);
    if (st) return st;
    st = cwba_atomic_write(a, data, len, err);
    if (st) {
        cwba_atomic_abort(a);
        return st;
    }
    return cwba_atomic_commit(a, err);
}
