/*
 * entry_arm.c - linjector's help at the 32-bit ARM syscall entry: which
 * of the two system call instructions the thread used (see arch_ops.h).
 */
#include "arch/arch_ops.h"

/*
 * ARM state "svc #0" is 0xef000000 (4 bytes), Thumb "svc #0" is 0xdf00
 * (2 bytes); both little-endian in memory (BE8 keeps instructions
 * little-endian). The return address follows the instruction, so the
 * bytes before it tell which one ran. 0 if neither is there.
 */
unsigned gpm__entry_arm_insn_len(const gpm_host_ops_t *ops, void *cpu,
                                 uint64_t retaddr)
{
    uint8_t b[4];

    if (retaddr < 4 || ops->read_mem(cpu, retaddr - 4, b, 4) != 0)
        return 0;
    if (b[3] == 0xef && b[2] == 0 && b[1] == 0 && b[0] == 0)
        return 4;
    if (b[3] == 0xdf && b[2] == 0)
        return 2;
    return 0;
}
