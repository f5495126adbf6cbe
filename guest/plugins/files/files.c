/*
 * files.c - the guest's files for the host: stat, list, read, write,
 * remove, mkdir, chmod, chown, times, links and renames.
 *
 * The protocol is gpm/files_proto.h over the channel "files". One request
 * is served at a time; memory is two fixed buffers of about 1 MiB (one
 * frame in, one frame out), whatever the size of the files moved. A
 * request that breaks the protocol ends the plugin with status 3 (the host
 * loads a new one); a failing system call is answered with its errno.
 * Portable C (no architecture-specific code).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "gpm/descriptor.h"
#include "gpm/files_proto.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("files", GPM_GUEST_VERSION,
                      "Reads and writes guest files for the host");

static gpm_chan_t chan;
/*
 * Host bytes are read into rx_buf, as much as the head message holds (a
 * whole frame: the host writes each frame as one message), so a request
 * costs one READ, not one for the header and one for the payload. Every
 * hypercall stops the VM, which makes QEMU translate the guest's code
 * again; halving them speeds up writes to files severalfold.
 */
#define RX_CAP (GPM_WIRE_HDR_SIZE + GPM_FILES_MAX_REQUEST)
static uint8_t *rx_buf;
static size_t rx_start, rx_end;
static uint8_t *in_buf;  /* the current request's payload, inside rx_buf */
static uint8_t *out_buf; /* one reply frame */
static struct gpm_wire_hdr req;

/* Sends one reply frame of @len payload bytes already at out_buf + 16. */
static int send_frame(uint16_t type, uint32_t len)
{
    gpm_wire_hdr_put(out_buf, GPM_WIRE_MAGIC_FILES, type, req.seq, len);
    return gpm_write(chan, out_buf, GPM_WIRE_HDR_SIZE + len) < 0 ? -1 : 0;
}

static int send_status(int32_t status, uint64_t value)
{
    uint8_t *p = out_buf + GPM_WIRE_HDR_SIZE;

    gpm_wire_put32(p, (uint32_t)status);
    gpm_wire_put32(p + 4, 0);
    gpm_wire_put64(p + 8, value);
    return send_frame(GPM_FILES_R_STATUS, 16);
}

static int64_t ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void put_attr(uint8_t *p, const struct stat *st)
{
    gpm_wire_put32(p, (uint32_t)st->st_mode);
    gpm_wire_put32(p + 4, (uint32_t)st->st_nlink);
    gpm_wire_put32(p + 8, (uint32_t)st->st_uid);
    gpm_wire_put32(p + 12, (uint32_t)st->st_gid);
    gpm_wire_put32(p + 16, (uint32_t)st->st_rdev);
    gpm_wire_put32(p + 20, 0);
    gpm_wire_put64(p + 24, (uint64_t)st->st_size);
    gpm_wire_put64(p + 32, (uint64_t)st->st_blocks);
    gpm_wire_put64(p + 40, (uint64_t)st->st_ino);
    gpm_wire_put64(p + 48, (uint64_t)ts_ns(&st->st_atim));
    gpm_wire_put64(p + 56, (uint64_t)ts_ns(&st->st_mtim));
    gpm_wire_put64(p + 64, (uint64_t)ts_ns(&st->st_ctim));
}

/*
 * Splits the request payload: @fixed bytes of fields, then the path,
 * copied NUL-terminated into @path. Returns 0 or -1 (malformed).
 */
static int take_path(size_t fixed, char *path)
{
    size_t n;

    if (req.len < fixed + 1 || req.len - fixed > GPM_FILES_PATH_MAX)
        return -1;
    n = req.len - fixed;
    if (memchr(in_buf + fixed, '\0', n) != NULL)
        return -1;
    memcpy(path, in_buf + fixed, n);
    path[n] = '\0';
    return 0;
}

static int do_stat(const char *path, uint32_t flags)
{
    struct stat st;
    int rc = (flags & GPM_FILES_NOFOLLOW) ? lstat(path, &st) : stat(path, &st);

    if (rc < 0)
        return send_status(-errno, 0);
    put_attr(out_buf + GPM_WIRE_HDR_SIZE, &st);
    return send_frame(GPM_FILES_R_ATTR, GPM_FILES_ATTR_SIZE);
}

static int do_listdir(const char *path)
{
    uint8_t *base = out_buf + GPM_WIRE_HDR_SIZE;
    uint32_t used = 0;
    struct dirent *de;
    DIR *d = opendir(path);
    int dfd;

    if (d == NULL)
        return send_status(-errno, 0);
    dfd = dirfd(d);
    for (;;) {
        struct stat st;
        size_t nlen;

        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        nlen = strlen(de->d_name);
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            memset(&st, 0, sizeof(st)); /* vanished meanwhile: mode 0 */
        if (used + 2 + nlen + GPM_FILES_ATTR_SIZE > GPM_FILES_DIRENTS_MAX) {
            if (send_frame(GPM_FILES_R_DIRENTS, used) < 0) {
                closedir(d);
                return -1;
            }
            used = 0;
        }
        gpm_wire_put16(base + used, (uint16_t)nlen);
        memcpy(base + used + 2, de->d_name, nlen);
        put_attr(base + used + 2 + nlen, &st);
        used += (uint32_t)(2 + nlen + GPM_FILES_ATTR_SIZE);
    }
    if (errno != 0) {
        int err = errno;

        closedir(d);
        return send_status(-err, 0);
    }
    closedir(d);
    if (used > 0 && send_frame(GPM_FILES_R_DIRENTS, used) < 0)
        return -1;
    return send_status(0, 0);
}

