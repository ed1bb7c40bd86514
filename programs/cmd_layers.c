/* cwba layers: the split points of a model and the feature shape at each. */
#include "cli.h"

#include <string.h>

static const cli_optdef defs[] = {
    CLI_MODEL_OPTIONS,
    {"help", 0, "show this help"},
};

int cmd_layers(int argc, char **argv)
{
    cli_opts o;
    int rc = cli_begin(&o, defs, CLI_NDEFS(defs), argc, argv, "layers",
                       "--model M [--weights F] [--input-size S]", NULL);
    if (rc != CLI_GO) return rc;
    cli_model cm;
    if ((rc = cli_model_open(&o, &cm))) return rc;
    int s = cwba_model_input_size(cm.model);
    printf("# %s, input 3x%dx%d, %d classes\n", cwba_arch_name(cm.arch), s, s,
           cwba_model_num_classes(cm.model));
    printf("%-12s %s\n", "split", "feature (C x H x W)");
    for (int i = 0; i < cwba_model_num_splits(cm.model); i++) {
        int C, H, W;
        cwba_model_split_shape(cm.model, i, &C, &H, &W);
        printf("%-12s %d x %d x %d\n", cwba_model_split_name(cm.model, i), C, H, W);
    }
    cli_model_close(&cm);
    return 0;
}
