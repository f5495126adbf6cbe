/*
 * gpm_panda_mem.h - PANDA-independent helpers of the PANDA host glue:
 * a guest page-table check for host writes, and the register view that
 * lets linjector's injector run at syscalls2's system call entry.
 *
 * Both are plain C over callbacks, so they build and are tested without
 * PANDA (tests/c/test_panda_api.c).
 *
 * Threads: every function works on caller-owned state only; use each
 * state from one thread at a time (the emulator's).
 */
#ifndef GPM_PANDA_MEM_H
#define GPM_PANDA_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/arch_ops.h"
#include "gpm/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* gpm_phys_read_fn: arch/arch_ops.h. */

/**
 * gpm_x86_64_check_user_write() - may the guest's user mode write here?
 * @cr3:  the CR3 value (page-table root; the low 12 bits, PCID, ignored).
 * @la57: true if CR4.LA57 is set (5-level paging).
 * @va, @len: the guest virtual range; @len 0 is always allowed.
 * @rd, @opaque: access to guest physical memory.
 *
 * Walks the x86_64 page tables for every page of the range, as the MMU
 * would for a user-mode write. A host that writes guest memory behind
 * the guest's back must make this check first: a page the guest has only
 * read may map the kernel's shared zero page, and pages shared after fork
 * are copy-on-write; writing either corrupts other processes.
 *
 * Returns 0 if every page is present, user-accessible and writable at every
 * level; GPM_EFAULT if a page is not present (never touched, swapped out),
 * supervisor-only at some level (kernel memory: never the guest program's,
 * so never "touch and retry"), @va is not canonical, or the walk could not
 * read a table; GPM_EROFS if a page is a user page but read-only at some
 * level (the zero page, copy-on-write, read-only data).
 */
int gpm_x86_64_check_user_write(uint64_t cr3, bool la57, uint64_t va,
                                size_t len, gpm_phys_read_fn rd, void *opaque);

/**
 * gpm_x86_64_check_user_read() - may the guest's user mode read here?
 *
 * As gpm_x86_64_check_user_write() for a user-mode read: a host that
 * reads guest memory for a hypercall (a WRITE's data, a name, an error
 * text) must make this check first, or a guest program could make it
 * read kernel memory through panda_virtual_memory_rw(), which translates
 * supervisor pages too. Returns 0 if every page is present and
 * user-accessible at every level, else GPM_EFAULT (never GPM_EROFS).
 */
int gpm_x86_64_check_user_read(uint64_t cr3, bool la57, uint64_t va, size_t len,
                               gpm_phys_read_fn rd, void *opaque);

/*
 * The register view linjector's injector sees at a syscalls2 system call
 * entry (see linjector.c for the whole design).
 *
 * The injector (gpm/injector.h) expects to be stopped just after the
 * syscall instruction, with the user return address in a register it may
 * rewrite: the stock-QEMU host stops at the kernel's entry, where x86_64
 * keeps it in RCX. syscalls2 calls back BEFORE the instruction runs, when
 * no register holds a return address yet (x86_64's SYSCALL will overwrite
 * RCX itself). So this view presents the return-address register as
 * "instruction address + instruction length" and turns a write to it
 * into a request: pointing it at the instruction means "send the thread
 * back to the syscall instruction when the call returns" (@reenter);
 * pointing it past the instruction means "return normally". The host then
 * carries the request out (linjector.c: by setting RCX at the
 * kernel's syscall entry, exactly what the stock-QEMU host does). Every
 * other register passes through to @inner.
 */
typedef struct gpm_entry_view {
    const gpm_host_ops_t *inner; /* the real CPU's ops */
    void *inner_cpu;
    unsigned retaddr_reg; /* GDB number of the return-address register */
    uint64_t insn_addr;   /* address of the syscall instruction */
    unsigned insn_len;    /* its length in bytes */
    uint64_t word_mask;   /* UINT32_MAX or UINT64_MAX */
    bool written;         /* the injector wrote the return address */
    bool reenter;         /* ... and pointed it at the instruction */
} gpm_entry_view_t;

/* The ops of a gpm_entry_view_t; pass the view itself as @cpu. */
extern const gpm_host_ops_t gpm_entry_view_ops;

/**
 * gpm_entry_view_init() - prepare a view for one system call entry.
 * @word_bits: 32 or 64.
 *
 * The view only borrows @inner and @inner_cpu; it lives on the caller's
 * stack for the duration of one gpm_injector_on_syscall() call.
 */
void gpm_entry_view_init(gpm_entry_view_t *v, const gpm_host_ops_t *inner,
                         void *inner_cpu, unsigned retaddr_reg,
                         uint64_t insn_addr, unsigned insn_len,
                         unsigned word_bits);

#ifdef __cplusplus
}
#endif

#endif /* GPM_PANDA_MEM_H */
