/* cwba serve end to end, on loopback: the server binary ($CWBA_BIN) is started
 * on port 0 (it writes the port it got to a file, so parallel tests never
 * collide) and driven with libcurl and, for the misbehaving clients, raw
 * sockets. Answers must equal `cwba decode --json`; every refusal has its
 * status; thousands of mutated bodies leave the server healthy; a client
 * vanishing mid-upload costs nothing; SIGTERM under load loses no request. */
#include "testutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cwba.h"

/* ------------------------------------------------------------ fixtures */

#define NSTREAMS 12
static char dir[4096];                        /* the group's scratch directory */
static char stream_path[NSTREAMS][4200];
static uint8_t *stream_buf[NSTREAMS];
static size_t stream_len[NSTREAMS];
static char expected[NSTREAMS][1024];         /* decode --json without "file", + "\n" */
static uint8_t *layer2_buf, *alexnet_buf;
static size_t layer2_len, alexnet_len;
static char bad_magic_msg[600];               /* decode's message for bad_magic.cwb */

static const char *bin(void)
{
    const char *b = getenv("CWBA_BIN");
    assert_non_null(b);
    return b;
}

static void run_ok(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0) fail_msg("command failed (%d): %s", rc, cmd);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *buf = NULL;
    cwba_error err;
    if (cwba_file_read_all(path, 1 << 26, &buf, len, &err)) fail_msg("%s", err.msg);
    return buf;
}

static int group_setup(void **state)
{
    (void)state;
    if (!tu_fmnist_dir()) return 0; /* every test skips */
    char *d = tu_tmpdir();
    snprintf(dir, sizeof dir, "%s", d);
    free(d);
    char cmd[16384];
    static const char *const q[3] = {"uniform", "log", "dorefa"};
    static const int bits[3] = {3, 4, 2};
    int k = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "'%s' encode --model resnet18 --split layer3 --quant %s --bits %d --limit 4 "
                 "--out '%s/%s' >/dev/null",
                 bin(), q[i], bits[i], dir, q[i]);
        run_ok(cmd);
        for (int j = 0; j < 4; j++, k++)
            snprintf(stream_path[k], sizeof stream_path[k], "%s/%s/%06d.cwb", dir, q[i], j);
    }
    snprintf(cmd, sizeof cmd,
             "'%s' encode --model resnet18 --split layer2 --quant uniform --bits 3 --limit 1 "
             "--out '%s/l2' >/dev/null",
             bin(), dir);
    run_ok(cmd);
    char p[4300];
    snprintf(p, sizeof p, "%s/l2/000000.cwb", dir);
    layer2_buf = slurp(p, &layer2_len);
    alexnet_buf = slurp(tu_path("tests/data/codec/wrong_model.cwb"), &alexnet_len);
    /* the expected answers: decode --json, one line per file */
    size_t o = (size_t)snprintf(cmd, sizeof cmd, "'%s' decode --model resnet18 --json", bin());
    for (int i = 0; i < NSTREAMS; i++)
        o += (size_t)snprintf(cmd + o, sizeof cmd - o, " '%s'", stream_path[i]);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char line[2048];
    for (int i = 0; i < NSTREAMS; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        char prefix[4400];
        snprintf(prefix, sizeof prefix, "{\"file\":\"%.4200s\",", stream_path[i]);
        assert_int_equal(strncmp(line, prefix, strlen(prefix)), 0);
        snprintf(expected[i], sizeof expected[i], "{%s", line + strlen(prefix));
        stream_buf[i] = slurp(stream_path[i], &stream_len[i]);
    }
    assert_int_equal(pclose(f), 0);
    /* the decoder's one-line message for a bad stream, as decode prints it */
    snprintf(cmd, sizeof cmd, "'%s' decode --model resnet18 '%s' 2>&1 >/dev/null", bin(),
             tu_path("tests/data/codec/bad_magic.cwb"));
    f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    pclose(f);
    const char *m = strstr(line, "bad_magic.cwb: ");
    assert_non_null(m);
    snprintf(bad_magic_msg, sizeof bad_magic_msg, "%s", m + strlen("bad_magic.cwb: "));
    bad_magic_msg[strcspn(bad_magic_msg, "\n")] = 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NSTREAMS; i++) free(stream_buf[i]);
    free(layer2_buf), free(alexnet_buf);
    if (dir[0]) tu_rmtree(dir);
    return 0;
}

#define NEED_DATA()                        \
    do {                                   \
        if (!tu_fmnist_dir()) skip();      \
    } while (0)

/* -------------------------------------------------------------- server */

