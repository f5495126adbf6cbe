/*
 * listener.c - tcp_fwd's reverse listeners, port watches and buffers.
 *
 * A reverse listener is a guest socket listening for the host (guest
 * port -> host service): each connection it accepts becomes a connection
 * of tcp_fwd.c announced with ACCEPTED. A watch reads /proc/net/tcp{,6}
 * every half second and says GONE once the watched port had a listener
 * and no longer has one. Main thread only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fwd.h"

#define FWD_MAX_WATCHES    32u
#define FWD_WATCH_EVERY_MS 500

struct listener {
    int fd; /* -1: free */
    uint32_t id;
};

struct watch {
    int used;
    uint32_t id;
    uint16_t port;
    int seen; /* a listener was there once */
};

static struct listener listeners[GPM_FWD_MAX_LISTENERS];
static struct watch watches[FWD_MAX_WATCHES];
static int64_t last_tick_ms;

int fwd_buf_add(struct fwd_buf *b, const void *p, size_t len)
{
    if (len == 0)
        return 0;
    if (b->len + len > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        unsigned char *nd;

        while (ncap < b->len + len)
            ncap *= 2;
        nd = realloc(b->data, ncap);
        if (!nd)
            return -ENOMEM;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return 0;
}

void fwd_buf_drop(struct fwd_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void fwd_listeners_init(void)
{
    size_t i;

    for (i = 0; i < GPM_FWD_MAX_LISTENERS; i++)
        listeners[i].fd = -1;
}

void fwd_listeners_close(void)
{
    size_t i;

    for (i = 0; i < GPM_FWD_MAX_LISTENERS; i++)
        if (listeners[i].fd >= 0) {
            close(listeners[i].fd);
            listeners[i].fd = -1;
        }
}

static void send_status(uint32_t id, int32_t status)
{
    unsigned char p[4];

    fwd_put32(p, (uint32_t)status);
    fwd_frame(GPM_FWD_LISTENING, id, p, sizeof(p));
}

static int32_t do_listen(uint32_t id, const unsigned char *p, size_t len)
{
    struct sockaddr_storage ss;
    struct listener *l = NULL;
    socklen_t sl;
    uint16_t family;
    int fd, one = 1;
    size_t i;

    if (len < 20)
        return -EINVAL;
    for (i = 0; i < GPM_FWD_MAX_LISTENERS; i++) {
        if (listeners[i].fd >= 0 && listeners[i].id == id)
            return -EEXIST;
        if (!l && listeners[i].fd < 0)
            l = &listeners[i];
    }
    if (!l)
        return -ENOSPC;
    family = fwd_get16(p + 2);
    memset(&ss, 0, sizeof(ss));
    if (family == 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        in->sin_family = AF_INET;
        in->sin_port = htons(fwd_get16(p));
        memcpy(&in->sin_addr, p + 4, 4);
        sl = sizeof(*in);
    } else if (family == 6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(fwd_get16(p));
        memcpy(&in6->sin6_addr, p + 4, 16);
        sl = sizeof(*in6);
    } else {
        return -EAFNOSUPPORT;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 64) < 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    l->fd = fd;
    l->id = id;
    return 0;
}

static void do_watch(uint32_t id, const unsigned char *p, size_t len)
{
    size_t i;

    if (len < 2)
        return;
    for (i = 0; i < FWD_MAX_WATCHES; i++)
        if (!watches[i].used) {
            watches[i].used = 1;
            watches[i].id = id;
            watches[i].port = fwd_get16(p);
            watches[i].seen = 0;
            last_tick_ms = 0; /* look at once */
            return;
        }
    /* No room: say GONE at once rather than never. */
    fwd_frame(GPM_FWD_GONE, id, NULL, 0);
}

void fwd_listener_frame(uint8_t type, uint32_t id, const unsigned char *p,
                        size_t len)
{
    size_t i;

    if (type == GPM_FWD_LISTEN) {
        send_status(id, do_listen(id, p, len));
        return;
    }
    if (type == GPM_FWD_WATCH) {
        do_watch(id, p, len);
        return;
    }
    for (i = 0; i < GPM_FWD_MAX_LISTENERS; i++)
        if (listeners[i].fd >= 0 && listeners[i].id == id) {
            close(listeners[i].fd);
            listeners[i].fd = -1;
        }
    for (i = 0; i < FWD_MAX_WATCHES; i++)
        if (watches[i].used && watches[i].id == id)
            watches[i].used = 0;
}

int fwd_listener_pollfds(struct pollfd *pfd)
{
    int n = 0;
    size_t i;

    for (i = 0; i < GPM_FWD_MAX_LISTENERS; i++)
        if (listeners[i].fd >= 0) {
            pfd[n].fd = listeners[i].fd;
            pfd[n].events = POLLIN;
            pfd[n].revents = 0;
            n++;
        }
    return n;
}

void fwd_listener_events(const struct pollfd *pfd, int n)
{
    int k;

    for (k = 0; k < n; k++) {
        struct sockaddr_storage peer;
        socklen_t pl = sizeof(peer);
        uint32_t id = 0;
        size_t i;
        int fd;

        if (!(pfd[k].revents & POLLIN))
            continue;
        for (i = 0; i < GPM_FWD_MAX_LISTENERS; i++)
            if (listeners[i].fd == pfd[k].fd)
                id = listeners[i].id;
        fd = accept4(pfd[k].fd, (struct sockaddr *)&peer, &pl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (fwd_adopt(fd, id, &peer) < 0)
            close(fd);
    }
}

int fwd_watch_active(void)
{
    size_t i;

    for (i = 0; i < FWD_MAX_WATCHES; i++)
        if (watches[i].used)
            return 1;
    return 0;
}

/* Whether some socket listens on TCP @port, from one /proc/net file. */
static int listens_in(const char *file, uint16_t port)
{
    char line[512];
    FILE *f = fopen(file, "re");
    int found = 0;

    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned lport, state;

        if (sscanf(line, " %*s %*[0-9A-Fa-f]:%x %*s %x", &lport, &state) == 2 &&
            lport == port && state == 10)
            found = 1;
    }
    fclose(f);
    return found;
}

void fwd_watch_tick(void)
{
    struct timespec ts;
    int64_t now;
    size_t i;

    if (!fwd_watch_active())
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (last_tick_ms && now - last_tick_ms < FWD_WATCH_EVERY_MS)
        return;
    last_tick_ms = now;
    for (i = 0; i < FWD_MAX_WATCHES; i++) {
        struct watch *w = &watches[i];
        int up;

        if (!w->used)
            continue;
        up = listens_in("/proc/net/tcp", w->port) ||
             listens_in("/proc/net/tcp6", w->port);
        if (up)
            w->seen = 1;
        else if (w->seen) {
            fwd_frame(GPM_FWD_GONE, w->id, NULL, 0);
            w->used = 0;
        }
    }
}
