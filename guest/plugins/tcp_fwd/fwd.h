/*
 * fwd.h - what the files of the tcp_fwd guest plugin share.
 *
 * Threads: everything here belongs to the main thread, except fwd.in and
 * fwd.in_err, which the reader thread fills under fwd.in_lock.
 */
#ifndef GPM_TCP_FWD_H
#define GPM_TCP_FWD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/socket.h>

#include "gpm/descriptor.h"
#include "gpm/tools_proto.h"
#include "gpm_guest.h"

/* A growable byte buffer; data is malloc'ed and owned by the buffer. */
struct fwd_buf {
    unsigned char *data;
    size_t len, cap;
};

/* One connection; free when fd < 0. */
struct fwd_conn {
    int fd;
    uint32_t id;
    uint64_t gen;            /* tells a reused slot from its old self */
    uint32_t credit;         /* bytes we may still send the host */
    uint32_t unacked;        /* bytes written to the socket, not ACKed */
    struct fwd_buf pend;     /* host bytes not yet written to the socket */
    unsigned connecting : 1; /* connect() in progress */
    unsigned open : 1;       /* data may flow */
    unsigned accepted : 1;   /* from a reverse listener */
    unsigned sent_shut : 1;  /* the socket gave EOF, SHUT sent */
    unsigned got_shut : 1;   /* the host sent SHUT */
    unsigned wr_shut : 1;    /* shutdown(SHUT_WR) done */
};

struct fwd_state {
    gpm_chan_t chan;
    struct fwd_conn conns[GPM_FWD_MAX_CONNS];
    uint64_t gen;
    uint32_t next_id;
    int quit;
    struct fwd_buf out; /* frames for the host, sent once per round */
    int wake[2];        /* the reader thread -> main thread pipe */
    pthread_mutex_t in_lock;
    struct fwd_buf in; /* bytes read from the channel */
    int in_err;        /* the reader thread stopped with this error */
};

extern struct fwd_state fwd;

static inline void fwd_put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void fwd_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline uint16_t fwd_get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t fwd_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Appends @len bytes (@p may be NULL when @len is 0); 0 or -ENOMEM. */
int fwd_buf_add(struct fwd_buf *b, const void *p, size_t len);
/* Drops the first @n bytes. */
void fwd_buf_drop(struct fwd_buf *b, size_t n);

/* Queues one frame for the host; 0 or -ENOMEM. */
int fwd_frame(uint8_t type, uint32_t conn, const void *payload, size_t len);
/* Sends the queued frames in one write; 0 or the write's error. */
int fwd_flush(void);
/* Takes a socket a reverse listener accepted; 0 or -errno (fd not kept). */
int fwd_adopt(int fd, uint32_t listener, const struct sockaddr_storage *peer);

/* listener.c: reverse listeners and port watches. */
void fwd_listeners_init(void);
void fwd_listeners_close(void);
void fwd_listener_frame(uint8_t type, uint32_t id, const unsigned char *p,
                        size_t len);
/* Fills @pfd with the listening sockets; returns how many. */
int fwd_listener_pollfds(struct pollfd *pfd);
void fwd_listener_events(const struct pollfd *pfd, int n);
int fwd_watch_active(void);
/* Checks the watched ports (at most every half second). */
void fwd_watch_tick(void);

#endif /* GPM_TCP_FWD_H */
