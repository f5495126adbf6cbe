/*
 * tcp_fwd.c - TCP connections between host and guest, over one channel.
 *
 * Serves the frame protocol of gpm/tools_proto.h on the channel
 * "tcp_fwd": the host asks it to connect to guest services (host port ->
 * guest port), to listen on guest ports (guest port -> host service), and
 * to watch whether a guest service still listens. Every connection is
 * multiplexed on the one channel with a window per direction, so a slow
 * reader on either side slows only its own connection.
 *
 * Two threads. The reader thread blocks on the channel (sleeping on the
 * doorbell, no hypercall while idle), appends what arrives to a shared
 * byte queue and wakes the main thread through a pipe. The main thread
 * owns every socket and all connection state: it polls the sockets and
 * the pipe, parses frames, and sends what it has to say in one write per
 * round, so many connections' data share one hypercall.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fwd.h"

GPM_PLUGIN_DESCRIPTOR("tcp_fwd", GPM_GUEST_VERSION,
                      "Forwards TCP connections between host and guest");

/* Bytes read from one socket at a time. */
#define FWD_READ_CHUNK    (64u << 10)
/* A round's outgoing frames are sent once they pass this. */
#define FWD_FLUSH_AT      (1u << 20)
/* A partial batch waits this long, this many rounds at most, for more. */
#define FWD_BATCH_WAIT_MS 2
#define FWD_BATCH_ROUNDS  3
/* Receive buffer asked for on guest sockets, so services run ahead. */
#define FWD_SOCK_BUF      (1 << 20)

struct fwd_state fwd;

/* --- the reader thread ---------------------------------------------- */

static void *reader_main(void *arg)
{
    size_t cap = GPM_HC_MAX_TRANSFER;
    unsigned char *buf = malloc(cap);

    (void)arg;
    for (;;) {
        ssize_t n = buf ? gpm_read_blocking(fwd.chan, buf, cap) : -ENOMEM;
        char one = 1;

        pthread_mutex_lock(&fwd.in_lock);
        if (n > 0 && fwd_buf_add(&fwd.in, buf, (size_t)n) < 0)
            n = -ENOMEM;
        if (n <= 0)
            fwd.in_err = n < 0 ? (int)n : -EPIPE;
        pthread_mutex_unlock(&fwd.in_lock);
        while (write(fwd.wake[1], &one, 1) < 0 && errno == EINTR)
            ;
        if (n <= 0)
            break;
    }
    free(buf);
    return NULL;
}

/* --- outgoing frames ------------------------------------------------ */

int fwd_frame(uint8_t type, uint32_t conn, const void *payload, size_t len)
{
    unsigned char hdr[GPM_FWD_HDR_LEN] = {0};

    hdr[0] = type;
    fwd_put32(hdr + 4, conn);
    fwd_put32(hdr + 8, (uint32_t)len);
    if (fwd_buf_add(&fwd.out, hdr, sizeof(hdr)) < 0 ||
        fwd_buf_add(&fwd.out, payload, len) < 0)
        return -ENOMEM;
    return 0;
}

int fwd_flush(void)
{
    ssize_t w;

    if (fwd.out.len == 0)
        return 0;
    w = gpm_write(fwd.chan, fwd.out.data, fwd.out.len);
    fwd.out.len = 0;
    return w < 0 ? (int)w : 0;
}

static void send_reset(uint32_t id, int err)
{
    unsigned char p[4];

    fwd_put32(p, (uint32_t)err);
    fwd_frame(GPM_FWD_RESET, id, p, sizeof(p));
}

/* --- connections ---------------------------------------------------- */

static struct fwd_conn *conn_find(uint32_t id)
{
    size_t i;

    for (i = 0; i < GPM_FWD_MAX_CONNS; i++)
        if (fwd.conns[i].fd >= 0 && fwd.conns[i].id == id)
            return &fwd.conns[i];
    return NULL;
}

static struct fwd_conn *conn_new(uint32_t id, int fd)
{
    int rcvbuf = FWD_SOCK_BUF;
    size_t i;

    for (i = 0; i < GPM_FWD_MAX_CONNS; i++) {
        struct fwd_conn *c = &fwd.conns[i];

        if (c->fd < 0) {
            memset(c, 0, sizeof(*c));
            c->gen = ++fwd.gen;
            c->id = id;
            c->fd = fd;
            c->credit = GPM_FWD_WINDOW;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
            return c;
        }
    }
    return NULL;
}

