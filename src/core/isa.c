/* Run-time choice of the kernels' instruction set (see cwba/core.h).
 *
 * Detection is done once; CWBA_MAX_ISA caps it. The order of the caps is the
 * order of capability on each architecture: scalar < avx2 < avx512 on
 * x86-64, scalar < neon on AArch64. */
#include "cwba/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const NAMES[] = {"scalar", "avx2", "avx512", "neon"};
#define NISA ((int)(sizeof NAMES / sizeof NAMES[0]))

static cwba_isa g_isa;
static int g_env_bad; /* CWBA_MAX_ISA set but not usable here */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

const char *cwba_isa_name(cwba_isa isa)
{
    return (int)isa >= 0 && (int)isa < NISA ? NAMES[isa] : "?";
}

cwba_status cwba_isa_parse(const char *s, cwba_isa *out, cwba_error *err)
{
    for (int i = 0; s && i < NISA; i++)
        if (strcmp(s, NAMES[i]) == 0) {
            *out = (cwba_isa)i;
            return CWBA_OK;
        }
    return cwba_fail(err, CWBA_E_ARG, "unknown instruction set '%s' (scalar, avx2, avx512, neon)",
                     s ? s : "");
}

/* Whether the ISA belongs to the architecture this library was built for. */
static int isa_of_arch(cwba_isa isa)
{
    if (isa == CWBA_ISA_SCALAR) return 1;
#if defined(__x86_64__) || defined(__i386__)
    return isa == CWBA_ISA_AVX2 || isa == CWBA_ISA_AVX512;
#elif defined(__aarch64__)
    return isa == CWBA_ISA_NEON;
#else
    return 0;
#endif
}

int cwba_isa_supported(cwba_isa isa)
{
    if (!isa_of_arch(isa)) return 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (isa == CWBA_ISA_AVX512) return __builtin_cpu_supports("avx512f");
    if (isa == CWBA_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 1; /* scalar everywhere; Advanced SIMD is part of every AArch64 CPU */
}

static void pick(void)
{
    cwba_isa cap = CWBA_ISA_NEON, best = CWBA_ISA_SCALAR;
    const char *env = getenv("CWBA_MAX_ISA");
    if (env && *env) {
        if (cwba_isa_parse(env, &cap, NULL) != CWBA_OK || !isa_of_arch(cap)) {
            g_env_bad = 1;
            cap = CWBA_ISA_NEON;
        }
    }
    /* Highest supported ISA of this architecture not above the cap. */
    for (int i = 0; i < NISA; i++)
        if (cwba_isa_supported((cwba_isa)i) && i <= (int)cap) best = (cwba_isa)i;
    g_isa = best;
}

cwba_isa cwba_isa_current(void)
{
    pthread_once(&g_once, pick);
    return g_isa;
}

cwba_status cwba_isa_env_check(cwba_error *err)
{
    cwba_isa_current();
    if (!g_env_bad) return CWBA_OK;
    return cwba_fail(err, CWBA_E_ARG,
                     "CWBA_MAX_ISA='%s' is not an instruction set of this CPU's architecture "
#if defined(__aarch64__)
                     "(scalar, neon)",
#elif defined(__x86_64__) || defined(__i386__)
                     "(scalar, avx2, avx512)",
#else
                     "(scalar)",
#endif
                     getenv("CWBA_MAX_ISA"));
}

int cwba_isa_set(cwba_isa isa)
{
    cwba_isa_current();
    if (!cwba_isa_supported(isa)) return 0;
    g_isa = isa;
    return 1;
}
