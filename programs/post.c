/* The edge client of `cwba serve` (post.h). */
#include "post.h"

#include "cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct post_client {
    CURL *curl;
    struct curl_slist *headers;
    char *url;
    int retries;
    char *body; /* the answer being received */
    size_t len, cap;
    long retry_after; /* seconds, from the last answer; -1 when absent */
};

#define POST_MAX_ANSWER (1 << 20)

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    post_client *pc = user;
    size_t n = size * nmemb;
    if (pc->len + n + 1 > POST_MAX_ANSWER) return 0; /* a server gone wrong: stop reading */
    if (pc->len + n + 1 > pc->cap) {
        size_t nc = (pc->len + n + 1) * 2;
        char *nb = realloc(pc->body, nc);
        if (!nb) return 0;
        pc->body = nb;
        pc->cap = nc;
    }
    memcpy(pc->body + pc->len, data, n);
    pc->len += n;
    pc->body[pc->len] = 0;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    post_client *pc = user;
    size_t n = size * nmemb;
    if (n > 12 && !strncasecmp(data, "Retry-After:", 12)) {
        char tmp[32];
        size_t k = n - 12 < sizeof tmp - 1 ? n - 12 : sizeof tmp - 1;
        memcpy(tmp, data + 12, k);
        tmp[k] = 0;
        long v = strtol(tmp, NULL, 10);
        if (v >= 0) pc->retry_after = v;
    }
    return n;
}

int post_client_open(const char *url, const char *token_file, const char *cacert, int retries,
                     post_client **out)
{
    *out = NULL;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)) {
        cli_error("--post: '%s' is not an http:// or https:// URL", url);
        return 2;
    }
    post_client *pc = calloc(1, sizeof *pc);
    if (!pc || !(pc->url = strdup(url))) {
        free(pc);
        cli_error("out of memory");
        return 1;
    }
    pc->retries = retries;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!(pc->curl = curl_easy_init())) {
        post_client_close(pc);
        cli_error("--post: cannot start libcurl");
        return 1;
    }
    pc->headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    /* no "Expect: 100-continue" round trip: streams are small */
    pc->headers = curl_slist_append(pc->headers, "Expect:");
    if (token_file) {
        cwba_error err;
        uint8_t *tok = NULL;
        size_t len = 0;
        if (cwba_file_read_all(token_file, 4096, &tok, &len, &err)) {
            post_client_close(pc);
            cli_error("--token-file: %s", err.msg);
            return 1;
        }
        while (len && (tok[len - 1] == '\n' || tok[len - 1] == '\r' || tok[len - 1] == ' ' ||
                       tok[len - 1] == '\t'))
            len--;
        char line[4200];
        snprintf(line, sizeof line, "Authorization: Bearer %.*s", (int)len, (const char *)tok);
        free(tok);
        pc->headers = curl_slist_append(pc->headers, line);
    }
    CURL *c = pc->curl;
    curl_easy_setopt(c, CURLOPT_URL, pc->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, pc->headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, pc);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, pc);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cacert) curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    *out = pc;
    return 0;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* The server's {"error": ...} message, or the body itself. */
static void answer_error(const post_client *pc, char *msg, size_t cap)
{
    json_error_t je;
    json_t *j = pc->body ? json_loads(pc->body, 0, &je) : NULL;
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    snprintf(msg, cap, "%s", e ? e : pc->body ? pc->body : "(no answer body)");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    json_decref(j);
}

int post_client_send(post_client *pc, const uint8_t *buf, size_t len, const char *what, FILE *out)
{
    curl_easy_setopt(pc->curl, CURLOPT_POSTFIELDS, (const char *)buf);
    curl_easy_setopt(pc->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    double backoff = 0.1;
    char reason[600] = "";
    int attempts = 0;
    for (int attempt = 0; attempt <= pc->retries; attempt++) {
        attempts++;
        if (attempt) {
            double wait = pc->retry_after >= 0 ? (double)pc->retry_after : backoff;
            sleep_s(wait > 5 ? 5 : wait);
            backoff = backoff * 2 > 5 ? 5 : backoff * 2;
        }
        pc->len = 0;
        pc->retry_after = -1;
        CURLcode cc = curl_easy_perform(pc->curl);
        long code = 0;
        curl_easy_getinfo(pc->curl, CURLINFO_RESPONSE_CODE, &code);
        if (cc != CURLE_OK) {
            int transient = cc == CURLE_COULDNT_CONNECT || cc == CURLE_RECV_ERROR ||
                            cc == CURLE_SEND_ERROR || cc == CURLE_GOT_NOTHING ||
                            cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_PARTIAL_FILE;
            snprintf(reason, sizeof reason, "%s", curl_easy_strerror(cc));
            if (!transient) break;
            continue;
        }
        if (code == 200) {
            fputs(pc->body ? pc->body : "", out);
            if (!pc->len || pc->body[pc->len - 1] != '\n') fputc('\n', out);
            fflush(out);
            return 0;
        }
        char msg[512];
        answer_error(pc, msg, sizeof msg);
        snprintf(reason, sizeof reason, "HTTP %ld: %s", code, msg);
        if (code != 503 && code != 502 && code != 504) {
            cli_error("%s: %s refused it: %s", what, pc->url, reason);
            return 1;
        }
    }
    cli_error("%s: POST %s failed after %d attempt%s: %s", what, pc->url, attempts,
              attempts > 1 ? "s" : "", reason);
    return 1;
}

void post_client_close(post_client *pc)
{
    if (!pc) return;
    if (pc->curl) curl_easy_cleanup(pc->curl);
    curl_slist_free_all(pc->headers);
    free(pc->url);
    free(pc->body);
    free(pc);
}
