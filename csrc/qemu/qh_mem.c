/*
 * qh_mem.c - guest memory for the stock-QEMU host: the RAM file through
 * the arch's page walk, or 'm' packets without one (I/O thread).
 */
#define _GNU_SOURCE
#include "qemu/qh_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gpm__qh_gdb_read_mem(gpm_qemu_host_t *h, uint64_t va, void *buf, size_t len)
{
    size_t chunk = h->conn.packet_size / 2 - 16;
    uint8_t *dst = buf;

    if (chunk > 2048) {
        chunk = 2048;
    }
    while (len) {
        size_t n = len < chunk ? len : chunk, rlen = 0;
        char cmd[64];
        int err;

        snprintf(cmd, sizeof(cmd), "m%" PRIx64 ",%zx", va, n);
        err = gpm__qh_command(h, cmd, &rlen);
        if (err == GPM_EIO) {
            return GPM_EFAULT;
        }
        if (err < 0) {
            return err;
        }
        if (rlen == 0 || rlen % 2 || rlen / 2 > n ||
            gpm__hex_decode(h->reply, rlen, dst) < 0) {
            return rlen == 0 ? GPM_EFAULT : GPM_EPROTO;
        }
        dst += rlen / 2;
        va += rlen / 2;
        len -= rlen / 2;
    }
    return 0;
}

int gpm__qh_gdb_write_mem(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                          size_t len)
{
    size_t chunk = h->conn.packet_size / 2 - 32;
    const uint8_t *src = buf;
    char *cmd;

    if (chunk > 1024) {
        chunk = 1024;
    }
    cmd = malloc(2 * chunk + 64);
    if (!cmd) {
        return GPM_ENOMEM;
    }
    while (len) {
        size_t n = len < chunk ? len : chunk;
        int k = snprintf(cmd, 64, "M%" PRIx64 ",%zx:", va, n);
        int err;

        gpm__hex_encode(src, n, cmd + k);
        cmd[k + 2 * n] = '\0';
        err = gpm__qh_command_ok(h, cmd);
        if (err < 0) {
            free(cmd);
            return err == GPM_EPROTO ? GPM_EFAULT : err;
        }
        src += n;
        va += n;
        len -= n;
    }
    free(cmd);
    return 0;
}

/*
 * The page walk's inputs: the MMU registers the arch's backend names, from
 * the register cache (one 'g', or one 'p' each, per stop), or the
 * constants the host was given (arch_ops.mmu_inputs_const).
 */
static int walk_state(gpm_qemu_host_t *h, gpm__ram_walk_t *w)
{
    unsigned i;
    bool set;

    memset(w, 0, sizeof(*w));
    w->ops = h->aops;
    if (h->aops->mmu_inputs_const) {
        pthread_mutex_lock(&h->lock);
        set = h->mmu_const_set;
        memcpy(w->st.reg, h->mmu_const, sizeof(w->st.reg));
        pthread_mutex_unlock(&h->lock);
        return set ? 0 : GPM_EFAULT;
    }
    for (i = 0; i < GPM__MMU_NREGS && h->reg_mmu[i] >= 0; i++) {
        int err = gpm__qh_reg_get(h, (unsigned)h->reg_mmu[i], &w->st.reg[i]);

        if (err < 0) {
            return err;
        }
    }
    return 0;
}

int gpm__qh_mem_read(gpm_qemu_host_t *h, uint64_t va, void *buf, size_t len,
                     unsigned flags)
{
    gpm__ram_walk_t w;
    int err;

    if (!h->have_ram) {
        uint64_t top = h->aops->user_top;

        if ((flags & GPM__RAM_USER) && (va >= top || len > top - va)) {
            return GPM_EFAULT;
        }
        return gpm__qh_gdb_read_mem(h, va, buf, len);
    }
    err = walk_state(h, &w);
    if (err < 0) {
        return err;
    }
    return gpm__ram_read_virt(&h->ram, &w, va, buf, len, flags);
}

int gpm__qh_mem_write(gpm_qemu_host_t *h, uint64_t va, const void *buf,
                      size_t len)
{
    gpm__ram_walk_t w;
    int err;

    if (!h->have_ram) {
        return GPM_ENOSYS;
    }
    err = walk_state(h, &w);
    if (err < 0) {
        return err;
    }
    return gpm__ram_write_virt(&h->ram, &w, va, buf, len);
}

/* Ops for hypercalls: guest pointers must be user memory. */
static int hc_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    return gpm__qh_reg_get(cpu, regno, val);
}

static int hc_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    return gpm__qh_reg_set(cpu, regno, val);
}

static int hc_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    return gpm__qh_mem_read(cpu, addr, buf, len, GPM__RAM_USER);
}

static int hc_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    int err = gpm__qh_mem_write(cpu, addr, buf, len);

    return err == GPM_ENOSYS ? GPM_EROFS : err;
}

/* Ops for host code (breakpoint and call callbacks): kernel reads too. */
static int full_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    return gpm__qh_mem_read(cpu, addr, buf, len, 0);
}

const gpm_host_ops_t gpm__qh_hc_ops = {hc_read_reg, hc_write_reg, hc_read_mem,
                                       hc_write_mem};
const gpm_host_ops_t gpm__qh_full_ops = {hc_read_reg, hc_write_reg,
                                         full_read_mem, hc_write_mem};
