/*
 * test_mmu_i386.c - the 32-bit x86 walker (csrc/arch/mmu_i386.c) and
 * gpm__mmu_check_user() over it, on fake page tables in a malloc'd RAM:
 * PAE (3 levels, 4 KiB and 2 MiB pages), 2-level paging (4 KiB and, with
 * CR4.PSE, 4 MiB pages) and paging off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_phys.h"

#define RAM_SIZE (8u << 20)
#define P        1ull
#define RW       2ull
#define US       4ull
#define PS       0x80ull
#define NX       (1ull << 63)
#define CR0_PG   (1ull << 31)
#define CR4_PSE  (1ull << 4)
#define CR4_PAE  (1ull << 5)

/* PAE: the PDPT is 32-byte aligned, not page-aligned. */
#define PDPT    0x1020ull
#define PD0     0x2000ull
#define PD3     0x3000ull
#define PT      0x4000ull
#define PT_KERN 0x5000ull
/* 2-level. */
#define PD32    0x8000ull
#define PT32    0x9000ull

static fake_phys_t ram;

static const gpm__arch_ops_t *ops(void)
{
    return gpm__arch_ops(GPM_ARCH_I386);
}

static int xl(uint64_t cr3, uint64_t cr4, uint64_t va, gpm__xlate_t *x)
{
    gpm__mmu_state_t st = {{cr3, cr4, CR0_PG}};

    return gpm__mmu_i386_xlate(&st, va, fake_phys_read, &ram, x);
}

static int check(uint64_t va, size_t len, bool write)
{
    gpm__mmu_state_t st = {{PDPT | 0x8 /* PWT */, CR4_PAE, CR0_PG | 1}};

    return gpm__mmu_check_user(ops(), &st, va, len, write, fake_phys_read,
                               &ram);
}

/*
 * PAE layout (VA -> PA):
 *  0x00400000 4K user rw       -> 0x100000
 *  0x00401000 4K user ro       -> 0x101000 (a zero-page-like mapping)
 *  0x00402000 not present
 *  0x00403000 4K supervisor rw -> 0x103000
 *  0x00404000 4K user rw (NX)  -> 0x104000
 *  0x00600000 2M user rw       -> 0x200000
 *  0x00800000 2M user ro       -> 0x400000
 *  0x40000000 PDPT entry 1 not present
 *  0xc0000000 2M kernel rw     -> 0x000000 (the lowmem map)
 *  0xc0200000 4K kernel rw     -> 0x600000 (through PT_KERN)
 * 2-level layout:
 *  0x00400000 4K user rw       -> 0x100000
 *  0x00401000 4K user ro       -> 0x101000
 *  0x00800000 4M user rw       -> 0x400000 (PS, needs CR4.PSE)
 *  0x00c00000 4M user rw       -> 0x2_0000_0000 (PSE-36 bits)
 *  0xc0000000 4K kernel rw     -> 0x600000
 */
static int setup(void **state)
{
    (void)state;
    fake_phys_init(&ram, 0, RAM_SIZE);
    fake_phys_put64(&ram, PDPT, 0, PD0 | P);
    fake_phys_put64(&ram, PDPT, 3, PD3 | P);
    fake_phys_put64(&ram, PD0, 2, PT | P | RW | US);
    fake_phys_put64(&ram, PT, 0, 0x100000 | P | RW | US);
    fake_phys_put64(&ram, PT, 1, 0x101000 | P | US);
    fake_phys_put64(&ram, PT, 2, 0x102000 | RW | US);
    fake_phys_put64(&ram, PT, 3, 0x103000 | P | RW);
    fake_phys_put64(&ram, PT, 4, 0x104000 | P | RW | US | NX);
    fake_phys_put64(&ram, PD0, 3, 0x200000 | P | RW | US | PS);
    fake_phys_put64(&ram, PD0, 4, 0x400000 | P | US | PS);
    fake_phys_put64(&ram, PD3, 0, 0x0 | P | RW | PS);
    fake_phys_put64(&ram, PD3, 1, PT_KERN | P | RW);
    fake_phys_put64(&ram, PT_KERN, 0, 0x600000 | P | RW);

    fake_phys_put32(&ram, PD32, 1, PT32 | P | RW | US);
    fake_phys_put32(&ram, PT32, 0, 0x100000 | P | RW | US);
    fake_phys_put32(&ram, PT32, 1, 0x101000 | P | US);
    fake_phys_put32(&ram, PD32, 2, 0x400000 | P | RW | US | PS);
    fake_phys_put32(&ram, PD32, 3, 0x000000 | (2u << 13) | P | RW | US | PS);
    fake_phys_put32(&ram, PD32, 768, (PT32 + 0x1000) | P | RW);
    fake_phys_put32(&ram, PT32 + 0x1000, 0, 0x600000 | P | RW);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_phys_free(&ram);
    return 0;
}

