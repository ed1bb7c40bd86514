/* SHA-256 of buffers and files, through OpenSSL's libcrypto (kept apart from
 * fileio.c so that the dependency-free build, cmake/minimal.cmake, can leave
 * it out). */
#include "cwba/core.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void to_hex(const unsigned char *md, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

void cwba_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, hex);
}

cwba_status cwba_sha256_file(const char *path, char hex[65], cwba_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return cwba_fail(err, CWBA_E_IO, "cannot open %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        fclose(f);
        EVP_MD_CTX_free(ctx);
        return cwba_fail(err, CWBA_E_INTERNAL, "sha256 unavailable");
    }
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, got);
    int bad = ferror(f);
    fclose(f);
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (bad) return cwba_fail(err, CWBA_E_IO, "read error on %s", path);
    to_hex(md, hex);
    return CWBA_OK;
}
