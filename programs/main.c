/* cwba — command-line entry point: dispatches to one file per command. */
#include "cli.h"

#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: cwba <command> [options]   (cwba <command> --help for its options)\n"
          "       cwba --version            version and the kernels' instruction set\n"
          "\n"
          "commands:\n"
          "  layers       split points of a model with their feature shapes\n"
          "  infer        top-1 accuracy; optionally save logits / features as .npy\n"
          "  calibrate    build the quantization interval table (the original's --flag 0)\n"
          "  evaluate     quantize features at a split and measure the cost (--flag 1)\n"
          "  encode       the edge: images -> quantized feature bitstreams (.cwb)\n"
          "  decode       the cloud: bitstreams -> back end -> top-5 classes\n"
          "  reproduce    calibrate + evaluate every method; prints the original's table\n"
          "  main_model   the original release's command line (--flag 0|1 ...)\n"
          "  fetch-weights MODEL: torchvision's ImageNet weights of any model (libcurl)\n"
          "\n"
          "Defaults: the reference models in models/ (Fashion-MNIST, 64x64 input) and the\n"
          "Fashion-MNIST test set from /usr/share/datasets/fashion-mnist.\n",
          f);
}

int cmd_fetch_weights(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    /* A mistyped cap must not silently run the default kernels. */
    cwba_error err;
    if (cwba_isa_env_check(&err) != CWBA_OK) {
        cli_error("%s", err.msg);
        return 2;
    }
    if (!strcmp(c, "--version")) {
        printf("cwba %s (kernels: %s)\n", CWBA_VERSION_STRING, cwba_isa_name(cwba_isa_current()));
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"layers", cmd_layers},     {"infer", cmd_infer},         {"calibrate", cmd_calibrate},
        {"evaluate", cmd_evaluate}, {"reproduce", cmd_reproduce}, {"main_model", cmd_main_model},
        {"fetch-weights", cmd_fetch_weights}, {"encode", cmd_encode},
        {"decode", cmd_decode},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(c, cmds[i].name)) return cmds[i].fn(argc - 2, argv + 2);
    cli_error("unknown command '%s' (try cwba --help)", c);
    return 2;
}
