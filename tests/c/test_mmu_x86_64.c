/*
 * test_mmu_x86_64.c - the x86_64 walker (csrc/arch/mmu_x86_64.c) and
 * gpm__mmu_check_user() over it, on fake page tables in a malloc'd RAM.
 * The cases of the walkers it replaces (tests/c/test_ram_walk.c and
 * test_panda_api.c's test_page_walk) are here too, against the new one.
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

#define PML4    0x1000ull
#define PDPT    0x2000ull
#define PD      0x3000ull
#define PT      0x4000ull
#define PT_KERN 0x5000ull
#define PML5    0x8000ull
#define CR3     (PML4 | 0x5ull) /* PCID 5 in the low bits */
#define LA57    (1ull << 12)

static fake_phys_t ram;

static const gpm__arch_ops_t *ops(void)
{
    return gpm__arch_ops(GPM_ARCH_X86_64);
}

static int xl(uint64_t cr3, uint64_t cr4, uint64_t va, gpm__xlate_t *x)
{
    gpm__mmu_state_t st = {{cr3, cr4}};

    return gpm__mmu_x86_64_xlate(&st, va, fake_phys_read, &ram, x);
}

static int check(uint64_t va, size_t len, bool write)
{
    gpm__mmu_state_t st = {{CR3, 0}};

    return gpm__mmu_check_user(ops(), &st, va, len, write, fake_phys_read,
                               &ram);
}

/*
 * The layout of test_ram_walk.c (VA -> PA):
 *  0x00400000 4K user rw       -> 0x100000
 *  0x00401000 4K user ro       -> 0x101000 (a zero-page-like mapping)
 *  0x00402000 not present
 *  0x00403000 4K supervisor rw -> 0x103000
 *  0x00404000 4K user rw       -> 0x104000
 *  0x00405000 4K user rw       -> 0x900000 (beyond RAM)
 *  0x00600000 2M user rw       -> 0x200000
 *  0x40000000 1G user rw       -> 0
 *  0x80000000 PDPT entry not present
 *  0xffff800000000000 kernel 2M -> 0x400000 (PML4 256, supervisor)
 */
static int setup(void **state)
{
    (void)state;
    fake_phys_init(&ram, 0, RAM_SIZE);
    fake_phys_put64(&ram, PML4, 0, PDPT | P | RW | US);
    fake_phys_put64(&ram, PDPT, 0, PD | P | RW | US);
    fake_phys_put64(&ram, PD, 2, PT | P | RW | US | NX);
    fake_phys_put64(&ram, PT, 0, 0x100000 | P | RW | US);
    fake_phys_put64(&ram, PT, 1, 0x101000 | P | US);
    fake_phys_put64(&ram, PT, 2, 0x102000 | RW | US);
    fake_phys_put64(&ram, PT, 3, 0x103000 | P | RW);
    fake_phys_put64(&ram, PT, 4, 0x104000 | P | RW | US | NX);
    fake_phys_put64(&ram, PT, 5, 0x900000 | P | RW | US);
    fake_phys_put64(&ram, PD, 3, 0x200000 | P | RW | US | PS);
    fake_phys_put64(&ram, PDPT, 1, 0x0 | P | RW | US | PS);
    fake_phys_put64(&ram, PML4, 256, PT_KERN | P | RW);
    fake_phys_put64(&ram, PT_KERN, 0, (PT_KERN + 0x1000) | P | RW);
    fake_phys_put64(&ram, PT_KERN + 0x1000, 0, 0x400000 | P | RW | PS);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_phys_free(&ram);
    return 0;
}

static void test_4k(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(CR3, 0, 0x400123, &x), 0);
    assert_int_equal(x.phys, 0x100123);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    assert_true(x.writable);
    assert_true(x.user);
    assert_int_equal(xl(CR3, 0, 0x401000, &x), 0);
    assert_false(x.writable);
    assert_true(x.user);
    /* Supervisor: not user, so not writable by user mode either. */
    assert_int_equal(xl(CR3, 0, 0x403000, &x), 0);
    assert_int_equal(x.phys, 0x103000);
    assert_false(x.writable);
    assert_false(x.user);
    assert_int_equal(xl(CR3, 0, 0x402000, &x), GPM_EFAULT);
    /* A leaf beyond RAM still translates: the reader of the data checks. */
    assert_int_equal(xl(CR3, 0, 0x405008, &x), 0);
    assert_int_equal(x.phys, 0x900008);
}

