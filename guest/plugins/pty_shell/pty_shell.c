/*
 * pty_shell.c - commands and interactive shells for the host, with
 * streamed output, stdin, signals, window sizes, exit status and a
 * timeout. Protocol: gpm/pty_proto.h on the channel "pty_shell".
 *
 * One command at a time. The loop polls the command's output for at most
 * POLL_MS, then takes what the host queued: with the host's doorbell page
 * that check is a memory read (no hypercall) unless something arrived;
 * without one (PANDA) it is one non-blocking READ. Stdin is written
 * without blocking; while the command does not take it, the host's queue
 * is not read (the host's own bound then applies). Portable C.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "gpm/descriptor.h"
#include "gpm/pty_proto.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("pty_shell", GPM_GUEST_VERSION,
                      "Runs commands and interactive shells for the host");

#define POLL_MS  10
/* After the command ended, how long pipes held by its children are read. */
#define GRACE_MS 1000

static gpm_chan_t chan;
static uint8_t out_frame[GPM_WIRE_HDR_SIZE + GPM_PTY_MAX_FRAME];

/* A frame being received from the host, without blocking. */
struct rx {
    uint8_t hdr[GPM_WIRE_HDR_SIZE];
    struct gpm_wire_hdr h;
    uint8_t payload[GPM_PTY_MAX_FRAME];
    size_t have;   /* bytes of the current part */
    int in_body;   /* reading the payload */
    int complete;  /* a whole frame is in h/payload */
    uint64_t bell; /* doorbell value before the last empty read */
};

static struct rx rx;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_frame(uint16_t type, uint32_t seq, const void *p, size_t n)
{
    gpm_wire_hdr_put(out_frame, GPM_WIRE_MAGIC_PTY, type, seq, (uint32_t)n);
    if (n > 0)
        memcpy(out_frame + GPM_WIRE_HDR_SIZE, p, n);
    return gpm_write(chan, out_frame, GPM_WIRE_HDR_SIZE + n) < 0 ? -1 : 0;
}

static int send_exit(uint32_t seq, int32_t status, uint32_t flags)
{
    uint8_t p[8];

    gpm_wire_put32(p, (uint32_t)status);
    gpm_wire_put32(p + 4, flags);
    return send_frame(GPM_PTY_EXIT, seq, p, sizeof(p));
}

/*
 * Makes progress on the frame being received. With @block it waits for
 * a whole frame. Returns 1 when a frame is complete, 0 if not yet, -1 when
 * the channel is gone or the host broke the protocol.
 */
static int rx_poll(int block)
{
    for (;;) {
        uint8_t *dst;
        size_t want;
        ssize_t n;

        if (rx.complete)
            return 1;
        if (!rx.in_body) {
            dst = rx.hdr + rx.have;
            want = GPM_WIRE_HDR_SIZE - rx.have;
        } else {
            dst = rx.payload + rx.have;
            want = rx.h.len - rx.have;
        }
        if (want > 0) {
            uint64_t bell = gpm_doorbell_value(chan);

            if (!block && gpm_doorbell() != NULL && bell == rx.bell)
                return 0; /* nothing new: no hypercall */
            n = block ? gpm_read_blocking(chan, dst, want)
                      : gpm_read(chan, dst, want);
            if (n == -EBUSY && !block)
                n = 0;
            if (n < 0)
                return -1;
            if (n == 0) {
                rx.bell = bell;
                return 0;
            }
            rx.have += (size_t)n;
            if ((size_t)n < want)
                continue;
        }
        if (!rx.in_body) {
            gpm_wire_hdr_get(rx.hdr, &rx.h);
            if (rx.h.magic != GPM_WIRE_MAGIC_PTY ||
                rx.h.version != GPM_WIRE_VERSION ||
                rx.h.len > GPM_PTY_MAX_FRAME)
                return -1;
            rx.in_body = 1;
            rx.have = 0;
            if (rx.h.len > 0)
                continue;
        }
        rx.complete = 1;
        rx.in_body = 0;
        rx.have = 0;
        return 1;
    }
}

static void rx_done(void)
{
    rx.complete = 0;
}

/* The command being run. */
struct cmd {
    uint32_t seq;
    pid_t pid;
    int tty;
    int in_fd;   /* stdin pipe or the PTY master; -1 once closed */
    int out_fd;  /* stdout pipe or the PTY master */
    int err_fd;  /* stderr pipe, -1 with a tty */
    size_t pend; /* stdin bytes of rx.payload not written yet */
    size_t pend_off;
    int exited;
    int status;
};

static void set_winsize(int fd, uint16_t rows, uint16_t cols)
{
    struct winsize ws;

    memset(&ws, 0, sizeof(ws));
    ws.ws_row = rows;
    ws.ws_col = cols;
    ioctl(fd, TIOCSWINSZ, &ws);
}

