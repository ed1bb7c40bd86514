/* cwba serve: the cloud half as an HTTP service (libmicrohttpd). The model is
 * loaded once; POST /v1/decode takes one .cwb stream and answers the JSON
 * object `cwba decode --json` prints for a file (cloud.c makes both). One
 * thread per connection reads and entropy-decodes its stream; the batcher
 * (serve_queue.c) runs the back end on what is queued at once. docs/serve.md
 * lists the endpoints, status codes and metrics. */
#include "cli.h"
#include "cloud.h"
#include "serve_queue.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

static const cli_optdef serve_defs[] = {
    CLI_MODEL_OPTIONS,
    {"split", 1, "the split point the streams come from (see cwba layers)"},
    {"listen", 1, "HOST:PORT to listen on (default 127.0.0.1:8080; port 0: any free port)"},
    {"port-file", 1, "write the port listened on to this file once ready"},
    {"max-body", 1, "largest accepted stream in bytes (default 4194304)"},
    {"max-batch", 1, "most streams in one back-end batch (default 32)"},
    {"batch-wait-ms", 1, "longest wait for a fuller batch, milliseconds (default 2)"},
    {"queue", 1, "most streams waiting for the back end before 503 (default 256)"},
    {"connections", 1, "most open connections (default 256)"},
    {"timeout", 1, "seconds a connection may stay idle or slow (default 10)"},
    {"token-file", 1, "require 'Authorization: Bearer <the file's token>'"},
    {"tls-cert", 1, "PEM certificate: serve HTTPS (with --tls-key)"},
    {"tls-key", 1, "PEM private key of --tls-cert"},
    {"insecure-public", 0, "allow a non-loopback address without --token-file"},
    {"quiet", 0, "no log line per request"},
    {"threads", 1, "back-end worker threads (default 2)"},
    {"help", 0, "show this help"},
};

/* ------------------------------------------------------------------ metrics */

static const int metric_codes[] = {200, 400, 401, 404, 405, 413, 422, 500, 503};
#define NCODES ((int)(sizeof metric_codes / sizeof metric_codes[0]))
static const double lat_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   5};
#define NLAT ((int)(sizeof lat_bounds / sizeof lat_bounds[0]))
static const int batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
#define NBATCH ((int)(sizeof batch_bounds / sizeof batch_bounds[0]))

typedef struct metrics {
    pthread_mutex_t mu;
    unsigned long long requests[NCODES + 1]; /* the last: any other code */
    unsigned long long bytes_in;
    unsigned long long lat_buckets[NLAT], lat_count;
    double lat_sum;
    unsigned long long batch_buckets[NBATCH], batch_count, batch_sum;
} metrics;

/* ------------------------------------------------------------------- server */

typedef struct server {
    cwba_model *model;
    cwba_arch arch;
    int split, K;
    const char *split_name;
    serve_queue *queue;
    size_t max_body;
    char token_sha[65]; /* sha256 of the token; "" when no token is required */
    int quiet;
    atomic_int draining; /* set once, read by the connection threads */
    pthread_mutex_t mu;
    int connections, requests; /* open now; requests between first byte and completion */
    metrics m;
} server;

typedef enum route { ROUTE_DECODE, ROUTE_HEALTH, ROUTE_METRICS, ROUTE_OTHER } route;

/* One request's state (MHD's con_cls). */
typedef struct request {
    route route;
    uint8_t *body;
    size_t len, cap;
    int arriving;  /* counted in serve_queue_arriving */
    int responded; /* a response is queued */
    int closed;    /* the connection was closed instead (code says why) */
    int code;
    int batch;     /* the batch it ran in (decode, 200) */
    double t0;
} request;

