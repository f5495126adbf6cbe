/*
 * entry_x86_64.c - linjector's help at the x86_64 syscall entry: the
 * entry's first instruction, swapgs, done by the host (see arch_ops.h).
 */
#include <string.h>

#include "arch/arch_ops.h"

/*
 * Does what swapgs at @pc would do (exchange GS base and kernel GS base)
 * and moves RIP past it, so the guest continues without a single step,
 * which would cost another stop and a flush of translated code. If
 * anything fails nothing is changed and the host steps instead.
 */
bool gpm__entry_x86_64_step_over(const gpm_host_ops_t *ops, void *cpu,
                                 uint64_t pc, gpm__regnum_fn regnum,
                                 void *opaque)
{
    static const uint8_t swapgs[3] = {0x0f, 0x01, 0xf8};
    int gs = regnum(opaque, "gs_base");
    int kgs = regnum(opaque, "k_gs_base");
    int rip = regnum(opaque, "rip");
    uint8_t insn[3];
    uint64_t vgs, vkgs;

    if (gs < 0 || kgs < 0 || rip < 0 || ops->read_mem(cpu, pc, insn, 3) != 0 ||
        memcmp(insn, swapgs, 3) != 0)
        return false;
    if (ops->read_reg(cpu, (unsigned)gs, &vgs) != 0 ||
        ops->read_reg(cpu, (unsigned)kgs, &vkgs) != 0)
        return false;
    if (ops->write_reg(cpu, (unsigned)gs, vkgs) != 0)
        return false;
    if (ops->write_reg(cpu, (unsigned)kgs, vgs) != 0 ||
        ops->write_reg(cpu, (unsigned)rip, pc + 3) != 0) {
        /* Put gs back so that stepping the real swapgs stays right. */
        ops->write_reg(cpu, (unsigned)gs, vgs);
        ops->write_reg(cpu, (unsigned)kgs, vkgs);
        return false;
    }
    return true;
}
