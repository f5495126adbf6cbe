/*
 * arch_ops.h - one backend per guest architecture (internal).
 *
 * Everything a host needs to know about an architecture beyond the plain
 * numbers of gpm/arch.h lives in that architecture's file under
 * csrc/arch/ and is reached through one gpm__arch_ops_t table row: the
 * hypercall stub's address and trap instruction, how to tell user mode
 * from the privilege register, and the page-table walk of its MMU. Hosts
 * (stock QEMU, PANDA, the Python extension) only ever use the table, so
 * adding an architecture adds a file and a row and touches no host.
 *
 * Threads: the table is static and read-only; the functions work on
 * caller-owned state only and are thread-safe. A page walk needs the
 * guest CPU stopped (the tables must not change under it).
 */
#ifndef GPM_ARCH_OPS_H
#define GPM_ARCH_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpm/arch.h"
#include "gpm/host.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads @len bytes of guest-physical memory at @paddr into @buf. Returns 0
 * or a negative GPM_E* code (GPM_EFAULT outside RAM).
 */
typedef int (*gpm_phys_read_fn)(void *opaque, uint64_t paddr, void *buf,
                                size_t len);

/* The GDB number of register @name on the host's target, or < 0. */
typedef int (*gpm__regnum_fn)(void *opaque, const char *name);

#define GPM__ENTRY_SAVED_MAX 6

/*
 * A register the kernel's entry code has already saved when the syscall
 * breakpoint stops it: a word at @offset from the entry_ret_base_reg
 * register's value (MIPS: in the pt_regs at sp).
 */
typedef struct gpm__entry_saved {
    unsigned regno; /* GDB number */
    int offset;
} gpm__entry_saved_t;

/* The most MMU registers any walker reads. */
#define GPM__MMU_NREGS 4

/*
 * The inputs of a page walk: the values of the registers that
 * gpm__arch_ops_t.mmu_regs names, in that order (unused slots 0).
 */
typedef struct gpm__mmu_state {
    uint64_t reg[GPM__MMU_NREGS];
} gpm__mmu_state_t;

/* What a walk found for one virtual address. */
typedef struct gpm__xlate {
    uint64_t phys;      /* guest-physical address of the byte */
    uint64_t page_left; /* bytes from it to the end of its page or block */
    bool writable;      /* a user-mode write would not fault (so user) */
    bool user;          /* user mode may read it */
} gpm__xlate_t;

/*
 * Translates @va as the MMU would for a user-mode access. Returns 0 with
 * @out filled, or GPM_EFAULT if the address is not mapped (invalid or
 * not-present entry at any level, an access-flag fault, an address
 * outside the translated ranges, a table outside RAM: any failure of @rd
 * is reported as GPM_EFAULT). Permission bits are reported in @out, not
 * as errors: callers decide (see gpm__mmu_check_user()). A walk reads a
 * bounded number of descriptors (one per level), all through @rd, so
 * hostile tables (loops, pointers anywhere) cannot make it hang or read
 * outside what @rd allows. Descriptors are read in the byte order the
 * MMU would use (SCTLR.EE on ARM).
 */
typedef int (*gpm__xlate_fn)(const gpm__mmu_state_t *st, uint64_t va,
                             gpm_phys_read_fn rd, void *opaque,
                             gpm__xlate_t *out);

