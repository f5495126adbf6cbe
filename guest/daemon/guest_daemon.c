/*
 * guest_daemon.c - the pandagpm guest daemon.
 *
 * Started inside the guest (by the host's injector, or by hand) as an
 * orphan. It daemonizes, opens the "guest_daemon" channel, says HELLO and
 * then serves the frames of gpm/daemon_proto.h:
 *   LOAD  -> runs the ELF (see loader.c), answers STARTED or FAILED;
 *   PING  -> answers HELLO;
 *   PROBE -> answers GONE with the listed pids that no longer exist;
 *   other -> FAILED, stage PROTOCOL.
 * Whenever a plugin it started ends, it sends EXITED, echoing the seq of
 * the LOAD that started it. Malformed input is answered with FAILED (stage
 * PROTOCOL) and skipped.
 *
 * Only one daemon serves the host at a time: the host gives the channel to
 * the process it injected, and a daemon that the host no longer accepts
 * (GPM_HC_EACCES) exits. With -r a new daemon first kills every other
 * process named guest_daemon (argv[0]), so an old one that was stopped or
 * hung cannot come back and compete for frames.
 *
 * Usage: guest_daemon [-f] [-n] [-r] [-t] [-c CHANNEL]
 *   -f  stay in the foreground and log to stderr.
 *   -n  detach without forking (for an injector that already forked and
 *       called setsid): only setsid if possible, chdir / and std fds to
 *       /dev/null; the daemon keeps the pid it was started with.
 *   -r  replace: SIGKILL every other guest_daemon process first.
 *   -t  write plugins to files under /tmp instead of memfds.
 *   -c  use another channel name (for tests).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dframe.h"
#include "gpm/descriptor.h"
#include "gpm_guest.h"
#include "loader.h"

GPM_PLUGIN_DESCRIPTOR(GPM_DAEMON_PLUGIN_NAME, GPM_GUEST_VERSION,
                      "Loads and runs guest plugins sent by the host");

/* Give up after this many failed reads in a row (host gone for good). */
#define DAEMON_MAX_READ_ERRORS 10000u
/* How long to keep retrying to open the channel at start: about 10 s. */
#define DAEMON_OPEN_TRIES      600u

struct child {
    pid_t pid;
    uint32_t seq;
    char name[GPM_DLOAD_NAME_MAX + 1];
};

static int foreground;
static int no_fork;
static int replace_others;
static unsigned launch_flags;
static const char *chan_name = GPM_DAEMON_CHANNEL;
static gpm_chan_t chan;
static struct child *children;
static size_t nchildren, cap_children;
static volatile sig_atomic_t got_sigchld;