static int backend_run(void *ctx, const float *feat, int n, float *logits, cwba_error *err)
{
    server *s = ctx;
    if (cwba_model_forward_back(s->model, s->split, feat, n, logits, err)) return 1;
    pthread_mutex_lock(&s->m.mu);
    for (int b = 0; b < NBATCH; b++)
        if (n <= batch_bounds[b]) s->m.batch_buckets[b]++;
    s->m.batch_count++;
    s->m.batch_sum += (unsigned long long)n;
    pthread_mutex_unlock(&s->m.mu);
    return 0;
}

static void metrics_request(server *s, int code, double seconds, int decode)
{
    pthread_mutex_lock(&s->m.mu);
    int i = 0;
    while (i < NCODES && metric_codes[i] != code) i++;
    s->m.requests[i]++;
    if (decode) {
        for (int b = 0; b < NLAT; b++)
            if (seconds <= lat_bounds[b]) s->m.lat_buckets[b]++;
        s->m.lat_count++;
        s->m.lat_sum += seconds;
    }
    pthread_mutex_unlock(&s->m.mu);
}

/* The Prometheus text exposition of the counters (malloc'd, caller frees). */
static char *metrics_text(server *s, size_t *len)
{
    size_t cap = 16384, o = 0;
    char *t = malloc(cap);
    if (!t) return NULL;
#define EMIT(...) (o += (size_t)snprintf(t + o, o < cap ? cap - o : 0, __VA_ARGS__))
    int depth = serve_queue_depth(s->queue);
    pthread_mutex_lock(&s->m.mu);
    metrics m = s->m;
    int reqs = s->requests;
    pthread_mutex_unlock(&s->m.mu);
    EMIT("# HELP cwba_requests_total HTTP requests answered, by status code.\n"
         "# TYPE cwba_requests_total counter\n");
    for (int i = 0; i < NCODES; i++)
        EMIT("cwba_requests_total{code=\"%d\"} %llu\n", metric_codes[i], m.requests[i]);
    EMIT("cwba_requests_total{code=\"other\"} %llu\n", m.requests[NCODES]);
    EMIT("# HELP cwba_request_bytes_total Request body bytes received.\n"
         "# TYPE cwba_request_bytes_total counter\ncwba_request_bytes_total %llu\n",
         m.bytes_in);
    EMIT("# HELP cwba_decode_duration_seconds Time from a decode request's first byte to its "
         "answer.\n# TYPE cwba_decode_duration_seconds histogram\n");
    for (int b = 0; b < NLAT; b++)
        EMIT("cwba_decode_duration_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[b],
             m.lat_buckets[b]);
    EMIT("cwba_decode_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
         "cwba_decode_duration_seconds_sum %.6f\ncwba_decode_duration_seconds_count %llu\n",
         m.lat_count, m.lat_sum, m.lat_count);
    EMIT("# HELP cwba_batch_size Streams per back-end batch.\n# TYPE cwba_batch_size histogram\n");
    for (int b = 0; b < NBATCH; b++)
        EMIT("cwba_batch_size_bucket{le=\"%d\"} %llu\n", batch_bounds[b], m.batch_buckets[b]);
    EMIT("cwba_batch_size_bucket{le=\"+Inf\"} %llu\ncwba_batch_size_sum %llu\n"
         "cwba_batch_size_count %llu\n",
         m.batch_count, m.batch_sum, m.batch_count);
    EMIT("# HELP cwba_queue_depth Streams waiting for the back end.\n"
         "# TYPE cwba_queue_depth gauge\ncwba_queue_depth %d\n",
         depth);
    EMIT("# HELP cwba_requests_in_flight Requests being received or processed.\n"
         "# TYPE cwba_requests_in_flight gauge\ncwba_requests_in_flight %d\n",
         reqs);
    EMIT("# HELP cwba_model_info The model and split served.\n# TYPE cwba_model_info gauge\n"
         "cwba_model_info{model=\"%s\",split=\"%s\",classes=\"%d\"} 1\n",
         cwba_arch_name(s->arch), s->split_name, s->K);
#undef EMIT
    if (o >= cap) { /* cannot happen with these few lines; never send a cut text */
        free(t);
        return NULL;
    }
    *len = o;
    return t;
}

