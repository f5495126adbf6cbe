/*
 * test_mmu_aarch64.c - the AArch64 stage-1 walker
 * (csrc/arch/mmu_aarch64.c, mmu_lpae.c) and gpm__mmu_check_user() over
 * it, on fake tables in a malloc'd RAM at 0x40000000 (as on QEMU's virt
 * machine).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_phys.h"

#define BASE     0x40000000ull
#define RAM_SIZE (8u << 20)

/* Descriptor bits. */
#define VALID   1ull
#define TABLE   3ull
#define BLOCK   1ull
#define PAGE    3ull
#define AP_USER (1ull << 6)
#define AP_RO   (1ull << 7)
#define AF      (1ull << 10)
#define NG      (1ull << 11)
#define PXN     (1ull << 53)
#define UXN     (1ull << 54)
#define DBM     (1ull << 51)
#define APT_NOU (1ull << 61)
#define APT_RO  (1ull << 62)
#define URW     (AF | AP_USER | NG)

/* Tables (4 KiB granule). */
#define L0  (BASE + 0x1000)
#define L1  (BASE + 0x2000)
#define L2  (BASE + 0x3000)
#define L3  (BASE + 0x4000)
#define L3B (BASE + 0x5000) /* under APTable[0] = 1 */
#define L3C (BASE + 0x6000) /* under APTable[1] = 1 */
#define K0  (BASE + 0x8000)
#define K1  (BASE + 0x9000)
#define K2  (BASE + 0xa000)

/* TCR_EL1 fields. */
#define T0SZ(n)   ((uint64_t)(n))
#define T1SZ(n)   ((uint64_t)(n) << 16)
#define EPD0      (1ull << 7)
#define EPD1      (1ull << 23)
#define TG0_4K    (0ull << 14)
#define TG0_64K   (1ull << 14)
#define TG0_16K   (2ull << 14)
#define TG0_BAD   (3ull << 14)
#define TG1_4K    (2ull << 30)
#define TBI0      (1ull << 37)
#define TBI1      (1ull << 38)
#define HPD0      (1ull << 41)
#define E0PD0     (1ull << 55)
#define E0PD1     (1ull << 56)
/* Linux 6.1's usual value: 48-bit VAs, 4K granule both ways, TBI0. */
#define TCR_LINUX (T0SZ(16) | T1SZ(16) | TG0_4K | TG1_4K | TBI0)

#define SCTLR_M  1ull
#define SCTLR_EE (1ull << 25)
#define TTBR0    (L0 | (5ull << 48) | 1) /* ASID 5, CnP */
#define TTBR1    (K0 | (7ull << 48))
#define KVA      0xffff000000000000ull

static fake_phys_t ram;
static gpm__mmu_state_t st;

static int xl(uint64_t va, gpm__xlate_t *x)
{
    return gpm__mmu_aarch64_xlate(&st, va, fake_phys_read, &ram, x);
}

static int check(uint64_t va, size_t len, bool write)
{
    return gpm__mmu_check_user(gpm__arch_ops(GPM_ARCH_AARCH64), &st, va, len,
                               write, fake_phys_read, &ram);
}

/*
 * User space (TTBR0, VA -> PA):
 *  0x400000 + n * 4K, L3[n]: 0 user rw -> BASE+0x100000; 1 user ro;
 *    2 invalid; 3 kernel rw; 4 user rw with AF = 0; 5 DBM clean (AP[2]
 *    = 1); 6 DBM dirty; 7 reserved (01 at level 3); 8 rw with UXN/PXN
 *  0x600000 2M block user rw -> BASE+0x200000
 *  0x800000 (L2[4]) a table with APTable[0] = 1, page user rw
 *  0xa00000 (L2[5]) a table with APTable[1] = 1, page user rw
 *  0xc00000 (L2[6]) invalid
 *  0x40000000 (L1[1]) 1G block user rw -> BASE
 *  0x80000000 (L1[2]) a table pointer outside RAM
 *  0xc0000000 (L1[3]) invalid
 *  1 << 39 (L0[1]) invalid; 2 << 39 (L0[2]) a level-0 block (reserved)
 * Kernel (TTBR1): KVA 2M block kernel rw -> BASE+0x400000.
 */
