/*
 * gpm/error.h - error codes of the pandagpm C API.
 *
 * Every function of the C API that can fail returns 0 on success or one of
 * the negative GPM_E* codes below. The codes are negated errno values where
 * an errno fits, so they read naturally in logs.
 */
#ifndef GPM_ERROR_H
#define GPM_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message) for every code; one table yields every lookup. */
#define GPM_ERRNO_MAP(X)                                                       \
    X(EPERM, -1, "operation not permitted")                                    \
    X(ENOENT, -2, "no such channel, plugin or file")                           \
    X(EIO, -5, "input/output error talking to the emulator")                   \
    X(EBADF, -9, "unknown or closed channel")                                  \
    X(EAGAIN, -11, "resource temporarily unavailable; try again")              \
    X(ENOMEM, -12, "out of memory")                                            \
    X(EACCES, -13, "permission denied")                                        \
    X(EFAULT, -14, "guest address not mapped")                                 \
    X(EBUSY, -16, "busy")                                                      \
    X(EEXIST, -17, "name already in use")                                      \
    X(EINVAL, -22, "invalid argument")                                         \
    X(ENOSPC, -28, "queue or table full")                                      \
    X(EROFS, -30, "guest page not writable")                                   \
    X(EPIPE, -32, "peer closed")                                               \
    X(ENAMETOOLONG, -36, "name too long")                                      \
    X(ENOSYS, -38, "not supported")                                            \
    X(EMSGSIZE, -90, "message too long")                                       \
    X(EPROTO, -71, "protocol error")                                           \
    X(ENOEXEC, -8, "not an executable for this guest")                         \
    X(ECONNRESET, -104, "connection to the emulator lost")                     \
    X(ETIMEDOUT, -110, "timed out")                                            \
    X(ECANCELED, -125, "operation canceled")                                   \
    X(EARCH, -1001, "binary built for another architecture or word size")      \
    X(EDESC, -1002, "no pandagpm descriptor, or an unknown descriptor ABI")

enum gpm_error {
#define GPM__ERR_ENUM(name, value, msg) GPM_##name = (value),
    GPM_ERRNO_MAP(GPM__ERR_ENUM)
#undef GPM__ERR_ENUM
};

/**
 * gpm_strerror() - a message for an error code.
 * @err: 0 or a negative GPM_E* code.
 *
 * Returns a static string; never NULL ("unknown error" for other values).
 * Thread-safe.
 */
const char *gpm_strerror(int err);

/**
 * gpm_err_name() - the symbolic name of an error code, e.g. "GPM_ENOENT".
 * @err: 0 or a negative GPM_E* code.
 *
 * Returns a static string; never NULL ("GPM_UNKNOWN" for other values).
 * Thread-safe.
 */
const char *gpm_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* GPM_ERROR_H */