static int do_get(const char *path, uint64_t off, uint64_t count)
{
    uint64_t done = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return send_status(-errno, 0);
    if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
        int err = errno;

        if (err == 0 || S_ISDIR(st.st_mode))
            err = EISDIR;
        close(fd);
        return send_status(-err, 0);
    }
    put_attr(out_buf + GPM_WIRE_HDR_SIZE, &st);
    if (send_frame(GPM_FILES_R_ATTR, GPM_FILES_ATTR_SIZE) < 0) {
        close(fd);
        return -1;
    }
    for (;;) {
        size_t want = GPM_FILES_CHUNK;
        ssize_t n;

        if (count != 0 && count - done < want)
            want = (size_t)(count - done);
        if (want == 0)
            break;
        n = pread(fd, out_buf + GPM_WIRE_HDR_SIZE, want, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;

            close(fd);
            return send_status(-err, done);
        }
        if (n == 0)
            break;
        if (send_frame(GPM_FILES_R_DATA, (uint32_t)n) < 0) {
            close(fd);
            return -1;
        }
        done += (uint64_t)n;
    }
    close(fd);
    return send_status(0, done);
}

/* Makes at least @need bytes available at rx_buf + rx_start. */
static int rx_fill(size_t need)
{
    if (rx_start > 0 && rx_start + need > RX_CAP) {
        memmove(rx_buf, rx_buf + rx_start, rx_end - rx_start);
        rx_end -= rx_start;
        rx_start = 0;
    }
    while (rx_end - rx_start < need) {
        ssize_t n = gpm_read_blocking(chan, rx_buf + rx_end, RX_CAP - rx_end);

        if (n < 0)
            return -1;
        rx_end += (size_t)n;
    }
    return 0;
}

/* Reads one request frame into req and in_buf; -1 ends the plugin. */
static int read_request(void)
{
    if (rx_start == rx_end)
        rx_start = rx_end = 0;
    if (rx_fill(GPM_WIRE_HDR_SIZE) < 0)
        return -1;
    gpm_wire_hdr_get(rx_buf + rx_start, &req);
    if (req.magic != GPM_WIRE_MAGIC_FILES || req.version != GPM_WIRE_VERSION ||
        req.len > GPM_FILES_MAX_REQUEST)
        return -1;
    if (rx_fill(GPM_WIRE_HDR_SIZE + req.len) < 0)
        return -1;
    in_buf = rx_buf + rx_start + GPM_WIRE_HDR_SIZE;
    rx_start += GPM_WIRE_HDR_SIZE + req.len;
    return 0;
}

/* Writes all of buf to fd at off; returns 0 or a negative errno. */
static int write_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int do_put(const char *path, uint32_t mode, uint32_t flags, uint64_t off)
{
    int oflags = O_WRONLY | O_CLOEXEC, fd, err = 0;
    uint32_t seq = req.seq;
    uint64_t done = 0;

    if (flags & GPM_FILES_TRUNC)
        oflags |= O_TRUNC;
    if (flags & GPM_FILES_CREATE)
        oflags |= O_CREAT;
    if (flags & GPM_FILES_EXCL)
        oflags |= O_EXCL;
    fd = open(path, oflags, (mode_t)(mode & 07777));
    if (fd < 0)
        return send_status(-errno, 0);
    if (send_status(0, 0) < 0) {
        close(fd);
        return -1;
    }
    /* DATA frames until an empty one; after an error they are dropped. */
    for (;;) {
        if (read_request() < 0 || req.type != GPM_FILES_R_DATA ||
            req.seq != seq) {
            close(fd);
            return -1;
        }
        if (req.len == 0)
            break;
        if (err == 0) {
            err = write_all(fd, in_buf, req.len, off + done);
            if (err == 0)
                done += req.len;
        }
    }
    if (close(fd) < 0 && err == 0)
        err = -errno;
    return send_status(err, done);
}

static int do_readlink(const char *path)
{
    ssize_t n =
        readlink(path, (char *)out_buf + GPM_WIRE_HDR_SIZE, GPM_FILES_PATH_MAX);

    if (n < 0)
        return send_status(-errno, 0);
    if (send_frame(GPM_FILES_R_DATA, (uint32_t)n) < 0)
        return -1;
    return send_status(0, (uint64_t)n);
}

