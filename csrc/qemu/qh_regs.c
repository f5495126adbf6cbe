/*
 * qh_regs.c - the register cache over 'g', 'p' and 'P' packets (I/O
 * thread). Register bytes are in the target's byte order.
 */
#define _GNU_SOURCE
#include "qemu/qh_internal.h"

#include <stdio.h>
#include <string.h>

void gpm__qh_regs_invalidate(gpm_qemu_host_t *h)
{
    h->g_valid = false;
    memset(h->rstate, 0, sizeof(h->rstate));
}

/* A register's value from its bytes in a reply, in the target's order. */
uint64_t gpm__qh_decode(const gpm_qemu_host_t *h, const uint8_t *p,
                        unsigned bytes)
{
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < bytes; i++) {
        unsigned b = h->ai->big_endian ? i : bytes - 1 - i;

        v = (v << 8) | p[b];
    }
    return v;
}

int gpm__qh_fetch_g(gpm_qemu_host_t *h)
{
    size_t len = 0;
    unsigned i;
    int err;

    STAT_ADD(h, g_packets, 1);
    err = gpm__qh_command(h, "g", &len);
    if (err < 0) {
        return err;
    }
    if (len % 2 || len / 2 > sizeof(h->g) ||
        gpm__hex_decode(h->reply, len, h->g) < 0) {
        return GPM_EPROTO;
    }
    h->glen = len / 2;
    h->g_valid = true;
    for (i = 0; i < h->td.nregs; i++) {
        const gpm__tdesc_reg_t *r = &h->td.regs[i];
        unsigned bytes = r->bitsize / 8;

        if (r->g_offset < 0 || bytes == 0 || bytes > 8 ||
            (size_t)r->g_offset + bytes > h->glen ||
            (h->rstate[i] & RS_DIRTY)) {
            continue;
        }
        h->regs[i] = gpm__qh_decode(h, h->g + r->g_offset, bytes);
        h->rstate[i] = RS_VALID;
    }
    return 0;
}

static int reg_check(const gpm_qemu_host_t *h, unsigned n)
{
    if (n >= h->td.nregs || h->td.regs[n].bitsize == 0 ||
        h->td.regs[n].bitsize > 64) {
        return GPM_EINVAL;
    }
    return 0;
}

int gpm__qh_reg_get(gpm_qemu_host_t *h, unsigned n, uint64_t *val)
{
    uint8_t buf[8];
    char cmd[32];
    size_t len = 0;
    unsigned bytes;
    int err = reg_check(h, n);

    if (err < 0) {
        return err;
    }
    if (!(h->rstate[n] & RS_VALID) && !h->g_valid &&
        h->td.regs[n].g_offset >= 0) {
        err = gpm__qh_fetch_g(h);
        if (err < 0) {
            return err;
        }
    }
    if (!(h->rstate[n] & RS_VALID)) {
        bytes = h->td.regs[n].bitsize / 8;
        snprintf(cmd, sizeof(cmd), "p%x", n);
        STAT_ADD(h, p_packets, 1);
        err = gpm__qh_command(h, cmd, &len);
        if (err < 0) {
            return err;
        }
        if (len != 2 * bytes || gpm__hex_decode(h->reply, len, buf) < 0) {
            return len == 0 ? GPM_ENOSYS : GPM_EPROTO;
        }
        h->regs[n] = gpm__qh_decode(h, buf, bytes);
        h->rstate[n] = RS_VALID;
    }
    *val = h->regs[n];
    return 0;
}

int gpm__qh_reg_set(gpm_qemu_host_t *h, unsigned n, uint64_t val)
{
    unsigned bits;
    int err = reg_check(h, n);

    if (err < 0) {
        return err;
    }
    bits = h->td.regs[n].bitsize;
    if (bits < 64) {
        val &= (1ull << bits) - 1;
    }
    h->regs[n] = val;
    h->rstate[n] = RS_VALID | RS_DIRTY;
    return 0;
}

/* Writes back every changed register except @skip (-1: none). */
int gpm__qh_regs_flush_but(gpm_qemu_host_t *h, int skip)
{
    unsigned i;

    for (i = 0; i < h->td.nregs; i++) {
        char cmd[48];
        uint8_t raw[8];
        unsigned b, bytes;
        int n, err;

        if (!(h->rstate[i] & RS_DIRTY) || (int)i == skip) {
            continue;
        }
        bytes = h->td.regs[i].bitsize / 8;
        for (b = 0; b < bytes; b++) {
            unsigned shift = h->ai->big_endian ? bytes - 1 - b : b;

            raw[b] = (uint8_t)(h->regs[i] >> (8 * shift));
        }
        n = snprintf(cmd, sizeof(cmd), "P%x=", i);
        gpm__hex_encode(raw, bytes, cmd + n);
        cmd[n + 2 * bytes] = '\0';
        STAT_ADD(h, P_packets, 1);
        err = gpm__qh_command_ok(h, cmd);
        if (err < 0) {
            return err;
        }
        h->rstate[i] &= (uint8_t)~RS_DIRTY;
    }
    return 0;
}

int gpm__qh_regs_flush(gpm_qemu_host_t *h)
{
    return gpm__qh_regs_flush_but(h, -1);
}
