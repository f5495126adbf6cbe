/*
 * qh_proto.c - gdbstub exchanges of the stock-QEMU host: commands, stop
 * replies and the target description (I/O thread).
 */
#define _GNU_SOURCE
#include "qemu/qh_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gpm__qh_command(gpm_qemu_host_t *h, const char *cmd, size_t *len)
{
    return gpm__gdb_command(&h->conn, cmd, h->reply, h->reply_cap, len, tmo(h));
}

int gpm__qh_command_ok(gpm_qemu_host_t *h, const char *cmd)
{
    size_t len = 0;
    int err = gpm__qh_command(h, cmd, &len);

    if (err < 0) {
        return err;
    }
    if (len == 0) {
        return GPM_ENOSYS;
    }
    return strcmp(h->reply, "OK") == 0 ? 0 : GPM_EPROTO;
}

/* Waits for a stop reply, skipping console output. */
int gpm__qh_wait_stop(gpm_qemu_host_t *h, int timeout_ms, gpm__rsp_stop_t *s)
{
    int i;

    for (i = 0; i < 64; i++) {
        size_t len = 0;
        int err =
            gpm__gdb_recv(&h->conn, h->reply, h->reply_cap, &len, timeout_ms);

        if (err < 0) {
            return err;
        }
        if (len > 0 && h->reply[0] == 'O') {
            continue;
        }
        if (gpm__rsp_parse_stop(h->reply, len, s) == 0) {
            STAT_ADD(h, stops, 1);
            if (s->kind == 'W' || s->kind == 'X') {
                return GPM_ECONNRESET;
            }
            return 0;
        }
    }
    return GPM_EPROTO;
}

int gpm__qh_fetch_xml(void *opaque, const char *name, char **out, size_t *len)
{
    gpm_qemu_host_t *h = opaque;
    size_t off = 0, cap = 0, chunk = h->conn.packet_size - 16;
    char *doc = NULL;

    for (;;) {
        char cmd[256];
        size_t rlen = 0;
        int err;

        if (strlen(name) > 128) {
            free(doc);
            return GPM_EPROTO;
        }
        snprintf(cmd, sizeof(cmd), "qXfer:features:read:%s:%zx,%zx", name, off,
                 chunk);
        err = gpm__qh_command(h, cmd, &rlen);
        if (err == 0 && rlen == 0 && off == 0 && h->aops->gdb_builtin_xml &&
            strcmp(name, "target.xml") == 0) {
            /* A stub without target descriptions: the arch's own. */
            free(doc);
            *out = strdup(h->aops->gdb_builtin_xml);
            *len = *out ? strlen(*out) : 0;
            return *out ? 0 : GPM_ENOMEM;
        }
        if (err < 0 || rlen == 0 ||
            (h->reply[0] != 'm' && h->reply[0] != 'l')) {
            free(doc);
            return err < 0 ? err : GPM_EPROTO;
        }
        if (off + rlen > MAX_XML) {
            free(doc);
            return GPM_EPROTO;
        }
        if (off + rlen > cap) {
            char *n = realloc(doc, off + rlen + 1);

            if (!n) {
                free(doc);
                return GPM_ENOMEM;
            }
            doc = n;
            cap = off + rlen;
        }
        memcpy(doc + off, h->reply + 1, rlen - 1);
        off += rlen - 1;
        if (h->reply[0] == 'l') {
            break;
        }
        if (rlen == 1) {
            free(doc);
            return GPM_EPROTO; /* 'm' with no data would loop forever */
        }
    }
    *out = doc;
    *len = off;
    return 0;
}