typedef struct srv {
    pid_t pid;
    int port;
    char log[4300];
} srv;

/* Starts cwba serve --model resnet18 --split layer3 --listen 127.0.0.1:0
 * with the extra arguments (NULL-terminated) and waits for its port. */
static void srv_start(srv *s, const char *const *extra)
{
    static int seq;
    char port_file[4300];
    seq++;
    snprintf(port_file, sizeof port_file, "%s/port.%d", dir, seq);
    snprintf(s->log, sizeof s->log, "%s/serve.%d.log", dir, seq);
    const char *argv[64] = {bin(), "serve", "--model", "resnet18", "--split", "layer3",
                            "--listen", "127.0.0.1:0", "--port-file", port_file};
    int n = 10;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 6000; i++) { /* 120 s: model loading under the sanitizers */
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok) return;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) fail_msg("cwba serve exited early (%d)", st);
        usleep(20000);
    }
    fail_msg("cwba serve did not start");
}

/* Sends sig and returns the exit status (-1 if killed by a signal). */
static int srv_stop(srv *s, int sig)
{
    kill(s->pid, sig);
    int st = 0;
    for (int i = 0; i < 3000; i++) { /* 60 s */
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(20000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    fail_msg("cwba serve did not stop after signal %d", sig);
    return -1;
}

/* ---------------------------------------------------------------- HTTP */

typedef struct resp {
    CURLcode cc;
    long code;
    char body[65536];
    size_t len;
    int retry_after; /* the header was present */
} resp;

static size_t on_body(char *d, size_t size, size_t n, void *u)
{
    resp *r = u;
    size_t k = size * n;
    if (r->len + k >= sizeof r->body) return 0;
    memcpy(r->body + r->len, d, k);
    r->len += k;
    r->body[r->len] = 0;
    return k;
}

static size_t on_header(char *d, size_t size, size_t n, void *u)
{
    resp *r = u;
    if (size * n >= 12 && !strncasecmp(d, "Retry-After:", 12)) r->retry_after = 1;
    return size * n;
}

/* One request on handle c (kept alive between calls unless fresh). body NULL:
 * GET (or method). */
static void http(CURL *c, const char *scheme, int port, const char *method, const char *path,
                 const void *body, size_t len, const char *auth, int fresh, resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, port, path);
    memset(r, 0, sizeof *r);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (fresh) curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    h = curl_slist_append(h, "Content-Type: application/octet-stream");
    char ah[512];
    if (auth) {
        snprintf(ah, sizeof ah, "Authorization: %s", auth);
        h = curl_slist_append(h, ah);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    const char *cafile = getenv("SERVE_TEST_CA");
    if (cafile && !strcmp(scheme, "https")) curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
    r->cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(h);
}

/* A POST of total zero bytes with chunked transfer encoding (no
 * Content-Length): what a client streaming a body of unknown size sends. */
static size_t zeros_read(char *d, size_t size, size_t n, void *u)
{
    size_t *left = u, k = size * n < *left ? size * n : *left;
    memset(d, 0, k);
    *left -= k;
    return k;
}

static void post_chunked(CURL *c, const char *scheme, int port, size_t total, resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d/v1/decode", scheme, port);
    memset(r, 0, sizeof *r);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, zeros_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &total);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    const char *cafile = getenv("SERVE_TEST_CA");
    if (cafile && !strcmp(scheme, "https")) curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
    r->cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_slist_free_all(h);
}

static void post(CURL *c, int port, const void *body, size_t len, resp *r)
{
    http(c, "http", port, NULL, "/v1/decode", body, len, NULL, 0, r);
}

/* The value of a metric line "name value" in /metrics. */
static double metric(CURL *c, int port, const char *name)
{
    resp r;
    http(c, "http", port, NULL, "/metrics", NULL, 0, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    char key[256];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(r.body, key);
    if (!p) fail_msg("no metric %s in:\n%s", name, r.body);
    return strtod(p + strlen(key), NULL);
}

static void assert_healthy(CURL *c, int port)
{
    resp r;
    http(c, "http", port, NULL, "/healthz", NULL, 0, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    post(c, port, stream_buf[0], stream_len[0], &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, expected[0]);
}

/* ---------------------------------------------------------- raw sockets */

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        assert_true(k > 0);
        c += k, n -= (size_t)k;
    }
}

/* Reads until the peer closes or timeout_s passes; returns the bytes read,
 * *closed = 1 when the peer closed. */
static size_t recv_until_close(int fd, char *buf, size_t cap, double timeout_s, int *closed)
{
    struct timeval tv = {0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double end = cwba_now() + timeout_s;
    size_t o = 0;
    *closed = 0;
    while (cwba_now() < end) {
        ssize_t k = recv(fd, buf + o, cap - 1 - o, 0);
        if (k == 0) {
            *closed = 1;
            break;
        }
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
            *closed = 1; /* reset */
            break;
        }
        o += (size_t)k;
        if (o + 1 >= cap) break;
    }
    buf[o] = 0;
    return o;
}

/* --------------------------------------------------------------- tests */

static void test_answers_equal_decode(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    srv_start(&s, NULL);
    CURL *c = curl_easy_init();
    for (int i = 0; i < NSTREAMS; i++) {
        resp r;
        post(c, s.port, stream_buf[i], stream_len[i], &r);
        assert_int_equal(r.cc, CURLE_OK);
        assert_int_equal(r.code, 200);
        assert_string_equal(r.body, expected[i]);
    }
    assert_true(metric(c, s.port, "cwba_request_bytes_total") >= (double)stream_len[0]);
    curl_easy_cleanup(c);
    assert_int_equal(srv_stop(&s, SIGINT), 0);
    /* one log line per request */
    char cmd[4400], line[64];
    snprintf(cmd, sizeof cmd, "grep -c ' /v1/decode 200 ' '%s'", s.log);
    FILE *f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    pclose(f);
    assert_int_equal(atoi(line), NSTREAMS);
}

/* ------- concurrent clients: batched answers equal one-at-a-time ones */

typedef struct load {
    int port, id, rounds, fresh;
    volatile int *stop;
    int ok, refused, wrong, lost;
    char lost_why[256];
} load;

static void *load_main(void *arg)
{
    load *l = arg;
    CURL *c = curl_easy_init();
    for (int i = 0; (l->rounds ? i < l->rounds : !*l->stop); i++) {
        int k = (l->id * 7 + i) % NSTREAMS;
        resp r;
        http(c, "http", l->port, NULL, "/v1/decode", stream_buf[k], stream_len[k], NULL, l->fresh,
             &r);
        if (r.cc == CURLE_COULDNT_CONNECT) { /* refused: the server has stopped listening */
            l->refused++;
            break;
        }
        if (r.cc == CURLE_OK && r.code == 200) {
            if (strcmp(r.body, expected[k]))
                l->wrong++;
            else
                l->ok++;
        } else if (r.cc == CURLE_OK && r.code == 503 && r.retry_after) {
            l->refused++;
        } else {
            l->lost++;
            snprintf(l->lost_why, sizeof l->lost_why, "curl %d (%s), HTTP %ld", (int)r.cc,
                     curl_easy_strerror(r.cc), r.code);
        }
    }
    curl_easy_cleanup(c);
    return NULL;
}

static void run_load(int port, int nthreads, int rounds, int fresh, volatile int *stop, load *l)
{
    pthread_t t[64];
    for (int i = 0; i < nthreads; i++) {
        memset(&l[i], 0, sizeof l[i]);
        l[i].port = port, l[i].id = i, l[i].rounds = rounds, l[i].fresh = fresh, l[i].stop = stop;
        assert_int_equal(pthread_create(&t[i], NULL, load_main, &l[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
}

static void test_batching_identical(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    static const char *const extra[] = {"--max-batch", "16", "--batch-wait-ms", "20", "--quiet",
                                        NULL};
    srv_start(&s, extra);
    load l[16];
    run_load(s.port, 16, 8, 0, NULL, l);
    int ok = 0;
    for (int i = 0; i < 16; i++) {
        assert_int_equal(l[i].wrong, 0);
        assert_int_equal(l[i].lost, 0);
        ok += l[i].ok;
    }
    assert_int_equal(ok, 16 * 8);
    CURL *c = curl_easy_init();
    /* batches of more than one did happen, else this test proves nothing */
    double batches = metric(c, s.port, "cwba_batch_size_count");
    double streams = metric(c, s.port, "cwba_batch_size_sum");
    print_message("  %g streams in %g batches\n", streams, batches);
    assert_true(streams == 16 * 8);
    assert_true(batches < streams);
    curl_easy_cleanup(c);
    assert_int_equal(srv_stop(&s, SIGTERM), 0);
    /* --quiet: no per-request lines */
    char cmd[4400], line[64];
    snprintf(cmd, sizeof cmd, "grep -c ' /v1/decode ' '%s'", s.log);
    FILE *f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    pclose(f);
    assert_int_equal(atoi(line), 0);
}

/* ------------------------------------------------------------ refusals */

static void assert_error(const resp *r, long code, const char *needle)
{
    if (r->code != code) fail_msg("HTTP %ld, expected %ld: %s", r->code, code, r->body);
    if (!strstr(r->body, "{\"error\":\"")) fail_msg("not an error object: %s", r->body);
    if (needle && !strstr(r->body, needle)) fail_msg("'%s' not in %s", needle, r->body);
}

static void test_refusals(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    static const char *const extra[] = {"--max-body", "100000", "--timeout", "1", NULL};
    srv_start(&s, extra);
    CURL *c = curl_easy_init();
    resp r;
    size_t bl;
    uint8_t *bad = slurp(tu_path("tests/data/codec/bad_magic.cwb"), &bl);
    post(c, s.port, bad, bl, &r);
    free(bad);
    assert_error(&r, 400, NULL);
    /* the decoder's message, as a JSON string (it holds quotes) */
    char esc[1600];
    size_t o = (size_t)snprintf(esc, sizeof esc, "{\"error\":\"");
    for (const char *p = bad_magic_msg; *p; p++) {
        if (*p == '"' || *p == '\\') esc[o++] = '\\';
        esc[o++] = *p;
    }
    snprintf(esc + o, sizeof esc - o, "\"}\n");
    assert_string_equal(r.body, esc);
    post(c, s.port, layer2_buf, layer2_len, &r);
    assert_error(&r, 422, "split 'layer2'");
    post(c, s.port, alexnet_buf, alexnet_len, &r);
    assert_error(&r, 422, "model 'alexnet'");
    post(c, s.port, "", 0, &r);
    assert_error(&r, 400, NULL);
    http(c, "http", s.port, NULL, "/v1/decode", NULL, 0, NULL, 0, &r);
    assert_error(&r, 405, "GET");
    http(c, "http", s.port, "PUT", "/v1/decode", "x", 1, NULL, 0, &r);
    assert_error(&r, 405, "PUT");
    http(c, "http", s.port, NULL, "/healthz", "x", 1, NULL, 0, &r);
    assert_error(&r, 405, "POST");
    http(c, "http", s.port, NULL, "/v2/decode", stream_buf[0], stream_len[0], NULL, 0, &r);
    assert_error(&r, 404, "/v2/decode");
    http(c, "http", s.port, NULL, "/", NULL, 0, NULL, 0, &r);
    assert_error(&r, 404, NULL);
    /* over --max-body: 413 from the header alone, while the body is unsent */
    int fd = connect_port(s.port);
    const char *hdr = "POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n";
    send_all(fd, hdr, strlen(hdr));
    char buf[4096];
    int closed;
    recv_until_close(fd, buf, sizeof buf, 5, &closed);
    assert_non_null(strstr(buf, "HTTP/1.1 413"));
    assert_non_null(strstr(buf, "over the limit"));
    assert_true(closed);
    close(fd);
    /* the same through libcurl, body sent */
    uint8_t *big = calloc(1, 200000);
    post(c, s.port, big, 200000, &r);
    assert_error(&r, 413, NULL);
    /* chunked, no Content-Length: cut off once past the limit */
    fd = connect_port(s.port);
    const char *ch = "POST /v1/decode HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, ch, strlen(ch));
    char chunk_hdr[32];
    snprintf(chunk_hdr, sizeof chunk_hdr, "%x\r\n", 50000);
    size_t sent = 0, got = 0;
    for (int i = 0; i < 400; i++) { /* as a client would: stop at an early answer */
        ssize_t k = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (k > 0) {
            got = (size_t)k;
            break;
        }
        if (send(fd, chunk_hdr, strlen(chunk_hdr), MSG_NOSIGNAL) < 0 ||
            send(fd, big, 50000, MSG_NOSIGNAL) < 0 || send(fd, "\r\n", 2, MSG_NOSIGNAL) < 0)
            break;
        sent += 50000;
    }
    got += recv_until_close(fd, buf + got, sizeof buf - got, 5, &closed);
    buf[got] = 0;
    assert_true(closed);
    assert_true(sent < 400 * 50000); /* it did not read 20 MB */
    assert_non_null(strstr(buf, "HTTP/1.1 413"));
    assert_non_null(strstr(buf, "{\"error\":\"the body is over the limit of 100000 bytes\"}"));
    close(fd);
    free(big);
    post_chunked(c, "http", s.port, 20u << 20, &r); /* the same through libcurl */
    assert_error(&r, 413, "over the limit of 100000 bytes");
    /* a slow client: half the headers, then silence -> closed by --timeout 1 */
    fd = connect_port(s.port);
    send_all(fd, "POST /v1/decode HTTP/1.1\r\nHost:", 31);
    double t0 = cwba_now();
    recv_until_close(fd, buf, sizeof buf, 10, &closed);
    double dt = cwba_now() - t0;
    close(fd);
    assert_true(closed);
    assert_true(dt < 5);
    /* a slow body: declared 733 bytes, 100 sent, then silence */
    fd = connect_port(s.port);
    snprintf(buf, sizeof buf, "POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
             stream_len[0]);
    send_all(fd, buf, strlen(buf));
    send_all(fd, stream_buf[0], 100);
    t0 = cwba_now();
    recv_until_close(fd, buf, sizeof buf, 10, &closed);
    assert_true(closed);
    assert_true(cwba_now() - t0 < 5);
    close(fd);
    assert_healthy(c, s.port);
    assert_true(metric(c, s.port, "cwba_requests_total{code=\"413\"}") >= 3);
    assert_true(metric(c, s.port, "cwba_requests_total{code=\"422\"}") == 2);
    curl_easy_cleanup(c);
    assert_int_equal(srv_stop(&s, SIGTERM), 0);
}

/* A full queue answers 503 with Retry-After; the client in encode --post
 * retries and reports the refusal clearly when it gives up. */
static void test_queue_full(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    static const char *const extra[] = {"--queue", "1", "--max-batch", "1", "--quiet", NULL};
    srv_start(&s, extra);
    load l[32];
    run_load(s.port, 32, 3, 0, NULL, l);
    int ok = 0, refused = 0;
    for (int i = 0; i < 32; i++) {
        assert_int_equal(l[i].wrong, 0);
        if (l[i].lost) fail_msg("lost: %s", l[i].lost_why);
        ok += l[i].ok, refused += l[i].refused;
    }
    print_message("  %d answered, %d refused with 503\n", ok, refused);
    assert_true(refused > 0);
    assert_true(ok > 0);
    assert_int_equal(srv_stop(&s, SIGTERM), 0);
    /* nothing listening: the client retries, then one clear line */
    char cmd[8192], line[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' encode --model resnet18 --split layer3 --quant uniform --bits 3 --limit 1 "
             "--retries 2 --post http://127.0.0.1:%d/v1/decode 2>&1 >/dev/null; echo rc=$?",
             bin(), s.port);
    FILE *f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "failed after 3 attempts"));
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "rc=1\n");
    pclose(f);
}

/* ----------------------------------------- mutated and malformed bodies */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static void test_mutations(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    static const char *const extra[] = {"--max-body", "65536", "--quiet", NULL};
    srv_start(&s, extra);
    CURL *c = curl_easy_init();
    uint8_t *m = malloc(70000);
    int n = 0, by_code[6] = {0}; /* 200 400 413 422 other */
    for (int kind = 0; kind < 5; kind++) {
        int count = kind == 0 ? (int)stream_len[0] : kind == 1 ? 1500 : kind == 2 ? 400
                    : kind == 3 ? 300 : 20;
        for (int i = 0; i < count; i++) {
            int k = (int)(next_rand() % NSTREAMS);
            size_t len = stream_len[k];
            memcpy(m, stream_buf[k], len);
            if (kind == 0) { /* every truncation of stream 0 */
                memcpy(m, stream_buf[0], stream_len[0]);
                len = (size_t)i;
            } else if (kind == 1) { /* 1-3 bit flips */
                int flips = 1 + (int)(next_rand() % 3);
                for (int f = 0; f < flips; f++) {
                    size_t pos = next_rand() % len;
                    m[pos] ^= (uint8_t)(1u << (next_rand() % 8));
                }
            } else if (kind == 2) { /* random bytes, some with the magic */
                len = 1 + next_rand() % 2000;
                for (size_t b = 0; b < len; b++) m[b] = (uint8_t)next_rand();
                if (i % 2) memcpy(m, "CWBA", len < 4 ? len : 4);
            } else if (kind == 3) { /* header bytes overwritten (first 64) */
                size_t pos = next_rand() % (len < 64 ? len : 64);
                m[pos] = (uint8_t)next_rand();
                if (i % 3 == 0) { /* and a tail appended or cut */
                    len = i % 2 ? len + 1 + next_rand() % 100 : len - 1 - next_rand() % 10;
                }
            } else { /* oversize */
                len = 65537 + next_rand() % 4000;
                memset(m, 'C', len);
            }
            resp r;
            post(c, s.port, m, len, &r);
            n++;
            if (r.cc != CURLE_OK) fail_msg("kind %d case %d: %s", kind, i, curl_easy_strerror(r.cc));
            int slot = r.code == 200 ? 0 : r.code == 400 ? 1 : r.code == 413 ? 2
                       : r.code == 422 ? 3 : 4;
            by_code[slot]++;
            if (slot == 4) fail_msg("kind %d case %d: HTTP %ld %s", kind, i, r.code, r.body);
            if (slot != 0) assert_non_null(strstr(r.body, "{\"error\":\""));
            if (kind == 4) assert_int_equal(r.code, 413);
            if (kind == 0) assert_int_equal(r.code, 400);
        }
    }
    print_message("  %d bodies: %d decoded, %d 400, %d 413, %d 422\n", n, by_code[0], by_code[1],
                  by_code[2], by_code[3]);
    assert_true(n >= 2500);
    assert_healthy(c, s.port);
    free(m);
    curl_easy_cleanup(c);
    assert_int_equal(srv_stop(&s, SIGTERM), 0);
}

/* Clients that vanish mid-upload, or right after their headers. */
static void test_disconnect_mid_upload(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    srv_start(&s, NULL);
    for (int i = 0; i < 30; i++) {
        int fd = connect_port(s.port);
        char h[256];
        snprintf(h, sizeof h, "POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                 stream_len[0]);
        send_all(fd, h, strlen(h));
        if (i % 3) send_all(fd, stream_buf[0], (size_t)(i * 17) % stream_len[0]);
        if (i % 2) { /* reset instead of a clean close */
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
    }
    CURL *c = curl_easy_init();
    assert_healthy(c, s.port);
    /* every abandoned request was cleaned up */
    double inflight = 1;
    for (int i = 0; i < 100 && inflight > 0; i++) {
        inflight = metric(c, s.port, "cwba_requests_in_flight") - 1; /* minus this one */
        if (inflight > 0) usleep(50000);
    }
    assert_true(inflight == 0);
    curl_easy_cleanup(c);
    assert_int_equal(srv_stop(&s, SIGTERM), 0);
    char cmd[4400], line[64];
    snprintf(cmd, sizeof cmd, "grep -c 'connection lost' '%s'", s.log);
    FILE *f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    pclose(f);
    assert_true(atoi(line) >= 20);
}

/* SIGTERM while clients keep sending: every request is answered (200, the
 * right answer) or refused (503, or the connection refused), none cut off;
 * exit status 0. */
static void test_sigterm_under_load(void **state)
{
    (void)state;
    NEED_DATA();
    srv s;
    static const char *const extra[] = {"--quiet", "--timeout", "2", NULL};
    srv_start(&s, extra);
    volatile int stop = 0;
    load l[12];
    pthread_t t[12];
    for (int i = 0; i < 12; i++) {
        memset(&l[i], 0, sizeof l[i]);
        l[i].port = s.port, l[i].id = i, l[i].fresh = i % 2, l[i].stop = &stop;
        assert_int_equal(pthread_create(&t[i], NULL, load_main, &l[i]), 0);
    }
    usleep(1500000);
    int rc = srv_stop(&s, SIGTERM);
    stop = 1;
    int ok = 0, refused = 0;
    for (int i = 0; i < 12; i++) {
        pthread_join(t[i], NULL);
        if (l[i].lost) fail_msg("thread %d lost a request: %s", i, l[i].lost_why);
        assert_int_equal(l[i].wrong, 0);
        ok += l[i].ok, refused += l[i].refused;
    }
    print_message("  %d answered, %d refused\n", ok, refused);
    assert_int_equal(rc, 0);
    assert_true(ok > 12);
}

/* ------------------------------------------------------- access control */

static void test_access(void **state)
{
    (void)state;
    NEED_DATA();
    /* no token: only loopback */
    char cmd[8192], line[1024], tok[4300];
    snprintf(cmd, sizeof cmd,
             "'%s' serve --model resnet18 --split layer3 --listen 0.0.0.0:0 2>&1; echo rc=$?",
             bin());
    FILE *f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    assert_non_null(strstr(line, "not a loopback address"));
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "rc=2\n");
    pclose(f);
    snprintf(tok, sizeof tok, "%s/token", dir);
    f = fopen(tok, "w");
    fputs("s3cret-T0ken\n", f);
    fclose(f);
    srv s;
    const char *const extra[] = {"--token-file", tok, NULL};
    srv_start(&s, extra);
    CURL *c = curl_easy_init();
    resp r;
    http(c, "http", s.port, NULL, "/v1/decode", stream_buf[0], stream_len[0], NULL, 0, &r);
    assert_error(&r, 401, "token");
    http(c, "http", s.port, NULL, "/v1/decode", stream_buf[0], stream_len[0], "Bearer s3cret-T0keN",
         0, &r);
    assert_error(&r, 401, NULL);
    http(c, "http", s.port, NULL, "/v1/decode", stream_buf[0], stream_len[0], "Bearer s3cret-T0ke",
         0, &r);
    assert_error(&r, 401, NULL);
    http(c, "http", s.port, NULL, "/v1/decode", stream_buf[0], stream_len[0], "Basic s3cret-T0ken",
         0, &r);
    assert_error(&r, 401, NULL);
    http(c, "http", s.port, NULL, "/metrics", NULL, 0, NULL, 0, &r);
    assert_error(&r, 401, NULL);
    http(c, "http", s.port, NULL, "/healthz", NULL, 0, NULL, 0, &r);
    assert_int_equal(r.code, 200);
    http(c, "http", s.port, NULL, "/v1/decode", stream_buf[3], stream_len[3], "Bearer s3cret-T0ken",
         0, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, expected[3]);
    curl_easy_cleanup(c);
    /* the edge client with the token file */
    snprintf(cmd, sizeof cmd,
             "'%s' encode --model resnet18 --split layer3 --quant uniform --bits 3 --limit 2 "
             "--post http://127.0.0.1:%d/v1/decode --token-file '%s' 2>/dev/null",
             bin(), s.port, tok);
    f = popen(cmd, "r");
    for (int i = 0; i < 2; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, expected[i]);
    }
    assert_int_equal(pclose(f), 0);
    assert_int_equal(srv_stop(&s, SIGINT), 0);
}

static void test_tls(void **state)
{
    (void)state;
    NEED_DATA();
    char cert[4300], key[4300], cmd[16384], line[1024];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' 2>/dev/null",
             key, cert);
    run_ok(cmd);
    srv s;
    const char *const extra[] = {"--tls-cert", cert, "--tls-key", key, "--max-body", "100000",
                                 NULL};
    srv_start(&s, extra);
    setenv("SERVE_TEST_CA", cert, 1);
    CURL *c = curl_easy_init();
    resp r;
    http(c, "https", s.port, NULL, "/v1/decode", stream_buf[5], stream_len[5], NULL, 0, &r);
    assert_int_equal(r.cc, CURLE_OK);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, expected[5]);
    /* a chunked body over --max-body: 413 on the TLS session, 20 MB unsent */
    post_chunked(c, "https", s.port, 20u << 20, &r);
    print_message("  chunked over HTTPS: curl %d, HTTP %ld\n", (int)r.cc, r.code);
    assert_int_equal(r.code, 413);
    assert_non_null(strstr(r.body, "over the limit of 100000 bytes"));
    /* plain HTTP on the HTTPS port gets no answer */
    http(c, "http", s.port, NULL, "/healthz", NULL, 0, NULL, 0, &r);
    assert_true(r.cc != CURLE_OK || r.code != 200);
    curl_easy_cleanup(c);
    snprintf(cmd, sizeof cmd,
             "'%s' encode --model resnet18 --split layer3 --quant uniform --bits 3 --limit 1 "
             "--post https://127.0.0.1:%d/v1/decode --cacert '%s' 2>/dev/null",
             bin(), s.port, cert);
    FILE *f = popen(cmd, "r");
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, expected[0]);
    assert_int_equal(pclose(f), 0);
    assert_int_equal(srv_stop(&s, SIGTERM), 0);
}