/* Splits OPEN's strings into argv/envp (pointers into rx.payload). */
static int parse_open(char **argv, char **envp, uint32_t *flags, uint16_t *rows,
                      uint16_t *cols, uint32_t *timeout_ms)
{
    const uint8_t *p = rx.payload;
    uint32_t argc, envc, i;
    size_t off = 20;

    if (rx.h.len < 20 || rx.h.len == GPM_PTY_MAX_FRAME)
        return -1;
    *flags = gpm_wire_get32(p);
    *rows = gpm_wire_get16(p + 4);
    *cols = gpm_wire_get16(p + 6);
    *timeout_ms = gpm_wire_get32(p + 8);
    argc = gpm_wire_get32(p + 12);
    envc = gpm_wire_get32(p + 16);
    if (argc > GPM_PTY_MAX_ARGS || envc > GPM_PTY_MAX_ARGS)
        return -1;
    rx.payload[rx.h.len] = '\0';
    for (i = 0; i < argc + envc; i++) {
        char *s = (char *)rx.payload + off;
        size_t n = strnlen(s, rx.h.len - off);

        if (off + n >= rx.h.len)
            return -1; /* not NUL-terminated inside the payload */
        if (i < argc)
            argv[i] = s;
        else
            envp[i - argc] = s;
        off += n + 1;
    }
    argv[argc] = NULL;
    envp[envc] = NULL;
    return 0;
}

static void child_exec(char **argv, char **envp)
{
    static char *shell[] = {"/bin/sh", "-i", NULL};
    char **av = argv[0] != NULL ? argv : shell;

    for (int i = 0; envp[i] != NULL; i++)
        putenv(envp[i]);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execvp(av[0], av);
    _exit(errno == ENOENT ? 127 : 126);
}

static int start_cmd(struct cmd *c, char **argv, char **envp, uint32_t flags,
                     uint16_t rows, uint16_t cols)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, m = -1;

    c->tty = (flags & GPM_PTY_F_TTY) != 0;
    if (c->tty) {
        m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
            int e = errno;

            if (m >= 0)
                close(m);
            return -e;
        }
        set_winsize(m, rows, cols);
    } else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
               pipe2(err, O_CLOEXEC) < 0) {
        int e = errno;

        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0)
                close(in[i]);
            if (out[i] >= 0)
                close(out[i]);
            if (err[i] >= 0)
                close(err[i]);
        }
        return -e;
    }
    c->pid = fork();
    if (c->pid < 0) {
        int e = errno;

        if (m >= 0)
            close(m);
        return -e;
    }
    if (c->pid == 0) {
        if (c->tty) {
            int s;

            setsid();
            s = open(ptsname(m), O_RDWR);
            if (s < 0)
                _exit(126);
            ioctl(s, TIOCSCTTY, 0);
            dup2(s, 0);
            dup2(s, 1);
            dup2(s, 2);
            if (s > 2)
                close(s);
        } else {
            setpgid(0, 0);
            dup2(in[0], 0);
            dup2(out[1], 1);
            dup2(err[1], 2);
        }
        child_exec(argv, envp);
    }
    if (c->tty) {
        c->in_fd = m;
        c->out_fd = m;
        c->err_fd = -1;
    } else {
        setpgid(c->pid, c->pid);
        close(in[0]);
        close(out[1]);
        close(err[1]);
        c->in_fd = in[1];
        c->out_fd = out[0];
        c->err_fd = err[0];
    }
    fcntl(c->in_fd, F_SETFL, fcntl(c->in_fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

/* Writes pending stdin without blocking; returns 0 or -1 on a dead fd. */
static int flush_stdin(struct cmd *c)
{
    while (c->pend > 0 && c->in_fd >= 0) {
        ssize_t n = write(c->in_fd, rx.payload + c->pend_off, c->pend);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0) {
            c->pend = 0; /* the command closed its stdin: drop */
            break;
        }
        c->pend -= (size_t)n;
        c->pend_off += (size_t)n;
    }
    if (c->pend == 0)
        rx_done();
    return 0;
}

/* Handles one complete host frame during a command. -1: quit. */
static int host_frame(struct cmd *c)
{
    const uint8_t *p = rx.payload;

    if (rx.h.seq != c->seq && rx.h.type != GPM_PTY_QUIT) {
        rx_done();
        return 0;
    }
    switch (rx.h.type) {
    case GPM_PTY_STDIN:
        c->pend = rx.h.len;
        c->pend_off = 0;
        return flush_stdin(c);
    case GPM_PTY_EOF:
        if (!c->tty && c->in_fd >= 0) {
            close(c->in_fd);
            c->in_fd = -1;
        }
        break;
    case GPM_PTY_WINSIZE:
        if (c->tty && rx.h.len >= 4)
            set_winsize(c->out_fd, gpm_wire_get16(p), gpm_wire_get16(p + 2));
        break;
    case GPM_PTY_SIGNAL:
        if (rx.h.len >= 4 && c->pid > 0 && !c->exited) {
            int sig = (int)gpm_wire_get32(p);

            if (c->tty) {
                pid_t fg = tcgetpgrp(c->out_fd);

                kill(fg > 0 ? -fg : -c->pid, sig);
            } else {
                kill(-c->pid, sig);
            }
        }
        break;
    case GPM_PTY_QUIT:
        rx_done();
        return -1;
    default:
        break;
    }
    rx_done();
    return 0;
}

/* Reads what @fd has; sends it as @type. Returns 0, or 1 at EOF/EIO. */
static int pump(int fd, uint16_t type, uint32_t seq)
{
    static uint8_t buf[GPM_PTY_MAX_FRAME];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0)
        return 1;
    return send_frame(type, seq, buf, (size_t)n) < 0 ? -1 : 0;
}

