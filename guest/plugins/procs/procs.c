/*
 * procs.c - processes, memory maps and sockets of the guest, from /proc.
 *
 * Serves requests on the channel "procs" in the format of
 * gpm/tools_proto.h: one 12-byte request (op, seq, arg), one reply per
 * request. Everything comes from /proc, so no kernel profile is needed;
 * /proc must be mounted (the plugin runs as root from the daemon and so
 * sees every process).
 *
 * Processes come and go while /proc is read: a process that vanished
 * between its directory entry and its files is left out, never reported
 * half-read.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpm/descriptor.h"
#include "gpm/tools_proto.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("procs", GPM_GUEST_VERSION,
                      "Lists processes, memory maps and sockets from /proc");

/* Inode -> pid entries kept while matching sockets to processes. */
#define PROCS_MAX_INODES 65536u

/* A reply under construction; capped at GPM_PROCS_MAX_REPLY. */
struct out {
    unsigned char *buf;
    size_t len, cap;
    uint32_t count;
    int truncated;
};

static void put_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put_le64(unsigned char *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/*
 * Room for one record of @n bytes at the end of @o; NULL when the reply
 * would pass its cap (then it is marked truncated) or memory ran out.
 */
static unsigned char *out_reserve(struct out *o, size_t n)
{
    unsigned char *p;

    if (o->truncated || o->len + n > GPM_PROCS_MAX_REPLY) {
        o->truncated = 1;
        return NULL;
    }
    if (o->len + n > o->cap) {
        size_t ncap = o->cap ? o->cap : 65536;
        unsigned char *nb;

        while (ncap < o->len + n)
            ncap *= 2;
        nb = realloc(o->buf, ncap);
        if (!nb) {
            o->truncated = 1;
            return NULL;
        }
        o->buf = nb;
        o->cap = ncap;
    }
    p = o->buf + o->len;
    memset(p, 0, n);
    o->len += n;
    o->count++;
    return p;
}

/*
 * Reads up to @cap - 1 bytes of @path into @buf and NUL-terminates it.
 * Returns the byte count or -errno.
 */
static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    while (got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = -errno;

            close(fd);
            return err;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

static int is_pid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

/* The real uid from /proc/PID/status, or (uint32_t)-1. */
static uint32_t proc_uid(const char *dir)
{
    char path[64], buf[4096], *p;

    snprintf(path, sizeof(path), "%s/status", dir);
    if (read_file(path, buf, sizeof(buf)) < 0)
        return UINT32_MAX;
    p = strstr(buf, "\nUid:");
    if (!p)
        return UINT32_MAX;
    return (uint32_t)strtoul(p + 5, NULL, 10);
}

/* Appends one PROC record for /proc/@name; skipped if it is gone. */
static void add_proc(struct out *o, const char *name)
{
    static char cmdline[GPM_PROCS_MAX_STR], exe[GPM_PROCS_MAX_STR];
    char dir[32], path[64], stat[1024], *open_paren, *close_paren;
    unsigned long long start_time = 0;
    size_t name_len, cmd_len = 0, exe_len = 0;
    long ppid = 0;
    char state = '?';
    unsigned char *rec;
    ssize_t n;
    int field;
    char *tok, *save;

    snprintf(dir, sizeof(dir), "/proc/%s", name);
    snprintf(path, sizeof(path), "%s/stat", dir);
    if (read_file(path, stat, sizeof(stat)) <= 0)
        return;
    /* "pid (comm) state ppid ...": comm may itself hold parentheses. */
    open_paren = strchr(stat, '(');
    close_paren = strrchr(stat, ')');
    if (!open_paren || !close_paren || close_paren < open_paren)
        return;
    *close_paren = '\0';
    name_len = strlen(open_paren + 1);
    field = 3;
    for (tok = strtok_r(close_paren + 1, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save), field++) {
        if (field == 3)
            state = tok[0];
        else if (field == 4)
            ppid = strtol(tok, NULL, 10);
        else if (field == 22) {
            start_time = strtoull(tok, NULL, 10);
            break;
        }
    }
    snprintf(path, sizeof(path), "%s/cmdline", dir);
    n = read_file(path, cmdline, sizeof(cmdline));
    if (n > 0) {
        cmd_len = (size_t)n;
        /* The last argument's NUL is a terminator, not a separator. */
        while (cmd_len > 0 && cmdline[cmd_len - 1] == '\0')
            cmd_len--;
    }
    snprintf(path, sizeof(path), "%s/exe", dir);
    n = readlink(path, exe, sizeof(exe));
    if (n > 0)
        exe_len = (size_t)n;
    rec = out_reserve(o, GPM_PROCS_PROC_FIXED + name_len + cmd_len + exe_len);
    if (!rec)
        return;
    put_le32(rec,
             (uint32_t)(GPM_PROCS_PROC_FIXED + name_len + cmd_len + exe_len));
    put_le32(rec + 4, (uint32_t)strtol(name, NULL, 10));
    put_le32(rec + 8, (uint32_t)ppid);
    put_le32(rec + 12, proc_uid(dir));
    put_le32(rec + 16, (uint32_t)(unsigned char)state);
    put_le64(rec + 20, start_time);
    put_le32(rec + 28, (uint32_t)name_len);
    put_le32(rec + 32, (uint32_t)cmd_len);
    put_le32(rec + 36, (uint32_t)exe_len);
    memcpy(rec + GPM_PROCS_PROC_FIXED, open_paren + 1, name_len);
    memcpy(rec + GPM_PROCS_PROC_FIXED + name_len, cmdline, cmd_len);
    memcpy(rec + GPM_PROCS_PROC_FIXED + name_len + cmd_len, exe, exe_len);
}

static int do_ps(struct out *o)
{
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (!d)
        return -errno;
    while ((e = readdir(d)) != NULL)
        if (is_pid_name(e->d_name))
            add_proc(o, e->d_name);
    closedir(d);
    return 0;
}

static int do_maps(struct out *o, uint32_t pid)
{
    char path[64], line[GPM_PROCS_MAX_STR + 256];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%u/maps", (unsigned)pid);
    f = fopen(path, "re");
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long start, end, offset, inode;
        char perms[5] = "", *p;
        unsigned char *rec;
        int used = 0;
        size_t plen;

        if (sscanf(line, "%llx-%llx %4s %llx %*s %llu%n", &start, &end, perms,
                   &offset, &inode, &used) < 5)
            continue;
        p = line + used;
        while (*p == ' ')
            p++;
        plen = strcspn(p, "\n");
        rec = out_reserve(o, GPM_PROCS_MAP_FIXED + plen);
        if (!rec)
            break;
        put_le32(rec, (uint32_t)(GPM_PROCS_MAP_FIXED + plen));
        put_le64(rec + 4, start);
        put_le64(rec + 12, end);
        put_le64(rec + 20, offset);
        memcpy(rec + 28, perms, 4);
        put_le64(rec + 32, inode);
        put_le32(rec + 40, (uint32_t)plen);
        memcpy(rec + GPM_PROCS_MAP_FIXED, p, plen);
    }
    fclose(f);
    return 0;
}

/* Socket inode -> owning process, from every /proc/PID/fd link. */
struct owner {
    uint64_t inode;
    int32_t pid;
};

struct owners {
    struct owner *v;
    size_t n, cap;
};

static void owners_scan(struct owners *ow)
{
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[600], link[64];
        struct dirent *fe;
        DIR *fd_dir;

        if (!is_pid_name(e->d_name))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/fd", e->d_name);
        fd_dir = opendir(path);
        if (!fd_dir)
            continue;
        while ((fe = readdir(fd_dir)) != NULL) {
            ssize_t n;

            if (fe->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/proc/%s/fd/%s", e->d_name,
                     fe->d_name);
            n = readlink(path, link, sizeof(link) - 1);
            if (n <= 8)
                continue;
            link[n] = '\0';
            if (strncmp(link, "socket:[", 8) != 0)
                continue;
            if (ow->n == ow->cap) {
                size_t ncap = ow->cap ? ow->cap * 2 : 256;
                struct owner *nv;

                if (ncap > PROCS_MAX_INODES)
                    break;
                nv = realloc(ow->v, ncap * sizeof(*nv));
                if (!nv)
                    break;
                ow->v = nv;
                ow->cap = ncap;
            }
            ow->v[ow->n].inode = strtoull(link + 8, NULL, 10);
            ow->v[ow->n].pid = (int32_t)strtol(e->d_name, NULL, 10);
            ow->n++;
        }
        closedir(fd_dir);
    }
    closedir(d);
}