/* ------------------------------------------- the edge client's retries */

/* A stand-in server: answers its first n503 requests 503 (Retry-After: 0),
 * the next 200 with a fixed body, each on its own connection. */
typedef struct fake {
    int lfd, n503, seen;
} fake;

static void *fake_main(void *arg)
{
    fake *f = arg;
    for (;;) {
        int c = accept(f->lfd, NULL, NULL);
        if (c < 0) return NULL;
        char buf[70000];
        size_t o = 0;
        long clen = -1;
        char *end = NULL;
        while (o < sizeof buf - 1) { /* headers, then Content-Length bytes */
            ssize_t k = recv(c, buf + o, sizeof buf - 1 - o, 0);
            if (k <= 0) break;
            o += (size_t)k;
            buf[o] = 0;
            if (!end && (end = strstr(buf, "\r\n\r\n"))) {
                const char *cl = strstr(buf, "Content-Length:") /* as curl writes it */;
                clen = cl ? strtol(cl + 15, NULL, 10) : 0;
            }
            if (end && (long)(o - (size_t)(end + 4 - buf)) >= clen) break;
        }
        const char *r503 = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
                           "Content-Type: application/json\r\nContent-Length: 17\r\n"
                           "Connection: close\r\n\r\n{\"error\":\"busy\"}\n";
        const char *r200 = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Content-Length: 12\r\nConnection: close\r\n\r\n{\"fake\":42}\n";
        const char *r = f->seen++ < f->n503 ? r503 : r200;
        send(c, r, strlen(r), MSG_NOSIGNAL);
        close(c);
    }
}

static void test_client_retries(void **state)
{
    (void)state;
    NEED_DATA();
    for (int giveup = 0; giveup < 2; giveup++) {
        fake f = {socket(AF_INET, SOCK_STREAM, 0), giveup ? 1000 : 2, 0};
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(0x7f000001);
        socklen_t al = sizeof a;
        assert_int_equal(bind(f.lfd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(f.lfd, 16), 0);
        getsockname(f.lfd, (struct sockaddr *)&a, &al);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, fake_main, &f), 0);
        char cmd[8192], out[1024] = "", line[1024];
        snprintf(cmd, sizeof cmd,
                 "'%s' encode --model resnet18 --split layer3 --quant uniform --bits 3 --limit 1 "
                 "--retries 3 --post http://127.0.0.1:%d/v1/decode 2>&1; echo rc=$?",
                 bin(), ntohs(a.sin_port));
        FILE *p = popen(cmd, "r");
        while (fgets(line, sizeof line, p)) strncat(out, line, sizeof out - strlen(out) - 1);
        pclose(p);
        shutdown(f.lfd, SHUT_RDWR);
        pthread_join(t, NULL);
        close(f.lfd);
        if (!giveup) { /* two 503s, then the answer */
            assert_int_equal(f.seen, 3);
            assert_non_null(strstr(out, "{\"fake\":42}\n"));
            assert_non_null(strstr(out, "rc=0"));
        } else { /* 1 + 3 attempts, then one clear line */
            assert_int_equal(f.seen, 4);
            assert_non_null(strstr(out, "failed after 4 attempts: HTTP 503: busy"));
            assert_non_null(strstr(out, "rc=1"));
        }
    }
}

