/* Runs a fuzz target's LLVMFuzzerTestOneInput on files, without libFuzzer:
 * with any compiler, so that the ordinary (and the ASan) build replays every
 * committed seed and regression input through the same checks.
 *   fuzz_X_replay FILE_OR_DIR...   (directories: their regular files)
 * Fails if an input aborts or crashes (the checks), or if no input was found. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "fuzz_util.h"

#define REPLAY_MAX_BYTES ((rlim_t)2 << 30)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 0;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return 0;
    }
    /* Stdout names the input first, so a crash shows which one it was. */
    printf("%s (%zu bytes)\n", path, n);
    fflush(stdout);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ASan reserves terabytes of address space for its shadow; only builds
 * without it can cap the address space. */
#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_ASAN 1
#endif
#endif

int main(int argc, char **argv)
{
#ifndef REPLAY_ASAN
    /* As libFuzzer's 2 GB limit does: a parser that asks for more on these
     * small inputs gets NULL, reports CWBA_E_NOMEM, and that is a finding. */
    struct rlimit lim = {.rlim_cur = REPLAY_MAX_BYTES, .rlim_max = REPLAY_MAX_BYTES};
    if (setrlimit(RLIMIT_AS, &lim) != 0) {
        perror("replay: setrlimit");
        return 1;
    }
#endif
    size_t done = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s does not exist\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (!run_file(argv[i])) return 1;
            done++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            return 1;
        }
        char **names = NULL;
        size_t nn = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char **nv = realloc(names, (nn + 1) * sizeof *names);
            if (!nv) return 1;
            names = nv;
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            if (!(names[nn] = malloc(len))) return 1;
            snprintf(names[nn++], len, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        if (nn) qsort(names, nn, sizeof *names, cmp_str);
        for (size_t k = 0; k < nn; k++) {
            if (stat(names[k], &sb) == 0 && S_ISREG(sb.st_mode)) {
                if (!run_file(names[k])) return 1;
                done++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("%zu inputs replayed, no finding\n", done);
    return done > 0 ? 0 : 1;
}