/* -------------------------------------------------------------- responses */

static enum MHD_Result respond(server *s, struct MHD_Connection *c, request *r, int code,
                               const char *type, const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (code == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (code == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (code == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->route == ROUTE_DECODE ? "POST" : "GET, HEAD");
    /* while draining every answer closes its connection, so that keep-alive
     * clients reconnect and meet the closed socket rather than a cut request */
    if (s->draining || code == 413)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    r->responded = 1;
    r->code = code;
    return ok;
}

/* {"error": msg} */
static enum MHD_Result respond_error(server *s, struct MHD_Connection *c, request *r, int code,
                                     const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
static enum MHD_Result respond_error(server *s, struct MHD_Connection *c, request *r, int code,
                                     const char *fmt, ...)
{
    char msg[600], esc[3700], body[3800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cloud_json_escape(esc, sizeof esc, msg) < 0) snprintf(esc, sizeof esc, "error");
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", esc);
    return respond(s, c, r, code, "application/json", body, (size_t)n);
}

/* A chunked body (no Content-Length) past --max-body. MHD 0.9.75 refuses to
 * queue a response while a body is arriving, and reading the rest is what the
 * limit prevents: so the 413 is written to the connection directly (through
 * its TLS session under HTTPS; nothing else writes on this connection's
 * thread), and the caller then has MHD close it, the rest unread (past a
 * short lingering close). */
static void send_413_now(server *s, struct MHD_Connection *c)
{
    char body[160], msg[400];
    int bl = snprintf(body, sizeof body, "{\"error\":\"the body is over the limit of %zu bytes\"}\n",
                      s->max_body);
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                     bl, body);
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!fi) return;
    int fd = fi->connect_fd;
    if (ti && ti->tls_session)
        gnutls_record_send((gnutls_session_t)ti->tls_session, msg, (size_t)n);
    else /* a few hundred bytes into an idle socket's send buffer: one send */
        (void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    /* A short lingering close: closing with the client's bytes unread sends
     * a reset, which can destroy the answer before the client reads it. So
     * discard what arrives until the client, having seen the 413, closes;
     * bounded (1 s, 1 MiB), a client that never reads is cut off after it. */
    char scratch[16384];
    size_t drained = 0;
    double end = cwba_now() + 1.0;
    while (drained < (1u << 20)) {
        int left_ms = (int)((end - cwba_now()) * 1e3);
        if (left_ms <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left_ms) <= 0) break;
        ssize_t k = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (k <= 0 && !(k < 0 && (errno == EAGAIN || errno == EINTR))) break;
        if (k > 0) drained += (size_t)k;
    }
}

/* Constant time in the token and in what was sent: both are hashed first and
 * the digests compared without an early exit. */
static int authorized(const server *s, struct MHD_Connection *c)
{
    if (!s->token_sha[0]) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return 0;
    char got[65];
    cwba_sha256_hex(h + 7, strlen(h + 7), got);
    unsigned diff = 0;
    for (int i = 0; i < 64; i++) diff |= (unsigned)(got[i] ^ s->token_sha[i]);
    return diff == 0;
}

static enum MHD_Result decode_answer(server *s, struct MHD_Connection *c, request *r)
{
    cwba_stream_info si;
    cwba_error err;
    cwba_error_clear(&err);
    int split;
    float *xhat = NULL;
    cloud_outcome oc = cloud_decode_feature(s->model, s->arch, r->body, r->len, s->split, &si,
                                            &split, &xhat, &err);
    if (oc != CLOUD_OK) {
        serve_queue_arriving(s->queue, -1);
        r->arriving = 0;
        int code = oc == CLOUD_BAD_STREAM ? 400 : oc == CLOUD_MISMATCH ? 422 : 500;
        return respond_error(s, c, r, code, "%s", err.msg);
    }
    float *lg = malloc(sizeof(float) * (size_t)s->K);
    serve_job job;
    memset(&job, 0, sizeof job);
    job.feat = xhat;
    job.logits = lg;
    int queued = -2;
    if (lg) {
        queued = serve_queue_run(s->queue, &job); /* takes it off the arriving count */
    } else {
        serve_queue_arriving(s->queue, -1);
    }
    r->arriving = 0;
    free(xhat);
    enum MHD_Result ok;
    if (queued == -2) {
        ok = respond_error(s, c, r, 500, "out of memory");
    } else if (queued < 0) {
        ok = respond_error(s, c, r, 503, "the decode queue is full; retry later");
    } else if (job.status) {
        ok = respond_error(s, c, r, 500, "%s", job.err.msg);
    } else {
        char body[4096];
        int n = cloud_result_json(body, sizeof body - 1, NULL, &si, r->len, lg, s->K);
        r->batch = job.batch;
        if (n < 0) {
            ok = respond_error(s, c, r, 500, "answer too long");
        } else {
            body[n++] = '\n';
            ok = respond(s, c, r, 200, "application/json", body, (size_t)n);
        }
    }
    free(lg);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    server *s = cls;
    request *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        r->t0 = cwba_now();
        pthread_mutex_lock(&s->mu);
        s->requests++;
        pthread_mutex_unlock(&s->mu);
        r->route = !strcmp(url, "/v1/decode") ? ROUTE_DECODE
                   : !strcmp(url, "/healthz") ? ROUTE_HEALTH
                   : !strcmp(url, "/metrics") ? ROUTE_METRICS
                                               : ROUTE_OTHER;
        int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        /* Refusals of a decode request go out before its body is read (MHD
         * then closes the connection); GET endpoints answer on the next call,
         * which keeps their connection alive. */
        if (r->route == ROUTE_OTHER) return respond_error(s, c, r, 404, "no such endpoint: %s", url);
        if (r->route == ROUTE_DECODE ? strcmp(method, "POST") != 0 : !is_get)
            return respond_error(s, c, r, 405, "%s does not take %s", url, method);
        if (r->route != ROUTE_DECODE) return MHD_YES;
        if (!authorized(s, c))
            return respond_error(s, c, r, 401, "missing or wrong bearer token");
        if (s->draining) return respond_error(s, c, r, 503, "the server is shutting down");
        /* refuse an oversized body from its header, before any of it is read */
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        long long declared = cl ? strtoll(cl, NULL, 10) : -1;
        if (declared > (long long)s->max_body)
            return respond_error(s, c, r, 413, "the body (%lld bytes) is over the limit of %zu",
                                 declared, s->max_body);
        r->cap = declared > 0 ? (size_t)declared : 4096;
        if (!(r->body = malloc(r->cap))) return respond_error(s, c, r, 500, "out of memory");
        serve_queue_arriving(s->queue, +1);
        r->arriving = 1;
        return MHD_YES;
    }
    if (r->responded) { /* the rest of a refused upload is discarded unread */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->route == ROUTE_HEALTH) {
        static const char ok[] = "{\"status\":\"ok\"}\n";
        return respond(s, c, r, 200, "application/json", ok, sizeof ok - 1);
    }
    if (r->route == ROUTE_METRICS) {
        if (!authorized(s, c))
            return respond_error(s, c, r, 401, "missing or wrong bearer token");
        size_t len;
        char *t = metrics_text(s, &len);
        if (!t) return respond_error(s, c, r, 500, "out of memory");
        enum MHD_Result ok = respond(s, c, r, 200, "text/plain; version=0.0.4", t, len);
        free(t);
        return ok;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        pthread_mutex_lock(&s->m.mu);
        s->m.bytes_in += n;
        pthread_mutex_unlock(&s->m.mu);
        if (r->len + n > s->max_body) {
            /* A chunked body (no Content-Length) past the limit: answered 413
             * at once and the connection closed (send_413_now). */
            send_413_now(s, c);
            serve_queue_arriving(s->queue, -1);
            r->arriving = 0;
            r->code = 413;
            r->closed = 1;
            return MHD_NO;
        }
        if (r->len + n > r->cap) {
            size_t nc = r->cap * 2 > r->len + n ? r->cap * 2 : r->len + n;
            if (nc > s->max_body) nc = s->max_body;
            uint8_t *nb = realloc(r->body, nc);
            if (!nb) return MHD_NO;
            r->body = nb;
            r->cap = nc;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }
    return decode_answer(s, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    double dt = cwba_now() - r->t0;
    if (r->arriving) serve_queue_arriving(s->queue, -1);
    if (r->responded || r->closed) metrics_request(s, r->code, dt, r->route == ROUTE_DECODE);
    if (!s->quiet) {
        char host[INET6_ADDRSTRLEN] = "?";
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, host,
                          sizeof host);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                          host, sizeof host);
        }
        static const char *const names[] = {"/v1/decode", "/healthz", "/metrics", "other"};
        if (r->closed)
            fprintf(stderr, "cwba serve: %s %s %d %zu bytes %.2f ms (body over --max-body: "
                    "connection closed)\n", host, names[r->route], r->code, r->len, dt * 1e3);
        else if (r->responded)
            fprintf(stderr, "cwba serve: %s %s %d %zu bytes %.2f ms batch %d%s\n", host,
                    names[r->route], r->code, r->len, dt * 1e3, r->batch,
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection lost)");
        else
            fprintf(stderr, "cwba serve: %s %s - %zu bytes %.2f ms (connection lost before "
                    "an answer)\n", host, names[r->route], r->len, dt * 1e3);
    }
    free(r->body);
    free(r);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    s->requests--;
    pthread_mutex_unlock(&s->mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)c, (void)socket_context;
    server *s = cls;
    pthread_mutex_lock(&s->mu);
    s->connections += toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
    pthread_mutex_unlock(&s->mu);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    const server *s = cls;
    if (s->quiet) return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    /* our own MHD_NO (a body over the limit): the request's line says why */
    if (!strncmp(line, "Application reported internal error", 35)) return;
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    fprintf(stderr, "cwba serve: %s\n", line);
}