static int setup(void **state)
{
    (void)state;
    fake_phys_init(&ram, BASE, RAM_SIZE);
    fake_phys_put64(&ram, L0, 0, L1 | TABLE);
    fake_phys_put64(&ram, L0, 2, BASE | BLOCK | URW);
    fake_phys_put64(&ram, L1, 0, L2 | TABLE);
    fake_phys_put64(&ram, L1, 1, BASE | BLOCK | URW);
    fake_phys_put64(&ram, L1, 2, 0x7f0000000ull | TABLE);
    fake_phys_put64(&ram, L2, 2, L3 | TABLE);
    fake_phys_put64(&ram, L2, 3, (BASE + 0x200000) | BLOCK | URW);
    fake_phys_put64(&ram, L2, 4, L3B | TABLE | APT_NOU);
    fake_phys_put64(&ram, L2, 5, L3C | TABLE | APT_RO);
    fake_phys_put64(&ram, L3, 0, (BASE + 0x100000) | PAGE | URW);
    fake_phys_put64(&ram, L3, 1, (BASE + 0x101000) | PAGE | URW | AP_RO);
    fake_phys_put64(&ram, L3, 2, (BASE + 0x102000) | URW); /* bit 0 = 0 */
    fake_phys_put64(&ram, L3, 3, (BASE + 0x103000) | PAGE | AF);
    fake_phys_put64(&ram, L3, 4, (BASE + 0x104000) | PAGE | AP_USER);
    fake_phys_put64(&ram, L3, 5, (BASE + 0x105000) | PAGE | URW | AP_RO | DBM);
    fake_phys_put64(&ram, L3, 6, (BASE + 0x106000) | PAGE | URW | DBM);
    fake_phys_put64(&ram, L3, 7, (BASE + 0x107000) | BLOCK | URW);
    fake_phys_put64(&ram, L3, 8, (BASE + 0x108000) | PAGE | URW | UXN | PXN);
    fake_phys_put64(&ram, L3B, 0, (BASE + 0x110000) | PAGE | URW);
    fake_phys_put64(&ram, L3C, 0, (BASE + 0x120000) | PAGE | URW);
    fake_phys_put64(&ram, K0, 0, K1 | TABLE);
    fake_phys_put64(&ram, K1, 0, K2 | TABLE);
    fake_phys_put64(&ram, K2, 0, (BASE + 0x400000) | BLOCK | AF | UXN);
    st.reg[0] = TTBR0;
    st.reg[1] = TTBR1;
    st.reg[2] = TCR_LINUX;
    st.reg[3] = SCTLR_M;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_phys_free(&ram);
    return 0;
}

