/* libFuzzer target: NumPy .npy arrays (cwba_npy_read_f32's parser). */
#include "fuzz_util.h"

#include "cwba/io.h"
#include "io/io_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = fuzz_copy(data, size);
    float *x = NULL;
    int ndim = -1;
    int64_t shape[CWBA_MAX_DIMS];
    cwba_error err = {0};
    cwba_status st = cwba_npy_parse_f32(buf, size, "fuzz.npy", &x, &ndim, shape, &err);
    fuzz_check_status(st, &err);
    if (st == CWBA_OK) {
        if (ndim < 0 || ndim > CWBA_MAX_DIMS || !x) abort();
        size_t numel = 1;
        for (int i = 0; i < ndim; i++) {
            if (shape[i] < 0) abort();
            numel *= (size_t)shape[i];
        }
        fuzz_touch(x, numel);
    } else if (x) {
        abort();
    }
    free(x);
    free(buf);
    return 0;
}