static int32_t wait_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -EIO;
}

/* Runs the command of the OPEN in rx; returns 0, or -1 to quit. */
static int run(void)
{
    char *argv[GPM_PTY_MAX_ARGS + 1], *envp[GPM_PTY_MAX_ARGS + 1];
    uint32_t flags, timeout_ms, xflags = 0;
    struct cmd c;
    uint16_t rows, cols;
    int64_t deadline, grace_end = -1;
    uint8_t pidle[4];
    int rc, quit = 0;

    memset(&c, 0, sizeof(c));
    c.seq = rx.h.seq;
    if (parse_open(argv, envp, &flags, &rows, &cols, &timeout_ms) < 0) {
        rx_done();
        return send_exit(c.seq, -EPROTO, 0);
    }
    rc = start_cmd(&c, argv, envp, flags, rows, cols);
    rx_done(); /* argv points into the payload: only now */
    if (rc < 0)
        return send_exit(c.seq, rc, 0);
    gpm_wire_put32(pidle, (uint32_t)c.pid);
    if (send_frame(GPM_PTY_STARTED, c.seq, pidle, 4) < 0)
        return -1;
    deadline = timeout_ms ? now_ms() + timeout_ms : -1;
    for (;;) {
        struct pollfd pfd[2] = {{c.out_fd, POLLIN, 0}, {c.err_fd, POLLIN, 0}};
        int npfd = c.err_fd >= 0 ? 2 : 1;

        if (c.out_fd < 0 && c.err_fd < 0)
            npfd = 0;
        if (npfd > 0 && pfd[0].fd < 0) {
            pfd[0] = pfd[1];
            npfd = 1;
        }
        poll(pfd, (nfds_t)npfd, POLL_MS);
        for (int i = 0; i < npfd; i++) {
            int tty_out = c.tty || pfd[i].fd == c.out_fd;
            int r;

            if (!pfd[i].revents)
                continue;
            r = pump(pfd[i].fd, tty_out ? GPM_PTY_STDOUT : GPM_PTY_STDERR,
                     c.seq);
            if (r < 0)
                return -1;
            if (r == 1) {
                if (pfd[i].fd == c.out_fd) {
                    if (!c.tty)
                        close(c.out_fd);
                    c.out_fd = -1;
                } else {
                    close(c.err_fd);
                    c.err_fd = -1;
                }
            }
        }
        if (!quit && c.pend > 0)
            flush_stdin(&c);
        while (!quit && c.pend == 0) {
            rc = rx_poll(0);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
            if (host_frame(&c) < 0) {
                quit = 1;
                kill(-c.pid, SIGKILL);
            }
        }
        if (!c.exited && waitpid(c.pid, &c.status, WNOHANG) == c.pid) {
            c.exited = 1;
            grace_end = now_ms() + GRACE_MS;
        }
        if (!c.exited && deadline >= 0 && now_ms() >= deadline) {
            kill(-c.pid, SIGKILL);
            xflags |= GPM_PTY_X_TIMEOUT;
            deadline = -1;
        }
        if (c.exited &&
            ((c.out_fd < 0 && c.err_fd < 0) ||
             (c.tty && npfd == 1 && !pfd[0].revents) || now_ms() >= grace_end))
            break;
    }
    if (c.tty)
        close(c.in_fd);
    else {
        if (c.in_fd >= 0)
            close(c.in_fd);
        if (c.out_fd >= 0)
            close(c.out_fd);
        if (c.err_fd >= 0)
            close(c.err_fd);
    }
    if (send_exit(c.seq, wait_status(c.status), xflags) < 0)
        return -1;
    return quit ? -1 : 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (gpm_channel_open(GPM_PTY_CHANNEL, &chan) < 0)
        return 2;
    for (;;) {
        int rc = rx_poll(1);

        if (rc < 0)
            break;
        if (rx.h.type == GPM_PTY_OPEN) {
            if (run() < 0)
                break;
        } else if (rx.h.type == GPM_PTY_QUIT) {
            break;
        } else {
            rx_done();
        }
    }
    gpm_channel_stop(chan);
    return 0;
}
