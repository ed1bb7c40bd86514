/* cwba fetch-weights: torchvision's published ImageNet weights, downloaded
 * with libcurl into torch.hub's cache (so files PyTorch fetched are reused),
 * verified against the sha256 prefix in the file name, never left partial. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const cli_optdef defs[] = {
    {"dir", 1, "cache directory (default: $TORCH_HOME/hub/checkpoints, as torch.hub)"},
    {"url", 1, "download from this URL instead (its file name must carry the hash prefix)"},
    {"force", 0, "download again even if the file is present"},
    {"help", 0, "show this help"},
};

static int progress(void *user, uint64_t done, uint64_t total)
{
    cli_progress *p = user;
    if (total > 0) cli_progress_update(p, (long)(done >> 10), (long)(total >> 10));
    return 0;
}

int cmd_fetch_weights(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        if (argc >= 1 && !strcmp(argv[0], "--help")) {
            cli_print_help("fetch-weights", "MODEL [options] (alexnet, vgg11..vgg19[_bn], resnet18..resnet152)", defs,
                           (int)(sizeof defs / sizeof defs[0]));
            return 0;
        }
        cli_error("fetch-weights: name the model: alexnet, vgg11..vgg19[_bn], resnet18..resnet152");
        return 2;
    }
    const char *arch = argv[0];
    cli_opts o;
    int nd = (int)(sizeof defs / sizeof defs[0]);
    int rc = cli_parse(&o, defs, nd, argc - 1, argv + 1, "fetch-weights");
    if (rc) return rc;
    const char *url = cli_has(&o, "url") ? cli_get(&o, "url") : cwba_torchvision_url(arch);
    if (!url) {
        cli_error("fetch-weights: unknown model '%s' (alexnet, vgg11..vgg19[_bn], resnet18..resnet152)", arch);
        return 2;
    }
    cwba_error err;
    cwba_error_clear(&err);
    char dir[2048];
    if (cli_has(&o, "dir"))
        snprintf(dir, sizeof dir, "%s", cli_get(&o, "dir"));
    else if (cwba_fetch_cache_dir(dir, sizeof dir, &err))
        return cli_fail_status(&err);
    const char *base = strrchr(url, '/');
    base = base ? base + 1 : url;
    char prefix[80];
    if (!cwba_hash_prefix_from_name(base, prefix, sizeof prefix)) {
        cli_error("fetch-weights: '%s' carries no hash prefix to verify", base);
        return 2;
    }
    char dest[4096];
    snprintf(dest, sizeof dest, "%s/%s", dir, base);
    struct stat st;
    if (!cli_has(&o, "force") && stat(dest, &st) == 0) {
        char hex[65];
        if (cwba_sha256_file(dest, hex, &err)) return cli_fail_status(&err);
        if (!strncmp(hex, prefix, strlen(prefix))) {
            printf("%s\n", dest);
            return 0;
        }
        fprintf(stderr, "cwba: %s does not match its hash prefix; downloading again\n", dest);
    }
    cli_progress p;
    cli_progress_start(&p, "download (KiB)");
    cwba_status s = cwba_fetch(url, prefix, dest, progress, &p, &err);
    cli_progress_end(&p);
    if (s) return cli_fail_status(&err);
    printf("%s\n", dest);
    return 0;
}