static void test_pae_4k(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(PDPT, CR4_PAE, 0x400123, &x), 0);
    assert_int_equal(x.phys, 0x100123);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    assert_true(x.writable);
    assert_true(x.user);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x401000, &x), 0);
    assert_int_equal(x.phys, 0x101000);
    assert_false(x.writable);
    assert_true(x.user);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x402000, &x), GPM_EFAULT);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x403000, &x), 0);
    assert_false(x.user);
    assert_false(x.writable);
    /* NX (bit 63) does not hide the physical address or the permission. */
    assert_int_equal(xl(PDPT, CR4_PAE, 0x404010, &x), 0);
    assert_int_equal(x.phys, 0x104010);
    assert_true(x.writable);
    /* Kernel: the 4K page under the lowmem 2M one. */
    assert_int_equal(xl(PDPT, CR4_PAE, 0xc0200008, &x), 0);
    assert_int_equal(x.phys, 0x600008);
    assert_false(x.user);
}

static void test_pae_2m(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(PDPT, CR4_PAE, 0x601234, &x), 0);
    assert_int_equal(x.phys, 0x201234);
    assert_int_equal(x.page_left, 0x200000 - 0x1234);
    assert_true(x.writable);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x800010, &x), 0);
    assert_int_equal(x.phys, 0x400010);
    assert_true(x.user);
    assert_false(x.writable);
    assert_int_equal(xl(PDPT, CR4_PAE, 0xc0001000, &x), 0);
    assert_int_equal(x.phys, 0x1000);
    assert_false(x.user);
    /* PDPT entry 1 is not present; CR3's low bits are flags. */
    assert_int_equal(xl(PDPT, CR4_PAE, 0x40000000, &x), GPM_EFAULT);
    assert_int_equal(xl(PDPT | 0x18, CR4_PAE, 0x400000, &x), 0);
    assert_int_equal(x.phys, 0x100000);
}

static void test_pae_levels(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* RW or US clear in the PD entry takes it away for the page. */
    fake_phys_put64(&ram, PD0, 2, PT | P | US);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x400000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    fake_phys_put64(&ram, PD0, 2, PT | P | RW);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x400000, &x), 0);
    assert_false(x.user);
    assert_false(x.writable);
    /* Not present at each level. */
    fake_phys_put64(&ram, PD0, 2, PT | RW | US);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x400000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PD0, 3, 0x200000 | RW | US | PS);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x600000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PDPT, 0, PD0);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x800000, &x), GPM_EFAULT);
}

