/* Work split across processes for sweeps that outgrow one machine: the
 * ranks of an MPI job (built with MPI and launched by mpirun), else one
 * process. Only the CLI uses it; the library knows nothing of MPI. Every
 * rank computes its share of the images, rank 0 gathers the results in
 * image order and writes every file and every line of output. */
#ifndef CWBA_DIST_H
#define CWBA_DIST_H

#include <stddef.h>

/* Starts MPI when the binary has it and a launcher started us (else a
 * no-op: one rank). Returns 0, or prints one error line and returns 1. */
int dist_init(int *argc, char ***argv);
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
/* Every rank passes len bytes; rank 0 receives size * len bytes in rank
 * order in all (others may pass NULL). Returns 0, or prints one error line
 * naming the operation and returns 1. */
int dist_gather(const void *mine, size_t len, void *all, const char *what);
/* Rank 0's *v to every rank. */
int dist_bcast_int(int *v, const char *what);
/* The smallest *v over the ranks, to every rank (e.g. "did every rank succeed"). */
int dist_min_int(int *v, const char *what);
/* Ends the whole job after an error on one rank (exit code rc). */
void dist_abort(int rc);


/* ---- array jobs without MPI: --shard K/N, the K-th (1..N) of N contiguous
 * slices of the selected images; the parts go to DIR.shard-K-of-N and
 * `cwba merge` joins them in image order. */
struct cli_data;
/* Parses "K/N" (1 <= K <= N <= 100000); prints and returns 2 when bad. */
int dist_parse_shard(const char *s, int *k, int *n);
/* Narrows cd's selection to slice k of n. */
void dist_slice(struct cli_data *cd, int k, int n);
/* DIR.shard-K-of-N; prints and returns 2 when it does not fit. */
int dist_shard_dir(const char *dir, int k, int n, char *out, size_t cap);
/* The marker a finished shard leaves in its directory (its image count). */
int dist_shard_mark(const char *shard_dir, int count);

#endif
