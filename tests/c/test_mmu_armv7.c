/*
 * test_mmu_armv7.c - the ARMv7-A walker (csrc/arch/mmu_armv7.c): the
 * short-descriptor format and LPAE, and gpm__mmu_check_user() over it,
 * on fake tables in a malloc'd RAM at 0x40000000 (QEMU's virt machine).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_phys.h"

#define BASE     0x40000000ull
#define RAM_SIZE (8u << 20)

#define SCTLR_M   1ull
#define SCTLR_EE  (1ull << 25)
#define SCTLR_AFE (1ull << 29)
#define EAE       (1ull << 31)
#define PD0       (1ull << 4)
#define PD1       (1ull << 5)
#define EPD0      (1ull << 7)
#define EPD1      (1ull << 23)

/* Short descriptors: AP[2:0] as a number, placed per descriptor kind. */
#define SEC(pa, ap)                                                            \
    ((uint32_t)(pa) | (((ap)&3u) << 10) | (((ap)&4u) << 13) | 2u | (1u << 5))
#define SMALL(pa, ap)                                                          \
    ((uint32_t)(pa) | (((ap)&3u) << 4) | (((ap)&4u) << 7) | 2u)
#define LARGE(pa, ap)                                                          \
    ((uint32_t)(pa) | (((ap)&3u) << 4) | (((ap)&4u) << 7) | 1u)
#define COARSE(pa) ((uint32_t)(pa) | (1u << 5) | 1u) /* domain 1 */

#define SL1  (BASE + 0x4000)  /* 16 KiB first-level table */
#define SL2  (BASE + 0x8000)  /* a coarse table */
#define ST0  (BASE + 0x10000) /* TTBR0's 4 KiB table with N = 2 */
#define SBE  (BASE + 0x14000) /* a big-endian first-level table */
#define SUPA 0x1241000000ull  /* a supersection's 40-bit address */

/* Long descriptors. */
#define VALID       1ull
#define TABLE       3ull
#define BLOCK       1ull
#define PAGE        3ull
#define AP_USER     (1ull << 6)
#define AP_RO       (1ull << 7)
#define AF          (1ull << 10)
#define APT_NOU     (1ull << 61)
#define URW         (AF | AP_USER)
#define LL1         (BASE + 0x20000) /* TTBR0, T0SZ = 0: 4 entries */
#define LK2         (BASE + 0x21000) /* TTBR1, T1SZ = 2: starts at level 2 */
#define LL2         (BASE + 0x22000)
#define LL3         (BASE + 0x23000)
#define LL3B        (BASE + 0x24000)
#define T1SZ(n)     ((uint64_t)(n) << 16)
/* Linux's armmp-lpae split: 3 GiB TTBR0, 1 GiB TTBR1. */
#define TTBCR_LINUX (EAE | T1SZ(2))

static fake_phys_t ram;
static gpm__mmu_state_t st;

static int xl(uint64_t va, gpm__xlate_t *x)
{
    return gpm__mmu_armv7_xlate(&st, va, fake_phys_read, &ram, x);
}

static int check(uint64_t va, size_t len, bool write)
{
    return gpm__mmu_check_user(gpm__arch_ops(GPM_ARCH_ARM), &st, va, len, write,
                               fake_phys_read, &ram);
}

/*
 * Short descriptors, VA -> PA (first-level index = VA >> 20):
 *  0x004: coarse table SL2: page n at 0x400000 + n * 4K: 0 small user rw
 *         -> 0x40300000; 1 small user ro (AP 010); 2 fault; 3 small
 *         AP 111; 4 small with XN; 5 small AP 001 (kernel); 0x10-0x1f a
 *         large page user rw -> 0x40400000
 *  0x005 section AP 011 -> 0x40100000; 0x006 AP 010; 0x007 AP 111;
 *  0x008 AP 001; 0x009 AP 110; 0x00a AP 100 (reserved); 0x00b AP 000;
 *  0x00c fault; 0x00d section with PXN (bits 1:0 = 11) AP 011;
 *  0x00e a coarse table outside RAM; 0x010-0x01f a supersection AP 011
 *  -> SUPA; 0xc00 a kernel section (AP 001) -> 0x40000000.
 * Long descriptors (TTBCR_LINUX):
 *  LL1[0] -> LL2, LL1[1] 1G block user rw -> 0x40000000, LL1[2] invalid,
 *  LL1[3] a block that TTBR1 hides; LL2[2] -> LL3 (0x400000), LL2[3] 2M
 *  user rw -> 0x40200000, LL2[4] -> LL3B with APTable[0], LL2[5] 2M with
 *  AF = 0; LL3: 0 user rw -> 0x40300000, 1 user ro, 2 invalid, 3 kernel,
 *  4 reserved (01 at level 3), 5 user rw -> 0xfffff00000 (40-bit);
 *  LK2[0] 2M kernel block -> 0x40000000 (0xc0000000).
 */
