/* cwba_fetch (src/io/fetch.c) against a tiny HTTP server forked by this test
 * on 127.0.0.1 (ephemeral port): good, corrupt, truncated, missing and
 * redirected downloads; a failure never leaves a partial file. */
#include "testutil.h"

#include "cwba/io.h"
#include "cwba/nn.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAYLOAD 300000

static uint8_t g_payload[PAYLOAD];
static char g_prefix[9];
static int g_port;
static pid_t g_server;
static char *g_dir;

static void send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t k = send(fd, p, n, 0);
        if (k <= 0) return;
        p += k;
        n -= (size_t)k;
    }
}

static void serve(int fd)
{
    char req[8192];
    size_t got = 0;
    while (got < sizeof req - 1) {
        ssize_t k = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[got] = '\0';
    char path[1024] = "";
    if (sscanf(req, "GET %1023s", path) != 1) return;
    char head[1400];
    if (strncmp(path, "/good/", 6) == 0 || strncmp(path, "/corrupt/", 9) == 0 ||
        strncmp(path, "/truncated/", 11) == 0) {
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n"
                 "Connection: close\r\n\r\n", PAYLOAD);
        send_all(fd, head, strlen(head));
        if (path[1] == 't') {
            send_all(fd, g_payload, PAYLOAD / 2); /* then hang up */
        } else if (path[1] == 'c') {
            static uint8_t bad[PAYLOAD];
            memcpy(bad, g_payload, PAYLOAD);
            bad[PAYLOAD / 3] ^= 0x40;
            send_all(fd, bad, PAYLOAD);
        } else {
            send_all(fd, g_payload, PAYLOAD);
        }
    } else if (strncmp(path, "/redirect/", 10) == 0) {
        snprintf(head, sizeof head, "HTTP/1.1 302 Found\r\nLocation: /good/%s\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n", path + 10);
        send_all(fd, head, strlen(head));
    } else {
        const char *body = "not found\n";
        snprintf(head, sizeof head, "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 strlen(body), body);
        send_all(fd, head, strlen(head));
    }
}

static int setup(void **s)
{
    (void)s;
    /* The server is local: a proxy from the environment must not intercept it. */
    static const char *const proxies[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                          "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++) unsetenv(proxies[i]);
    uint32_t x = 2463534242u;
    for (int i = 0; i < PAYLOAD; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        g_payload[i] = (uint8_t)x;
    }
    char hex[65];
    cwba_sha256_hex(g_payload, PAYLOAD, hex);
    memcpy(g_prefix, hex, 8);
    g_prefix[8] = '\0';
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 16) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0)
        return -1;
    g_port = ntohs(a.sin_port);
    g_server = fork();
    if (g_server < 0) return -1;
    if (g_server == 0) {
        signal(SIGPIPE, SIG_IGN);
        alarm(120); /* never outlive a stuck test */
        for (;;) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0) continue;
            serve(fd);
            shutdown(fd, SHUT_RDWR);
            close(fd);
        }
    }
    close(ls);
    g_dir = tu_tmpdir();
    return g_dir ? 0 : -1;
}

static int teardown(void **s)
{
    (void)s;
    if (g_server > 0) {
        kill(g_server, SIGTERM);
        waitpid(g_server, NULL, 0);
    }
    tu_rmtree(g_dir);
    free(g_dir);
    return 0;
}

/* No leftovers of a failed download: no dest, no temporary files. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

typedef struct prog {
    int calls;
    uint64_t last_done, last_total;
    uint64_t cancel_after;
} prog;

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    prog *p = user;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    return p->cancel_after && done >= p->cancel_after;
}

static void url_of(char *out, size_t n, const char *kind)
{
    snprintf(out, n, "http://127.0.0.1:%d/%s/weights-%s.pth", g_port, kind, g_prefix);
}

static void test_good_download(void **s)
{
    (void)s;
    char url[256], dest[4200], prefix[65];
    url_of(url, sizeof url, "good");
    assert_true(cwba_hash_prefix_from_name(url, prefix, sizeof prefix));
    assert_string_equal(prefix, g_prefix);
    snprintf(dest, sizeof dest, "%s/cache/sub/weights.pth", g_dir); /* directories are created */
    prog p = {0};
    cwba_error err = {0};
    cwba_status st = cwba_fetch(url, prefix, dest, on_progress, &p, &err);
    if (st) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(st, CWBA_OK);
    uint8_t *buf;
    size_t len;
    assert_int_equal(cwba_file_read_all(dest, 0, &buf, &len, &err), CWBA_OK);
    assert_int_equal(len, PAYLOAD);
    assert_memory_equal(buf, g_payload, PAYLOAD);
    free(buf);
    fprintf(stderr, "  %d progress calls, last %llu/%llu bytes\n", p.calls, (unsigned long long)p.last_done,
            (unsigned long long)p.last_total);
    assert_true(p.calls > 0);
    assert_int_equal(p.last_done, PAYLOAD);
    assert_int_equal(p.last_total, PAYLOAD);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/cache/sub", g_dir);
    assert_int_equal(count_entries(sub), 1);
    /* Redirects are followed; a full 64-digit prefix and upper case work too. */
    char hex[65];
    cwba_sha256_hex(g_payload, PAYLOAD, hex);
    for (char *c = hex; *c; c++) *c = (char)(*c >= 'a' ? *c - 32 : *c);
    url_of(url, sizeof url, "redirect");
    snprintf(dest, sizeof dest, "%s/redirected.pth", g_dir);
    assert_int_equal(cwba_fetch(url, hex, dest, NULL, NULL, &err), CWBA_OK);
    assert_true(tu_exists(dest));
    unlink(dest);
}