/* ------------------------------------------------------------ set-up */

/* HOST:PORT or [V6]:PORT -> a listening socket; *loopback says whether every
 * address it accepts on is a loopback one. Prints and returns -2 for a bad
 * spec, -1 when the socket cannot be had. */
static int listen_on(const char *spec, int *loopback, int *port)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof host || !colon[1]) {
        cli_error("--listen: '%s' is not HOST:PORT", spec);
        return -2;
    }
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']') {
            cli_error("--listen: '%s' is not [IPV6]:PORT", spec);
            return -2;
        }
        memmove(host, host + 1, n - 2);
        host[n - 2] = 0;
    }
    long p;
    if (!cwba_parse_int(colon + 1, &p) || p < 0 || p > 65535) {
        cli_error("--listen: port '%s' is not 0..65535", colon + 1);
        return -2;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int e = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (e || !ai) {
        cli_error("--listen: cannot resolve '%s': %s", host, gai_strerror(e));
        return -2;
    }
    const struct sockaddr *sa = ai->ai_addr;
    if (sa->sa_family == AF_INET)
        *loopback = (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >>
                     24) == 127;
    else
        *loopback = sa->sa_family == AF_INET6 &&
                    IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, sa, ai->ai_addrlen) || listen(fd, 128)) {
        cli_error("--listen %s: %s", spec, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

/* A small text file without its trailing white space (malloc'd). */
static char *read_text(const char *opt, const char *path, size_t max)
{
    cwba_error err;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (cwba_file_read_all(path, max, &buf, &len, &err)) {
        cli_error("--%s: %s", opt, err.msg);
        return NULL;
    }
    char *t = realloc(buf, len + 1);
    if (!t) {
        free(buf);
        cli_error("out of memory");
        return NULL;
    }
    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' ' ||
                   t[len - 1] == '\t'))
        len--;
    t[len] = 0;
    return t;
}