/* Two strings: u32 first_len, first, then the rest. */
static int take_two(char *a, char *b)
{
    uint32_t alen;

    if (req.len < 4)
        return -1;
    alen = gpm_wire_get32(in_buf);
    if (alen == 0 || alen > GPM_FILES_PATH_MAX || alen > req.len - 4 ||
        memchr(in_buf + 4, '\0', alen) != NULL)
        return -1;
    memcpy(a, in_buf + 4, alen);
    a[alen] = '\0';
    return take_path(4 + alen, b);
}

/* Drops every privilege for user @uid, group @gid; 0 or -errno. */
static int set_user(uid_t uid, gid_t gid)
{
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
        return -errno;
    return 0;
}

static int rc_status(int rc)
{
    return send_status(rc < 0 ? -errno : 0, 0);
}

/* Serves the request in req; returns 0, 1 to quit, or -1 (protocol). */
static int serve(char *path, char *path2)
{
    const uint8_t *p = in_buf;

    switch (req.type) {
    case GPM_FILES_STAT:
        return take_path(4, path) < 0 ? -1 : do_stat(path, gpm_wire_get32(p));
    case GPM_FILES_LISTDIR:
        return take_path(0, path) < 0 ? -1 : do_listdir(path);
    case GPM_FILES_GET:
        if (take_path(16, path) < 0)
            return -1;
        return do_get(path, gpm_wire_get64(p), gpm_wire_get64(p + 8));
    case GPM_FILES_PUT:
        if (take_path(16, path) < 0)
            return -1;
        return do_put(path, gpm_wire_get32(p), gpm_wire_get32(p + 4),
                      gpm_wire_get64(p + 8));
    case GPM_FILES_REMOVE:
        if (take_path(4, path) < 0)
            return -1;
        return rc_status((gpm_wire_get32(p) & GPM_FILES_DIR) ? rmdir(path)
                                                             : unlink(path));
    case GPM_FILES_MKDIR:
        if (take_path(4, path) < 0)
            return -1;
        return rc_status(mkdir(path, (mode_t)(gpm_wire_get32(p) & 07777)));
    case GPM_FILES_CHMOD:
        if (take_path(4, path) < 0)
            return -1;
        return rc_status(chmod(path, (mode_t)(gpm_wire_get32(p) & 07777)));
    case GPM_FILES_CHOWN: {
        uid_t uid = (uid_t)gpm_wire_get32(p);
        gid_t gid = (gid_t)gpm_wire_get32(p + 4);

        if (take_path(12, path) < 0)
            return -1;
        return rc_status((gpm_wire_get32(p + 8) & GPM_FILES_NOFOLLOW)
                             ? lchown(path, uid, gid)
                             : chown(path, uid, gid));
    }
    case GPM_FILES_UTIMES: {
        int64_t at = (int64_t)gpm_wire_get64(p);
        int64_t mt = (int64_t)gpm_wire_get64(p + 8);
        struct timespec ts[2] = {{at / 1000000000, at % 1000000000},
                                 {mt / 1000000000, mt % 1000000000}};
        int fl;

        if (take_path(20, path) < 0 || at < 0 || mt < 0)
            return -1;
        fl = (gpm_wire_get32(p + 16) & GPM_FILES_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW
                                                           : 0;
        return rc_status(utimensat(AT_FDCWD, path, ts, fl));
    }
    case GPM_FILES_READLINK:
        return take_path(0, path) < 0 ? -1 : do_readlink(path);
    case GPM_FILES_SYMLINK:
        return take_two(path2, path) < 0 ? -1 : rc_status(symlink(path2, path));
    case GPM_FILES_RENAME:
        return take_two(path, path2) < 0 ? -1 : rc_status(rename(path, path2));
    case GPM_FILES_TRUNCATE:
        if (take_path(8, path) < 0)
            return -1;
        return rc_status(truncate(path, (off_t)gpm_wire_get64(p)));
    case GPM_FILES_SETUSER:
        if (req.len != 8)
            return -1;
        return send_status(
            set_user((uid_t)gpm_wire_get32(p), (gid_t)gpm_wire_get32(p + 4)),
            0);
    case GPM_FILES_QUIT:
        return 1;
    default:
        return send_status(-ENOSYS, 0);
    }
}

int main(void)
{
    static char path[GPM_FILES_PATH_MAX + 1], path2[GPM_FILES_PATH_MAX + 1];
    int rc;

    rx_buf = malloc(RX_CAP);
    out_buf = malloc(GPM_WIRE_HDR_SIZE + GPM_FILES_CHUNK);
    if (rx_buf == NULL || out_buf == NULL)
        return 2;
    if (gpm_channel_open(GPM_FILES_CHANNEL, &chan) < 0)
        return 2;
    for (;;) {
        if (read_request() < 0) {
            gpm_channel_stop(chan);
            return 3;
        }
        rc = serve(path, path2);
        if (rc != 0)
            break;
    }
    gpm_channel_stop(chan);
    return rc > 0 ? 0 : 3;
}
