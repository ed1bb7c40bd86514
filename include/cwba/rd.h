/* cwba/rd.h — rate-distortion comparisons: the Bjøntegaard delta rate
 * (BD-rate) between two rate-distortion curves (docs/anchors.md).
 *
 * Each curve is a set of (rate, quality) points, quality being a "higher is
 * better" distortion measure such as PSNR = 10 log10(1/MSE) or top-1. The
 * BD-rate of a test curve against an anchor is the average difference of
 * their log-rates over the quality interval both cover,
 *     BD = exp( (1/(hi-lo)) * integral_lo^hi [ln R_test(D) - ln R_anchor(D)] dD ) - 1,
 * in percent: -20 means the test curve needs 20 % fewer bits for the same
 * quality on average. ln R(D) comes from one of two fits:
 *   - CWBA_BD_CUBIC, the classic method (G. Bjøntegaard, VCEG-M33, 2001): a
 *     cubic polynomial fitted to (D, ln R) by least squares (through the
 *     points when there are exactly four);
 *   - CWBA_BD_PCHIP, the piecewise-cubic variant (VCEG-AL22 and the JVET
 *     common-test-condition sheets): monotone piecewise cubic Hermite
 *     interpolation (Fritsch-Carlson slopes, as MATLAB's and SciPy's pchip),
 *     integrated exactly. */
#ifndef CWBA_RD_H
#define CWBA_RD_H

#include "cwba/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cwba_bd_fit { CWBA_BD_CUBIC = 0, CWBA_BD_PCHIP = 1 } cwba_bd_fit;

const char *cwba_bd_fit_name(cwba_bd_fit f);
cwba_status cwba_bd_fit_parse(const char *name, cwba_bd_fit *out, cwba_error *err);

#define CWBA_BD_MIN_POINTS 4
#define CWBA_BD_MAX_POINTS 256

/* BD-rate in percent of the test curve (rate_t, qual_t: nt points) against
 * the anchor (rate_a, qual_a: na points), in any point order. Every rate must
 * be finite and > 0, every quality finite; each curve needs at least
 * CWBA_BD_MIN_POINTS points whose quality strictly increases with rate
 * (CWBA_E_ARG otherwise, naming the curve and points), and the two quality
 * ranges must overlap (CWBA_E_ARG "no overlap"). */
cwba_status cwba_bd_rate(const double *rate_a, const double *qual_a, int na,
                         const double *rate_t, const double *qual_t, int nt, cwba_bd_fit fit,
                         double *percent, cwba_error *err);

#ifdef __cplusplus
}
#endif
#endif