/* After SIGTERM/SIGINT: stop accepting, hand the connections already waiting
 * in the listen backlog to MHD (they are answered, not reset), let every
 * request in progress finish, then stop. */
static void drain(server *s, struct MHD_Daemon *d, int timeout_s)
{
    s->draining = 1;
    MHD_socket lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) {
        int fl = fcntl(lfd, F_GETFL);
        fcntl(lfd, F_SETFL, fl | O_NONBLOCK);
        for (;;) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            int cfd = accept(lfd, (struct sockaddr *)&ss, &sl);
            if (cfd < 0) break;
            MHD_add_connection(d, cfd, (struct sockaddr *)&ss, sl);
        }
        shutdown(lfd, SHUT_RDWR); /* refuse from now on; closed after MHD stops */
    }
    /* Idle keep-alive connections are let go once no request has been in
     * progress for a moment; a slow one gets at most the connection timeout. */
    double deadline = cwba_now() + timeout_s + 1, quiet_since = -1;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int conns = s->connections, reqs = s->requests;
        pthread_mutex_unlock(&s->mu);
        double now = cwba_now();
        if (conns == 0 || now > deadline) break;
        if (reqs == 0) {
            if (quiet_since < 0) quiet_since = now;
            if (now - quiet_since > 0.2) break;
        } else {
            quiet_since = -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
}

