/*
 * test_arch_ops.c - the per-architecture backend table
 * (csrc/arch/arch_ops.c): every row complete, the trap encodings built
 * from their instruction fields, the user-mode tests on sample values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/arch_ops.h"
#include "gpm/abi.h"

static void le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void test_rows_complete(void **state)
{
    unsigned rows = 0;

    (void)state;
    for (unsigned a = 0; a < GPM_ARCH_COUNT; a++) {
        const gpm__arch_ops_t *o = gpm__arch_ops((gpm_arch_t)a);
        unsigned n = 0;

        if (!o) {
            continue;
        }
        rows++;
        assert_int_equal(o->arch, a);
        assert_non_null(gpm_arch_info(o->arch));
        assert_true(o->hc_addr != 0);
        assert_int_equal(o->hc_addr % 4096, 0);
        assert_in_range(o->hc_insn_len, 1, sizeof(o->hc_insn));
        for (unsigned i = o->hc_insn_len; i < sizeof(o->hc_insn); i++) {
            assert_int_equal(o->hc_insn[i], 0);
        }
        assert_non_null(o->mode_reg);
        assert_true(strlen(o->mode_reg) > 0);
        assert_non_null(o->mode_is_user);
        assert_non_null(o->xlate);
        while (n < GPM__MMU_NREGS && o->mmu_regs[n]) {
            assert_true(strlen(o->mmu_regs[n]) > 0);
            n++;
        }
        /* A walker reads registers, or constants the host is given. */
        assert_true(o->mmu_inputs_const ? n == 0 && o->mmu_ninputs >= 1
                                        : n >= 1);
        for (unsigned i = n; i < GPM__MMU_NREGS; i++) {
            assert_null(o->mmu_regs[i]);
        }
    }
    assert_int_equal(rows, 6);
    assert_null(gpm__arch_ops(GPM_ARCH_MIPS));
    assert_null(gpm__arch_ops(GPM_ARCH_COUNT));
    assert_null(gpm__arch_ops((gpm_arch_t)-1));
}

static void test_rows(void **state)
{
    const gpm__arch_ops_t *x = gpm__arch_ops(GPM_ARCH_X86_64);
    const gpm__arch_ops_t *a = gpm__arch_ops(GPM_ARCH_AARCH64);
    const gpm__arch_ops_t *r = gpm__arch_ops(GPM_ARCH_ARM);
    uint8_t want[4];

    (void)state;
    assert_non_null(x);
    assert_non_null(a);
    assert_non_null(r);
    assert_int_equal(x->hc_addr, GPM_HC_X86_ADDR);
    assert_int_equal(x->hc_insn_len, 2);
    assert_memory_equal(x->hc_insn, "\x0f\xa2", 2); /* cpuid */
    assert_string_equal(x->mode_reg, "cs");
    assert_string_equal(x->mmu_regs[0], "cr3");
    assert_string_equal(x->mmu_regs[1], "cr4");
    assert_ptr_equal(x->xlate, gpm__mmu_x86_64_xlate);
    /*
     * msr S0_0_c5_c0_0, xzr: the system-instruction class 1101010100,
     * L = 0, op0 = 0 (bits 20:19), op1 = 0, CRn = 5 (15:12), CRm = 0,
     * op2 = 0, Rt = 31.
     */
    le32(want, 0xd5000000u | (0u << 19) | (0u << 16) | (5u << 12) | (0u << 8) |
                   (0u << 5) | 31u);
    assert_int_equal(a->hc_insn_len, 4);
    assert_memory_equal(a->hc_insn, want, 4);
    assert_string_equal(a->mode_reg, "cpsr");
    assert_string_equal(a->mmu_regs[0], "TTBR0_EL1");
    assert_string_equal(a->mmu_regs[3], "SCTLR");
    assert_ptr_equal(a->xlate, gpm__mmu_aarch64_xlate);
    /*
     * mcr p7, 0, r0, c0, c0, 0: cond AL, 1110, opc1 = 0, L = 0, CRn = 0,
     * Rt = 0, coproc = 7 (11:8), opc2 = 0, 1 (bit 4), CRm = 0.
     */
    le32(want, (0xeu << 28) | (0xeu << 24) | (0u << 21) | (0u << 16) |
                   (0u << 12) | (7u << 8) | (0u << 5) | (1u << 4) | 0u);
    assert_int_equal(r->hc_insn_len, 4);
    assert_memory_equal(r->hc_insn, want, 4);
    assert_string_equal(r->mode_reg, "cpsr");
    assert_string_equal(r->mmu_regs[0], "TTBR0");
    assert_string_equal(r->mmu_regs[2], "TTBCR");
    assert_ptr_equal(r->xlate, gpm__mmu_armv7_xlate);
    /* i386: the x86 trap and mode test; eip; cr3, cr4, cr0. */
    r = gpm__arch_ops(GPM_ARCH_I386);
    assert_non_null(r);
    assert_int_equal(r->hc_addr, GPM_HC_ADDR_I386);
    assert_int_equal(r->hc_insn_len, 2);
    assert_memory_equal(r->hc_insn, "\x0f\xa2", 2);
    assert_string_equal(r->pc_reg, "eip");
    assert_string_equal(r->mmu_regs[2], "cr0");
    assert_ptr_equal(r->xlate, gpm__mmu_i386_xlate);
}

