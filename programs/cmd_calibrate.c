/* cwba calibrate: the quantization interval table (the original's --flag 0). */
#include "dist.h"
#include "engine.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const cli_optdef defs[] = {
    CLI_MODEL_OPTIONS,
    {"split", 1, "split point (see cwba layers)"},
    {"quant", 1, "uniform | log"},
    {"table", 1, "output directory: DIR/2.csv .. DIR/7.csv"},
    {"data", 1, "calibration images (default: fmnist train set, so that test images stay unseen)"},
    CLI_SELECT_OPTIONS,
    {"every", 1, "take every K-th image"},
    {"threads", 1, "worker threads (default 2); results do not depend on it"},
    {"shard", 1, "K/N: calibrate only the K-th of N slices of the images into DIR.shard-K-of-N "
                 "(array jobs; cwba merge joins them)"},
    {"overwrite", 0, "start the table afresh instead of resuming"},
    {"help", 0, "show this help"},
};

/* mkdir -p for one or two levels; fine for table directories. */
int cli_mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        cli_error("bad directory name '%s'", path);
        return 2;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            cli_error("cannot create directory %s: %s", buf, strerror(errno));
            return 1;
        }
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        cli_error("cannot create directory %s: %s", buf, strerror(errno));
        return 1;
    }
    return 0;
}

int cmd_calibrate(int argc, char **argv)
{
    cli_opts o;
    static const char *const req[] = {"split", "quant", "table", NULL};
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "calibrate",
                       "--model M --split P --quant uniform|log --table DIR [options]", req);
    if (rc != CLI_GO) return rc;
    cwba_error err;
    cwba_error_clear(&err);
    cwba_quant q;
    if (cwba_quant_parse(cli_get(&o, "quant"), &q, &err)) return cli_fail_status(&err);
    if (q == CWBA_QUANT_DOREFA) {
        cli_error("calibrate: --quant must be uniform or log (DoReFa has no interval table)");
        return 2;
    }
    long threads;
    if (!cli_get_int(&o, "threads", 2, 1, 256, &threads)) return 2;
    cwba_set_threads((int)threads);
    const char *dir = cli_get(&o, "table");
    int shard_k = 0, shard_n = 0;
    char shard_dir[4096];
    if (cli_has(&o, "shard")) {
        if ((rc = dist_parse_shard(cli_get(&o, "shard"), &shard_k, &shard_n)) ||
            (rc = dist_shard_dir(dir, shard_k, shard_n, shard_dir, sizeof shard_dir)))
            return rc;
        if (dist_size() > 1) {
            cli_error("--shard and mpirun are two ways of splitting the work: use one");
            return 2;
        }
        dir = shard_dir;
    }
    char paths[6][4096];
    if ((rc = cli_table_paths(dir, paths))) return rc;
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    int split;
    if (cwba_model_find_split(cm.model, cli_get(&o, "split"), &split, &err)) {
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cli_data cd;
    cli_opts o2 = o;
    /* Default calibration data: the training split. */
    if (!cli_has(&o, "data")) cli_set(&o2, "data", "fmnist:/usr/share/datasets/fashion-mnist:train");
    if ((rc = cli_data_open(&o2, &cm, &cd))) {
        cli_model_close(&cm);
        return rc;
    }
    if (shard_n > 0) dist_slice(&cd, shard_k, shard_n);
    if ((rc = dist_rank() == 0 ? cli_mkdirs(dir) : 0) == 0)
        rc = engine_calibrate(cm.model, split, &cd, q, paths, cli_has(&o, "overwrite"), 0);
    /* A finished shard says so, for cwba merge (a rerun finds its rows and skips it). */
    if (rc == 0 && shard_n > 0) rc = dist_shard_mark(dir, cd.count);
    if (rc == 0) printf("table written: %s/{2..7}.csv (%d rows each)\n", dir, cd.count);
    cli_data_close(&cd);
    cli_model_close(&cm);
    return rc;
}