typedef struct gpm__arch_ops {
    gpm_arch_t arch;
    /*
     * Guest side: every guest binary of this arch puts its hypercall
     * stub (the trap below, then a return) at @hc_addr in section
     * GPM_HC_SECTION. PANDA traps the instruction; the stock-QEMU host
     * puts a breakpoint on @hc_addr and never lets the trap execute.
     */
    uint64_t hc_addr;
    uint8_t hc_insn[8]; /* the trap instruction's bytes in guest memory */
    unsigned hc_insn_len;
    /*
     * Privilege: the gdbstub name of the register that tells user mode
     * ("cs" on x86, "cpsr" on ARM) and the test on its value.
     */
    const char *mode_reg;
    bool (*mode_is_user)(uint64_t mode_value);
    /*
     * The gdbstub: the architecture named in qSupported's xmlRegisters=,
     * the name of the program counter in target.xml, and the "kind" of a
     * software breakpoint (Z0) on the stub: the trap's length.
     */
    const char *gdb_xml_arch;
    const char *pc_reg;
    unsigned bp_kind;
    /*
     * User addresses are below this (the split the arch's Linux uses);
     * hosts without a page walk refuse guest pointers above it.
     */
    uint64_t user_top;
    /*
     * Linux facts the hosts need beyond the image profile's offsets: the
     * symbol the syscall-entry breakpoint goes on, the per-CPU variable
     * that points at the running task, and the register that holds the
     * per-CPU base while the CPU is in user mode.
     */
    const char *syscall_entry_symbol;
    /*
     * Other places the same entry may start, with the same registers
     * (arm: the Spectre-BHB variants of vector_swi, which the vector page
     * uses instead on affected CPUs and join vector_swi after its first
     * instruction); a breakpoint goes on each the kernel has. NULL ends.
     */
    const char *syscall_entry_alt[3];
    const char *current_task_symbol;
    const char *user_percpu_reg;
    /*
     * percpu_base_const: no register holds the per-CPU base in user mode
     * (i386: the kernel's %fs base); user_percpu_reg is NULL and the
     * profile gives the current-task variable's address with CPU 0's
     * __per_cpu_offset already added (one vCPU).
     */
    bool percpu_base_const;
    /*
     * current_stack_mask: the word the current-task variable holds is a
     * pointer into the running thread's kernel stack (MIPS: kernelsp[0]),
     * not the task: the task pointer is the first word of the
     * thread_info at (word & current_stack_mask), the stack's base. 0:
     * the word is the task pointer.
     */
    uint64_t current_stack_mask;
    /*
     * QEMU's CPUArchState, for the PANDA glue (C and pypanda): GDB
     * registers 0..env_ngpr-1 live in the array @env_gpr_field at the
     * indices @env_gpr_index; the program counter (GDB pc_reg of
     * gpm/arch.h) is the field @env_pc_field unless it is one of those.
     */
    const char *env_gpr_field;
    const uint8_t *env_gpr_index;
    unsigned env_ngpr;
    const char *env_pc_field;
    /*
     * linjector at the kernel's syscall entry on the stock-QEMU host
     * (csrc/arch/entry_*.c):
     * - entry_pt_regs: at the stop the thread's user registers are not
     *   live but saved in a struct pt_regs, which register
     *   entry_pt_regs_reg points at; GDB registers 0..entry_pt_regs_n-1
     *   are its first words (arm64: x0-x30, sp, pc);
     * - entry_step_over (may be NULL): moves the stopped CPU past the
     *   entry's first instruction without a single step; returns true if
     *   it did, false to let the host step (x86_64: emulates swapgs);
     * - entry_insn_len (may be NULL): the length of the system call
     *   instruction that returns to @retaddr, where the arch has several
     *   (ARM: 4 in ARM state, 2 in Thumb); 0 if unknown.
     */
    bool entry_pt_regs;
    unsigned entry_pt_regs_reg;
    unsigned entry_pt_regs_n;
    /*
     * entry_ret_word: at the stop the return address (the syscall table's
     * retaddr_reg) is not a register but a word of kernel memory at GDB
     * register entry_ret_base_reg plus entry_ret_offset (i386: the iret
     * frame's eip at esp); the other registers are live.
     */
    bool entry_ret_word;
    unsigned entry_ret_base_reg;
    int entry_ret_offset;
    /*
     * entry_saved: live registers the entry has also saved by the stop
     * (MIPS: the number and a0-a3 in pt_regs, a3 once more for restarts);
     * a write to one also writes each saved copy, so that the kernel's
     * syscall-restart path and the return to user mode see the new value
     * (the exact restore includes them). Several rows may name one
     * register.
     */
    gpm__entry_saved_t entry_saved[GPM__ENTRY_SAVED_MAX];
    unsigned entry_saved_n;
    /*
     * bounce_*: a second syscall entry whose return address the kernel
     * sets itself, so linjector cannot rewind a call there (i386:
     * sysenter through the vDSO, which always returns to the vDSO's
     * int80_landing_pad). The stock-QEMU host turns such a call of a
     * wanted thread into one through the main entry: at
     * bounce_entry_symbol (live registers) it replaces the number
     * (syscall table's nr_reg) with bounce_skip_nr, which the kernel runs
     * as nothing; at bounce_exit_symbol, where GDB register
     * bounce_exit_regs_reg points at the thread's saved pt_regs, it puts
     * the number back in the word at bounce_pt_ax and moves the return
     * address (the word at bounce_pt_ip) back over the bounce_insn that
     * precedes it (i386: the landing pad's int $0x80), which it reads in
     * guest memory first. The thread then enters the main entry with the
     * call's own registers. NULL bounce_entry_symbol: no such entry.
     */
    const char *bounce_entry_symbol;
    const char *bounce_exit_symbol;
    uint64_t bounce_skip_nr;
    unsigned bounce_exit_regs_reg;
    int bounce_pt_ax;
    int bounce_pt_ip;
    uint8_t bounce_insn[4];
    unsigned bounce_insn_len;
    bool (*entry_step_over)(const gpm_host_ops_t *ops, void *cpu, uint64_t pc,
                            gpm__regnum_fn regnum, void *opaque);
    unsigned (*entry_insn_len)(const gpm_host_ops_t *ops, void *cpu,
                               uint64_t retaddr);
    /*
     * The gdbstub names (target.xml) of the walker's inputs; NULL ends.
     * With mmu_inputs_const the walker's inputs are not registers (MIPS:
     * none holds a table root) but constants from the image profile that
     * the host is given (gpm_qemu_host_set_mmu_inputs()); mmu_regs is
     * then empty.
     */
    const char *mmu_regs[GPM__MMU_NREGS];
    bool mmu_inputs_const;
    unsigned mmu_ninputs;
    gpm__xlate_fn xlate; /* NULL: no walker for this arch yet */
    /*
     * A target description for gdbstubs that serve none (QEMU's MIPS
     * target has no qXfer:features): its fixed 'g' layout, as target.xml
     * would give it. NULL: the stub must serve one.
     */
    const char *gdb_builtin_xml;
} gpm__arch_ops_t;