/*
 * mipsel: the trap is PANDA's conditional move to $zero, rebuilt from its
 * fields (SPECIAL, rs = rt = rd = 0, MOVZ 0x0a); the pt_regs copies the
 * entry has saved; a walker of constant inputs; a built-in description.
 */
static void test_row_mipsel(void **state)
{
    const gpm__arch_ops_t *r = gpm__arch_ops(GPM_ARCH_MIPSEL);
    uint32_t movz = (0u << 26) | (0u << 21) | (0u << 16) | (0u << 11) | 0x0a;
    uint8_t le[4] = {(uint8_t)movz, (uint8_t)(movz >> 8), (uint8_t)(movz >> 16),
                     (uint8_t)(movz >> 24)};

    (void)state;
    assert_non_null(r);
    assert_int_equal(r->hc_addr, GPM_HC_ADDR_MIPSEL);
    assert_int_equal(r->hc_insn_len, 4);
    assert_memory_equal(r->hc_insn, le, 4);
    assert_string_equal(r->pc_reg, "pc");
    assert_string_equal(r->mode_reg, "status");
    assert_true(r->mode_is_user(0x0000ff11));  /* KSU user, IE */
    assert_false(r->mode_is_user(0x0000ff01)); /* kernel */
    assert_false(r->mode_is_user(0x0000ff13)); /* user but EXL */
    assert_false(r->mode_is_user(0x0000ff15)); /* user but ERL */
    assert_int_equal(r->user_top, 0x80000000u);
    assert_true(r->percpu_base_const);
    assert_int_equal(r->current_stack_mask, ~(uint64_t)8191);
    assert_true(r->entry_ret_word);
    assert_int_equal(r->entry_ret_base_reg, 29);
    assert_int_equal(r->entry_ret_offset, 32 + 4 * 37);
    assert_int_equal(r->entry_saved_n, 6);
    assert_int_equal(r->entry_saved[0].regno, 2);
    assert_int_equal(r->entry_saved[0].offset, 40);
    assert_int_equal(r->entry_saved[5].regno, 7);
    assert_int_equal(r->entry_saved[5].offset, 32 + 4 * 26);
    assert_true(r->mmu_inputs_const);
    assert_null(r->mmu_regs[0]);
    assert_ptr_equal(r->xlate, gpm__mmu_mips32_xlate);
    assert_non_null(r->gdb_builtin_xml);
    assert_non_null(
        strstr(r->gdb_builtin_xml, "name=\"pc\" bitsize=\"32\" regnum=\"37\""));
    assert_non_null(strstr(r->gdb_builtin_xml,
                           "name=\"status\" bitsize=\"32\" regnum=\"32\""));
    assert_null(gpm__arch_ops(GPM_ARCH_X86_64)->gdb_builtin_xml);
}

