/*
 * gdb_remote.c - GDB Remote Serial Protocol: parser, target description,
 * and a connection over a unix socket. See gdb_remote.h.
 */
#include "qemu/gdb_remote.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int hexval(uint8_t ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

void gpm__rsp_parser_init(gpm__rsp_parser_t *p, uint8_t *buf, size_t cap)
{
    memset(p, 0, sizeof(*p));
    p->buf = buf;
    p->cap = cap;
    p->state = GPM__RSP_IDLE;
}

static void rsp_start(gpm__rsp_parser_t *p, bool notification)
{
    p->state = GPM__RSP_DATA;
    p->notification = notification;
    p->overflow = false;
    p->sum = 0;
    p->len = 0;
}

size_t gpm__rsp_parse(gpm__rsp_parser_t *p, const uint8_t *in, size_t n,
                      gpm__rsp_kind_t *kind)
{
    size_t i;

    *kind = GPM__RSP_NONE;
    for (i = 0; i < n; i++) {
        uint8_t ch = in[i];
        int v;

        switch (p->state) {
        case GPM__RSP_IDLE:
            if (ch == '$' || ch == '%') {
                rsp_start(p, ch == '%');
            } else if (ch == '+') {
                p->len = 0;
                *kind = GPM__RSP_ACK;
                return i + 1;
            } else if (ch == '-') {
                p->len = 0;
                *kind = GPM__RSP_NAK;
                return i + 1;
            }
            /* Anything else between packets is noise and is skipped. */
            break;
        case GPM__RSP_DATA:
            if (ch == '#') {
                p->state = GPM__RSP_CSUM1;
            } else if (ch == '$') {
                /* An unescaped '$' cannot be payload: resynchronise. */
                rsp_start(p, false);
            } else {
                p->sum = (uint8_t)(p->sum + ch);
                if (p->len < p->cap) {
                    p->buf[p->len++] = ch;
                } else {
                    p->overflow = true;
                }
            }
            break;
        case GPM__RSP_CSUM1:
            v = hexval(ch);
            if (v < 0) {
                p->state = GPM__RSP_IDLE;
                *kind = GPM__RSP_BAD_CHECKSUM;
                return i + 1;
            }
            p->csum_hi = (uint8_t)v;
            p->state = GPM__RSP_CSUM2;
            break;
        case GPM__RSP_CSUM2:
        default:
            v = hexval(ch);
            p->state = GPM__RSP_IDLE;
            if (v < 0 || (uint8_t)(p->csum_hi * 16 + v) != p->sum) {
                *kind = GPM__RSP_BAD_CHECKSUM;
            } else if (p->overflow) {
                p->len = 0;
                *kind = GPM__RSP_TOO_LONG;
            } else {
                *kind =
                    p->notification ? GPM__RSP_NOTIFICATION : GPM__RSP_PACKET;
            }
            return i + 1;
        }
    }
    return n;
}

int gpm__rsp_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                    size_t *out_len)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        uint8_t ch = in[i];

        if (ch == '}') {
            if (i + 1 >= n) {
                return GPM_EPROTO;
            }
            ch = in[++i] ^ 0x20;
        } else if (ch == '*') {
            unsigned count;
            uint8_t prev;

            if (o == 0 || i + 1 >= n) {
                return GPM_EPROTO;
            }
            if (in[i + 1] < 32 || in[i + 1] > 126) {
                return GPM_EPROTO;
            }
            count = (unsigned)in[++i] - 29u;
            if (cap - o < count) {
                return GPM_EMSGSIZE;
            }
            prev = out[o - 1];
            memset(out + o, prev, count);
            o += count;
            continue;
        }
        if (o >= cap) {
            return GPM_EMSGSIZE;
        }
        out[o++] = ch;
    }
    *out_len = o;
    return 0;
}

size_t gpm__rsp_frame(const uint8_t *payload, size_t n, uint8_t *out,
                      size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    size_t i, o = 0;
    uint8_t sum = 0;

    if (cap < 4) {
        return 0;
    }
    out[o++] = '$';
    for (i = 0; i < n; i++) {
        uint8_t ch = payload[i];

        if (ch == '$' || ch == '#' || ch == '}' || ch == '*') {
            if (cap - o < 2 + 3) {
                return 0;
            }
            out[o++] = '}';
            sum = (uint8_t)(sum + '}');
            ch ^= 0x20;
        } else if (cap - o < 1 + 3) {
            return 0;
        }
        out[o++] = ch;
        sum = (uint8_t)(sum + ch);
    }
    out[o++] = '#';
    out[o++] = (uint8_t)digits[sum >> 4];
    out[o++] = (uint8_t)digits[sum & 15];
    return o;
}