static void test_pages(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(0x400123, &x), 0);
    assert_int_equal(x.phys, BASE + 0x100123);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    assert_true(x.user);
    assert_true(x.writable);
    assert_int_equal(xl(0x401000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    assert_int_equal(xl(0x402000, &x), GPM_EFAULT);
    assert_int_equal(xl(0x403000, &x), 0);
    assert_false(x.user);
    assert_false(x.writable);
    /* Access flag 0: not mapped until the guest touches it. */
    assert_int_equal(xl(0x404000, &x), GPM_EFAULT);
    /* DBM: clean (AP[2] = 1) is read-only here, dirty is writable. */
    assert_int_equal(xl(0x405000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    assert_int_equal(xl(0x406000, &x), 0);
    assert_true(x.writable);
    assert_int_equal(xl(0x407000, &x), GPM_EFAULT);
    /* UXN and PXN do not matter for data. */
    assert_int_equal(xl(0x408010, &x), 0);
    assert_int_equal(x.phys, BASE + 0x108010);
    assert_true(x.writable);
}

static void test_blocks(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(0x601234, &x), 0);
    assert_int_equal(x.phys, BASE + 0x201234);
    assert_int_equal(x.page_left, 0x200000 - 0x1234);
    assert_true(x.writable);
    assert_int_equal(xl(0x40000000 + 0x123456, &x), 0);
    assert_int_equal(x.phys, BASE + 0x123456);
    assert_int_equal(x.page_left, (1ull << 30) - 0x123456);
    /* No level-0 blocks with the 4K granule. */
    assert_int_equal(xl(2ull << 39, &x), GPM_EFAULT);
    /* Kernel: the TTBR1 range. */
    assert_int_equal(xl(KVA + 0x10, &x), 0);
    assert_int_equal(x.phys, BASE + 0x400010);
    assert_false(x.user);
    assert_false(x.writable);
}

static void test_table_permissions(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(0x800000, &x), 0);
    assert_false(x.user);
    assert_false(x.writable);
    assert_int_equal(xl(0xa00000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    /* TCR_EL1.HPD0 ignores APTable. */
    st.reg[2] |= HPD0;
    assert_int_equal(xl(0x800000, &x), 0);
    assert_true(x.user);
    assert_true(x.writable);
    assert_int_equal(xl(0xa00000, &x), 0);
    assert_true(x.writable);
}

static void test_not_mapped(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl(1ull << 39, &x), GPM_EFAULT); /* level 0 */
    assert_int_equal(xl(0xc0000000, &x), GPM_EFAULT); /* level 1 */
    assert_int_equal(xl(0xc00000, &x), GPM_EFAULT);   /* level 2 */
    assert_int_equal(xl(0x402000, &x), GPM_EFAULT);   /* level 3 */
    assert_int_equal(xl(0x80000000, &x), GPM_EFAULT); /* outside RAM */
    assert_int_equal(xl(KVA + (1ull << 39), &x), GPM_EFAULT);
    /* Between the two ranges (bits 63:48 neither all 0 nor all 1). */
    assert_int_equal(xl(0x0001000000400000ull, &x), GPM_EFAULT);
    assert_int_equal(xl(0xfffe000000000000ull, &x), GPM_EFAULT);
    assert_int_equal(xl(0x0080000000400000ull, &x), GPM_EFAULT);
    /* A TTBR outside RAM. */
    st.reg[0] = 0x10000000;
    assert_int_equal(xl(0x400000, &x), GPM_EFAULT);
}

static void test_tbi(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* Linux's TBI0: a tagged user pointer is the same memory. */
    assert_int_equal(xl(0x5a00000000400010ull, &x), 0);
    assert_int_equal(x.phys, BASE + 0x100010);
    st.reg[2] &= ~TBI0;
    assert_int_equal(xl(0x5a00000000400010ull, &x), GPM_EFAULT);
    /* Upper range: TBI1 off (Linux), then on. */
    assert_int_equal(xl(0x12ff000000000010ull, &x), GPM_EFAULT);
    st.reg[2] |= TBI1;
    assert_int_equal(xl(0x12ff000000000010ull, &x), 0);
    assert_int_equal(x.phys, BASE + 0x400010);
    /* Bit 55 still selects the range under TBI. */
    st.reg[2] |= TBI0;
    assert_int_equal(xl(0x0080000000400000ull, &x), GPM_EFAULT);
}

static void test_tcr(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* 39-bit user range: the walk starts at level 1 (TTBR0 -> L1). */
    st.reg[0] = L1;
    st.reg[2] = T0SZ(25) | T1SZ(16) | TG1_4K;
    assert_int_equal(xl(0x400000, &x), 0);
    assert_int_equal(x.phys, BASE + 0x100000);
    assert_int_equal(xl(0x40000000, &x), 0);
    assert_int_equal(x.phys, BASE);
    assert_int_equal(xl(1ull << 39, &x), GPM_EFAULT);
    assert_int_equal(xl(KVA, &x), 0);
    /* EPD0 / EPD1 turn one range off. */
    st.reg[0] = TTBR0;
    st.reg[2] = TCR_LINUX | EPD0;
    assert_int_equal(xl(0x400000, &x), GPM_EFAULT);
    assert_int_equal(xl(KVA, &x), 0);
    st.reg[2] = TCR_LINUX | EPD1;
    assert_int_equal(xl(0x400000, &x), 0);
    assert_int_equal(xl(KVA, &x), GPM_EFAULT);
    /* E0PD: mapped, but never for EL0. */
    st.reg[2] = TCR_LINUX | E0PD0;
    assert_int_equal(xl(0x400000, &x), 0);
    assert_false(x.user);
    assert_false(x.writable);
    st.reg[2] = TCR_LINUX | E0PD1;
    assert_int_equal(xl(0x400000, &x), 0);
    assert_true(x.user);
    /* Reserved granules and sizes refuse. */
    st.reg[2] = (TCR_LINUX & ~(3ull << 14)) | TG0_BAD;
    assert_int_equal(xl(0x400000, &x), GPM_EFAULT);
    st.reg[2] = TCR_LINUX & ~(3ull << 30);
    assert_int_equal(xl(KVA, &x), GPM_EFAULT);
    st.reg[2] = (TCR_LINUX & ~0x3full) | T0SZ(40);
    assert_int_equal(xl(0x400000, &x), GPM_EFAULT);
    st.reg[2] = (TCR_LINUX & ~0x3full) | T0SZ(15);
    assert_int_equal(xl(0x400000, &x), GPM_EFAULT);
}

static void test_mmu_off(void **state)
{
    gpm__xlate_t x;

    (void)state;
    st.reg[3] = 0;
    assert_int_equal(xl(0x40001234, &x), 0);
    assert_int_equal(x.phys, 0x40001234);
    assert_int_equal(x.page_left, 0x1000 - 0x234);
    assert_true(x.user);
    assert_true(x.writable);
    assert_int_equal(xl(1ull << 48, &x), GPM_EFAULT);
    assert_int_equal(check(0x40000000, 3 * 4096, true), 0);
}

/* 64 KiB granule, 42-bit range: two levels (2 and 3). */
static void test_64k(void **state)
{
    const uint64_t l2 = BASE + 0x20000, l3 = BASE + 0x30000;
    gpm__xlate_t x;

    (void)state;
    fake_phys_put64(&ram, l2, 1, l3 | TABLE);
    fake_phys_put64(&ram, l2, 2, 0x40000000ull | BLOCK | URW);
    fake_phys_put64(&ram, l2, 8191, l3 | TABLE);
    fake_phys_put64(&ram, l3, 1, (BASE + 0x40000) | PAGE | URW);
    fake_phys_put64(&ram, l3, 2, (BASE + 0x50000) | PAGE | URW | AP_RO);
    st.reg[0] = l2;
    st.reg[2] = T0SZ(22) | TG0_64K | T1SZ(16) | TG1_4K;
    assert_int_equal(xl(0x20010000 + 0x1234, &x), 0);
    assert_int_equal(x.phys, BASE + 0x41234);
    assert_int_equal(x.page_left, 0x10000 - 0x1234);
    assert_true(x.writable);
    assert_int_equal(xl(0x20020000, &x), 0);
    assert_false(x.writable);
    assert_int_equal(xl(0x20030000, &x), GPM_EFAULT);
    /* A 512 MiB level-2 block. */
    assert_int_equal(xl(0x40000000 + 0x1234, &x), 0);
    assert_int_equal(x.phys, 0x40001234);
    assert_int_equal(x.page_left, (512ull << 20) - 0x1234);
    /* The last entry of the 8192-entry table; then the range ends. */
    assert_int_equal(xl((8191ull << 29) + 0x10000, &x), 0);
    assert_int_equal(xl(1ull << 42, &x), GPM_EFAULT);
    assert_int_equal(check(0x20010000, 0x20000, true), GPM_EROFS);
    assert_int_equal(check(0x20010000, 0x10000, true), 0);
}

/* 16 KiB granule, 36-bit range: two levels (2 and 3). */
static void test_16k(void **state)
{
    const uint64_t l2 = BASE + 0x50000, l3 = BASE + 0x54000;
    gpm__xlate_t x;

    (void)state;
    fake_phys_put64(&ram, l2, 0, l3 | TABLE);
    fake_phys_put64(&ram, l2, 1, 0x42000000ull | BLOCK | URW);
    fake_phys_put64(&ram, l3, 1, (BASE + 0x58000) | PAGE | URW);
    st.reg[0] = l2;
    st.reg[2] = T0SZ(28) | TG0_16K | T1SZ(16) | TG1_4K;
    assert_int_equal(xl(0x4000 + 0x3fff, &x), 0);
    assert_int_equal(x.phys, BASE + 0x58000 + 0x3fff);
    assert_int_equal(x.page_left, 1);
    assert_int_equal(xl(0x2000005, &x), 0);
    assert_int_equal(x.phys, 0x42000005);
    assert_int_equal(x.page_left, (32ull << 20) - 5);
    assert_int_equal(xl(0, &x), GPM_EFAULT);
    assert_int_equal(xl(1ull << 36, &x), GPM_EFAULT);
}

/* SCTLR_EL1.EE: big-endian tables. */
static void test_big_endian(void **state)
{
    const uint64_t l1 = BASE + 0x60000, l2 = BASE + 0x61000;
    gpm__xlate_t x;

    (void)state;
    ram.big_endian = true;
    fake_phys_put64(&ram, l1, 0, l2 | TABLE);
    fake_phys_put64(&ram, l2, 0, (BASE + 0x200000) | BLOCK | URW | AP_RO);
    st.reg[0] = l1;
    st.reg[2] = T0SZ(25) | T1SZ(16) | TG1_4K;
    st.reg[3] = SCTLR_M | SCTLR_EE;
    assert_int_equal(xl(0x10, &x), 0);
    assert_int_equal(x.phys, BASE + 0x200010);
    assert_true(x.user);
    assert_false(x.writable);
    st.reg[3] = SCTLR_M;
    assert_int_equal(xl(0x10, &x), GPM_EFAULT);
}

static void test_check_user(void **state)
{
    (void)state;
    assert_int_equal(check(0x400000, 4096, true), 0);
    assert_int_equal(check(0x400000, 4096, false), 0);
    assert_int_equal(check(0x400ff0, 32, false), 0);
    assert_int_equal(check(0x400ff0, 32, true), GPM_EROFS);
    assert_int_equal(check(0x403000, 1, false), GPM_EFAULT);
    assert_int_equal(check(0x404000, 1, false), GPM_EFAULT); /* AF = 0 */
    assert_int_equal(check(0x405000, 8, false), 0);
    assert_int_equal(check(0x405000, 8, true), GPM_EROFS); /* DBM clean */
    assert_int_equal(check(0x406000, 8, true), 0);
    assert_int_equal(check(0x400000, 3 * 4096, true), GPM_EFAULT);
    assert_int_equal(check(0x800000, 1, false), GPM_EFAULT);
    assert_int_equal(check(0xa00000, 1, false), 0);
    assert_int_equal(check(0xa00000, 1, true), GPM_EROFS);
    assert_int_equal(check(0x600000, 2u << 20, true), 0);
    assert_int_equal(check(0x7ffffe, 4, true), GPM_EFAULT);
    assert_int_equal(check(0x40000000, 1u << 30, true), 0);
    assert_int_equal(check(0x5a00000000400000ull, 4096, true), 0);
    assert_int_equal(check(KVA, 16, false), GPM_EFAULT);
    assert_int_equal(check(UINT64_MAX - 1, 16, false), GPM_EFAULT);
    ram.reads = 0;
    assert_int_equal(check(0x402000, 0, true), 0);
    assert_int_equal(ram.reads, 0);
}

static void test_hostile(void **state)
{
    gpm__xlate_t x;
    gpm__mmu_state_t g = {{L0, K0, TCR_LINUX | TBI1, SCTLR_M}};
    gpm__mmu_state_t g64 = {{BASE + 0x20000, K0, T0SZ(12) | TG0_64K, 1}};

    (void)state;
    /* L0[0] points back at L0: four reads, then a level-3 "page". */
    fake_phys_put64(&ram, L0, 0, L0 | TABLE | AF | AP_USER);
    ram.reads = 0;
    assert_int_equal(xl(0x10, &x), 0);
    assert_int_equal(x.phys, L0 + 0x10);
    assert_int_equal(ram.reads, 4);
    assert_true(fake_phys_garbage_walks(&ram, gpm__mmu_aarch64_xlate, &g, 20000,
                                        3) <= 4);
    assert_true(ram.refused > 0);
    assert_true(fake_phys_garbage_walks(&ram, gpm__mmu_aarch64_xlate, &g64,
                                        20000, 4) <= 3);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_pages),      T(test_blocks),     T(test_table_permissions),
        T(test_not_mapped), T(test_tbi),        T(test_tcr),
        T(test_mmu_off),    T(test_64k),        T(test_16k),
        T(test_big_endian), T(test_check_user), T(test_hostile),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