static void test_user_mode(void **state)
{
    const gpm__arch_ops_t *x = gpm__arch_ops(GPM_ARCH_X86_64);
    const gpm__arch_ops_t *a = gpm__arch_ops(GPM_ARCH_AARCH64);
    const gpm__arch_ops_t *r = gpm__arch_ops(GPM_ARCH_ARM);

    (void)state;
    /* x86_64: Linux's __USER_CS 0x33, __USER32_CS 0x23, __KERNEL_CS. */
    assert_true(x->mode_is_user(0x33));
    assert_true(x->mode_is_user(0x23));
    assert_false(x->mode_is_user(0x10));
    assert_false(x->mode_is_user(0x08));
    assert_false(x->mode_is_user(0x31)); /* RPL 1 */
    /* AArch64 PSTATE: EL0t (with flags), EL1t, EL1h, AArch32 usr. */
    assert_true(a->mode_is_user(0x0));
    assert_true(a->mode_is_user(0x60000000));
    assert_true(a->mode_is_user(0x3c0)); /* EL0 with DAIF masked */
    assert_false(a->mode_is_user(0x4));
    assert_false(a->mode_is_user(0x3c5));
    assert_false(a->mode_is_user(0x8)); /* EL2t */
    assert_false(a->mode_is_user(0x10));
    /* AArch32 CPSR.M: usr 0x10; svc 0x13, irq 0x12, sys 0x1f, abt. */
    assert_true(r->mode_is_user(0x10));
    assert_true(r->mode_is_user(0x600f0010));
    assert_true(r->mode_is_user(0x30)); /* Thumb user */
    assert_false(r->mode_is_user(0x600001d3));
    assert_false(r->mode_is_user(0x12));
    assert_false(r->mode_is_user(0x1f));
    assert_false(r->mode_is_user(0x17));
}

/* A fake CPU for the entry helpers: 64 bytes of memory at 0x1000 and
 * the x86_64 registers they touch (rip 16, gs_base 25, k_gs_base 26). */
typedef struct fake_entry {
    uint8_t mem[64];
    uint64_t regs[32];
    int fail_write_reg; /* the Nth write fails (1-based), 0: none */
    int writes;
} fake_entry_t;

static int fe_read_reg(void *cpu, unsigned n, uint64_t *v)
{
    fake_entry_t *f = cpu;

    if (n >= 32)
        return -22;
    *v = f->regs[n];
    return 0;
}

static int fe_write_reg(void *cpu, unsigned n, uint64_t v)
{
    fake_entry_t *f = cpu;

    if (n >= 32 || ++f->writes == f->fail_write_reg)
        return -22;
    f->regs[n] = v;
    return 0;
}

static int fe_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    fake_entry_t *f = cpu;

    if (addr < 0x1000 || addr - 0x1000 + len > sizeof(f->mem))
        return -14;
    memcpy(buf, f->mem + (addr - 0x1000), len);
    return 0;
}

static int fe_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    (void)cpu;
    (void)addr;
    (void)buf;
    (void)len;
    return -30;
}

static const gpm_host_ops_t fe_ops = {fe_read_reg, fe_write_reg, fe_read_mem,
                                      fe_write_mem};

static int fe_regnum(void *opaque, const char *name)
{
    (void)opaque;
    if (strcmp(name, "rip") == 0)
        return 16;
    if (strcmp(name, "gs_base") == 0)
        return 25;
    if (strcmp(name, "k_gs_base") == 0)
        return 26;
    return -1;
}

static void test_entry_helpers(void **state)
{
    const gpm__arch_ops_t *x = gpm__arch_ops(GPM_ARCH_X86_64);
    const gpm__arch_ops_t *r = gpm__arch_ops(GPM_ARCH_ARM);
    fake_entry_t f;

    (void)state;
    /* x86_64: swapgs at the entry is done by the host... */
    memset(&f, 0, sizeof(f));
    memcpy(f.mem, "\x0f\x01\xf8", 3);
    f.regs[25] = 0x7f00;
    f.regs[26] = 0xffff8880;
    assert_true(x->entry_step_over(&fe_ops, &f, 0x1000, fe_regnum, NULL));
    assert_int_equal(f.regs[25], 0xffff8880);
    assert_int_equal(f.regs[26], 0x7f00);
    assert_int_equal(f.regs[16], 0x1003);
    /* ... not for another instruction, and undone if a write fails. */
    memset(&f, 0, sizeof(f));
    memcpy(f.mem, "\x90\x90\x90", 3);
    assert_false(x->entry_step_over(&fe_ops, &f, 0x1000, fe_regnum, NULL));
    memset(&f, 0, sizeof(f));
    memcpy(f.mem, "\x0f\x01\xf8", 3);
    f.regs[25] = 1;
    f.regs[26] = 2;
    f.fail_write_reg = 2;
    assert_false(x->entry_step_over(&fe_ops, &f, 0x1000, fe_regnum, NULL));
    assert_int_equal(f.regs[25], 1);
    assert_int_equal(f.regs[26], 2);
    assert_int_equal(f.regs[16], 0);
    assert_false(x->entry_step_over(&fe_ops, &f, 0x5000, fe_regnum, NULL));
    /* arm: ARM-state svc #0 (4 bytes) or Thumb svc #0 (2) before lr. */
    memset(&f, 0, sizeof(f));
    memcpy(f.mem + 8, "\x00\x00\x00\xef", 4);
    assert_int_equal(r->entry_insn_len(&fe_ops, &f, 0x100c), 4);
    memcpy(f.mem + 16, "\x07\x46\x00\xdf", 4);
    assert_int_equal(r->entry_insn_len(&fe_ops, &f, 0x1014), 2);
    memcpy(f.mem + 24, "\x01\x02\x03\x04", 4);
    assert_int_equal(r->entry_insn_len(&fe_ops, &f, 0x101c), 0);
    assert_int_equal(r->entry_insn_len(&fe_ops, &f, 0x2), 0);
    assert_int_equal(r->entry_insn_len(&fe_ops, &f, 0x9000), 0);
    /* arm64 presents the saved registers; x86_64 and arm live ones. */
    assert_true(gpm__arch_ops(GPM_ARCH_AARCH64)->entry_pt_regs);
    assert_int_equal(gpm__arch_ops(GPM_ARCH_AARCH64)->entry_pt_regs_n, 33);
    assert_false(x->entry_pt_regs);
    assert_false(r->entry_pt_regs);
}