int cmd_serve(int argc, char **argv)
{
    cli_opts o;
    static const char *const req[] = {"model", "split", NULL};
    int rc = cli_begin(&o, serve_defs, CLI_NDEFS(serve_defs), argc, argv, "serve",
                       "--model M --split P [--listen HOST:PORT] [options]", req);
    if (rc != CLI_GO) return rc;
    long max_body, max_batch, wait_ms, qcap, conns, timeout, threads;
    if (!cli_get_int(&o, "max-body", 4L << 20, 16, 1L << 30, &max_body) ||
        !cli_get_int(&o, "max-batch", 32, 1, 1024, &max_batch) ||
        !cli_get_int(&o, "batch-wait-ms", 2, 0, 10000, &wait_ms) ||
        !cli_get_int(&o, "queue", 256, 1, 1L << 20, &qcap) ||
        !cli_get_int(&o, "connections", 256, 1, 65536, &conns) ||
        !cli_get_int(&o, "timeout", 10, 1, 3600, &timeout) ||
        !cli_get_int(&o, "threads", 2, 1, 256, &threads))
        return 2;
    if (cli_has(&o, "tls-cert") != cli_has(&o, "tls-key")) {
        cli_error("--tls-cert and --tls-key go together");
        return 2;
    }
    int tls = cli_has(&o, "tls-cert");
    if (tls && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        cli_error("this libmicrohttpd was built without TLS support");
        return 1;
    }
    server s;
    memset(&s, 0, sizeof s);
    s.quiet = cli_has(&o, "quiet");
    s.max_body = (size_t)max_body;
    if (cli_has(&o, "token-file")) {
        char *tok = read_text("token-file", cli_get(&o, "token-file"), 4096);
        if (!tok) return 1;
        if (!tok[0] || strpbrk(tok, " \t\r\n")) {
            free(tok);
            cli_error("--token-file: the token must be one non-empty word");
            return 2;
        }
        cwba_sha256_hex(tok, strlen(tok), s.token_sha);
        free(tok);
    }
    char *cert = NULL, *key = NULL;
    if (tls && (!(cert = read_text("tls-cert", cli_get(&o, "tls-cert"), 1 << 20)) ||
                !(key = read_text("tls-key", cli_get(&o, "tls-key"), 1 << 20)))) {
        free(cert);
        return 1;
    }
    int loopback = 0, port = 0;
    const char *listen_spec = cli_has(&o, "listen") ? cli_get(&o, "listen") : "127.0.0.1:8080";
    /* The socket first, so that a bad --listen fails before the model loads;
     * nothing answers on it (not even /healthz) until the model is loaded and
     * MHD starts: early clients wait in the backlog. */
    int lfd = listen_on(listen_spec, &loopback, &port);
    if (lfd >= 0 && !loopback && !s.token_sha[0] && !cli_has(&o, "insecure-public")) {
        cli_error("--listen %s is not a loopback address: give --token-file (or, knowingly, "
                  "--insecure-public)",
                  listen_spec);
        close(lfd);
        lfd = -2;
    }
    if (lfd < 0) {
        free(cert), free(key);
        return lfd == -2 ? 2 : 1;
    }
    cwba_set_threads((int)threads);
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) {
        close(lfd);
        free(cert), free(key);
        return rc;
    }
    cwba_error err;
    cwba_error_clear(&err);
    int C, H, W;
    if (cwba_model_find_split(cm.model, cli_get(&o, "split"), &s.split, &err)) {
        close(lfd);
        free(cert), free(key);
        cli_model_close(&cm);
        return cli_fail_status(&err);
    }
    cwba_model_split_shape(cm.model, s.split, &C, &H, &W);
    s.model = cm.model;
    s.arch = cm.arch;
    s.K = cwba_model_num_classes(cm.model);
    s.split_name = cwba_model_split_name(cm.model, s.split);
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&s.m.mu, NULL);
    /* SIGTERM/SIGINT are taken by sigwait below: blocked before any thread
     * starts, so every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!rc && serve_queue_create((size_t)C * H * W, s.K, (int)max_batch, wait_ms / 1000.0,
                                  (int)qcap, backend_run, &s, &s.queue, &err))
        rc = cli_fail_status(&err);
    struct MHD_Daemon *d = NULL;
    if (!rc) {
        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_ITC | MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0);
        struct MHD_OptionItem tls_opts[] = {
            {MHD_OPTION_HTTPS_MEM_CERT, 0, cert},
            {MHD_OPTION_HTTPS_MEM_KEY, 0, key},
            {MHD_OPTION_END, 0, NULL},
        };
        d = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, &s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &s,
            MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)conns, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, &s, MHD_OPTION_ARRAY, tls ? tls_opts : tls_opts + 2, MHD_OPTION_END);
        if (!d) {
            cli_error("cannot start the HTTP server on %s%s", listen_spec,
                      tls ? " (check --tls-cert and --tls-key)" : "");
            rc = 1;
        }
    }
    if (!rc && cli_has(&o, "port-file")) {
        char txt[16];
        int n = snprintf(txt, sizeof txt, "%d\n", port);
        if (cwba_write_file_atomic(cli_get(&o, "port-file"), txt, (size_t)n, &err))
            rc = cli_fail_status(&err);
    }
    if (!rc) {
        fprintf(stderr, "cwba serve: %s %s (%dx%dx%d -> %d classes) on %s://%s (port %d)\n",
                cwba_arch_name(cm.arch), s.split_name, C, H, W, s.K, tls ? "https" : "http",
                listen_spec, port);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "cwba serve: %s: finishing the requests in progress\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
        drain(&s, d, (int)timeout);
        fprintf(stderr, "cwba serve: stopped\n");
        d = NULL;
        lfd = -1;
    }
    if (d) MHD_stop_daemon(d);
    if (lfd >= 0) close(lfd);
    serve_queue_free(s.queue);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&s.m.mu);
    free(cert), free(key);
    cli_model_close(&cm);
    return rc;
}