static int32_t owners_find(const struct owners *ow, uint64_t inode)
{
    size_t i;

    for (i = 0; i < ow->n; i++)
        if (ow->v[i].inode == inode)
            return ow->v[i].pid;
    return -1;
}

/* The kernel prints each address word as the hex of a native u32. */
static int parse_addr(const char *s, unsigned char addr[16], int family)
{
    int words = family == 6 ? 4 : 1, i;

    for (i = 0; i < words; i++) {
        char hex[9];
        uint32_t w;

        memcpy(hex, s + 8 * i, 8);
        hex[8] = '\0';
        w = (uint32_t)strtoul(hex, NULL, 16);
        memcpy(addr + 4 * i, &w, 4);
    }
    return 0;
}

static void add_sockets(struct out *o, const char *file, int proto, int family,
                        const struct owners *ow)
{
    char line[512];
    FILE *f = fopen(file, "re");

    if (!f)
        return;
    if (!fgets(line, sizeof(line), f)) { /* the header line */
        fclose(f);
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        char local[40], remote[40], prog[32] = "", path[48];
        unsigned lport, rport, state, uid;
        unsigned long long inode;
        unsigned char *rec;
        size_t plen = 0;
        int32_t pid;

        if (sscanf(line,
                   " %*s %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %x %*s "
                   "%*s %*s %u %*s %llu",
                   local, &lport, remote, &rport, &state, &uid, &inode) < 7)
            continue;
        if (strlen(local) != (family == 6 ? 32u : 8u) ||
            strlen(remote) != strlen(local))
            continue;
        pid = inode ? owners_find(ow, inode) : -1;
        if (pid > 0) {
            snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
            if (read_file(path, prog, sizeof(prog)) > 0)
                plen = strcspn(prog, "\n");
        }
        rec = out_reserve(o, GPM_PROCS_SOCK_FIXED + plen);
        if (!rec)
            break;
        put_le32(rec, (uint32_t)(GPM_PROCS_SOCK_FIXED + plen));
        rec[4] = (unsigned char)proto;
        rec[5] = (unsigned char)family;
        rec[6] = (unsigned char)state;
        put_le16(rec + 8, (uint16_t)lport);
        put_le16(rec + 10, (uint16_t)rport);
        parse_addr(local, rec + 12, family);
        parse_addr(remote, rec + 28, family);
        put_le32(rec + 44, uid);
        put_le32(rec + 48, (uint32_t)pid);
        put_le64(rec + 52, inode);
        put_le32(rec + 60, (uint32_t)plen);
        memcpy(rec + GPM_PROCS_SOCK_FIXED, prog, plen);
    }
    fclose(f);
}

