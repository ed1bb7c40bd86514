/* Shared pieces of the command-line tool: option parsing, model and data
 * resolution, output. Uses the public API only. */
#ifndef CWBA_CLI_H
#define CWBA_CLI_H

#include "cwba.h"

#include <stdio.h>

/* ---- options: "--name value" pairs and "--flag" switches, validated against
 * a per-command list; unknown options and duplicates are errors. */
typedef struct cli_optdef {
    const char *name;  /* without the leading "--" */
    int takes_value;   /* 1: "--name V" or "--name=V"; 0: switch */
    const char *help;
} cli_optdef;

#define CLI_MAX_OPTS 48

/* Options every model-loading command takes (cli_model_open reads them). */
#define CLI_MODEL_OPTIONS                                                                        \
    {"model", 1, "alexnet | vgg11..vgg19[_bn] | resnet18..resnet152"},                           \
        {"weights", 1, "weights file, or synthetic:SEED (1000 classes; default: the reference "  \
                       "model in models/, which alexnet, vgg16 and resnet18 have)"},             \
        {"input-size", 1, "square input side in pixels (default: the model card's, else 224)"}, \
        {"conv", 1, "convolution arithmetic: direct (default: the same bits everywhere) | "       \
                    "winograd (3x3 layers 1.2-1.8x faster, within ~1e-6 relative; AVX-512)"}
/* The allocation's priority weights and DoReFa's clip (SPEC defaults). */
#define CLI_ALLOC_OPTIONS                                                                        \
    {"alpha", 1, "weight of the mean priority (default 0.9)"},                                   \
        {"beta", 1, "weight of the std priority (default 0.1)"},                                 \
        {"dorefa-clip", 1, "DoReFa clip value (default 0.9, as the original)"}
/* Probe sharing, one meaning for evaluate and reproduce: by default the
 * channel-wise configurations of one image share its probe errors (exact:
 * the same results; a row's passes and seconds are then what it adds). */
#define CLI_FRESH_PROBES_HELP                                                                    \
    "each configuration computes its own probe errors (standalone passes and times per row; "  \
    "default: the configurations of an image share them, same results)"
/* Image selection after --data (cli_data_open reads them with --every). */
#define CLI_SELECT_OPTIONS                                                                       \
    {"limit", 1, "use at most N images"}, {"offset", 1, "skip the first K images"}
typedef struct cli_opts {
    const cli_optdef *defs;
    int ndefs;
    const char *values[CLI_MAX_OPTS]; /* NULL when absent; "" for a given switch */
} cli_opts;

/* Returns 0 on success, else prints one error line and returns 2. */
int cli_parse(cli_opts *o, const cli_optdef *defs, int ndefs, int argc, char **argv,
              const char *cmd);
const char *cli_get(const cli_opts *o, const char *name);
int cli_has(const cli_opts *o, const char *name);
/* Overrides (or, with NULL, removes) an option's value: commands use it to
 * give a shared option a command-specific default. */
void cli_set(cli_opts *o, const char *name, const char *value);
/* Typed getters: print one error line and return 0 when the value is bad. */
int cli_get_int(const cli_opts *o, const char *name, long def, long lo, long hi, long *out);
int cli_get_double(const cli_opts *o, const char *name, double def, double *out);
/* Comma-separated integer list within [lo, hi] (at most max entries). */
int cli_get_int_list(const cli_opts *o, const char *name, const char *def, long lo, long hi,
                     long *out, int max, int *count);
void cli_print_help(const char *cmd, const char *synopsis, const cli_optdef *defs, int ndefs);

/* The common start of a command: parses argv against defs, prints the help
 * for --help, and checks that every option of `required` (NULL-terminated,
 * may be NULL) was given. Returns CLI_GO when the command should go on,
 * else its exit code (0 after the help, 2 after one error line). */
#define CLI_GO (-1)
#define CLI_NDEFS(defs) ((int)(sizeof(defs) / sizeof((defs)[0])))
int cli_begin(cli_opts *o, const cli_optdef *defs, int ndefs, int argc, char **argv,
              const char *cmd, const char *synopsis, const char *const *required);

/* ---- one error line on stderr: "cwba: <msg>" */
void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
int cli_fail_status(const cwba_error *err); /* prints err->msg, returns 1 */

/* ---- models */
typedef struct cli_model {
    cwba_arch arch;
    cwba_model *model;
    char weights_path[4096];
    int is_reference;       /* the project's reference model (card verified) */
    cwba_card card;         /* valid when is_reference */
} cli_model;

/* --model M [--weights F] [--input-size S] [--conv A]. Default weights: the reference
 * model from the models directory ($CWBA_MODELS or the source tree's models/),
 * verified against its card's sha256. Returns 0 or prints and returns 1/2. */
int cli_model_open(const cli_opts *o, cli_model *cm);
void cli_model_close(cli_model *cm);

/* ---- data: --data D (default: Fashion-MNIST test set), preprocessing chosen
 * to match the model; --limit N, --offset K select images. */
typedef struct cli_data {
    cwba_dataset *ds;
    int first, count; /* selected range */
    int every;
} cli_data;
int cli_data_open(const cli_opts *o, const cli_model *cm, cli_data *cd);
void cli_data_close(cli_data *cd);
/* Index into the dataset of the i-th selected image. */
int cli_data_index(const cli_data *cd, int i);
/* Reads the i-th selected image; with --skip-unreadable an unreadable image
 * sets *skipped and returns 0. Prints and returns 1 on error. */
int cli_data_get(const cli_data *cd, int i, float *out, int *label, int *skipped, cwba_error *err);
/* "skipped N unreadable images" on stderr when N > 0. */
void cli_data_report_skipped(const cli_data *cd);

/* ---- the back end of a split as an allocation callback */
typedef struct cli_backend_ctx {
    cwba_model *model;
    int split;
} cli_backend_ctx;
void cli_backend_init(cwba_backend *be, cli_backend_ctx *ctx, cwba_model *m, int split);

/* ---- progress on stderr when it is a terminal */
typedef struct cli_progress {
    int enabled;
    double start, last;
    const char *what;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what);
void cli_progress_update(cli_progress *p, long done, long total);
void cli_progress_end(cli_progress *p);

/* ---- commands */
int cmd_layers(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_main_model(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);

/* DIR/2.csv .. DIR/7.csv, the interval-table layout; prints and returns 2
 * when a path does not fit. */
int cli_table_paths(const char *dir, char paths[6][4096]);
/* mkdir -p; prints and returns non-zero on failure. */
int cli_mkdirs(const char *path);
/* The original release's split point for each model. */
const char *cli_default_split(cwba_arch a);

#endif
