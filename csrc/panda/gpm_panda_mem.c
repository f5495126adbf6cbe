/*
 * gpm_panda_mem.c - the x86_64 page-table check for host accesses (over
 * the arch backend's walker) and the
 * syscall-entry register view (see gpm_panda_mem.h).
 */
#include "gpm_panda_mem.h"

#include "gpm/error.h"

/*
 * The x86_64 check is the generic range check over the one x86_64 walker
 * (csrc/arch/mmu_x86_64.c); CR4.LA57 selects 5-level paging there.
 */
/* CR4.LA57 is bit 12. */
static int check_range(uint64_t cr3, bool la57, uint64_t va, size_t len,
                       bool write, gpm_phys_read_fn rd, void *opaque)
{
    gpm__mmu_state_t st = {{cr3, la57 ? 1ull << 12 : 0, 0, 0}};

    if (len == 0)
        return 0;
    if (rd == NULL)
        return GPM_EINVAL;
    return gpm__mmu_check_user(gpm__arch_ops(GPM_ARCH_X86_64), &st, va, len,
                               write, rd, opaque);
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
