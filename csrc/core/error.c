/*
 * error.c - messages and names for the GPM_E* codes.
 */
#include "gpm/error.h"

const char *gpm_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define GPM__ERR_MSG(name, value, msg)                                         \
    case GPM_##name:                                                           \
        return msg;
        GPM_ERRNO_MAP(GPM__ERR_MSG)
#undef GPM__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *gpm_err_name(int err)
{
    switch (err) {
    case 0:
        return "GPM_OK";
#define GPM__ERR_NAME(name, value, msg)                                        \
    case GPM_##name:                                                           \
        return "GPM_" #name;
        GPM_ERRNO_MAP(GPM__ERR_NAME)
#undef GPM__ERR_NAME
    default:
        return "GPM_UNKNOWN";
    }
}