/* The backend of @arch, or NULL for an arch without one. */
const gpm__arch_ops_t *gpm__arch_ops(gpm_arch_t arch);

/**
 * gpm__mmu_check_user() - may the guest's user mode access this range?
 * @write: check for a write (else a read).
 *
 * Walks every page of [@va, @va+@len). Returns 0 if each is mapped,
 * user-accessible and (for a write) writable; GPM_EFAULT if a page is
 * unmapped or kernel-only (never "touch and retry": that would make the
 * program touch kernel memory), or the range wraps; GPM_EROFS if a page
 * is a user page that a write would fault on (the zero page,
 * copy-on-write, clean pages whose dirty state the MMU tracks), the
 * case where the guest write-touches the page and retries. GPM_EFAULT
 * wins: the walk goes on after a read-only page, so the guest is told to
 * retry only a range that can pass once touched. @len 0 is always
 * allowed and reads nothing. GPM_EINVAL if @ops has no walker (or @st or
 * @rd is NULL). Cost: one walk per page or block of the range; callers
 * bound @len (hypercalls: GPM_HC_MAX_TRANSFER).
 */
int gpm__mmu_check_user(const gpm__arch_ops_t *ops, const gpm__mmu_state_t *st,
                        uint64_t va, size_t len, bool write,
                        gpm_phys_read_fn rd, void *opaque);

/* The syscall-entry helpers (csrc/arch/entry_*.c). */
bool gpm__entry_x86_64_step_over(const gpm_host_ops_t *ops, void *cpu,
                                 uint64_t pc, gpm__regnum_fn regnum,
                                 void *opaque);
unsigned gpm__entry_arm_insn_len(const gpm_host_ops_t *ops, void *cpu,
                                 uint64_t retaddr);

/*
 * The walkers, one per MMU (csrc/arch/mmu_*.c); each file's header says
 * which registers st->reg[] holds and what is modelled.
 */
int gpm__mmu_x86_64_xlate(const gpm__mmu_state_t *st, uint64_t va,
                          gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out);
int gpm__mmu_aarch64_xlate(const gpm__mmu_state_t *st, uint64_t va,
                           gpm_phys_read_fn rd, void *opaque,
                           gpm__xlate_t *out);
int gpm__mmu_i386_xlate(const gpm__mmu_state_t *st, uint64_t va,
                        gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out);
int gpm__mmu_armv7_xlate(const gpm__mmu_state_t *st, uint64_t va,
                         gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out);
int gpm__mmu_mips32_xlate(const gpm__mmu_state_t *st, uint64_t va,
                          gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out);
int gpm__mmu_mips64_xlate(const gpm__mmu_state_t *st, uint64_t va,
                          gpm_phys_read_fn rd, void *opaque, gpm__xlate_t *out);

/* The built-in target descriptions (csrc/arch/gdb_mips.c). */
extern const char gpm__gdb_mips32_xml[];
extern const char gpm__gdb_mips64_xml[];

#ifdef __cplusplus
}
#endif

#endif /* GPM_ARCH_OPS_H */