static int do_sockets(struct out *o)
{
    struct owners ow = {NULL, 0, 0};

    owners_scan(&ow);
    add_sockets(o, "/proc/net/tcp", 6, 4, &ow);
    add_sockets(o, "/proc/net/tcp6", 6, 6, &ow);
    add_sockets(o, "/proc/net/udp", 17, 4, &ow);
    add_sockets(o, "/proc/net/udp6", 17, 6, &ow);
    free(ow.v);
    return 0;
}

static int reply(gpm_chan_t chan, uint32_t op, uint32_t seq, int32_t status,
                 struct out *o)
{
    unsigned char hdr[GPM_PROCS_HDR_LEN];
    unsigned char *msg;
    ssize_t w;

    if (o->truncated)
        op |= GPM_PROCS_TRUNCATED;
    put_le32(hdr, GPM_PROCS_MAGIC);
    put_le32(hdr + 4, op);
    put_le32(hdr + 8, seq);
    put_le32(hdr + 12, (uint32_t)status);
    put_le32(hdr + 16, status < 0 ? 0 : o->count);
    put_le32(hdr + 20, status < 0 ? 0 : (uint32_t)o->len);
    /* One write, so the host sees the header and records together. */
    msg = malloc(GPM_PROCS_HDR_LEN + (status < 0 ? 0 : o->len));
    if (!msg)
        return -ENOMEM;
    memcpy(msg, hdr, sizeof(hdr));
    if (status >= 0 && o->len)
        memcpy(msg + GPM_PROCS_HDR_LEN, o->buf, o->len);
    w = gpm_write(chan, msg, GPM_PROCS_HDR_LEN + (status < 0 ? 0 : o->len));
    free(msg);
    return w < 0 ? (int)w : 0;
}

int main(void)
{
    gpm_chan_t chan;

    if (gpm_channel_open("procs", &chan) < 0)
        return 2;
    for (;;) {
        unsigned char req[GPM_PROCS_REQ_LEN];
        struct out o = {NULL, 0, 0, 0, 0};
        uint32_t op, seq, arg;
        int32_t status;
        int rc;

        if (gpm_read_exact(chan, req, sizeof(req)) < 0)
            return 1;
        op = get_le32(req);
        seq = get_le32(req + 4);
        arg = get_le32(req + 8);
        if (op == GPM_PROCS_OP_EXIT)
            break;
        switch (op) {
        case GPM_PROCS_OP_PS:
            status = do_ps(&o);
            break;
        case GPM_PROCS_OP_MAPS:
            status = do_maps(&o, arg);
            break;
        case GPM_PROCS_OP_SOCKETS:
            status = do_sockets(&o);
            break;
        default:
            status = -EINVAL;
        }
        rc = reply(chan, op, seq, status, &o);
        free(o.buf);
        if (rc < 0)
            return 1;
    }
    gpm_channel_stop(chan);
    return 0;
}
