/*
 * guest_shell.c - run shell commands sent by the host.
 *
 * Protocol on the channel "guest_shell" (all integers little-endian):
 *
 * Request, host -> guest:
 *   u32 len, then len bytes of command line (no NUL needed; a NUL byte ends
 *   the command early). len 0 or the command "exit" ends the plugin with
 *   status 0 and no reply. len above GUEST_SHELL_MAX_CMD (1 MiB): the bytes
 *   are read and dropped and the reply has status -E2BIG and no output.
 *   With bit 31 of len set (GUEST_SHELL_TIMED), a u32 timeout in
 *   milliseconds follows before the command (the low 31 bits are its
 *   length); 0 means no timeout. Otherwise the default applies,
 *   GUEST_SHELL_DEFAULT_TIMEOUT_MS (60 s).
 *
 * Timeout: the command runs in a process group of its own; when its time
 * is up the whole group gets SIGKILL, output already read is kept, and the
 * reply has status 128 + 9 and flag bit 2. Pipes still held open by a
 * process that left the group are closed after one more second.
 *
 * Reply, guest -> host, sent with one write:
 *   i32 status     exit code 0..255 if the shell exited, 128 + signal
 *                  number if it was killed, or a negative errno if the
 *                  command could not be run;
 *   u32 out_len    bytes of stdout that follow;
 *   u32 err_len    bytes of stderr that follow them;
 *   u32 flags      bit 0: stdout truncated, bit 1: stderr truncated,
 *                  bit 2: the command timed out and was killed;
 *   out_len bytes of stdout, then err_len bytes of stderr.
 *
 * The command runs as "/bin/sh -c COMMAND" with stdin from /dev/null. Each
 * stream keeps its first GUEST_SHELL_MAX_OUT bytes (4 MiB); the rest is
 * read and dropped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("guest_shell", GPM_GUEST_VERSION,
                      "Runs shell commands sent by the host");

#define GUEST_SHELL_MAX_CMD            (1u << 20)
#define GUEST_SHELL_MAX_OUT            (4u << 20)
#define GUEST_SHELL_HDR                16u
#define GUEST_SHELL_TIMED              0x80000000u
#define GUEST_SHELL_DEFAULT_TIMEOUT_MS 60000u
/* After the kill, how long pipes held by escaped processes are read. */
#define GUEST_SHELL_GRACE_MS           1000
#define FLAG_TIMED_OUT                 4u