static int setup(void **state)
{
    (void)state;
    fake_phys_init(&ram, BASE, RAM_SIZE);
    fake_phys_put32(&ram, SL1, 0x004, COARSE(SL2));
    fake_phys_put32(&ram, SL2, 0, SMALL(0x40300000, 3));
    fake_phys_put32(&ram, SL2, 1, SMALL(0x40301000, 2));
    fake_phys_put32(&ram, SL2, 3, SMALL(0x40303000, 7));
    fake_phys_put32(&ram, SL2, 4, SMALL(0x40304000, 3) | 1u);
    fake_phys_put32(&ram, SL2, 5, SMALL(0x40305000, 1));
    for (unsigned i = 0x10; i < 0x20; i++) {
        fake_phys_put32(&ram, SL2, i, LARGE(0x40400000, 3));
    }
    fake_phys_put32(&ram, SL1, 0x005, SEC(0x40100000, 3));
    fake_phys_put32(&ram, SL1, 0x006, SEC(0x40200000, 2));
    fake_phys_put32(&ram, SL1, 0x007, SEC(0x40200000, 7));
    fake_phys_put32(&ram, SL1, 0x008, SEC(0x40200000, 1));
    fake_phys_put32(&ram, SL1, 0x009, SEC(0x40200000, 6));
    fake_phys_put32(&ram, SL1, 0x00a, SEC(0x40200000, 4));
    fake_phys_put32(&ram, SL1, 0x00b, SEC(0x40200000, 0));
    fake_phys_put32(&ram, SL1, 0x00d, SEC(0x40100000, 3) | 1u);
    fake_phys_put32(&ram, SL1, 0x00e, COARSE(0x10000000));
    for (unsigned i = 0x10; i < 0x20; i++) {
        /* PA[31:24] in 31:24, PA[35:32] in 23:20, PA[39:36] in 8:5. */
        fake_phys_put32(&ram, SL1, i,
                        0x41000000u | (2u << 20) | (1u << 5) | (1u << 18) |
                            (3u << 10) | 2u);
    }
    fake_phys_put32(&ram, SL1, 0xc00, SEC(0x40000000, 1));

    fake_phys_put64(&ram, LL1, 0, LL2 | TABLE);
    fake_phys_put64(&ram, LL1, 1, 0x40000000ull | BLOCK | URW);
    fake_phys_put64(&ram, LL1, 3, 0x40000000ull | BLOCK | URW);
    fake_phys_put64(&ram, LL2, 2, LL3 | TABLE);
    fake_phys_put64(&ram, LL2, 3, 0x40200000ull | BLOCK | URW);
    fake_phys_put64(&ram, LL2, 4, LL3B | TABLE | APT_NOU);
    fake_phys_put64(&ram, LL2, 5, 0x40200000ull | BLOCK | AP_USER);
    fake_phys_put64(&ram, LL3, 0, 0x40300000ull | PAGE | URW);
    fake_phys_put64(&ram, LL3, 1, 0x40301000ull | PAGE | URW | AP_RO);
    fake_phys_put64(&ram, LL3, 3, 0x40303000ull | PAGE | AF);
    fake_phys_put64(&ram, LL3, 4, 0x40304000ull | BLOCK | URW);
    fake_phys_put64(&ram, LL3, 5, 0xfffff00000ull | PAGE | URW);
    fake_phys_put64(&ram, LL3B, 0, 0x40310000ull | PAGE | URW);
    fake_phys_put64(&ram, LK2, 0, 0x40000000ull | BLOCK | AF);
    st.reg[0] = SL1;
    st.reg[1] = SL1;
    st.reg[2] = 0;
    st.reg[3] = SCTLR_M;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_phys_free(&ram);
    return 0;
}