/* Frees @c; with @abort the peer gets a TCP reset, not a FIN. */
static void conn_free(struct fwd_conn *c, int abort)
{
    if (abort) {
        struct linger lg = {1, 0};

        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c->fd);
    free(c->pend.data);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

/* Tells the host about @err on @c and frees it. */
static void conn_fail(struct fwd_conn *c, int err)
{
    send_reset(c->id, err);
    conn_free(c, 1);
}

/* Sends the ACK owed for bytes written to the guest socket. */
static void conn_ack(struct fwd_conn *c, int force)
{
    unsigned char p[4];

    if (c->unacked == 0 || (!force && c->unacked < GPM_FWD_WINDOW / 4))
        return;
    fwd_put32(p, c->unacked);
    fwd_frame(GPM_FWD_ACK, c->id, p, sizeof(p));
    c->unacked = 0;
}

/* Frees @c once both directions are finished. */
static void conn_maybe_done(struct fwd_conn *c)
{
    if (c->sent_shut && c->got_shut && c->wr_shut && c->pend.len == 0) {
        conn_ack(c, 1);
        conn_free(c, 0);
    }
}

/* Writes what the host sent to the guest socket. */
static void conn_write(struct fwd_conn *c)
{
    while (c->pend.len > 0) {
        ssize_t n = send(c->fd, c->pend.data, c->pend.len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            conn_fail(c, -errno);
            return;
        }
        fwd_buf_drop(&c->pend, (size_t)n);
        c->unacked += (uint32_t)n;
    }
    /* In quarters of the window: each message costs the host a callback. */
    conn_ack(c, 0);
    if (c->pend.len == 0 && c->got_shut && !c->wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = 1;
    }
    conn_maybe_done(c);
}

/*
 * Reads from the guest socket into DATA frames, within the credit, until
 * it has nothing more or the round's batch is full: one hypercall per
 * megabyte rather than per recv() is what makes forwarding fast, since
 * every hypercall stops the VM and costs the guest its translated code.
 */
static void conn_read(struct fwd_conn *c)
{
    static unsigned char chunk[FWD_READ_CHUNK];

    while (c->credit > 0 && fwd.out.len < FWD_FLUSH_AT) {
        size_t want = c->credit < sizeof(chunk) ? c->credit : sizeof(chunk);
        ssize_t n = recv(c->fd, chunk, want, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            conn_fail(c, -errno);
            return;
        }
        if (n == 0) {
            fwd_frame(GPM_FWD_SHUT, c->id, NULL, 0);
            c->sent_shut = 1;
            conn_maybe_done(c);
            return;
        }
        c->credit -= (uint32_t)n;
        fwd_frame(GPM_FWD_DATA, c->id, chunk, (size_t)n);
    }
}

/* The socket of a pending connect() became writable. */
static void conn_connected(struct fwd_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(c, -err);
        return;
    }
    c->connecting = 0;
    c->open = 1;
    fwd_frame(GPM_FWD_CONNECTED, c->id, NULL, 0);
}

/* Decodes a port, family and address payload into @ss. */
static int decode_addr(const unsigned char *p, size_t len,
                       struct sockaddr_storage *ss, socklen_t *sl)
{
    uint16_t port, family;

    if (len < 20)
        return -EINVAL;
    port = fwd_get16(p);
    family = fwd_get16(p + 2);
    memset(ss, 0, sizeof(*ss));
    if (family == 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;

        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        memcpy(&in->sin_addr, p + 4, 4);
        *sl = sizeof(*in);
        return 0;
    }
    if (family == 6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        memcpy(&in6->sin6_addr, p + 4, 16);
        *sl = sizeof(*in6);
        return 0;
    }
    return -EAFNOSUPPORT;
}

