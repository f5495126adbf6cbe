/*
 * gpm_panda_mem.c - the x86_64 page-table check for host writes and the
 * syscall-entry register view (see gpm_panda_mem.h).
 */
#include "gpm_panda_mem.h"

#include "gpm/error.h"

#define PTE_PRESENT  0x1ull
#define PTE_WRITABLE 0x2ull
#define PTE_USER     0x4ull
#define PTE_LARGE    0x80ull
#define PTE_ADDR     0x000ffffffffff000ull
#define PAGE_SIZE    4096ull

static int read_entry(gpm_phys_read_fn rd, void *opaque, uint64_t table,
                      unsigned idx, uint64_t *out)
{
    uint8_t b[8];
    uint64_t e = 0;
    int rc = rd(opaque, table + 8ull * idx, b, sizeof(b));

    if (rc != 0)
        return GPM_EFAULT;
    /* Page-table entries are little-endian whatever the host is. */
    for (int i = 7; i >= 0; i--)
        e = (e << 8) | b[i];
    *out = e;
    return 0;
}

static bool canonical(uint64_t va, bool la57)
{
    unsigned bits = la57 ? 57 : 48;
    uint64_t top = va >> (bits - 1);

    return top == 0 || top == (UINT64_MAX >> (bits - 1));
}

/* The check for the one page holding @va. */
static int check_page(uint64_t cr3, bool la57, uint64_t va, bool write,
                      gpm_phys_read_fn rd, void *opaque)
{
    uint64_t table = cr3 & PTE_ADDR;
    bool read_only = false, supervisor = false;

    if (!canonical(va, la57))
        return GPM_EFAULT;
    for (int level = la57 ? 5 : 4; level >= 1; level--) {
        unsigned idx = (unsigned)(va >> (12 + 9 * (level - 1))) & 0x1ffu;
        uint64_t e;
        int rc = read_entry(rd, opaque, table, idx, &e);

        if (rc != 0)
            return rc;
        if (!(e & PTE_PRESENT))
            return GPM_EFAULT;
        /* Write and user access need the bit at every level. */
        if (!(e & PTE_WRITABLE))
            read_only = true;
        if (!(e & PTE_USER))
            supervisor = true;
        /* A 1 GiB (level 3) or 2 MiB (level 2) page ends the walk. */
        if (level == 1 || ((level == 2 || level == 3) && (e & PTE_LARGE)))
            break;
        table = e & PTE_ADDR;
    }
    /* The kernel's memory is never the guest program's to name. */
    if (supervisor)
        return GPM_EFAULT;
    return write && read_only ? GPM_EROFS : 0;
}

static int check_range(uint64_t cr3, bool la57, uint64_t va, size_t len,
                       bool write, gpm_phys_read_fn rd, void *opaque)
{
    uint64_t last, page;

    if (len == 0)
        return 0;
    if (rd == NULL)
        return GPM_EINVAL;
    if (va + (uint64_t)(len - 1) < va)
        return GPM_EFAULT;
    last = (va + (uint64_t)(len - 1)) & ~(PAGE_SIZE - 1);
    for (page = va & ~(PAGE_SIZE - 1);; page += PAGE_SIZE) {
        int rc = check_page(cr3, la57, page, write, rd, opaque);

        if (rc != 0)
            return rc;
        if (page == last)
            break;
    }
    return 0;
}

int gpm_x86_64_check_user_write(uint64_t cr3, bool la57, uint64_t va,
                                size_t len, gpm_phys_read_fn rd, void *opaque)
{
    return check_range(cr3, la57, va, len, true, rd, opaque);
}

int gpm_x86_64_check_user_read(uint64_t cr3, bool la57, uint64_t va, size_t len,
                               gpm_phys_read_fn rd, void *opaque)
{
    return check_range(cr3, la57, va, len, false, rd, opaque);
}

void gpm_entry_view_init(gpm_entry_view_t *v, const gpm_host_ops_t *inner,
                         void *inner_cpu, unsigned retaddr_reg,
                         uint64_t insn_addr, unsigned insn_len,
                         unsigned word_bits)
{
    v->inner = inner;
    v->inner_cpu = inner_cpu;
    v->retaddr_reg = retaddr_reg;
    v->word_mask = word_bits == 64 ? UINT64_MAX : UINT32_MAX;
    v->insn_addr = insn_addr & v->word_mask;
    v->insn_len = insn_len;
    v->written = false;
    v->reenter = false;
}

static int view_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    gpm_entry_view_t *v = cpu;

    if (regno == v->retaddr_reg) {
        *val = (v->insn_addr + v->insn_len) & v->word_mask;
        return 0;
    }
    return v->inner->read_reg(v->inner_cpu, regno, val);
}

static int view_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    gpm_entry_view_t *v = cpu;

    if (regno != v->retaddr_reg)
        return v->inner->write_reg(v->inner_cpu, regno, val);
    val &= v->word_mask;
    if (val == v->insn_addr) {
        v->reenter = true;
    } else if (val == ((v->insn_addr + v->insn_len) & v->word_mask)) {
        v->reenter = false;
    } else {
        /* Only "again" and "onwards" can be carried out at this stop. */
        return GPM_EINVAL;
    }
    v->written = true;
    return 0;
}

static int view_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    gpm_entry_view_t *v = cpu;

    return v->inner->read_mem(v->inner_cpu, addr, buf, len);
}

static int view_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    gpm_entry_view_t *v = cpu;

    return v->inner->write_mem(v->inner_cpu, addr, buf, len);
}

const gpm_host_ops_t gpm_entry_view_ops = {
    view_read_reg,
    view_write_reg,
    view_read_mem,
    view_write_mem,
};