int gpm__hex_decode(const char *hex, size_t n, uint8_t *out)
{
    size_t i;

    if (n % 2) {
        return GPM_EPROTO;
    }
    for (i = 0; i < n; i += 2) {
        int hi = hexval((uint8_t)hex[i]);
        int lo = hexval((uint8_t)hex[i + 1]);

        if (hi < 0 || lo < 0) {
            return GPM_EPROTO;
        }
        out[i / 2] = (uint8_t)(hi * 16 + lo);
    }
    return 0;
}

void gpm__hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

int gpm__hex_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0 || n > 16) {
        return GPM_EPROTO;
    }
    for (i = 0; i < n; i++) {
        int d = hexval((uint8_t)s[i]);

        if (d < 0) {
            return GPM_EPROTO;
        }
        v = v * 16 + (uint64_t)d;
    }
    *out = v;
    return 0;
}

int gpm__rsp_parse_stop(const char *pkt, size_t n, gpm__rsp_stop_t *out)
{
    uint64_t sig;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (n < 3) {
        return GPM_EPROTO;
    }
    out->kind = pkt[0];
    switch (pkt[0]) {
    case 'T':
    case 'S':
    case 'X':
        if (gpm__hex_u64(pkt + 1, 2, &sig) < 0) {
            return GPM_EPROTO;
        }
        out->signal = (unsigned)sig;
        break;
    case 'W': {
        size_t end = 1;

        while (end < n && pkt[end] != ';') {
            end++;
        }
        if (gpm__hex_u64(pkt + 1, end - 1, &sig) < 0) {
            return GPM_EPROTO;
        }
        out->signal = (unsigned)sig;
        return 0;
    }
    default:
        return GPM_EPROTO;
    }
    if (pkt[0] != 'T') {
        return 0;
    }
    /* "Tss" then "name:value;" pairs. */
    i = 3;
    while (i < n) {
        size_t colon = i, semi;

        while (colon < n && pkt[colon] != ':' && pkt[colon] != ';') {
            colon++;
        }
        if (colon >= n || pkt[colon] != ':') {
            break;
        }
        semi = colon + 1;
        while (semi < n && pkt[semi] != ';') {
            semi++;
        }
        if (colon - i == 6 && memcmp(pkt + i, "thread", 6) == 0) {
            size_t len = semi - colon - 1;

            if (len >= sizeof(out->thread)) {
                len = sizeof(out->thread) - 1;
            }
            memcpy(out->thread, pkt + colon + 1, len);
            out->thread[len] = '\0';
            out->has_thread = true;
        }
        i = semi + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Target description. */

#define TDESC_MAX_DEPTH 4
#define TDESC_MAX_DOC   (1u << 20)

typedef struct tdesc_ctx {
    gpm__tdesc_fetch_fn fetch;
    void *opaque;
    gpm__tdesc_t *td;
    unsigned next;
    unsigned docs;
} tdesc_ctx_t;

static const char *find_str(const char *p, const char *end, const char *s)
{
    size_t k = strlen(s);

    while ((size_t)(end - p) >= k) {
        if (memcmp(p, s, k) == 0) {
            return p;
        }
        p++;
    }
    return NULL;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/*
 * Finds attribute @name in the tag text [p, end) (after the tag name) and
 * copies its value, NUL-terminated, into @val. Returns true if found and
 * it fits.
 */
static bool tag_attr(const char *p, const char *end, const char *name,
                     char *val, size_t cap)
{
    size_t k = strlen(name);

    while (p < end) {
        const char *an, *ae, *vs, *ve;
        char q;

        while (p < end && (is_space(*p) || *p == '/')) {
            p++;
        }
        an = p;
        while (p < end && *p != '=' && !is_space(*p) && *p != '/') {
            p++;
        }
        ae = p;
        while (p < end && is_space(*p)) {
            p++;
        }
        if (p >= end || *p != '=') {
            if (p == an) {
                p++;
            }
            continue;
        }
        p++;
        while (p < end && is_space(*p)) {
            p++;
        }
        if (p >= end || (*p != '"' && *p != '\'')) {
            return false;
        }
        q = *p++;
        vs = p;
        while (p < end && *p != q) {
            p++;
        }
        if (p >= end) {
            return false;
        }
        ve = p++;
        if ((size_t)(ae - an) == k && memcmp(an, name, k) == 0) {
            if ((size_t)(ve - vs) >= cap) {
                return false;
            }
            memcpy(val, vs, (size_t)(ve - vs));
            val[ve - vs] = '\0';
            return true;
        }
    }
    return false;
}

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
    unsigned long v = 0;

    if (*s == '\0') {
        return false;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max) {
            return false;
        }
    }
    *out = (unsigned)v;
    return true;
}

static int tdesc_doc(tdesc_ctx_t *ctx, const char *name, int depth);

static int tdesc_reg(tdesc_ctx_t *ctx, const char *a, const char *end)
{
    gpm__tdesc_t *td = ctx->td;
    char name[sizeof(td->regs[0].name)], tmp[16];
    unsigned bits, num = ctx->next;
    gpm__tdesc_reg_t *r;

    if (!tag_attr(a, end, "name", name, sizeof(name)) ||
        !tag_attr(a, end, "bitsize", tmp, sizeof(tmp)) ||
        !parse_uint(tmp, 4096, &bits) || bits == 0 || bits % 8) {
        return GPM_EPROTO;
    }
    if (tag_attr(a, end, "regnum", tmp, sizeof(tmp)) &&
        !parse_uint(tmp, GPM__TDESC_MAX_REGS, &num)) {
        return GPM_EPROTO;
    }
    if (num >= GPM__TDESC_MAX_REGS) {
        return GPM_EPROTO;
    }
    r = &td->regs[num];
    if (r->bitsize) {
        return GPM_EPROTO; /* numbered twice */
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->bitsize = bits;
    r->regnum = num;
    r->g_offset = -1;
    ctx->next = num + 1;
    if (ctx->next > td->nregs) {
        td->nregs = ctx->next;
    }
    return 0;
}

static int tdesc_parse(tdesc_ctx_t *ctx, const char *p, const char *end,
                       int depth)
{
    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        const char *gt, *nm, *ne;
        int err;

        if (!lt) {
            break;
        }
        if ((size_t)(end - lt) >= 4 && memcmp(lt, "<!--", 4) == 0) {
            const char *ce = find_str(lt + 4, end, "-->");

            if (!ce) {
                return GPM_EPROTO;
            }
            p = ce + 3;
            continue;
        }
        gt = memchr(lt, '>', (size_t)(end - lt));
        if (!gt) {
            return GPM_EPROTO;
        }
        p = gt + 1;
        if (lt[1] == '?' || lt[1] == '!' || lt[1] == '/') {
            continue;
        }
        nm = lt + 1;
        ne = nm;
        while (ne < gt && !is_space(*ne) && *ne != '/') {
            ne++;
        }
        if (ne - nm == 3 && memcmp(nm, "reg", 3) == 0) {
            err = tdesc_reg(ctx, ne, gt);
            if (err < 0) {
                return err;
            }
        } else if (ne - nm == 10 && memcmp(nm, "xi:include", 10) == 0) {
            char href[128];

            if (!tag_attr(ne, gt, "href", href, sizeof(href))) {
                return GPM_EPROTO;
            }
            err = tdesc_doc(ctx, href, depth + 1);
            if (err < 0) {
                return err;
            }
        } else if (ne - nm == 12 && memcmp(nm, "architecture", 12) == 0 &&
                   gt[-1] != '/') {
            const char *te = memchr(p, '<', (size_t)(end - p));
            size_t len;

            if (!te) {
                return GPM_EPROTO;
            }
            len = (size_t)(te - p);
            if (len >= sizeof(ctx->td->arch)) {
                len = sizeof(ctx->td->arch) - 1;
            }
            memcpy(ctx->td->arch, p, len);
            ctx->td->arch[len] = '\0';
        }
    }
    return 0;
}

static int tdesc_doc(tdesc_ctx_t *ctx, const char *name, int depth)
{
    char *doc = NULL;
    size_t len = 0;
    int err;

    if (depth > TDESC_MAX_DEPTH || ctx->docs >= GPM__TDESC_MAX_DOCS) {
        return GPM_EPROTO;
    }
    ctx->docs++;
    err = ctx->fetch(ctx->opaque, name, &doc, &len);
    if (err < 0) {
        return err;
    }
    if (len > TDESC_MAX_DOC) {
        free(doc);
        return GPM_EPROTO;
    }
    err = tdesc_parse(ctx, doc, doc + len, depth);
    free(doc);
    return err;
}

int gpm__tdesc_load(gpm__tdesc_fetch_fn fetch, void *opaque, gpm__tdesc_t *td)
{
    tdesc_ctx_t ctx = {fetch, opaque, td, 0, 0};
    unsigned i, off = 0;
    int err;

    memset(td, 0, sizeof(*td));
    err = tdesc_doc(&ctx, "target.xml", 0);
    if (err < 0) {
        return err;
    }
    if (td->nregs == 0) {
        return GPM_EPROTO;
    }
    for (i = 0; i < td->nregs; i++) {
        if (td->regs[i].bitsize == 0) {
            break; /* a gap: the 'g' layout beyond it is unknown */
        }
        td->regs[i].g_offset = (int)off;
        off += td->regs[i].bitsize / 8;
    }
    for (; i < td->nregs; i++) {
        td->regs[i].g_offset = -1;
    }
    return 0;
}

int gpm__tdesc_find(const gpm__tdesc_t *td, const char *name)
{
    unsigned i;

    for (i = 0; i < td->nregs; i++) {
        if (td->regs[i].bitsize && strcmp(td->regs[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Connection. */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(int64_t deadline)
{
    int64_t left;

    if (deadline < 0) {
        return -1;
    }
    left = deadline - now_ms();
    return left < 0 ? 0 : (int)left;
}

int gpm__gdb_connect(gpm__gdb_conn_t *c, const char *path, int timeout_ms)
{
    struct sockaddr_un sa;
    int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    int last = GPM_ECONNRESET;

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    if (!path || strlen(path) >= sizeof(sa.sun_path)) {
        return GPM_EINVAL;
    }
    c->rawbuf = malloc(GPM__RSP_MAX_PACKET);
    c->outcap = 2 * GPM__RSP_MAX_PACKET + 8;
    c->outbuf = malloc(c->outcap);
    if (!c->rawbuf || !c->outbuf) {
        gpm__gdb_close(c);
        return GPM_ENOMEM;
    }
    gpm__rsp_parser_init(&c->parser, c->rawbuf, GPM__RSP_MAX_PACKET);
    c->packet_size = 256;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0) {
            gpm__gdb_close(c);
            return GPM_ENOMEM;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            c->fd = fd;
            return 0;
        }
        last = (errno == ENOENT || errno == ECONNREFUSED) ? GPM_ECONNRESET
                                                          : GPM_EIO;
        close(fd);
        if (now_ms() >= deadline) {
            break;
        }
        usleep(20000);
    }
    gpm__gdb_close(c);
    return last == GPM_ECONNRESET && timeout_ms > 0 ? GPM_ETIMEDOUT : last;
}

void gpm__gdb_close(gpm__gdb_conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    free(c->rawbuf);
    free(c->outbuf);
    c->rawbuf = NULL;
    c->outbuf = NULL;
}

bool gpm__gdb_pending(const gpm__gdb_conn_t *c)
{
    return c->in_pos < c->in_len;
}

static int write_all(gpm__gdb_conn_t *c, const void *buf, size_t n)
{
    const uint8_t *p = buf;

    if (c->fd < 0) {
        return GPM_ECONNRESET;
    }
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                struct pollfd pfd = {c->fd, POLLOUT, 0};

                if (poll(&pfd, 1, 5000) <= 0) {
                    return GPM_ETIMEDOUT;
                }
                continue;
            }
            return GPM_ECONNRESET;
        }
        c->bytes_sent += (uint64_t)w;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int gpm__gdb_send_raw(gpm__gdb_conn_t *c, const void *buf, size_t n)
{
    return write_all(c, buf, n);
}

/* Reads the next item into the parser; waits until @deadline (-1: ever). */
static int next_item(gpm__gdb_conn_t *c, int64_t deadline,
                     gpm__rsp_kind_t *kind)
{
    for (;;) {
        struct pollfd pfd;
        ssize_t r;
        int pr;

        while (c->in_pos < c->in_len) {
            c->in_pos += gpm__rsp_parse(&c->parser, c->inbuf + c->in_pos,
                                        c->in_len - c->in_pos, kind);
            if (*kind != GPM__RSP_NONE) {
                return 0;
            }
        }
        c->in_pos = c->in_len = 0;
        if (c->fd < 0) {
            return GPM_ECONNRESET;
        }
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        pr = poll(&pfd, 1, remaining(deadline));
        if (pr < 0) {
            if (errno == EINTR) {
                continue;
            }
            return GPM_EIO;
        }
        if (pr == 0) {
            return GPM_ETIMEDOUT;
        }
        r = recv(c->fd, c->inbuf, sizeof(c->inbuf), 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return GPM_ECONNRESET;
        }
        if (r == 0) {
            return GPM_ECONNRESET;
        }
        c->bytes_received += (uint64_t)r;
        c->in_len = (size_t)r;
    }
}

int gpm__gdb_send(gpm__gdb_conn_t *c, const char *payload, size_t n,
                  int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    size_t len =
        gpm__rsp_frame((const uint8_t *)payload, n, c->outbuf, c->outcap);
    int tries = 0, err;

    if (len == 0) {
        return GPM_EMSGSIZE;
    }
    err = write_all(c, c->outbuf, len);
    c->packets_sent++;
    while (err == 0) {
        gpm__rsp_kind_t kind;

        err = next_item(c, deadline, &kind);
        if (err < 0) {
            break;
        }
        switch (kind) {
        case GPM__RSP_ACK:
            return 0;
        case GPM__RSP_NAK:
            if (++tries > 3) {
                return GPM_EPROTO;
            }
            c->retransmits++;
            err = write_all(c, c->outbuf, len);
            break;
        case GPM__RSP_BAD_CHECKSUM:
            err = write_all(c, "-", 1);
            break;
        case GPM__RSP_NOTIFICATION:
            break;
        default:
            /* A packet where only an ack may come. */
            write_all(c, "+", 1);
            return GPM_EPROTO;
        }
    }
    return err;
}

int gpm__gdb_recv(gpm__gdb_conn_t *c, char *out, size_t cap, size_t *out_len,
                  int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    int bad = 0;

    if (cap == 0) {
        return GPM_EINVAL;
    }
    for (;;) {
        gpm__rsp_kind_t kind;
        size_t len;
        int err = next_item(c, deadline, &kind);

        if (err < 0) {
            return err;
        }
        switch (kind) {
        case GPM__RSP_PACKET:
            err = write_all(c, "+", 1);
            if (err < 0) {
                return err;
            }
            err = gpm__rsp_decode(c->parser.buf, c->parser.len, (uint8_t *)out,
                                  cap - 1, &len);
            if (err < 0) {
                return err;
            }
            out[len] = '\0';
            if (out_len) {
                *out_len = len;
            }
            return 0;
        case GPM__RSP_BAD_CHECKSUM:
            if (++bad > 8) {
                return GPM_EPROTO;
            }
            err = write_all(c, "-", 1);
            if (err < 0) {
                return err;
            }
            break;
        case GPM__RSP_TOO_LONG:
            write_all(c, "+", 1);
            return GPM_EMSGSIZE;
        default:
            break; /* stray acks and notifications */
        }
    }
}

int gpm__gdb_command(gpm__gdb_conn_t *c, const char *cmd, char *out, size_t cap,
                     size_t *out_len, int timeout_ms)
{
    size_t len = 0;
    int err = gpm__gdb_send(c, cmd, strlen(cmd), timeout_ms);

    if (err < 0) {
        return err;
    }
    err = gpm__gdb_recv(c, out, cap, &len, timeout_ms);
    if (err < 0) {
        return err;
    }
    if (out_len) {
        *out_len = len;
    }
    if (len == 3 && out[0] == 'E' && hexval((uint8_t)out[1]) >= 0 &&
        hexval((uint8_t)out[2]) >= 0) {
        return GPM_EIO;
    }
    return 0;
}