/*
 * i386's sysenter bounce: int $0x80 is cd 80, and ax and ip are words 6
 * and 12 of the i386 pt_regs (the ptrace order: EBX ECX EDX ESI EDI EBP
 * EAX DS ES FS GS ORIG_EAX EIP ...); regs arrives in eax (GDB 0) under
 * -mregparm=3. Only i386 has a bounce entry.
 */
static void test_bounce_i386(void **state)
{
    const gpm__arch_ops_t *o = gpm__arch_ops(GPM_ARCH_I386);
    static const uint8_t int80[2] = {0xcd, 0x80};

    (void)state;
    assert_string_equal(o->bounce_entry_symbol, "entry_SYSENTER_32");
    assert_string_equal(o->bounce_exit_symbol, "syscall_exit_to_user_mode");
    assert_int_equal(o->bounce_insn_len, 2);
    assert_memory_equal(o->bounce_insn, int80, 2);
    assert_int_equal(o->bounce_pt_ax, 6 * 4);
    assert_int_equal(o->bounce_pt_ip, 12 * 4);
    assert_int_equal(o->bounce_exit_regs_reg, 0);
    assert_int_equal(o->bounce_skip_nr, 0xffffffffu);
    for (unsigned a = 0; a < GPM_ARCH_COUNT; a++) {
        const gpm__arch_ops_t *r = gpm__arch_ops((gpm_arch_t)a);

        if (r && a != GPM_ARCH_I386)
            assert_null(r->bounce_entry_symbol);
    }
}

/* What every host needs from a row to serve the arch. */
static void test_host_fields(void **state)
{
    (void)state;
    for (unsigned a = 0; a < GPM_ARCH_COUNT; a++) {
        const gpm__arch_ops_t *o = gpm__arch_ops((gpm_arch_t)a);
        const gpm_arch_info_t *ai = gpm_arch_info((gpm_arch_t)a);

        if (!o) {
            continue;
        }
        assert_non_null(o->pc_reg);
        assert_non_null(o->gdb_xml_arch);
        assert_true(o->bp_kind >= 1 && o->bp_kind <= 4);
        assert_true(o->user_top > 0x10000000u && o->hc_addr < o->user_top);
        assert_non_null(o->syscall_entry_symbol);
        assert_non_null(o->current_task_symbol);
        assert_true(o->user_percpu_reg != NULL || o->percpu_base_const);
        assert_non_null(o->env_gpr_field);
        assert_true(o->env_ngpr > ai->pc_reg || o->env_pc_field != NULL);
        for (unsigned i = 0; i < GPM_HC_NREGS; i++) {
            assert_true(ai->hc_regs[i] < o->env_ngpr);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_complete),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_row_mipsel),
        cmocka_unit_test(test_user_mode),
        cmocka_unit_test(test_entry_helpers),
        cmocka_unit_test(test_host_fields),
        cmocka_unit_test(test_bounce_i386),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
