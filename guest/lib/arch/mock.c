/*
 * mock.c - a hypercall backed by files, for testing without an emulator.
 *
 * Built only by "make -C guest check" (natively, with the host's gcc). The
 * directory named by the environment variable GPM_MOCK_DIR plays the
 * host:
 *   <name>.in   bytes the host sends on channel <name>; GET_CHANNEL fails
 *               with GPM_HC_NOT_FOUND unless it exists. READ returns what
 *               was appended since the last READ, 0 at its end.
 *   <name>.out  bytes the guest writes on channel <name> (appended).
 *   <name>.err  messages of ERROR hypercalls, one per line.
 * GET_MANAGER makes channels named "anon<N>". If GPM_MOCK_EAGAIN is set,
 * every other READ and WRITE first answers GPM_HC_EAGAIN, to exercise the
 * retry path. The mock is not thread-safe.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpm_guest.h"

#define MOCK_MAX_CHANS 64

struct mock_chan {
    int used;
    char name[GPM_HC_MAX_NAME + 1];
    off_t in_off;
};

static struct mock_chan mock_chans[MOCK_MAX_CHANS + 1];
static unsigned mock_anon;
static unsigned mock_flip;

static int mock_path(char *out, size_t cap, const char *name, const char *ext)
{
    const char *dir = getenv("GPM_MOCK_DIR");
    int n;

    if (!dir)
        dir = ".";
    n = snprintf(out, cap, "%s/%s.%s", dir, name, ext);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static uint64_t mock_ret(long v)
{
    return (uint64_t)(int64_t)v;
}

static int mock_inject_eagain(void)
{
    if (!getenv("GPM_MOCK_EAGAIN"))
        return 0;
    mock_flip ^= 1;
    return mock_flip;
}

static uint64_t mock_new_chan(const char *name, size_t len)
{
    char path[4096];
    unsigned i;

    for (i = 1; i <= MOCK_MAX_CHANS; i++) {
        if (mock_chans[i].used)
            continue;
        memcpy(mock_chans[i].name, name, len);
        mock_chans[i].name[len] = '\0';
        if (mock_path(path, sizeof(path), mock_chans[i].name, "in") < 0)
            return mock_ret(GPM_HC_ENAMETOOLONG);
        if (access(path, R_OK) < 0)
            return mock_ret(GPM_HC_NOT_FOUND);
        mock_chans[i].used = 1;
        mock_chans[i].in_off = 0;
        return i;
    }
    return mock_ret(GPM_HC_ENOSPC);
}

static uint64_t mock_append(struct mock_chan *c, const char *ext,
                            const void *buf, size_t len, int newline)
{
    char path[4096];
    ssize_t n;
    int fd;

    if (mock_path(path, sizeof(path), c->name, ext) < 0)
        return mock_ret(GPM_HC_ENAMETOOLONG);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return mock_ret(GPM_HC_EPIPE);
    n = write(fd, buf, len);
    if (newline && n >= 0)
        (void)!write(fd, "\n", 1);
    close(fd);
    return n < 0 ? mock_ret(GPM_HC_EPIPE) : (uint64_t)n;
}

static uint64_t mock_read(struct mock_chan *c, void *buf, size_t len)
{
    char path[4096];
    ssize_t n;
    int fd;

    if (mock_path(path, sizeof(path), c->name, "in") < 0)
        return mock_ret(GPM_HC_ENAMETOOLONG);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mock_ret(GPM_HC_EPIPE);
    n = pread(fd, buf, len, c->in_off);
    close(fd);
    if (n < 0)
        return mock_ret(GPM_HC_EFAULT);
    c->in_off += n;
    return (uint64_t)n;
}

uint64_t gpm_hc(uint64_t op, uint64_t chan, uint64_t a1, uint64_t a2)
{
    struct mock_chan *c = NULL;
    char name[32];

    if (op == GPM_HC_OP_GET_CHANNEL) {
        if (a2 == 0)
            return mock_ret(GPM_HC_EINVAL);
        if (a2 > GPM_HC_MAX_NAME)
            return mock_ret(GPM_HC_ENAMETOOLONG);
        return mock_new_chan((const char *)(uintptr_t)a1, (size_t)a2);
    }
    if (op == GPM_HC_OP_GET_MANAGER) {
        int n = snprintf(name, sizeof(name), "anon%u", ++mock_anon);
        char path[4096];
        int fd;

        /* An anonymous channel starts with an empty input file. */
        if (mock_path(path, sizeof(path), name, "in") == 0) {
            fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0)
                close(fd);
        }
        return mock_new_chan(name, (size_t)n);
    }
    if (chan >= 1 && chan <= MOCK_MAX_CHANS && mock_chans[chan].used)
        c = &mock_chans[chan];
    if (!c)
        return mock_ret(GPM_HC_EBADF);
    switch (op) {
    case GPM_HC_OP_START:
    case GPM_HC_OP_STOP:
        return 0;
    case GPM_HC_OP_READ:
        if (mock_inject_eagain())
            return mock_ret(GPM_HC_EAGAIN);
        return mock_read(c, (void *)(uintptr_t)a1, (size_t)a2);
    case GPM_HC_OP_WRITE:
        if (mock_inject_eagain())
            return mock_ret(GPM_HC_EAGAIN);
        return mock_append(c, "out", (const void *)(uintptr_t)a1, (size_t)a2,
                           0);
    case GPM_HC_OP_ERROR:
        mock_append(c, "err", (const void *)(uintptr_t)a1, (size_t)a2, 1);
        return 0;
    default:
        return mock_ret(GPM_HC_ENOSYS);
    }
}
