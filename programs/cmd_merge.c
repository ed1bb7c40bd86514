/* cwba merge: joins the parts of an array job (cwba calibrate --shard K/N,
 * in DIR.shard-K-of-N) into DIR, exactly the table one process writes. */
#include "dist.h"
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static const cli_optdef defs[] = {
    {"table", 1, "the table directory the shards were made for (DIR.shard-K-of-N -> DIR)"},
    {"shards", 1, "N, the shard count of the job"},
    {"help", 0, "show this help"},
};

/* A shard's image count from its marker; prints and returns 1 when it is
 * missing (never run, or not finished). */
static int shard_count(const char *sdir, int k, int n, int *count)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/complete", sdir);
    FILE *f = fopen(path, "r");
    int ok = f && fscanf(f, "%d", count) == 1 && *count >= 0;
    if (f) fclose(f);
    if (!ok) {
        cli_error("merge: shard %d of %d (%s) is missing or unfinished: run (or rerun) it with "
                  "--shard %d/%d; nothing was written",
                  k, n, sdir, k, n);
        return 1;
    }
    return 0;
}

int cmd_merge(int argc, char **argv)
{
    cli_opts o;
    static const char *const req[] = {"table", "shards", NULL};
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "merge", "--table DIR --shards N",
                       req);
    if (rc != CLI_GO) return rc;
    rc = 0;
    long n;
    if (!cli_get_int(&o, "shards", 0, 1, 100000, &n)) return 2;
    const char *dir = cli_get(&o, "table");
    cwba_error err;
    cwba_error_clear(&err);
    /* Everything is read and checked before the first file is written. */
    cwba_table out[6];
    memset(out, 0, sizeof out);
    int C = 0;
    for (int k = 1; k <= n && !rc; k++) {
        char sdir[4096], paths[6][4096];
        int count = 0;
        if ((rc = dist_shard_dir(dir, k, (int)n, sdir, sizeof sdir)) ||
            (rc = shard_count(sdir, k, (int)n, &count)) || (rc = cli_table_paths(sdir, paths)))
            break;
        if (count == 0) continue;
        for (int b = 0; b < 6 && !rc; b++) {
            cwba_table t;
            if (cwba_table_read(paths[b], C, &t, &err)) {
                rc = cli_fail_status(&err);
                break;
            }
            if (t.rows != count) {
                cli_error("merge: %s holds %d rows but shard %d of %ld has %d images: rerun it "
                          "with --shard %d/%ld; nothing was written",
                          paths[b], t.rows, k, n, count, k, n);
                rc = 1;
            } else if (out[b].C && out[b].C != t.C) {
                cli_error("merge: %s has %d columns, the shards before it %d", paths[b], t.C,
                          out[b].C);
                rc = 1;
            } else {
                int *d = realloc(out[b].data, sizeof(int) * (size_t)t.C * (out[b].rows + t.rows));
                if (!d) {
                    cli_error("out of memory");
                    rc = 1;
                } else {
                    memcpy(d + (size_t)t.C * out[b].rows, t.data, sizeof(int) * (size_t)t.C * t.rows);
                    out[b].data = d;
                    out[b].rows += t.rows;
                    out[b].C = C = t.C;
                }
            }
            cwba_table_free(&t);
        }
    }
    char paths[6][4096];
    if (!rc && C == 0) {
        cli_error("merge: the %ld shards of %s hold no images", n, dir);
        rc = 1;
    }
    if (!rc && !(rc = cli_table_paths(dir, paths)) && !(rc = cli_mkdirs(dir))) {
        for (int b = 0; b < 6 && !rc; b++) rc = engine_write_rows(paths[b], &out[b], out[b].rows);
        if (!rc) printf("table written: %s/{2..7}.csv (%d rows each, %ld shards)\n", dir,
                        out[0].rows, n);
    }
    engine_free_tables(out);
    return rc;
}