static void use_lpae(void)
{
    st.reg[0] = LL1 | (3ull << 48); /* ASID 3 */
    st.reg[1] = LK2;
    st.reg[2] = TTBCR_LINUX;
}

/* Expects a mapping of @va with the given user/writable bits. */
static void expect(uint64_t va, uint64_t phys, bool user, bool writable)
{
    gpm__xlate_t x;

    assert_int_equal(xl(va, &x), 0);
    assert_int_equal(x.phys, phys);
    assert_int_equal(x.user, user);
    assert_int_equal(x.writable, writable);
}

static void test_short_sections(void **state)
{
    gpm__xlate_t x;

    (void)state;
    expect(0x00512345, 0x40112345, true, true);
    assert_int_equal(xl(0x00512345, &x), 0);
    assert_int_equal(x.page_left, 0x100000 - 0x12345);
    expect(0x00600000, 0x40200000, true, false);  /* AP 010 */
    expect(0x00700000, 0x40200000, true, false);  /* AP 111 */
    expect(0x00800000, 0x40200000, false, false); /* AP 001 */
    expect(0x00900000, 0x40200000, true, false);  /* AP 110 */
    expect(0x00a00000, 0x40200000, false, false); /* AP 100 */
    expect(0x00b00000, 0x40200000, false, false); /* AP 000 */
    assert_int_equal(xl(0x00c00000, &x), GPM_EFAULT);
    expect(0x00d00010, 0x40100010, true, true); /* PXN */
    assert_int_equal(xl(0x00e00000, &x), GPM_EFAULT);
    expect(0xc0000010, 0x40000010, false, false);
    /* Supersection: 16 MiB, a 40-bit output address. */
    expect(0x01234567, SUPA + 0x234567, true, true);
    assert_int_equal(xl(0x01234567, &x), 0);
    assert_int_equal(x.page_left, 0x1000000 - 0x234567);
}

static void test_short_pages(void **state)
{
    gpm__xlate_t x;

    (void)state;
    expect(0x00400123, 0x40300123, true, true);
    assert_int_equal(xl(0x00400123, &x), 0);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    expect(0x00401000, 0x40301000, true, false);
    assert_int_equal(xl(0x00402000, &x), GPM_EFAULT);
    expect(0x00403000, 0x40303000, true, false);
    expect(0x00404000, 0x40304000, true, true); /* XN */
    expect(0x00405000, 0x40305000, false, false);
    /* A large page: 64 KiB from any of its 16 entries. */
    expect(0x00412345, 0x40402345, true, true);
    assert_int_equal(xl(0x00412345, &x), 0);
    assert_int_equal(x.page_left, 0x10000 - 0x2345);
    expect(0x0041ffff, 0x4040ffff, true, true);
    assert_int_equal(xl(0x00420000, &x), GPM_EFAULT);
}

static void test_short_afe(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* With SCTLR.AFE, AP[0] is the access flag. */
    st.reg[3] = SCTLR_M | SCTLR_AFE;
    expect(0x00500000, 0x40100000, true, true);
    assert_int_equal(xl(0x00600000, &x), GPM_EFAULT);
    expect(0x00700000, 0x40200000, true, false);
    expect(0x00800000, 0x40200000, false, false);
    assert_int_equal(xl(0x00401000, &x), GPM_EFAULT);
    expect(0x00403000, 0x40303000, true, false);
}

static void test_short_split(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* N = 2: TTBR0 (a 1024-entry table) below 1 GiB, TTBR1 above. */
    fake_phys_put32(&ram, ST0, 0x004, SEC(0x40500000, 3));
    fake_phys_put32(&ram, ST0, 0x3ff, SEC(0x40600000, 3));
    st.reg[0] = ST0 | 0x5b; /* low attribute bits are ignored */
    st.reg[2] = 2;
    expect(0x00400010, 0x40500010, true, true);
    expect(0x3ff00000, 0x40600000, true, true);
    expect(0xc0000010, 0x40000010, false, false);
    assert_int_equal(xl(0x40000000, &x), GPM_EFAULT);
    /* PD0 and PD1 disable one walk each. */
    st.reg[2] = 2 | PD0;
    assert_int_equal(xl(0x00400010, &x), GPM_EFAULT);
    expect(0xc0000010, 0x40000010, false, false);
    st.reg[2] = 2 | PD1;
    expect(0x00400010, 0x40500010, true, true);
    assert_int_equal(xl(0xc0000010, &x), GPM_EFAULT);
    /* N = 0: TTBR0 for everything (what Linux does). */
    st.reg[0] = SL1;
    st.reg[1] = 0;
    st.reg[2] = 0;
    expect(0xc0000010, 0x40000010, false, false);
}

