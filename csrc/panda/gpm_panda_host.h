/*
 * gpm_panda_host.h - the PANDA-dependent half of the host glue, shared by
 * the guest_plugin_manager and linjector plugins: the guest architecture,
 * register access by GDB number (regs_*.c, one per TARGET_*), and the
 * gpm_host_ops_t over PANDA (host_panda.c).
 *
 * Needs PANDA's headers; built only inside a PANDA tree (see
 * docs/panda.md). Everything here runs on the emulator thread while the
 * CPU is stopped inside a PANDA callback.
 */
#ifndef GPM_PANDA_HOST_H
#define GPM_PANDA_HOST_H

#include "panda/plugin.h"

#include "gpm/gpm.h"

/**
 * gpm_panda_guest_arch() - the gpm architecture this PANDA target runs.
 * @out: receives it.
 *
 * Decided at compile time from TARGET_* (an aarch64 build is taken to run
 * AArch64 guests). Returns 0, or GPM_ENOSYS for a target pandagpm has no
 * hypercall registers for (e.g. ppc64).
 */
int gpm_panda_guest_arch(gpm_arch_t *out);

/**
 * gpm_panda_read_reg() - read register @regno (GDB numbering) of @cpu.
 *
 * Supports the general-purpose registers and the program counter, which
 * is all the core uses. Returns 0, or GPM_EINVAL for another number.
 */
int gpm_panda_read_reg(CPUState *cpu, unsigned regno, uint64_t *val);

/**
 * gpm_panda_write_reg() - write register @regno of @cpu (a 32-bit
 * register takes the low bits). Returns 0 or GPM_EINVAL.
 */
int gpm_panda_write_reg(CPUState *cpu, unsigned regno, uint64_t val);

/*
 * The host ops over PANDA; the @cpu handle is a CPUState *.
 *
 * Memory goes through panda_virtual_memory_rw(), which fails (non-zero)
 * when a page has no mapping in the guest's page tables; it cannot tell a
 * read-only page from a writable one and writes either. So:
 *   - read_mem on x86_64 in long mode first walks the page tables
 *     (gpm_x86_64_check_user_read()): a kernel page is GPM_EFAULT like an
 *     unmapped one, so a guest program cannot make the host read kernel
 *     memory for it; a failure is GPM_EFAULT (the guest gets
 *     GPM_HC_EFAULT);
 *   - write_mem on x86_64 in long mode first walks the page tables
 *     (gpm_x86_64_check_user_write()): not present or a kernel page ->
 *     GPM_EFAULT, read-only/COW/zero page -> GPM_EROFS, which the core
 *     answers with GPM_HC_EAGAIN so the guest write-touches the buffer
 *     and retries;
 *   - write_mem on other targets cannot check: it relies on the guest
 *     library write-touching its buffers before every READ (it does), and
 *     a failed write is reported as GPM_EROFS so the guest touches and
 *     retries. A guest program that hands the host an untouched buffer on
 *     those targets risks the zero-page hazard described in DESIGN.md.
 */
extern const gpm_host_ops_t gpm_panda_host_ops;

#endif /* GPM_PANDA_HOST_H */
