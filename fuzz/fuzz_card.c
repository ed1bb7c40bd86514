/* libFuzzer target: model cards (the JSON beside each model). */
#include "fuzz_util.h"

#include "cwba/io.h"
#include "io/io_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_copy(data, size);
    cwba_card card;
    cwba_error err = {0};
    cwba_status st = cwba_card_parse(buf, size, "fuzz.json", &card, &err);
    fuzz_check_status(st, &err);
    if (st == CWBA_OK) {
        if (strlen(card.arch) == 0 || strlen(card.sha256) != 64 || card.input_size < 1 ||
            card.input_size > 4096 || !(card.std > 0))
            abort();
        if ((card.ref_logits == NULL) != (card.num_ref_logits == 0)) abort();
        fuzz_touch(card.ref_logits, (size_t)card.num_ref_logits * (size_t)card.num_classes);
    } else if (card.ref_logits) {
        abort(); /* a failed parse leaves nothing to free */
    }
    cwba_card_free(&card);
    free(buf);
    return 0;
}
