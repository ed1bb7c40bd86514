/* Compiles the template V16_TEMPLATE (a header name: see v16.h) once per
 * ISA: functions VNAME(f) become f_scalar, f_avx512 and f_avx2 (x86),
 * f_neon (AArch64). */
#define VATTR
#define VPFX v16s
#define VNAME(x) x##_scalar
#include V16_TEMPLATE
#undef VATTR
#undef VPFX
#undef VNAME
#ifdef NN_X86
#define VATTR __attribute__((target("avx512f")))
#define VPFX v16a
#define VNAME(x) x##_avx512
#include V16_TEMPLATE
#undef VATTR
#undef VPFX
#undef VNAME
#define VATTR __attribute__((target("avx2,fma")))
#define VPFX v16b
#define VNAME(x) x##_avx2
#include V16_TEMPLATE
#undef VATTR
#undef VPFX
#undef VNAME
#endif
#ifdef NN_NEON
#define VATTR
#define VPFX v16n
#define VNAME(x) x##_neon
#include V16_TEMPLATE
#undef VATTR
#undef VPFX
#undef VNAME
#endif
#undef V16_TEMPLATE
