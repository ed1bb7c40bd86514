/* Model cards: the JSON file beside each reference model (arch, sha256 of the
 * uncompressed weights, test accuracy, preprocessing, reference logits). */
#include "io_internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Cards are a few KB; anything above this is not a card. */
#define CARD_MAX_BYTES ((size_t)16 << 20)

static int json_number(const json_t *v, double *out)
{
    if (!json_is_number(v)) return 0;
    *out = json_number_value(v);
    return 1;
}

static cwba_status parse_card(const char *path, json_t *root, cwba_card *card, cwba_error *err)
{
    if (!json_is_object(root))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card is not a JSON object", path);

    json_t *arch = json_object_get(root, "arch");
    if (!json_is_string(arch))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card has no \"arch\" string", path);
    /* "resnet18 (torchvision, num_classes=10)" -> "resnet18" */
    const char *a = json_string_value(arch);
    size_t n = 0;
    while (a[n] && !isspace((unsigned char)a[n]) && a[n] != '(') n++;
    if (n == 0 || n >= sizeof card->arch)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card \"arch\" \"%s\" is not a model name",
                         path, a);
    memcpy(card->arch, a, n);
    card->arch[n] = '\0';

    json_t *sha = json_object_get(root, "sha256");
    const char *s = json_is_string(sha) ? json_string_value(sha) : NULL;
    if (!s || strlen(s) != 64)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card \"sha256\" must be 64 hex digits", path);
    for (int i = 0; i < 64; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return cwba_fail(err, CWBA_E_FORMAT, "%s: model card \"sha256\" must be 64 hex digits",
                             path);
        card->sha256[i] = (char)tolower((unsigned char)s[i]);
    }
    card->sha256[64] = '\0';

    if (!json_number(json_object_get(root, "test_top1"), &card->test_top1) || card->test_top1 < 0 ||
        card->test_top1 > 1)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card \"test_top1\" must be in [0, 1]", path);

    json_t *in = json_object_get(root, "input");
    if (!json_is_object(in))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card has no \"input\" object", path);
    json_t *size = json_object_get(in, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 1 || json_integer_value(size) > 4096)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card \"input.size\" must be 1..4096", path);
    card->input_size = (int)json_integer_value(size);
    if (!json_number(json_object_get(in, "mean"), &card->mean))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card has no number \"input.mean\"", path);
    if (!json_number(json_object_get(in, "std"), &card->std) || !(card->std > 0))
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card \"input.std\" must be > 0", path);

    json_t *logits = json_object_get(root, "reference_logits_first16");
    if (!logits) return CWBA_OK; /* optional: cards for user models may omit it */
    size_t rows = json_array_size(logits);
    if (!json_is_array(logits) || rows == 0 || rows > 100000)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: model card \"reference_logits_first16\" must be a non-empty array", path);
    size_t cols = json_array_size(json_array_get(logits, 0));
    if (cols == 0 || cols > 100000)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: model card reference logits row 0 is empty", path);
    /* Every row is checked before the allocation, so that its size is what
     * the file holds (a long row 0 and many empty rows must not allocate
     * rows x cols). */
    for (size_t r = 0; r < rows; r++) {
        json_t *row = json_array_get(logits, r);
        if (!json_is_array(row) || json_array_size(row) != cols)
            return cwba_fail(err, CWBA_E_FORMAT,
                             "%s: model card reference logits row %zu does not have %zu numbers", path,
                             r, cols);
    }
    card->ref_logits = malloc(rows * cols * sizeof(float)); /* (rows, cols) */
    if (!card->ref_logits) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    for (size_t r = 0; r < rows; r++) {
        json_t *row = json_array_get(logits, r);
        for (size_t c = 0; c < cols; c++) {
            double v;
            if (!json_number(json_array_get(row, c), &v))
                return cwba_fail(err, CWBA_E_FORMAT,
                                 "%s: model card reference logits [%zu][%zu] is not a number", path, r,
                                 c);
            card->ref_logits[r * cols + c] = (float)v;
        }
    }
    card->num_ref_logits = (int)rows;
    card->num_classes = (int)cols;
    return CWBA_OK;
}

cwba_status cwba_card_load(const char *path, cwba_card *card, cwba_error *err)
{
    memset(card, 0, sizeof *card);
    uint8_t *buf = NULL;
    size_t len = 0;
    cwba_status st = cwba_file_read_all(path, CARD_MAX_BYTES, &buf, &len, err);
    if (st) return st;
    st = cwba_card_parse(buf, len, path, card, err);
    free(buf);
    return st;
}

cwba_status cwba_card_parse(const uint8_t *buf, size_t len, const char *path, cwba_card *card,
                            cwba_error *err)
{
    memset(card, 0, sizeof *card);
    if (len > CARD_MAX_BYTES)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: %zu bytes is too large for a model card", path, len);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cwba_fail(err, CWBA_E_FORMAT, "%s: bad JSON in model card: %s (line %d)", path,
                         jerr.text, jerr.line);
    cwba_status st = parse_card(path, root, card, err);
    json_decref(root);
    if (st) cwba_card_free(card);
    return st;
}

void cwba_card_free(cwba_card *card)
{
    if (!card) return;
    free(card->ref_logits);
    card->ref_logits = NULL;
    card->num_ref_logits = 0;
    card->num_classes = 0;
}

cwba_status cwba_card_verify(const cwba_card *card, const char *weights_path, cwba_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    cwba_status st = cwba_read_maybe_xz(weights_path, &buf, &len, err);
    if (st) return st;
    char hex[65];
    cwba_sha256_hex(buf, len, hex);
    free(buf);
    if (strcmp(hex, card->sha256) != 0)
        return cwba_fail(err, CWBA_E_FORMAT,
                         "%s: sha256 %s does not match the model card (%s expects %s)", weights_path,
                         hex, card->arch, card->sha256);
    return CWBA_OK;
}