static void dlog(const char *fmt, ...)
{
    va_list ap;

    if (!foreground)
        return;
    va_start(ap, fmt);
    fprintf(stderr, "guest_daemon[%ld]: ", (long)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void on_sigchld(int sig)
{
    (void)sig;
    got_sigchld = 1;
}

/* Send one frame; a failure is only logged (the host may be gone). */
static void send_frame(uint16_t type, uint32_t seq, const void *const *parts,
                       const size_t *lens, size_t nparts)
{
    uint8_t buf[GPM_DFRAME_HDR_SIZE + GPM_DFRAME_MAX_REPLY];
    size_t n;
    ssize_t w;

    n = gpm_dframe_encode(buf, sizeof(buf), type, seq, parts, lens, nparts);
    if (n == 0) {
        dlog("frame type %u too long, not sent", type);
        return;
    }
    w = gpm_write(chan, buf, n);
    if (w == -EACCES) {
        dlog("the host serves another daemon now; exiting");
        exit(0);
    }
    if (w < 0)
        dlog("write of frame type %u failed: %s", type, strerror((int)-w));
}

static void send_hello(uint32_t seq)
{
    uint8_t p[8];
    const void *parts[1] = {p};
    size_t lens[1] = {sizeof(p)};

    gpm_put_le32(p, (uint32_t)getpid());
    gpm_put_le32(p + 4, GPM_DFRAME_VERSION);
    send_frame(GPM_DFRAME_HELLO, seq, parts, lens, 1);
}

static void send_failed(uint32_t seq, int err, int stage, const char *msg)
{
    uint8_t p[8];
    const void *parts[2] = {p, msg};
    size_t lens[2] = {sizeof(p), strlen(msg)};

    if (lens[1] > 512)
        lens[1] = 512;
    dlog("FAILED seq %u stage %d: %s", seq, stage, msg);
    gpm_put_le32(p, (uint32_t)err);
    gpm_put_le32(p + 4, (uint32_t)stage);
    send_frame(GPM_DFRAME_FAILED, seq, parts, lens, 2);
}

static void send_started(uint32_t seq, pid_t pid, const char *name)
{
    uint8_t p[4];
    const void *parts[2] = {p, name};
    size_t lens[2] = {sizeof(p), strlen(name)};

    dlog("STARTED %s as pid %ld", name, (long)pid);
    gpm_put_le32(p, (uint32_t)pid);
    send_frame(GPM_DFRAME_STARTED, seq, parts, lens, 2);
}

static void send_exited(uint32_t seq, pid_t pid, int status, const char *name)
{
    uint8_t p[8];
    const void *parts[2] = {p, name};
    size_t lens[2] = {sizeof(p), strlen(name)};

    dlog("EXITED %s pid %ld status 0x%x", name, (long)pid, status);
    gpm_put_le32(p, (uint32_t)pid);
    gpm_put_le32(p + 4, (uint32_t)status);
    send_frame(GPM_DFRAME_EXITED, seq, parts, lens, 2);
}

static int remember_child(pid_t pid, uint32_t seq, const char *name)
{
    if (nchildren == cap_children) {
        size_t ncap = cap_children ? cap_children * 2 : 16;
        struct child *n = realloc(children, ncap * sizeof(*n));

        if (!n)
            return -ENOMEM;
        children = n;
        cap_children = ncap;
    }
    children[nchildren].pid = pid;
    children[nchildren].seq = seq;
    snprintf(children[nchildren].name, sizeof(children[0].name), "%s", name);
    nchildren++;
    return 0;
}

/* Reap every ended child and report the ones the daemon started. */
static void reap_children(void)
{
    int status;
    pid_t pid;
    size_t i;

    got_sigchld = 0;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        const char *name = "";
        uint32_t seq = 0;

        for (i = 0; i < nchildren; i++)
            if (children[i].pid == pid)
                break;
        if (i < nchildren) {
            name = children[i].name;
            seq = children[i].seq;
        }
        send_exited(seq, pid, status, name);
        if (i < nchildren)
            children[i] = children[--nchildren];
    }
}

static void handle_load(const struct gpm_dframe *f)
{
    struct gpm_dload ld;
    const char *why = "";
    char msg[256];
    int err, stage;
    pid_t pid;

    err = gpm_dload_parse(f->payload, f->hdr.len, &ld, &why);
    if (err < 0) {
        send_failed(f->hdr.seq, -err, GPM_DSTAGE_PROTOCOL, why);
        return;
    }
    dlog("LOAD %s: %u bytes, %u args", ld.name, ld.elf_len, ld.argc);
    err = gpm_launch(&ld, launch_flags, &pid, &stage, msg, sizeof(msg));
    if (err < 0) {
        send_failed(f->hdr.seq, -err, stage, msg);
        return;
    }
    if (remember_child(pid, f->hdr.seq, ld.name) < 0)
        dlog("no memory to remember pid %ld", (long)pid);
    send_started(f->hdr.seq, pid, ld.name);
}

/* PROBE: answer GONE with the pids that no longer exist. */
static void handle_probe(const struct gpm_dframe *f)
{
    uint8_t gone[4 * GPM_DPROBE_MAX_PIDS];
    const void *parts[1] = {gone};
    size_t lens[1] = {0};
    uint32_t i, n = f->hdr.len / 4;

    if (n > GPM_DPROBE_MAX_PIDS)
        n = GPM_DPROBE_MAX_PIDS;
    for (i = 0; i < n; i++) {
        uint32_t pid = gpm_get_le32(f->payload + 4 * i);

        if (pid == 0 || pid > INT32_MAX)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            gpm_put_le32(gone + lens[0], pid);
            lens[0] += 4;
        }
    }
    dlog("PROBE of %u pids: %zu gone", n, lens[0] / 4);
    send_frame(GPM_DFRAME_GONE, f->hdr.seq, parts, lens, 1);
}

static void handle_frame(const struct gpm_dframe *f)
{
    char msg[64];

    switch (f->hdr.type) {
    case GPM_DFRAME_LOAD:
        handle_load(f);
        break;
    case GPM_DFRAME_PING:
        send_hello(f->hdr.seq);
        break;
    case GPM_DFRAME_PROBE:
        handle_probe(f);
        break;
    default:
        snprintf(msg, sizeof(msg), "unexpected frame type %u", f->hdr.type);
        send_failed(f->hdr.seq, EPROTO, GPM_DSTAGE_PROTOCOL, msg);
        break;
    }
}

static void handle_event(int ev, const struct gpm_dframe *f)
{
    char msg[64];

    switch (ev) {
    case GPM_DP_FRAME:
        handle_frame(f);
        free(f->payload);
        break;
    case GPM_DP_BAD_MAGIC:
        send_failed(0, EPROTO, GPM_DSTAGE_PROTOCOL,
                    "bad frame magic; skipping to the next frame");
        break;
    case GPM_DP_BAD_VERSION:
        snprintf(msg, sizeof(msg), "unsupported frame version %u",
                 f->hdr.version);
        send_failed(f->hdr.seq, EPROTO, GPM_DSTAGE_PROTOCOL, msg);
        break;
    case GPM_DP_TOO_LONG:
        send_failed(0, EMSGSIZE, GPM_DSTAGE_PROTOCOL,
                    "frame length over the limit; skipping");
        break;
    case GPM_DP_NOMEM:
        send_failed(f->hdr.seq, ENOMEM, GPM_DSTAGE_MEMORY,
                    "no memory for the frame payload");
        break;
    default:
        break;
    }
}