static void test_short_endian_and_off(void **state)
{
    gpm__xlate_t x;

    (void)state;
    ram.big_endian = true;
    fake_phys_put32(&ram, SBE, 0x001, SEC(0x40600000, 2));
    st.reg[0] = SBE;
    st.reg[3] = SCTLR_M | SCTLR_EE;
    expect(0x00100010, 0x40600010, true, false);
    st.reg[3] = SCTLR_M;
    assert_int_equal(xl(0x00100010, &x), GPM_EFAULT);
    /* The MMU off: identity below 4 GiB. */
    st.reg[3] = 0;
    expect(0x40001234, 0x40001234, true, true);
    assert_int_equal(xl(0x100000000ull, &x), GPM_EFAULT);
    /* Above 32 bits never translates. */
    st.reg[3] = SCTLR_M;
    assert_int_equal(xl(0x100500000ull, &x), GPM_EFAULT);
}

static void test_lpae(void **state)
{
    gpm__xlate_t x;

    (void)state;
    use_lpae();
    expect(0x00400123, 0x40300123, true, true);
    assert_int_equal(xl(0x00400123, &x), 0);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    expect(0x00401000, 0x40301000, true, false);
    assert_int_equal(xl(0x00402000, &x), GPM_EFAULT);
    expect(0x00403000, 0x40303000, false, false);
    assert_int_equal(xl(0x00404000, &x), GPM_EFAULT); /* reserved */
    expect(0x00405010, 0xfffff00010ull, true, true);
    expect(0x00612345, 0x40212345, true, true);
    assert_int_equal(xl(0x00612345, &x), 0);
    assert_int_equal(x.page_left, 0x200000 - 0x12345);
    expect(0x00800000, 0x40310000, false, false);     /* APTable[0] */
    assert_int_equal(xl(0x00a00000, &x), GPM_EFAULT); /* AF = 0 */
    assert_int_equal(xl(0x00c00000, &x), GPM_EFAULT); /* level 2 */
    expect(0x40000010, 0x40000010, true, true);       /* 1G block */
    assert_int_equal(xl(0x40000000, &x), 0);
    assert_int_equal(x.page_left, 1ull << 30);
    assert_int_equal(xl(0x80000000, &x), GPM_EFAULT); /* level 1 */
    /* 0xc0000000 is TTBR1's (not LL1[3]): a kernel block. */
    expect(0xc0000010, 0x40000010, false, false);
    assert_int_equal(xl(0xc0200000, &x), GPM_EFAULT);
}

static void test_lpae_ranges(void **state)
{
    gpm__xlate_t x;

    (void)state;
    use_lpae();
    /* T0SZ = T1SZ = 0: TTBR0 for all, so LL1[3] shows. */
    st.reg[2] = EAE;
    expect(0xc0000010, 0x40000010, true, true);
    /* T0SZ = 2, T1SZ = 0: TTBR0 (from level 2) below 1 GiB. */
    st.reg[0] = LL2;
    st.reg[1] = LL1;
    st.reg[2] = EAE | 2;
    expect(0x00400123, 0x40300123, true, true);
    expect(0x40000010, 0x40000010, true, true); /* TTBR1 from level 1 */
    /* Both sizes set: the gap between the ranges faults. */
    st.reg[1] = LK2;
    st.reg[2] = EAE | 2 | T1SZ(2);
    expect(0x00400123, 0x40300123, true, true);
    assert_int_equal(xl(0x40000010, &x), GPM_EFAULT);
    assert_int_equal(xl(0xbfffffff, &x), GPM_EFAULT);
    expect(0xc0000010, 0x40000010, false, false);
    /* EPD0 / EPD1. */
    use_lpae();
    st.reg[2] |= EPD0;
    assert_int_equal(xl(0x00400000, &x), GPM_EFAULT);
    expect(0xc0000010, 0x40000010, false, false);
    st.reg[2] = TTBCR_LINUX | EPD1;
    expect(0x00400000, 0x40300000, true, true);
    assert_int_equal(xl(0xc0000010, &x), GPM_EFAULT);
    /* A TTBR outside RAM. */
    st.reg[2] = TTBCR_LINUX;
    st.reg[0] = 0x10000000;
    assert_int_equal(xl(0x00400000, &x), GPM_EFAULT);
    /* Big-endian long descriptors. */
    ram.big_endian = true;
    fake_phys_put64(&ram, BASE + 0x30000, 0, 0x40200000ull | BLOCK | URW);
    st.reg[0] = BASE + 0x30000;
    st.reg[2] = EAE | 2 | T1SZ(2);
    st.reg[3] = SCTLR_M | SCTLR_EE;
    expect(0x10, 0x40200010, true, true);
    st.reg[3] = SCTLR_M;
    assert_int_equal(xl(0x10, &x), GPM_EFAULT);
}

