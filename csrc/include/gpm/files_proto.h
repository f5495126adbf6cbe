/*
 * gpm/files_proto.h - the framed protocol of the "files" guest plugin.
 *
 * Plain C99, shared by the guest plugin (guest/plugins/files) and the
 * host (pandagpm/tools/files.py reads these numbers from pandagpm._gpm).
 * Frames are gpm/wire.h's with magic GPM_WIRE_MAGIC_FILES on the channel
 * "files". The host sends one request at a time; every request frame's
 * @seq is echoed by the replies to it. Paths are bytes without NUL, at
 * most GPM_FILES_PATH_MAX; integers little-endian.
 *
 * Requests, host -> guest (payload):
 *   STAT      u32 flags (GPM_FILES_NOFOLLOW), path     -> ATTR or STATUS
 *   LISTDIR   path -> DIRENTS* then STATUS (0: complete)
 *   GET       u64 offset, u64 count (0: to the end), path
 *             -> ATTR, DATA* (each <= GPM_FILES_CHUNK), STATUS (u64 bytes)
 *             or STATUS alone on failure to open
 *   PUT       u32 mode, u32 flags (GPM_FILES_TRUNC, _EXCL, _CREATE),
 *             u64 offset, path -> STATUS (open); if 0, the host sends DATA
 *             frames and an empty DATA as the end -> STATUS (u64 bytes)
 *   REMOVE    u32 flags (GPM_FILES_DIR: rmdir), path    -> STATUS
 *   MKDIR     u32 mode, path                             -> STATUS
 *   CHMOD     u32 mode, path                             -> STATUS
 *   CHOWN     u32 uid, u32 gid, u32 flags, path          -> STATUS
 *   UTIMES    i64 atime_ns, i64 mtime_ns, u32 flags, path -> STATUS
 *   READLINK  path -> DATA (the target) then STATUS, or STATUS
 *   SYMLINK   u32 target_len, target, path               -> STATUS
 *   RENAME    u32 src_len, src, dst                      -> STATUS
 *   TRUNCATE  u64 size, path                             -> STATUS
 *   SETUSER   u32 uid, u32 gid: drop to that user for good (setgroups,
 *             setgid, setuid)                            -> STATUS
 *   QUIT      empty: the plugin exits
 * Replies, guest -> host:
 *   STATUS    i32 status (0 or a negative errno), u32 0, u64 value
 *   ATTR      struct attr below (GPM_FILES_ATTR_SIZE bytes)
 *   DIRENTS   entries: u16 name_len, name, attr; as many as fit in
 *             GPM_FILES_DIRENTS_MAX bytes (names are never "." or "..")
 *   DATA      bytes
 * attr, GPM_FILES_ATTR_SIZE bytes: u32 mode, u32 nlink, u32 uid, u32 gid,
 *   u32 rdev, u32 0, u64 size, u64 blocks (512 B), u64 ino, i64 atime_ns,
 *   i64 mtime_ns, i64 ctime_ns. Attributes are lstat()'s in DIRENTS.
 */
#ifndef GPM_FILES_PROTO_H
#define GPM_FILES_PROTO_H

#include "gpm/wire.h"

#define GPM_FILES_CHANNEL     "files"
#define GPM_FILES_PATH_MAX    4096u
/* DATA payload per frame: a header and a chunk are one 1 MiB transfer. */
#define GPM_FILES_CHUNK       ((1u << 20) - GPM_WIRE_HDR_SIZE)
#define GPM_FILES_DIRENTS_MAX (64u << 10)
#define GPM_FILES_ATTR_SIZE   72u
/* Largest request payload the guest accepts. */
#define GPM_FILES_MAX_REQUEST (GPM_FILES_CHUNK + 0u)

enum gpm_files_type {
    GPM_FILES_STAT = 1,
    GPM_FILES_LISTDIR = 2,
    GPM_FILES_GET = 3,
    GPM_FILES_PUT = 4,
    GPM_FILES_REMOVE = 5,
    GPM_FILES_MKDIR = 6,
    GPM_FILES_CHMOD = 7,
    GPM_FILES_CHOWN = 8,
    GPM_FILES_UTIMES = 9,
    GPM_FILES_READLINK = 10,
    GPM_FILES_SYMLINK = 11,
    GPM_FILES_RENAME = 12,
    GPM_FILES_TRUNCATE = 13,
    GPM_FILES_QUIT = 14,
    GPM_FILES_SETUSER = 15,
    GPM_FILES_R_STATUS = 32,
    GPM_FILES_R_ATTR = 33,
    GPM_FILES_R_DIRENTS = 34,
    GPM_FILES_R_DATA = 35,
};

/* Request flags. */
#define GPM_FILES_NOFOLLOW 1u /* STAT, CHOWN, UTIMES: the link itself */
#define GPM_FILES_DIR      1u /* REMOVE: rmdir */
#define GPM_FILES_TRUNC    1u /* PUT: O_TRUNC */
#define GPM_FILES_EXCL     2u /* PUT: O_EXCL */
#define GPM_FILES_CREATE   4u /* PUT: O_CREAT */

#endif /* GPM_FILES_PROTO_H */
