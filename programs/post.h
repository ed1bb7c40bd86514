/* The edge client of `cwba serve`: `cwba encode --post URL` sends each stream
 * as it is made (libcurl, one kept-alive connection) and prints the answers. */
#ifndef CWBA_POST_H
#define CWBA_POST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct post_client post_client;

/* token_file, cacert may be NULL. retries: further attempts after a 503, a
 * 502/504 from a proxy or a connection error, with exponential backoff from
 * 100 ms (or the server's Retry-After) up to 5 s. Prints and returns non-zero
 * on failure. */
int post_client_open(const char *url, const char *token_file, const char *cacert, int retries,
                     post_client **out);
/* POSTs one stream (len bytes; what names it in errors) and writes the
 * answer's JSON line to out. Prints one error line and returns 1 when the
 * server refuses it or cannot be reached after every retry. */
int post_client_send(post_client *pc, const uint8_t *buf, size_t len, const char *what, FILE *out);
void post_client_close(post_client *pc); /* NULL accepted */

#endif