static void expect_failure(const char *kind, const char *dest_name, cwba_status want, const char *needle,
                           prog *p)
{
    char url[256], dest[4400], dir[4200];
    snprintf(dir, sizeof dir, "%s/%s.d", g_dir, kind);
    snprintf(dest, sizeof dest, "%s/%s", dir, dest_name);
    url_of(url, sizeof url, kind);
    cwba_error err = {0};
    cwba_status st = cwba_fetch(url, g_prefix, dest, p ? on_progress : NULL, p, &err);
    fprintf(stderr, "  %-9s -> %s: %s\n", kind, cwba_status_name(st), err.msg);
    assert_int_equal(st, want);
    assert_non_null(strstr(err.msg, needle));
    assert_false(tu_exists(dest));
    assert_int_equal(count_entries(dir), 0); /* no temporary file left */
}

static void test_failures_leave_nothing(void **s)
{
    (void)s;
    expect_failure("corrupt", "w.pth", CWBA_E_FORMAT, "does not start with", NULL);
    expect_failure("truncated", "w.pth", CWBA_E_IO, "127.0.0.1", NULL);
    expect_failure("missing", "w.pth", CWBA_E_IO, "404", NULL);
    prog p = {.cancel_after = PAYLOAD / 10};
    expect_failure("good", "w.pth", CWBA_E_ARG, "cancelled", &p);

    /* A failed download keeps an existing file untouched. */
    char dest[4200], url[256];
    snprintf(dest, sizeof dest, "%s/keep.pth", g_dir);
    cwba_error err = {0};
    assert_int_equal(cwba_write_file_atomic(dest, "old", 3, &err), CWBA_OK);
    url_of(url, sizeof url, "corrupt");
    assert_int_equal(cwba_fetch(url, g_prefix, dest, NULL, NULL, &err), CWBA_E_FORMAT);
    uint8_t *buf;
    size_t len;
    assert_int_equal(cwba_file_read_all(dest, 0, &buf, &len, &err), CWBA_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "old", 3);
    free(buf);

    /* Nothing listening; bad arguments. */
    assert_int_equal(cwba_fetch("http://127.0.0.1:1/x-00.pth", NULL, dest, NULL, NULL, &err), CWBA_E_IO);
    fprintf(stderr, "  refused   -> %s\n", err.msg);
    assert_int_equal(cwba_fetch("ftp://example.org/x.pth", NULL, dest, NULL, NULL, &err), CWBA_E_ARG);
    assert_int_equal(cwba_fetch("http://127.0.0.1/x", "xyz", dest, NULL, NULL, &err), CWBA_E_ARG);
}

static void test_names(void **s)
{
    (void)s;
    char p[65];
    assert_true(cwba_hash_prefix_from_name(cwba_torchvision_url("alexnet"), p, sizeof p));
    assert_string_equal(p, "7be5be79");
    assert_true(cwba_hash_prefix_from_name(cwba_torchvision_url("resnet18"), p, sizeof p));
    assert_string_equal(p, "f37072fd");
    assert_true(cwba_hash_prefix_from_name(cwba_torchvision_url("vgg16"), p, sizeof p));
    assert_string_equal(p, "397923af");
    assert_null(cwba_torchvision_url("lenet"));
    /* Every architecture cwba builds has its file, named "<arch>-<hash>.pth"
     * (AlexNet's "alexnet-owt-"), with an 8-digit prefix. */
    for (int i = 0; i < cwba_arch_count(); i++) {
        const char *name = cwba_arch_name(cwba_arch_at(i));
        const char *url = cwba_torchvision_url(name);
        assert_non_null(url);
        const char *base = strrchr(url, '/') + 1;
        assert_int_equal(strncmp(base, name, strlen(name)), 0);
        assert_true(base[strlen(name)] == '-');
        assert_true(cwba_hash_prefix_from_name(url, p, sizeof p));
        assert_int_equal(strlen(p), 8);
    }
    assert_true(cwba_hash_prefix_from_name(cwba_torchvision_url("resnet50"), p, sizeof p));
    assert_string_equal(p, "0676ba61");
    assert_true(cwba_hash_prefix_from_name(cwba_torchvision_url("vgg11"), p, sizeof p));
    assert_string_equal(p, "8a719046");
    assert_false(cwba_hash_prefix_from_name("model.pth", p, sizeof p));
    char dir[4096];
    cwba_error err = {0};
    setenv("TORCH_HOME", "/opt/torch", 1);
    assert_int_equal(cwba_fetch_cache_dir(dir, sizeof dir, &err), CWBA_OK);
    assert_string_equal(dir, "/opt/torch/hub/checkpoints");
    unsetenv("TORCH_HOME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_download),
        cmocka_unit_test(test_failures_leave_nothing),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