/* Output of one stream. */
struct capture {
    char *buf;
    size_t len, cap;
    int truncated;
};

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Append up to the cap; returns 0 or -ENOMEM. */
static int capture_add(struct capture *c, const char *p, size_t n)
{
    if (c->len + n > GUEST_SHELL_MAX_OUT) {
        n = GUEST_SHELL_MAX_OUT - c->len;
        c->truncated = 1;
    }
    if (c->len + n > c->cap) {
        size_t ncap = c->cap ? c->cap : 4096;
        char *nb;

        while (ncap < c->len + n)
            ncap *= 2;
        nb = realloc(c->buf, ncap);
        if (!nb)
            return -ENOMEM;
        c->buf = nb;
        c->cap = ncap;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Read both pipes until both reach end of file. With @timeout_ms > 0 the
 * process group @pgid is killed when it passes (*@timed_out set), and the
 * pipes are given up GUEST_SHELL_GRACE_MS later.
 */
static int drain(int out_fd, int err_fd, struct capture *out,
                 struct capture *err, pid_t pgid, uint32_t timeout_ms,
                 int *timed_out)
{
    struct pollfd pfd[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    struct capture *caps[2] = {out, err};
    int64_t deadline = timeout_ms ? now_ms() + timeout_ms : -1;
    char chunk[4096];
    int open_fds = 2, rc = 0, i;

    while (open_fds > 0) {
        int wait_ms = -1;

        if (deadline >= 0) {
            int64_t left = deadline - now_ms();

            if (left <= 0) {
                if (*timed_out)
                    break; /* the grace period is over too */
                kill(-pgid, SIGKILL);
                *timed_out = 1;
                deadline = now_ms() + GUEST_SHELL_GRACE_MS;
                continue;
            }
            wait_ms = left > 1000000 ? 1000000 : (int)left;
        }
        if (poll(pfd, 2, wait_ms) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (i = 0; i < 2; i++) {
            ssize_t n;

            if (pfd[i].fd < 0 || !pfd[i].revents)
                continue;
            n = read(pfd[i].fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                open_fds--;
                continue;
            }
            if (capture_add(caps[i], chunk, (size_t)n) < 0)
                rc = -ENOMEM;
        }
    }
    for (i = 0; i < 2; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    return rc;
}

/* Run @cmd; returns the status field of the reply. */
static int32_t run(const char *cmd, uint32_t timeout_ms, struct capture *out,
                   struct capture *err, int *timed_out)
{
    int po[2], pe[2], status, rc;
    pid_t pid;

    if (pipe2(po, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        rc = -errno;
        close(po[0]);
        close(po[1]);
        return rc;
    }
    pid = fork();
    if (pid < 0) {
        rc = -errno;
        close(po[0]);
        close(po[1]);
        close(pe[0]);
        close(pe[1]);
        return rc;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);

        /* A group of its own, so a timeout kills everything it started. */
        setpgid(0, 0);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* Also here: the group must exist before a kill can reach it. */
    setpgid(pid, pid);
    close(po[1]);
    close(pe[1]);
    rc = drain(po[0], pe[0], out, err, pid, timeout_ms, timed_out);
    if (*timed_out)
        kill(-pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (rc < 0)
        return rc;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -EIO;
}

static int send_reply(gpm_chan_t chan, int32_t status,
                      const struct capture *out, const struct capture *err,
                      uint32_t extra_flags)
{
    size_t total = GUEST_SHELL_HDR + out->len + err->len;
    unsigned char *msg = malloc(total);
    ssize_t w;

    if (!msg)
        return -ENOMEM;
    put_le32(msg, (uint32_t)status);
    put_le32(msg + 4, (uint32_t)out->len);
    put_le32(msg + 8, (uint32_t)err->len);
    put_le32(msg + 12,
             (uint32_t)(out->truncated | (err->truncated << 1)) | extra_flags);
    if (out->len)
        memcpy(msg + GUEST_SHELL_HDR, out->buf, out->len);
    if (err->len)
        memcpy(msg + GUEST_SHELL_HDR + out->len, err->buf, err->len);
    w = gpm_write(chan, msg, total);
    free(msg);
    return w < 0 ? (int)w : 0;
}

/* Read and drop @len bytes of an oversized command. */
static int skip_bytes(gpm_chan_t chan, uint32_t len)
{
    char junk[4096];

    while (len > 0) {
        size_t n = len < sizeof(junk) ? len : sizeof(junk);
        int rc = gpm_read_exact(chan, junk, n);

        if (rc < 0)
            return rc;
        len -= (uint32_t)n;
    }
    return 0;
}

int main(void)
{
    gpm_chan_t chan;
    int rc;

    if (gpm_channel_open("guest_shell", &chan) < 0)
        return 2;
    for (;;) {
        struct capture out = {NULL, 0, 0, 0}, err = {NULL, 0, 0, 0};
        uint32_t timeout_ms = GUEST_SHELL_DEFAULT_TIMEOUT_MS;
        unsigned char le[4];
        int timed_out = 0;
        int32_t status;
        uint32_t len;
        char *cmd;

        if (gpm_read_exact(chan, le, sizeof(le)) < 0)
            return 1;
        len = get_le32(le);
        if (len & GUEST_SHELL_TIMED) {
            len &= ~GUEST_SHELL_TIMED;
            if (gpm_read_exact(chan, le, sizeof(le)) < 0)
                return 1;
            timeout_ms = get_le32(le);
        }
        if (len == 0)
            break;
        if (len > GUEST_SHELL_MAX_CMD) {
            if (skip_bytes(chan, len) < 0)
                return 1;
            if (send_reply(chan, -E2BIG, &out, &err, 0) < 0)
                return 1;
            continue;
        }
        cmd = malloc((size_t)len + 1);
        if (!cmd)
            return 1;
        if (gpm_read_exact(chan, cmd, len) < 0)
            return 1;
        cmd[len] = '\0';
        if (strcmp(cmd, "exit") == 0) {
            free(cmd);
            break;
        }
        status = run(cmd, timeout_ms, &out, &err, &timed_out);
        free(cmd);
        rc = send_reply(chan, status, &out, &err,
                        timed_out ? FLAG_TIMED_OUT : 0);
        free(out.buf);
        free(err.buf);
        if (rc < 0)
            return 1;
    }
    gpm_channel_stop(chan);
    return 0;
}
