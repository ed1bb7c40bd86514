/* The library's version, from the public header's numbers. */
#include "cwba/core.h"

#define CWBA_STR_(x) #x
#define CWBA_STR(x) CWBA_STR_(x)

const char *cwba_version(void)
{
    return CWBA_STR(CWBA_VERSION_MAJOR) "." CWBA_STR(CWBA_VERSION_MINOR) "." CWBA_STR(
        CWBA_VERSION_PATCH);
}