/* Open the channel, retrying while the host has not created it yet. */
static int open_channel(void)
{
    struct gpm_backoff bo = {0, 0};
    unsigned tries;
    int err = -ENOENT;

    for (tries = 0; tries < DAEMON_OPEN_TRIES; tries++) {
        err = gpm_channel_open(chan_name, &chan);
        if (err == 0)
            return 0;
        if (err != -ENOENT && err != -EBUSY && err != -EAGAIN)
            break;
        /* Another daemon serves the host now. */
        if (err == -EACCES)
            break;
        gpm_backoff_wait(&bo);
    }
    dlog("cannot open channel %s: %s", chan_name, strerror(-err));
    return err;
}

/* Whether process @pid was started as guest_daemon (argv[0]). */
static int is_daemon(const char *pid)
{
    char path[64], cmd[256];
    const char *base;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, cmd, sizeof(cmd) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    cmd[n] = '\0';
    base = strrchr(cmd, '/');
    base = base ? base + 1 : cmd;
    return strcmp(base, GPM_DAEMON_PLUGIN_NAME) == 0;
}

/* SIGKILLs every other guest_daemon and waits (1 s at most) for them. */
static void kill_other_daemons(void)
{
    pid_t victims[64];
    size_t n = 0, i;
    struct dirent *de;
    DIR *d = opendir("/proc");
    int round;

    if (!d)
        return;
    while ((de = readdir(d)) != NULL && n < 64) {
        pid_t pid;

        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid = (pid_t)atol(de->d_name);
        if (pid == getpid() || !is_daemon(de->d_name))
            continue;
        if (kill(pid, SIGKILL) == 0) {
            dlog("killed the old daemon %ld", (long)pid);
            victims[n++] = pid;
        }
    }
    closedir(d);
    for (round = 0; round < 100; round++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        int left = 0;

        for (i = 0; i < n; i++) {
            char name[32];

            snprintf(name, sizeof(name), "%ld", (long)victims[i]);
            left += is_daemon(name);
        }
        if (!left)
            break;
        nanosleep(&ts, NULL);
    }
}

static void daemonize(void)
{
    pid_t pid;
    int fd;

    if (no_fork) {
        /* Fails harmlessly if the caller is a session leader already. */
        setsid();
        goto detached;
    }
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    setsid();
    /* A second fork: the daemon is no session leader, so never gets a tty. */
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
detached:
    if (chdir("/") < 0)
        _exit(1);
    umask(022);
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
}

static int parse_args(int argc, char **argv)
{
    int opt;

    while ((opt = getopt(argc, argv, "fnrtc:h")) != -1) {
        switch (opt) {
        case 'f':
            foreground = 1;
            break;
        case 'n':
            no_fork = 1;
            break;
        case 'r':
            replace_others = 1;
            break;
        case 't':
            launch_flags |= GPM_LAUNCH_NO_MEMFD;
            break;
        case 'c':
            chan_name = optarg;
            break;
        default:
            fprintf(stderr, "usage: %s [-f] [-n] [-r] [-t] [-c CHANNEL]\n",
                    argv[0]);
            return opt == 'h' ? 1 : -1;
        }
    }
    return 0;
}

static void setup_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a SIGCHLD cuts the idle sleep short. */
    sa.sa_handler = on_sigchld;
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

int main(int argc, char **argv)
{
    struct gpm_backoff bo = {0, 0};
    struct gpm_dparser parser;
    unsigned errors = 0;
    int r;

    r = parse_args(argc, argv);
    if (r)
        return r > 0 ? 0 : 2;
    if (!foreground)
        daemonize();
    setup_signals();
    if (replace_others)
        kill_other_daemons();
    if (open_channel() < 0)
        return 1;
    dlog("channel %s is %u", chan_name, chan);
    send_hello(0);
    gpm_dparser_init(&parser);
    for (;;) {
        struct gpm_dframe f;
        uint64_t since;
        size_t room;
        void *buf;
        ssize_t n;

        if (got_sigchld)
            reap_children();
        buf = gpm_dparser_buf(&parser, &room);
        since = gpm_doorbell_value(chan);
        n = gpm_read(chan, buf, room);
        if (n == -EACCES) {
            /* The host has replaced this daemon: make way. */
            dlog("the host serves another daemon now; exiting");
            return 0;
        }
        if (n < 0) {
            dlog("read failed: %s", strerror((int)-n));
            if (++errors > DAEMON_MAX_READ_ERRORS)
                return 1;
            if ((n == -EBADF || n == -EPIPE) && open_channel() == 0) {
                /* The host forgot the channel: start a fresh stream. */
                gpm_dparser_free(&parser);
                gpm_dparser_init(&parser);
                send_hello(0);
            }
            gpm_backoff_wait(&bo);
            continue;
        }
        errors = 0;
        if (n == 0) {
            /* Returns early on SIGCHLD, so children are reaped at once. */
            gpm_wait_change(chan, since, &bo);
            continue;
        }
        gpm_backoff_reset(&bo);
        r = gpm_dparser_commit(&parser, (size_t)n, &f);
        if (r != GPM_DP_MORE)
            handle_event(r, &f);
    }
}