static void test_huge(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(CR3, 0, 0x601234, &x), 0);
    assert_int_equal(x.phys, 0x201234);
    assert_int_equal(x.page_left, 0x200000 - 0x1234);
    assert_true(x.writable);
    assert_int_equal(xl(CR3, 0, 0x40000000 + 0x5000, &x), 0);
    assert_int_equal(x.phys, 0x5000);
    assert_int_equal(x.page_left, (1ull << 30) - 0x5000);
    assert_int_equal(xl(CR3, 0, 0x80000000, &x), GPM_EFAULT);
    assert_int_equal(xl(CR3, 0, 0xffff800000000010ull, &x), 0);
    assert_int_equal(x.phys, 0x400010);
    assert_false(x.user);
    assert_false(x.writable);
}

static void test_permission_levels(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* RW or US clear at any level takes it away for the whole walk. */
    fake_phys_put64(&ram, PD, 2, PT | P | US);
    assert_int_equal(xl(CR3, 0, 0x400000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    fake_phys_put64(&ram, PD, 2, PT | P | RW);
    assert_int_equal(xl(CR3, 0, 0x400000, &x), 0);
    assert_false(x.user);
    fake_phys_put64(&ram, PML4, 0, PDPT | P | US);
    assert_int_equal(xl(CR3, 0, 0x600000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    fake_phys_put64(&ram, PDPT, 0, PD | P | RW);
    assert_int_equal(xl(CR3, 0, 0x600000, &x), 0);
    assert_false(x.user);
}

static void test_not_present_each_level(void **state)
{
    gpm__xlate_t x;

    (void)state;
    fake_phys_put64(&ram, PT, 0, 0x100000 | RW | US);
    assert_int_equal(xl(CR3, 0, 0x400000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PD, 3, 0x200000 | RW | US | PS);
    assert_int_equal(xl(CR3, 0, 0x600000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PDPT, 1, RW | US | PS);
    assert_int_equal(xl(CR3, 0, 0x40000000, &x), GPM_EFAULT);
    fake_phys_put64(&ram, PML4, 0, PDPT | RW | US);
    assert_int_equal(xl(CR3, 0, 0x401000, &x), GPM_EFAULT);
}

static void test_bad(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* Not canonical (4-level), on either side. */
    assert_int_equal(xl(CR3, 0, 0x0000800000000000ull, &x), GPM_EFAULT);
    assert_int_equal(xl(CR3, 0, 0xffff7fffffffffffull, &x), GPM_EFAULT);
    /* A PML4 outside RAM. */
    assert_int_equal(xl(0x7fff0000000ull, 0, 0x400000, &x), GPM_EFAULT);
    /* A table pointer outside RAM. */
    fake_phys_put64(&ram, PML4, 1, 0x123456789000ull | P | RW | US);
    assert_int_equal(xl(CR3, 0, 1ull << 39, &x), GPM_EFAULT);
    /* The last table page of RAM works; the first byte after does not. */
    fake_phys_put64(&ram, PML4, 2, (RAM_SIZE - 0x1000) | P | RW | US);
    fake_phys_put64(&ram, RAM_SIZE - 0x1000, 511, P | RW | US | PS);
    assert_int_equal(xl(CR3, 0, (2ull << 39) | (511ull << 30), &x), 0);
    assert_int_equal(x.phys, 0);
    fake_phys_put64(&ram, PML4, 2, RAM_SIZE | P | RW | US);
    assert_int_equal(xl(CR3, 0, 2ull << 39, &x), GPM_EFAULT);
    /* PS in a PML4 entry is reserved. */
    fake_phys_put64(&ram, PML4, 3, P | RW | US | PS);
    assert_int_equal(xl(CR3, 0, 3ull << 39, &x), GPM_EFAULT);
}

static void test_la57(void **state)
{
    gpm__xlate_t x;
    uint64_t va = (1ull << 48) | 0x400010; /* PML5 index 1 */

    (void)state;
    fake_phys_put64(&ram, PML5, 0, PML4 | P | RW | US);
    fake_phys_put64(&ram, PML5, 1, PML4 | P | RW | US);
    /* Canonical with 57 bits, not with 48. */
    assert_int_equal(xl(PML5, 0, va, &x), GPM_EFAULT);
    assert_int_equal(xl(PML5, LA57, va, &x), 0);
    assert_int_equal(x.phys, 0x100010);
    assert_true(x.writable);
    assert_int_equal(xl(PML5, LA57, 0x600000, &x), 0);
    assert_int_equal(x.phys, 0x200000);
    assert_int_equal(xl(PML5, LA57, 1ull << 57, &x), GPM_EFAULT);
    assert_int_equal(xl(PML5, LA57, 2ull << 48, &x), GPM_EFAULT);
    /* PS in a PML5 entry is reserved too. */
    fake_phys_put64(&ram, PML5, 3, P | RW | US | PS);
    assert_int_equal(xl(PML5, LA57, 3ull << 48, &x), GPM_EFAULT);
}

/* test_ram_walk.c's read and write cases, as range checks. */
static void test_check_user(void **state)
{
    (void)state;
    assert_int_equal(check(0x400000, 12, false), 0);
    assert_int_equal(check(0x400000, 12, true), 0);
    assert_int_equal(check(0x401000, 4, false), 0);
    assert_int_equal(check(0x401000, 1, true), GPM_EROFS);
    assert_int_equal(check(0x403000, 11, false), GPM_EFAULT);
    assert_int_equal(check(0x403000, 1, true), GPM_EFAULT);
    assert_int_equal(check(0x402000, 1, false), GPM_EFAULT);
    assert_int_equal(check(0x402000, 1, true), GPM_EFAULT);
    assert_int_equal(check(0x601234, 7, false), 0);
    assert_int_equal(check(0x600010, 3, true), 0);
    assert_int_equal(check(0x40000000 + 0x7ff000, 2, true), 0);
    assert_int_equal(check(0xffff800000000010ull, 9, false), GPM_EFAULT);
    /* Across pages: supervisor then user; rw then ro; rw then absent. */
    assert_int_equal(check(0x403ffc, 8, false), GPM_EFAULT);
    assert_int_equal(check(0x400ffe, 4, false), 0);
    assert_int_equal(check(0x400ffc, 8, true), GPM_EROFS);
    assert_int_equal(check(0x401ffc, 8, false), GPM_EFAULT);
    /* rw, ro, absent: the fault wins over the retry. */
    assert_int_equal(check(0x400000, 3 * 4096, true), GPM_EFAULT);
    assert_int_equal(check(0x400000, 2 * 4096, true), GPM_EROFS);
    /* The 2M page to its last byte; one byte more is the next PD entry. */
    assert_int_equal(check(0x600000, 2u << 20, true), 0);
    assert_int_equal(check(0x7ffffe, 4, true), GPM_EFAULT);
    /* The whole 1G page. */
    assert_int_equal(check(0x40000000, 1u << 30, true), 0);
    /* Wrapping, non-canonical, empty (which reads nothing). */
    assert_int_equal(check(UINT64_MAX - 2, 8, false), GPM_EFAULT);
    assert_int_equal(check(UINT64_MAX - 1, 16, true), GPM_EFAULT);
    assert_int_equal(check(0x0000800000000000ull, 1, false), GPM_EFAULT);
    ram.reads = 0;
    assert_int_equal(check(0x402000, 0, true), 0);
    assert_int_equal(check(0x402000, 0, false), 0);
    assert_int_equal(ram.reads, 0);
}

/* test_panda_api.c's test_page_walk layout and cases. */
static void test_panda_cases(void **state)
{
    const uint64_t pml4 = 1 * 4096, pdpt = 2 * 4096, pd = 3 * 4096,
                   pt = 4 * 4096, pd1 = 5 * 4096, pt2 = 6 * 4096;
    gpm__mmu_state_t st = {{4096 | 0x5, 0}};
    const gpm__arch_ops_t *o = ops();

    (void)state;
    memset(ram.mem, 0, RAM_SIZE);
    fake_phys_put64(&ram, pml4, 0, pdpt | P | RW | US);
    fake_phys_put64(&ram, pdpt, 0, pd | P | RW | US);
    fake_phys_put64(&ram, pdpt, 1, pd1 | P | RW | US);
    fake_phys_put64(&ram, pd, 2, pt | P | RW | US);
    fake_phys_put64(&ram, pd, 3, pt2 | P | RW | US);
    fake_phys_put64(&ram, pt, 0, (10 * 4096) | P | RW | US);
    fake_phys_put64(&ram, pt, 1, (11 * 4096) | P | US);
    fake_phys_put64(&ram, pt, 3, (12 * 4096) | P | RW | US);
    fake_phys_put64(&ram, pt2, 0, (13 * 4096) | P | RW);
    fake_phys_put64(&ram, pd1, 0, (16ull << 21) | P | RW | US | PS);
#define CHK(va, len, w)                                                        \
    gpm__mmu_check_user(o, &st, va, len, w, fake_phys_read, &ram)
    assert_int_equal(CHK(0x400000, 4096, true), 0);
    assert_int_equal(CHK(0x400ff0, 32, true), GPM_EROFS);
    assert_int_equal(CHK(0x401000, 1, true), GPM_EROFS);
    assert_int_equal(CHK(0x402000, 1, true), GPM_EFAULT);
    assert_int_equal(CHK(0x403000, 4096, true), 0);
    assert_int_equal(CHK(0x600010, 8, true), GPM_EFAULT);
    assert_int_equal(CHK(0x400ff0, 32, false), 0);
    assert_int_equal(CHK(0x600010, 8, false), GPM_EFAULT);
    assert_int_equal(CHK(0x401ff0, 32, false), GPM_EFAULT);
    assert_int_equal(CHK(0x0000800000000000ull, 1, false), GPM_EFAULT);
    assert_int_equal(CHK(0x40000000, 2u << 20, true), 0);
    assert_int_equal(CHK(0x401fffff, 2, true), GPM_EFAULT);
    assert_int_equal(CHK(0x7f0000000000, 1, true), GPM_EFAULT);
    assert_int_equal(CHK(UINT64_MAX - 1, 16, true), GPM_EFAULT);
    fake_phys_put64(&ram, pml4, 1, (10000ull * 4096) | P | RW | US);
    assert_int_equal(CHK(0x8000000000ull, 1, true), GPM_EFAULT);
#undef CHK
}

static void test_check_user_args(void **state)
{
    gpm__mmu_state_t st = {{CR3, 0}};
    gpm__arch_ops_t none = *ops();

    (void)state;
    none.xlate = NULL;
    assert_int_equal(gpm__mmu_check_user(&none, &st, 0x400000, 1, false,
                                         fake_phys_read, &ram),
                     GPM_EINVAL);
    assert_int_equal(gpm__mmu_check_user(NULL, &st, 0x400000, 1, false,
                                         fake_phys_read, &ram),
                     GPM_EINVAL);
    assert_int_equal(gpm__mmu_check_user(ops(), NULL, 0x400000, 1, false,
                                         fake_phys_read, &ram),
                     GPM_EINVAL);
    assert_int_equal(
        gpm__mmu_check_user(ops(), &st, 0x400000, 1, false, NULL, &ram),
        GPM_EINVAL);
}

static void test_hostile_tables(void **state)
{
    gpm__mmu_state_t st4 = {{PML4, 0}}, st5 = {{PML4, LA57}};
    gpm__xlate_t x;

    (void)state;
    /* A PML4 whose entry 0 points back at itself: four reads, then done. */
    fake_phys_put64(&ram, PML4, 0, PML4 | P | RW | US);
    ram.reads = 0;
    assert_int_equal(xl(CR3, 0, 0x123, &x), 0);
    assert_int_equal(x.phys, PML4 + 0x123);
    assert_int_equal(ram.reads, 4);
    assert_int_equal(check(0, 4096, true), 0);
    assert_int_equal(check(0, 4097, true), GPM_EFAULT); /* PML4[1] is 0 */
    /* Random tables: at most one read per level, none outside RAM. */
    assert_true(fake_phys_garbage_walks(&ram, gpm__mmu_x86_64_xlate, &st4,
                                        20000, 1) <= 4);
    assert_true(ram.refused > 0); /* the refusals were exercised */
    assert_true(fake_phys_garbage_walks(&ram, gpm__mmu_x86_64_xlate, &st5,
                                        20000, 2) <= 5);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_4k),
        T(test_huge),
        T(test_permission_levels),
        T(test_not_present_each_level),
        T(test_bad),
        T(test_la57),
        T(test_check_user),
        T(test_panda_cases),
        T(test_check_user_args),
        T(test_hostile_tables),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