static void on_connect(uint32_t id, const unsigned char *p, size_t len)
{
    struct sockaddr_storage ss;
    struct fwd_conn *c;
    socklen_t sl;
    int fd, rc;

    rc = decode_addr(p, len, &ss, &sl);
    if (rc < 0 || (id & GPM_FWD_GUEST_BIT) || conn_find(id)) {
        send_reset(id, rc < 0 ? rc : -EINVAL);
        return;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        send_reset(id, -errno);
        return;
    }
    c = conn_new(id, fd);
    if (!c) {
        close(fd);
        send_reset(id, -EMFILE);
        return;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
        conn_connected(c);
    else if (errno == EINPROGRESS)
        c->connecting = 1;
    else
        conn_fail(c, -errno);
}

static void on_data(struct fwd_conn *c, const unsigned char *p, size_t len)
{
    /* The host keeps to the window; more is a broken host: reset. */
    if (c->got_shut || c->pend.len + len > GPM_FWD_WINDOW) {
        conn_fail(c, -EPROTO);
        return;
    }
    if (fwd_buf_add(&c->pend, p, len) < 0) {
        conn_fail(c, -ENOMEM);
        return;
    }
    conn_write(c);
}

/* Handles one complete frame from the host. */
static void on_frame(uint8_t type, uint32_t id, const unsigned char *p,
                     size_t len)
{
    struct fwd_conn *c;

    switch (type) {
    case GPM_FWD_CONNECT:
        on_connect(id, p, len);
        return;
    case GPM_FWD_LISTEN:
    case GPM_FWD_UNLISTEN:
    case GPM_FWD_WATCH:
        fwd_listener_frame(type, id, p, len);
        return;
    case GPM_FWD_QUIT:
        fwd.quit = 1;
        return;
    default:
        break;
    }
    c = conn_find(id);
    if (!c)
        return; /* finished here already; the host learns it anyway */
    switch (type) {
    case GPM_FWD_CONNECTED:
        if (c->accepted && !c->open)
            c->open = 1;
        break;
    case GPM_FWD_DATA:
        on_data(c, p, len);
        break;
    case GPM_FWD_ACK:
        if (len >= 4) {
            uint32_t n = fwd_get32(p);

            c->credit =
                n > GPM_FWD_WINDOW - c->credit ? GPM_FWD_WINDOW : c->credit + n;
        }
        break;
    case GPM_FWD_SHUT:
        c->got_shut = 1;
        conn_write(c);
        break;
    case GPM_FWD_RESET:
        conn_free(c, 1);
        break;
    default:
        break;
    }
}

/*
 * Parses every complete frame in the input queue. Returns 0, or -EPROTO
 * for a frame longer than the protocol allows (the session ends).
 */
static int parse_input(struct fwd_buf *in)
{
    size_t off = 0;
    int rc = 0;

    while (in->len - off >= GPM_FWD_HDR_LEN) {
        const unsigned char *h = in->data + off;
        uint32_t len = fwd_get32(h + 8);

        if (len > GPM_FWD_MAX_PAYLOAD) {
            rc = -EPROTO;
            break;
        }
        if (in->len - off < GPM_FWD_HDR_LEN + len)
            break;
        on_frame(h[0], fwd_get32(h + 4), h + GPM_FWD_HDR_LEN, len);
        off += GPM_FWD_HDR_LEN + len;
        if (fwd.out.len >= FWD_FLUSH_AT && fwd_flush() < 0)
            return -EPIPE;
    }
    fwd_buf_drop(in, off);
    return rc;
}

/* --- the main loop -------------------------------------------------- */

/* Takes what the reader thread queued; returns its error, if any. */
static int take_input(struct fwd_buf *local)
{
    char junk[64];
    int err;

    while (read(fwd.wake[0], junk, sizeof(junk)) > 0)
        ;
    pthread_mutex_lock(&fwd.in_lock);
    if (fwd.in.len > 0 && fwd_buf_add(local, fwd.in.data, fwd.in.len) == 0)
        fwd.in.len = 0;
    err = fwd.in_err;
    pthread_mutex_unlock(&fwd.in_lock);
    return err;
}

static void serve(void)
{
    static struct pollfd pfd[1 + GPM_FWD_MAX_CONNS + GPM_FWD_MAX_LISTENERS];
    static struct fwd_conn *who[GPM_FWD_MAX_CONNS];
    static uint64_t gen[GPM_FWD_MAX_CONNS];
    struct fwd_buf input = {NULL, 0, 0};
    int batch_rounds = 0;

    while (!fwd.quit) {
        size_t n = 1, nc = 0, i, before = fwd.out.len;
        int nl, timeout, err;

        pfd[0].fd = fwd.wake[0];
        pfd[0].events = POLLIN;
        for (i = 0; i < GPM_FWD_MAX_CONNS; i++) {
            struct fwd_conn *c = &fwd.conns[i];
            short ev = 0;

            if (c->fd < 0)
                continue;
            if (c->connecting || c->pend.len > 0)
                ev |= POLLOUT;
            if (c->open && !c->sent_shut && c->credit > 0)
                ev |= POLLIN;
            /*
             * Nothing to do on it now: left out, or a hang-up it cannot
             * act on yet (no credit) would wake the loop at once forever.
             */
            if (!ev)
                continue;
            pfd[n].fd = c->fd;
            pfd[n].events = ev;
            pfd[n].revents = 0;
            gen[nc] = c->gen;
            who[nc++] = c;
            n++;
        }
        nl = fwd_listener_pollfds(pfd + n);
        timeout = fwd_watch_active() ? 500 : -1;
        /*
         * A batch begun but not full: wait a little for more before the
         * hypercall, since each costs the VM a stop (FWD_BATCH_WAIT_MS).
         */
        if (fwd.out.len > 0)
            timeout = batch_rounds++ < FWD_BATCH_ROUNDS ? FWD_BATCH_WAIT_MS : 0;
        if (poll(pfd, n + (size_t)nl, timeout) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents) {
            err = take_input(&input);
            if (parse_input(&input) < 0 || err)
                break;
        }
        for (i = 0; i < nc; i++) {
            struct fwd_conn *c = who[i];
            short re = pfd[1 + i].revents;

            /* Freed, or freed and reused, by a frame this round. */
            if (c->fd < 0 || c->gen != gen[i] || !re)
                continue;
            if (c->connecting) {
                conn_connected(c);
                continue;
            }
            if (re & (POLLOUT | POLLERR | POLLHUP))
                conn_write(c);
            if (c->fd >= 0 && c->gen == gen[i] &&
                (pfd[1 + i].events & POLLIN) &&
                (re & (POLLIN | POLLHUP | POLLERR)))
                conn_read(c);
            if (fwd.out.len >= FWD_FLUSH_AT && fwd_flush() < 0)
                goto out;
        }
        fwd_listener_events(pfd + n, nl);
        fwd_watch_tick();
        /* Send once the batch is full, or a round added nothing to it. */
        if (fwd.out.len >= FWD_FLUSH_AT || fwd.out.len == before ||
            batch_rounds > FWD_BATCH_ROUNDS) {
            batch_rounds = 0;
            if (fwd_flush() < 0)
                break;
        }
    }
out:
    free(input.data);
}

/* Called by listener.c for a connection a reverse listener accepted. */
int fwd_adopt(int fd, uint32_t listener, const struct sockaddr_storage *peer)
{
    unsigned char p[24] = {0};
    struct fwd_conn *c;
    uint32_t id;

    do {
        id = GPM_FWD_GUEST_BIT | (fwd.next_id++ & ~GPM_FWD_GUEST_BIT);
    } while (conn_find(id));
    c = conn_new(id, fd);
    if (!c)
        return -EMFILE;
    c->accepted = 1;
    fwd_put32(p, listener);
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)peer;

        fwd_put16(p + 4, ntohs(in->sin_port));
        fwd_put16(p + 6, 4);
        memcpy(p + 8, &in->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)peer;

        fwd_put16(p + 4, ntohs(in6->sin6_port));
        fwd_put16(p + 6, 6);
        memcpy(p + 8, &in6->sin6_addr, 16);
    }
    return fwd_frame(GPM_FWD_ACCEPTED, id, p, sizeof(p));
}

int main(void)
{
    pthread_t reader;
    size_t i;

    for (i = 0; i < GPM_FWD_MAX_CONNS; i++)
        fwd.conns[i].fd = -1;
    fwd_listeners_init();
    pthread_mutex_init(&fwd.in_lock, NULL);
    if (pipe2(fwd.wake, O_NONBLOCK | O_CLOEXEC) < 0)
        return 2;
    if (gpm_channel_open("tcp_fwd", &fwd.chan) < 0)
        return 2;
    if (pthread_create(&reader, NULL, reader_main, NULL) != 0)
        return 2;
    serve();
    for (i = 0; i < GPM_FWD_MAX_CONNS; i++)
        if (fwd.conns[i].fd >= 0)
            conn_fail(&fwd.conns[i], 0);
    fwd_listeners_close();
    fwd_flush();
    gpm_channel_stop(fwd.chan);
    /* The reader may sit in a blocking read: leave without joining it. */
    _exit(0);
}