static void test_2level(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(PD32 | 0x18, 0, 0x400123, &x), 0);
    assert_int_equal(x.phys, 0x100123);
    assert_true(x.writable);
    assert_int_equal(xl(PD32, 0, 0x401000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    assert_int_equal(xl(PD32, 0, 0x402000, &x), GPM_EFAULT);
    /* 4M pages with PSE, PSE-36 high bits. */
    assert_int_equal(xl(PD32, CR4_PSE, 0x923456, &x), 0);
    assert_int_equal(x.phys, 0x523456);
    assert_int_equal(x.page_left, 0x400000 - 0x123456);
    assert_true(x.writable);
    assert_int_equal(xl(PD32, CR4_PSE, 0xc00010, &x), 0);
    assert_int_equal(x.phys, 0x200000010ull);
    /* Without PSE the entry is a page table (entry 0 of it at 0x400000). */
    assert_int_equal(xl(PD32, 0, 0x800000, &x), GPM_EFAULT);
    assert_int_equal(xl(PD32, CR4_PSE, 0xc0000004, &x), 0);
    assert_int_equal(x.phys, 0x600004);
    assert_false(x.user);
    assert_int_equal(xl(PD32, 0, 0xbffff000, &x), GPM_EFAULT);
}

static void test_paging_off_and_bad(void **state)
{
    gpm__mmu_state_t off = {{PDPT, CR4_PAE, 1 /* PE only */}};
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(
        gpm__mmu_i386_xlate(&off, 0x12345, fake_phys_read, &ram, &x), 0);
    assert_int_equal(x.phys, 0x12345);
    assert_true(x.writable);
    assert_int_equal(
        gpm__mmu_i386_xlate(&off, 1ull << 32, fake_phys_read, &ram, &x),
        GPM_EFAULT);
    /* Above 32 bits, a PDPT or table outside RAM. */
    assert_int_equal(xl(PDPT, CR4_PAE, 1ull << 32, &x), GPM_EFAULT);
    assert_int_equal(xl(0xfffff000, CR4_PAE, 0x400000, &x), GPM_EFAULT);
    assert_int_equal(xl(0xfffff000, 0, 0x400000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PD0, 5, 0x123456789000ull | P | RW | US);
    assert_int_equal(xl(PDPT, CR4_PAE, 0xa00000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PDPT, 2, 0x7ff000000ull | P);
    assert_int_equal(xl(PDPT, CR4_PAE, 0x80000000, &x), GPM_EFAULT);
}

static void test_check_user(void **state)
{
    (void)state;
    assert_int_equal(check(0x400000, 12, true), 0);
    assert_int_equal(check(0x401000, 4, false), 0);
    assert_int_equal(check(0x401000, 1, true), GPM_EROFS);
    assert_int_equal(check(0x403000, 1, false), GPM_EFAULT);
    assert_int_equal(check(0x402000, 1, false), GPM_EFAULT);
    assert_int_equal(check(0x600000, 2u << 20, true), 0);
    assert_int_equal(check(0x800000, 2u << 20, false), 0);
    assert_int_equal(check(0x800000, 1, true), GPM_EROFS);
    /* rw then ro: a retry; rw, ro, absent: the fault wins. */
    assert_int_equal(check(0x400ffc, 8, true), GPM_EROFS);
    assert_int_equal(check(0x400000, 3 * 4096, true), GPM_EFAULT);
    /* The kernel's lowmem map is never the user's. */
    assert_int_equal(check(0xc0000000, 4, false), GPM_EFAULT);
    assert_int_equal(check(0xffffffffull, 2, false), GPM_EFAULT);
    assert_int_equal(check(UINT64_MAX - 1, 16, true), GPM_EFAULT);
    ram.reads = 0;
    assert_int_equal(check(0x402000, 0, true), 0);
    assert_int_equal(ram.reads, 0);
}

static void test_hostile_tables(void **state)
{
    gpm__mmu_state_t pae = {{PDPT, CR4_PAE, CR0_PG}};
    gpm__mmu_state_t two = {{PD32, CR4_PSE, CR0_PG}};
    gpm__xlate_t x;

    (void)state;
    /* A PD entry pointing back at its own PD: three reads, then done. */
    fake_phys_put64(&ram, PD0, 0, PD0 | P | RW | US);
    ram.reads = 0;
    assert_int_equal(xl(PDPT, CR4_PAE, 0x0, &x), 0);
    assert_int_equal(ram.reads, 3);
    assert_true(fake_phys_garbage_walks(&ram, gpm__mmu_i386_xlate, &pae, 20000,
                                        1) <= 3);
    assert_true(ram.refused > 0);
    assert_true(fake_phys_garbage_walks(&ram, gpm__mmu_i386_xlate, &two, 20000,
                                        2) <= 2);
}

static void test_row(void **state)
{
    const gpm__arch_ops_t *o = ops();

    (void)state;
    assert_non_null(o);
    assert_string_equal(o->pc_reg, "eip");
    assert_string_equal(o->mode_reg, "cs");
    assert_true(o->mode_is_user(0x73));
    assert_false(o->mode_is_user(0x60));
    assert_int_equal(o->user_top, 0xc0000000ull);
    assert_null(o->user_percpu_reg);
    assert_true(o->percpu_base_const);
    assert_true(o->entry_ret_word);
    assert_ptr_equal(o->xlate, gpm__mmu_i386_xlate);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_pae_4k),
        T(test_pae_2m),
        T(test_pae_levels),
        T(test_2level),
        T(test_paging_off_and_bad),
        T(test_check_user),
        T(test_hostile_tables),
        T(test_row),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
