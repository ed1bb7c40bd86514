/* Downloading torchvision's published weights with libcurl.
 *
 * The bytes stream into a temporary file beside the destination (cwba_atomic_*)
 * while their SHA-256 is computed; only a complete transfer whose digest starts
 * with the expected prefix is renamed into place. Any failure — HTTP error,
 * connection dropped before Content-Length, digest mismatch, cancellation —
 * removes the temporary file, so the destination is either absent, the old
 * file, or the verified new one. */
#include "cwba/io.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/evp.h>

static const struct {
    const char *arch, *url;
} k_torchvision[] = {
    /* IMAGENET1K_V1 of torchvision 0.14's models/alexnet.py, resnet.py and
     * vgg.py (the weights of the original's era). */
    {"alexnet", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"},
    {"resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth"},
    {"resnet34", "https://download.pytorch.org/models/resnet34-b627a593.pth"},
    {"resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth"},
    {"resnet101", "https://download.pytorch.org/models/resnet101-63fe2227.pth"},
    {"resnet152", "https://download.pytorch.org/models/resnet152-394f9c45.pth"},
    {"vgg11", "https://download.pytorch.org/models/vgg11-8a719046.pth"},
    {"vgg11_bn", "https://download.pytorch.org/models/vgg11_bn-6002323d.pth"},
    {"vgg13", "https://download.pytorch.org/models/vgg13-19584684.pth"},
    {"vgg13_bn", "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth"},
    {"vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth"},
    {"vgg16_bn", "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"},
    {"vgg19", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"},
    {"vgg19_bn", "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth"},
};

const char *cwba_torchvision_url(const char *arch)
{
    for (size_t i = 0; arch && i < sizeof k_torchvision / sizeof k_torchvision[0]; i++)
        if (strcmp(arch, k_torchvision[i].arch) == 0) return k_torchvision[i].url;
    return NULL;
}

int cwba_hash_prefix_from_name(const char *url_or_name, char *out, size_t out_size)
{
    /* torch.hub's rule: the first "-<hex>." in the file name (regex -([a-f0-9]*)\.). */
    const char *name = strrchr(url_or_name, '/');
    name = name ? name + 1 : url_or_name;
    for (const char *p = strchr(name, '-'); p; p = strchr(p + 1, '-')) {
        const char *h = p + 1, *e = h;
        while ((*e >= '0' && *e <= '9') || (*e >= 'a' && *e <= 'f')) e++;
        if (*e == '.') {
            size_t n = (size_t)(e - h);
            if (n == 0 || n >= out_size) return 0;
            memcpy(out, h, n);
            out[n] = '\0';
            return 1;
        }
    }
    return 0;
}

cwba_status cwba_fetch_cache_dir(char *out, size_t out_size, cwba_error *err)
{
    /* torch.hub's checkpoint directory, so files PyTorch already downloaded are
     * found and ours serve PyTorch too: $TORCH_HOME/hub/checkpoints, with
     * TORCH_HOME defaulting to ${XDG_CACHE_HOME:-~/.cache}/torch. */
    const char *th = getenv("TORCH_HOME"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (th && *th) n = snprintf(out, out_size, "%s/hub/checkpoints", th);
    else if (xdg && *xdg) n = snprintf(out, out_size, "%s/torch/hub/checkpoints", xdg);
    else if (home && *home) n = snprintf(out, out_size, "%s/.cache/torch/hub/checkpoints", home);
    else return cwba_fail(err, CWBA_E_ARG, "no cache directory: set TORCH_HOME or HOME");
    if (n < 0 || (size_t)n >= out_size) return cwba_fail(err, CWBA_E_ARG, "cache directory path too long");
    return CWBA_OK;
}

/* mkdir -p of the directory part of path. */
static cwba_status make_parent_dirs(const char *path, cwba_error *err)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return cwba_fail(err, CWBA_E_ARG, "%s: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return CWBA_OK;
    *slash = '\0';
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return cwba_fail(err, CWBA_E_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return cwba_fail(err, CWBA_E_IO, "cannot create directory %s: %s", buf, strerror(errno));
    return CWBA_OK;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;
static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct fetch_job {
    cwba_atomic_file *file;
    EVP_MD_CTX *sha;
    cwba_error write_err;
    int write_failed;
    cwba_fetch_progress_fn progress;
    void *user;
    int cancelled;
} fetch_job;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userp)
{
    fetch_job *j = userp;
    size_t n = size * nmemb;
    if (cwba_atomic_write(j->file, data, n, &j->write_err) != CWBA_OK) {
        j->write_failed = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    EVP_DigestUpdate(j->sha, data, n);
    return n;
}

static int on_progress(void *userp, curl_off_t total, curl_off_t done, curl_off_t ut, curl_off_t un)
{
    (void)ut;
    (void)un;
    fetch_job *j = userp;
    if (!j->progress) return 0;
    if (j->progress(j->user, done < 0 ? 0 : (uint64_t)done, total < 0 ? 0 : (uint64_t)total)) {
        j->cancelled = 1;
        return 1;
    }
    return 0;
}

cwba_status cwba_fetch(const char *url, const char *expected_sha_prefix, const char *dest_path,
                       cwba_fetch_progress_fn progress, void *user, cwba_error *err)
{
    if (!url || !dest_path || !*dest_path) return cwba_fail(err, CWBA_E_ARG, "fetch: URL and destination needed");
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return cwba_fail(err, CWBA_E_ARG, "fetch: %s is not an http(s) URL", url);
    size_t plen = expected_sha_prefix ? strlen(expected_sha_prefix) : 0;
    if (plen > 64) return cwba_fail(err, CWBA_E_ARG, "fetch: sha256 prefix longer than 64 hex digits");
    for (size_t i = 0; i < plen; i++)
        if (!isxdigit((unsigned char)expected_sha_prefix[i]))
            return cwba_fail(err, CWBA_E_ARG, "fetch: sha256 prefix \"%s\" is not hexadecimal", expected_sha_prefix);
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK) return cwba_fail(err, CWBA_E_INTERNAL, "fetch: libcurl initialisation failed");
    cwba_status st = make_parent_dirs(dest_path, err);
    if (st) return st;

    fetch_job j;
    memset(&j, 0, sizeof j);
    j.progress = progress;
    j.user = user;
    st = cwba_atomic_open(dest_path, &j.file, err);
    if (st) return st;
    j.sha = EVP_MD_CTX_new();
    CURL *c = curl_easy_init();
    if (!j.sha || !c || EVP_DigestInit_ex(j.sha, EVP_sha256(), NULL) != 1) {
        st = cwba_fail(err, CWBA_E_NOMEM, "fetch: out of memory");
        goto fail;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cwba/0.1 (libcurl)");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled transfer (under 1 byte/s for a minute) fails instead of hanging. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &j);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &j);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        if (j.write_failed)
            st = cwba_fail(err, j.write_err.status ? j.write_err.status : CWBA_E_IO, "%s", j.write_err.msg);
        else if (j.cancelled)
            st = cwba_fail(err, CWBA_E_ARG, "fetch: download of %s cancelled; nothing written", url);
        else
            st = cwba_fail(err, CWBA_E_IO, "fetch: %s: %s", url, cerr[0] ? cerr : curl_easy_strerror(rc));
        goto fail;
    }
    curl_off_t got = 0;
    curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &got);
    if (got <= 0) {
        st = cwba_fail(err, CWBA_E_IO, "fetch: %s: empty response", url);
        goto fail;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(j.sha, md, &mdlen);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    for (size_t i = 0; i < plen; i++) {
        if (tolower((unsigned char)expected_sha_prefix[i]) != hex[i]) {
            st = cwba_fail(err, CWBA_E_FORMAT,
                           "fetch: %s: sha256 %s does not start with %s (corrupt or wrong download); "
                           "nothing written", url, hex, expected_sha_prefix);
            goto fail;
        }
    }
    curl_easy_cleanup(c);
    EVP_MD_CTX_free(j.sha);
    return cwba_atomic_commit(j.file, err);
fail:
    cwba_atomic_abort(j.file);
    if (c) curl_easy_cleanup(c);
    EVP_MD_CTX_free(j.sha);
    return st;
}