/* Runs "cwba ARGS" and checks for one stderr line holding needle and exit rc. */
static void expect_cli_error(const char *args, const char *needle, int rc)
{
    char cmd[8192], line[2048], last[2048] = "", first[2048] = "";
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1 >/dev/null; echo rc=$?", bin(), args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        if (!lines) snprintf(first, sizeof first, "%s", line);
        snprintf(last, sizeof last, "%s", line);
        lines++;
    }
    pclose(f);
    char want[32];
    snprintf(want, sizeof want, "rc=%d\n", rc);
    if (lines != 2 || !strstr(first, needle) || strcmp(last, want))
        fail_msg("cwba %s: %d lines, first '%s', last '%s'; expected '%s' and %s", args,
                 lines - 1, first, last, needle, want);
}

static void test_cli_errors(void **state)
{
    (void)state;
    NEED_DATA();
    expect_cli_error("serve --model resnet18", "--split", 2);
    expect_cli_error("serve --model resnet18 --split layer3 --tls-cert x.pem", "go together", 2);
    expect_cli_error("serve --model resnet18 --split layer3 --max-batch 0", "max-batch", 2);
    expect_cli_error("serve --model resnet18 --split layer9", "layer9", 1);
    expect_cli_error("serve --model resnet18 --split layer3 --listen nowhere", "HOST:PORT", 2);
    expect_cli_error("serve --model resnet18 --split layer3 --listen 127.0.0.1:70000", "0..65535",
                     2);
    expect_cli_error("serve --model resnet18 --split layer3 --token-file /nonexistent/t",
                     "token-file", 1);
    expect_cli_error("serve --model resnet18 --split layer3 --listen 0.0.0.0:0",
                     "not a loopback address", 2);
    expect_cli_error("serve --model resnet18 --weights synthetic:x --split layer3", "synthetic:SEED",
                     2);
    expect_cli_error("encode --model resnet18 --split layer3 --quant uniform --bits 3",
                     "--post URL", 2);
    expect_cli_error("encode --model resnet18 --split layer3 --quant uniform --bits 3 --limit 1 "
                     "--post ftp://127.0.0.1/v1/decode",
                     "not an http", 2);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_equal_decode),
        cmocka_unit_test(test_batching_identical),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_disconnect_mid_upload),
        cmocka_unit_test(test_sigterm_under_load),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_client_retries),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