static void test_check_user(void **state)
{
    (void)state;
    assert_int_equal(check(0x00500000, 1u << 20, true), 0);
    assert_int_equal(check(0x005ffff0, 32, false), 0);
    assert_int_equal(check(0x005ffff0, 32, true), GPM_EROFS);
    assert_int_equal(check(0x00800000, 1, false), GPM_EFAULT);
    assert_int_equal(check(0x00700000, 4, true), GPM_EROFS);
    assert_int_equal(check(0x00400000, 2 * 4096, true), GPM_EROFS);
    assert_int_equal(check(0x00400000, 3 * 4096, true), GPM_EFAULT);
    assert_int_equal(check(0x00410000, 0x10000, true), 0);
    assert_int_equal(check(0x01000000, 16u << 20, true), 0);
    assert_int_equal(check(0xc0000000, 4, false), GPM_EFAULT);
    /* Past 4 GiB, and wrapping. */
    st.reg[3] = 0;
    assert_int_equal(check(0xfffff000, 0x1000, true), 0);
    assert_int_equal(check(0xfffff000, 0x1001, true), GPM_EFAULT);
    assert_int_equal(check(UINT64_MAX, 2, false), GPM_EFAULT);
    st.reg[3] = SCTLR_M;
    use_lpae();
    assert_int_equal(check(0x00400000, 4096, true), 0);
    assert_int_equal(check(0x00400ffc, 8, true), GPM_EROFS);
    assert_int_equal(check(0x00400ffc, 8, false), 0);
    assert_int_equal(check(0x00800000, 8, false), GPM_EFAULT);
    assert_int_equal(check(0x00a00000, 8, false), GPM_EFAULT);
    assert_int_equal(check(0x40000000, 1u << 30, true), 0);
    ram.reads = 0;
    assert_int_equal(check(0x00402000, 0, true), 0);
    assert_int_equal(ram.reads, 0);
}

static void test_hostile(void **state)
{
    gpm__mmu_state_t s = {{SL1, SL1, 3, SCTLR_M}};
    gpm__mmu_state_t l = {{LL1, LK2, TTBCR_LINUX, SCTLR_M}};
    gpm__xlate_t x;

    (void)state;
    /* A coarse table that is the first-level table itself. */
    fake_phys_put32(&ram, SL1, 0x001, COARSE(SL1));
    ram.reads = 0;
    assert_int_equal(xl(0x00100000, &x), GPM_EFAULT);
    assert_int_equal(ram.reads, 2);
    /* An LPAE table pointing back at itself, as in test_mmu_aarch64. */
    use_lpae();
    fake_phys_put64(&ram, LL1, 2, LL1 | TABLE);
    ram.reads = 0;
    assert_int_equal(xl(0x80000000, &x), GPM_EFAULT);
    assert_true(ram.reads <= 3);
    assert_true(
        fake_phys_garbage_walks(&ram, gpm__mmu_armv7_xlate, &s, 20000, 5) <= 2);
    assert_true(ram.refused > 0);
    assert_true(
        fake_phys_garbage_walks(&ram, gpm__mmu_armv7_xlate, &l, 20000, 6) <= 3);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_short_sections), T(test_short_pages),          T(test_short_afe),
        T(test_short_split),    T(test_short_endian_and_off), T(test_lpae),
        T(test_lpae_ranges),    T(test_check_user),           T(test_hostile),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
