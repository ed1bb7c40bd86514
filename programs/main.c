/* cwba — command-line entry point: dispatches to one file per command. */
#include "cli.h"
#include "dist.h"

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
          "  serve        the cloud as an HTTP service: POST /v1/decode, batched\n"
          "  reproduce    calibrate + evaluate every method; prints the original's table\n"
          "  main_model   the original release's command line (--flag 0|1 ...)\n"
          "  merge        combine the --shard K/N parts of a calibration (docs/scale.md)\n"
          "  bdrate       Bjontegaard delta rates of rd-points curves against anchors\n"
          "  fetch-weights MODEL: torchvision's ImageNet weights of any model (libcurl)\n"
          "\n"
          "Defaults: the reference models in models/ (Fashion-MNIST, 64x64 input) and the\n"
          "Fashion-MNIST test set from /usr/share/datasets/fashion-mnist.\n",
          f);
}

int cmd_fetch_weights(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bdrate(int argc, char **argv);
int cmd_merge(int argc, char **argv);

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
        {"decode", cmd_decode},     {"serve", cmd_serve},
        {"bdrate", cmd_bdrate},     {"merge", cmd_merge},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(c, cmds[i].name)) {
            /* Under mpirun every rank runs the command; rank 0 alone prints
             * results (programs/dist.h). */
            if (dist_init(&argc, &argv)) return 1;
            static const char *const spread[] = {"calibrate", "evaluate", "reproduce", "merge",
                                                 "layers"};
            int ok = dist_size() == 1;
            for (size_t j = 0; j < sizeof spread / sizeof spread[0]; j++)
                ok |= !strcmp(c, spread[j]);
            if (!ok) {
                if (dist_rank() == 0)
                    cli_error("%s does not split its work across MPI ranks; run it without mpirun "
                              "(or --shard K/N where it has one)", c);
                dist_abort(2);
            }
            if (dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) dist_abort(1);
            int rc = cmds[i].fn(argc - 2, argv + 2);
            if (rc != 0 && dist_size() > 1) {
                fflush(stdout);
                dist_abort(rc);
            }
            dist_finalize();
            return rc;
        }
    cli_error("unknown command '%s' (try cwba --help)", c);
    return 2;
}
