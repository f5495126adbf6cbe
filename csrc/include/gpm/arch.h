/*
 * gpm/arch.h - what the core knows about each guest architecture.
 *
 * Registers are named by their number in GDB's register numbering for the
 * architecture (the order of the gdbstub's target.xml, skipping commented
 * entries). The stock-QEMU host uses the numbers as they are; the PANDA glue
 * maps each number to a field of the target's CPUArchState.
 */
#ifndef GPM_ARCH_H
#define GPM_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gpm_arch {
    GPM_ARCH_X86_64 = 0,
    GPM_ARCH_I386,
    GPM_ARCH_ARM,
    GPM_ARCH_AARCH64,
    GPM_ARCH_MIPS,
    GPM_ARCH_MIPSEL,
    GPM_ARCH_MIPS64,
    GPM_ARCH_PPC,
    GPM_ARCH_MIPS64EL, /* little-endian MIPS64 (n64); after PPC: values stay */
    GPM_ARCH_COUNT
} gpm_arch_t;

/* Number of registers a hypercall uses: magic/op/channel/arg1/arg2. */
#define GPM_HC_NREGS 5

typedef struct gpm_arch_info {
    const char *name;               /* "x86_64", "i386", "arm", ... */
    unsigned word_bits;             /* 32 or 64 */
    bool big_endian;                /* byte order of guest memory */
    unsigned elf_machine;           /* e_machine of its executables (EM_*) */
    unsigned elf_class;             /* 1 = ELFCLASS32, 2 = ELFCLASS64 */
    unsigned hc_regs[GPM_HC_NREGS]; /* GDB numbers: magic, op, chan, a1, a2 */
    unsigned ret_reg;               /* GDB number of the return register */
    unsigned pc_reg;                /* GDB number of the program counter */
} gpm_arch_info_t;

/**
 * gpm_arch_info() - the table entry for an architecture.
 * @arch: a gpm_arch_t value.
 *
 * Returns a pointer to static data, or NULL for a value out of range.
 * Thread-safe.
 */
const gpm_arch_info_t *gpm_arch_info(gpm_arch_t arch);

/**
 * gpm_arch_from_name() - look an architecture up by name.
 * @name: "x86_64", "i386", "arm", "aarch64", "mips", "mipsel", "mips64",
 *        "mips64el" or "ppc".
 * @out:  receives the architecture on success.
 *
 * Returns 0, or GPM_EINVAL for an unknown name. Thread-safe.
 */
int gpm_arch_from_name(const char *name, gpm_arch_t *out);

#ifdef __cplusplus
}
#endif

#endif /* GPM_ARCH_H */
