/* dist.h over MPI (CWBA_HAVE_MPI), or one process. */
#include "dist.h"

#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifdef CWBA_HAVE_MPI
#include <mpi.h>

static int g_on, g_rank, g_size = 1;

/* A launcher sets these; without one the binary must behave as a plain
 * process (no MPI_Init: it would start a singleton runtime). */
static int under_launcher(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int dist_init(int *argc, char ***argv)
{
    if (!under_launcher()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        cli_error("MPI_Init failed");
        return 1;
    }
    g_on = 1;
    /* Errors come back as codes, so that a dead peer gives our message
     * naming the operation instead of an abort deep in the library. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return 0;
}

void dist_finalize(void)
{
    if (g_on) MPI_Finalize();
    g_on = 0;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

static int mpi_fail(int code, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    cli_error("rank %d of %d: MPI %s failed (%s): a rank has died or cannot be reached; "
              "finished images are kept, rerun to complete",
              g_rank, g_size, what, msg);
    return 1;
}

int dist_gather(const void *mine, size_t len, void *all, const char *what)
{
    if (!g_on) {
        memcpy(all, mine, len);
        return 0;
    }
    if (len > (size_t)1 << 30) {
        cli_error("%s: %zu bytes per rank is too much for one gather", what, len);
        return 1;
    }
    int rc = MPI_Gather(mine, (int)len, MPI_BYTE, all, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, what);
}

int dist_bcast_int(int *v, const char *what)
{
    if (!g_on) return 0;
    int rc = MPI_Bcast(v, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, what);
}

int dist_min_int(int *v, const char *what)
{
    if (!g_on) return 0;
    int in = *v;
    int rc = MPI_Allreduce(&in, v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, what);
}

void dist_abort(int rc)
{
    if (g_on && g_size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    exit(rc);
}

#else /* one process */

int dist_init(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}
void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_gather(const void *mine, size_t len, void *all, const char *what)
{
    (void)what;
    memcpy(all, mine, len);
    return 0;
}
int dist_bcast_int(int *v, const char *what)
{
    (void)v, (void)what;
    return 0;
}
int dist_min_int(int *v, const char *what)
{
    (void)v, (void)what;
    return 0;
}
void dist_abort(int rc) { exit(rc); }

#endif

/* ------------------------------------------------------------------ shards */

int dist_parse_shard(const char *s, int *k, int *n)
{
    char *e1, *e2;
    long kk = strtol(s, &e1, 10);
    if (e1 == s || *e1 != '/') goto bad;
    long nn = strtol(e1 + 1, &e2, 10);
    if (e2 == e1 + 1 || *e2 || nn < 1 || nn > 100000 || kk < 1 || kk > nn) goto bad;
    *k = (int)kk;
    *n = (int)nn;
    return 0;
bad:
    cli_error("--shard: '%s' is not K/N with 1 <= K <= N <= 100000", s);
    return 2;
}

void dist_slice(cli_data *cd, int k, int n)
{
    long lo = (long)cd->count * (k - 1) / n, hi = (long)cd->count * k / n;
    cd->first += (int)(lo * cd->every);
    cd->count = (int)(hi - lo);
}

int dist_shard_dir(const char *dir, int k, int n, char *out, size_t cap)
{
    int len = snprintf(out, cap, "%s.shard-%d-of-%d", dir, k, n);
    if (len < 0 || (size_t)len >= cap - 16) {
        cli_error("--table: '%s' is too long", dir);
        return 2;
    }
    return 0;
}

int dist_shard_mark(const char *shard_dir, int count)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/complete", shard_dir);
    cwba_error err;
    cwba_error_clear(&err);
    cwba_atomic_file *f;
    if (cwba_atomic_open(path, &f, &err)) return cli_fail_status(&err);
    if (cwba_atomic_printf(f, &err, "%d\n", count)) {
        cwba_atomic_abort(f);
        return cli_fail_status(&err);
    }
    if (cwba_atomic_commit(f, &err)) return cli_fail_status(&err);
    return 0;
}
