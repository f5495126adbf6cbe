/*
 * test_mmu_mips.c - the MIPS walkers (csrc/arch/mmu_mips.c) and
 * gpm__mmu_check_user() over them, on fake Linux page tables in a
 * malloc'd RAM: MIPS32 (pgd_current -> 2 levels of 4-byte entries) and
 * MIPS64 (kernelsp -> thread_info -> task->mm->pgd -> 3 levels of 8-byte
 * entries, 2 MiB huge pmds), the fixed kernel segments, the writable rule
 * (_PAGE_WRITE and the dirty bit) and hostile tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_phys.h"

#define RAM_SIZE (8u << 20)
#define K0       0x80000000u /* kseg0 of a physical address */
#define CK0      0xffffffff80000000ull
#define XKPHYS   0x9800000000000000ull

/* MIPS32 PTE bits (4kc-malta headers). */
#define P32     1u
#define W32     2u
#define D32     0x100u
#define V32     0x80u
#define PGDCUR  0x1000u /* pgd_current[0] */
#define PGD32   0x2000u
#define PT32    0x3000u
#define PT32INV 0x4000u /* invalid_pte_table: all zero */

/* MIPS64 PTE bits (5kc-malta headers). */
#define P64    1ull
#define W64    2ull
#define HUGE64 0x10ull
#define D64    0x400ull
#define KSP    0x10000u /* kernelsp[0] */
#define STACK  0x20000u /* a 16 KiB-aligned kernel stack */
#define TASK   0x30000u
#define MM     0x31000u
#define TS_MM  0x498u
#define MM_PGD 0x38u
#define PGD64  0x40000u /* 8 KiB */
#define PMD64  0x42000u
#define PT64   0x43000u
#define PMD64B 0x44000u

static fake_phys_t ram;

static int xl32(uint64_t va, gpm__xlate_t *x)
{
    gpm__mmu_state_t st = {{PGDCUR}};

    return gpm__mmu_mips32_xlate(&st, va, fake_phys_read, &ram, x);
}

static int xl64(uint64_t va, gpm__xlate_t *x)
{
    gpm__mmu_state_t st = {{KSP, TS_MM, MM_PGD}};

    return gpm__mmu_mips64_xlate(&st, va, fake_phys_read, &ram, x);
}

/*
 * MIPS32 (VA -> PA): 0x00400000 rw+dirty -> 0x100000; 0x00401000 writable
 * but clean -> 0x101000; 0x00402000 read-only -> 0x102000; 0x00403000 not
 * present; 0x00800000 (directory entry 2) -> invalid_pte_table.
 * MIPS64: 0x120000000 rw+dirty -> 0x200000; +0x1000 read-only; a 2 MiB
 * huge page at 0x40000000 -> 0x400000, writable; 0x80000000 pmd entry
 * empty (pgd 2 is zero).
 */
static int setup(void **state)
{
    (void)state;
    fake_phys_init(&ram, 0, RAM_SIZE);
    fake_phys_put32(&ram, PGDCUR, 0, K0 + PGD32);
    for (unsigned i = 0; i < 1024; i++)
        fake_phys_put32(&ram, PGD32, i, K0 + PT32INV);
    fake_phys_put32(&ram, PGD32, 1, K0 + PT32);
    fake_phys_put32(&ram, PT32, 0, (0x100u << 12) | P32 | W32 | D32 | V32);
    fake_phys_put32(&ram, PT32, 1, (0x101u << 12) | P32 | W32);
    fake_phys_put32(&ram, PT32, 2, (0x102u << 12) | P32 | V32);
    fake_phys_put32(&ram, PT32, 3, (0x103u << 12) | W32 | D32);

    fake_phys_put64(&ram, KSP, 0, XKPHYS + STACK + 0x3f00);
    fake_phys_put64(&ram, STACK, 0, XKPHYS + TASK);
    fake_phys_put64(&ram, TASK + TS_MM, 0, XKPHYS + MM);
    fake_phys_put64(&ram, MM + MM_PGD, 0, XKPHYS + PGD64);
    fake_phys_put64(&ram, PGD64, 4, CK0 + PMD64); /* 0x100000000 - */
    fake_phys_put64(&ram, PGD64, 1, XKPHYS + PMD64B);
    fake_phys_put64(&ram, PMD64, 0x120000000ull >> 21 & 511, XKPHYS + PT64);
    fake_phys_put64(&ram, PT64, 0, (0x200ull << 14) | P64 | W64 | D64);
    fake_phys_put64(&ram, PT64, 1, (0x201ull << 14) | P64);
    /* 0x40000000: pgd 1 -> PMD64B, entry 0: huge. */
    fake_phys_put64(&ram, PMD64B, 0,
                    (0x400ull << 14) | P64 | W64 | D64 | HUGE64);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_phys_free(&ram);
    return 0;
}

static void test_mips32_user(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl32(0x400123, &x), 0);
    assert_int_equal(x.phys, 0x100123);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    assert_true(x.user);
    assert_true(x.writable);
    /* Writable but clean: a host write would not make it dirty. */
    assert_int_equal(xl32(0x401000, &x), 0);
    assert_true(x.user);
    assert_false(x.writable);
    assert_int_equal(xl32(0x402ffc, &x), 0);
    assert_int_equal(x.phys, 0x102ffc);
    assert_false(x.writable);
    assert_int_equal(xl32(0x403000, &x), GPM_EFAULT);
    /* An empty directory entry points at all-invalid PTEs. */
    assert_int_equal(xl32(0x800000, &x), GPM_EFAULT);
}

static void test_mips32_segments(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* kseg0 and kseg1 map physical memory, for the kernel only. */
    assert_int_equal(xl32(0x80001234, &x), 0);
    assert_int_equal(x.phys, 0x1234);
    assert_false(x.user);
    assert_false(x.writable);
    assert_int_equal(xl32(0xa0005678, &x), 0);
    assert_int_equal(x.phys, 0x5678);
    assert_false(x.user);
    /* kseg2 and above 32 bits: not translated. */
    assert_int_equal(xl32(0xc0000000, &x), GPM_EFAULT);
    assert_int_equal(xl32(1ull << 32, &x), GPM_EFAULT);
    /* pgd_current or a table that is not a kseg0 address. */
    fake_phys_put32(&ram, PGDCUR, 0, PGD32);
    assert_int_equal(xl32(0x400000, &x), GPM_EFAULT);
    fake_phys_put32(&ram, PGDCUR, 0, K0 + PGD32);
    fake_phys_put32(&ram, PGD32, 1, 0xc0003000u);
    assert_int_equal(xl32(0x400000, &x), GPM_EFAULT);
}

static void test_mips32_check_user(void **state)
{
    const gpm__arch_ops_t *o = gpm__arch_ops(GPM_ARCH_MIPSEL);
    gpm__mmu_state_t st = {{PGDCUR}};

    (void)state;
    assert_int_equal(
        gpm__mmu_check_user(o, &st, 0x400000, 4096, true, fake_phys_read, &ram),
        0);
    assert_int_equal(
        gpm__mmu_check_user(o, &st, 0x400ff0, 32, true, fake_phys_read, &ram),
        GPM_EROFS);
    assert_int_equal(gpm__mmu_check_user(o, &st, 0x401000, 8192, false,
                                         fake_phys_read, &ram),
                     0);
    /* Read-only then absent: the fault wins. */
    assert_int_equal(gpm__mmu_check_user(o, &st, 0x401000, 3 * 4096, true,
                                         fake_phys_read, &ram),
                     GPM_EFAULT);
    /* The kernel's segments are never the user's. */
    assert_int_equal(
        gpm__mmu_check_user(o, &st, 0x80000000, 4, false, fake_phys_read, &ram),
        GPM_EFAULT);
    assert_int_equal(
        gpm__mmu_check_user(o, &st, 0x7ffffffe, 4, false, fake_phys_read, &ram),
        GPM_EFAULT);
}

static void test_mips64_user(void **state)
{
    gpm__xlate_t x;

    (void)state;
    assert_int_equal(xl64(0x120000010ull, &x), 0);
    assert_int_equal(x.phys, 0x200010);
    assert_int_equal(x.page_left, 0x1000 - 0x10);
    assert_true(x.user);
    assert_true(x.writable);
    assert_int_equal(xl64(0x120001000ull, &x), 0);
    assert_int_equal(x.phys, 0x201000);
    assert_false(x.writable);
    assert_int_equal(xl64(0x120002000ull, &x), GPM_EFAULT);
    /* A 2 MiB huge pmd entry. */
    assert_int_equal(xl64(0x40123456ull, &x), 0);
    assert_int_equal(x.phys, 0x400000 + 0x123456);
    assert_int_equal(x.page_left, 0x200000 - 0x123456);
    assert_true(x.writable);
    /* An empty pmd entry, an address above TASK_SIZE64. */
    assert_int_equal(xl64(0x80000000ull, &x), GPM_EFAULT);
    assert_int_equal(xl64(1ull << 40, &x), GPM_EFAULT);
    assert_int_equal(xl64(0x4000000000000000ull, &x), GPM_EFAULT);
}

static void test_mips64_chain(void **state)
{
    gpm__xlate_t x;

    (void)state;
    /* ckseg0, ckseg1 and xkphys are fixed; the rest faults. */
    assert_int_equal(xl64(CK0 + 0x1234, &x), 0);
    assert_int_equal(x.phys, 0x1234);
    assert_false(x.user);
    assert_int_equal(xl64(0xffffffffa0000010ull, &x), 0);
    assert_int_equal(x.phys, 0x10);
    assert_int_equal(xl64(XKPHYS + 0x5000, &x), 0);
    assert_int_equal(x.phys, 0x5000);
    assert_false(x.writable);
    assert_int_equal(xl64(0xffffffffc0000000ull, &x), GPM_EFAULT);
    assert_int_equal(xl64(0xc000000000000000ull, &x), GPM_EFAULT);
    /* A kernel thread (mm NULL) has no user memory. */
    fake_phys_put64(&ram, TASK + TS_MM, 0, 0);
    assert_int_equal(xl64(0x120000000ull, &x), GPM_EFAULT);
    /* A task pointer that is not a kernel address. */
    fake_phys_put64(&ram, TASK + TS_MM, 0, XKPHYS + MM);
    fake_phys_put64(&ram, STACK, 0, 0x30000);
    assert_int_equal(xl64(0x120000000ull, &x), GPM_EFAULT);
    fake_phys_put64(&ram, STACK, 0, XKPHYS + TASK);
    /* The stack pointer anywhere in the stack finds its base. */
    fake_phys_put64(&ram, KSP, 0, XKPHYS + STACK + 8);
    assert_int_equal(xl64(0x120000000ull, &x), 0);
    assert_int_equal(x.phys, 0x200000);
}

/*
 * RAM full of random table pointers (kernel addresses, a quarter of them
 * past the end of RAM) and random addresses: every walk ends within its
 * bounded reads, and reads outside RAM are refused, not made.
 */
static unsigned garbage(gpm__xlate_fn fn, const gpm__mmu_state_t *st, bool is64,
                        uint64_t seed)
{
    unsigned most = 0;

    for (uint64_t i = 0; i < RAM_SIZE; i += 8) {
        uint64_t r = fake_rand(&seed),
                 pa = fake_rand(&seed) % (RAM_SIZE * 4 / 3);
        uint64_t v = is64 ? XKPHYS + (pa & ~7ull) + (r & 0x7ff)
                          : (K0 + (pa & ~3ull)) | ((K0 + (r & 0xfff)) << 32);

        memcpy(ram.mem + i, &v, 8);
    }
    /* The way to the tables stays; the tables are garbage. */
    fake_phys_put32(&ram, PGDCUR, 0, K0 + PGD32);
    fake_phys_put64(&ram, KSP, 0, XKPHYS + STACK + 0x3f00);
    fake_phys_put64(&ram, STACK, 0, XKPHYS + TASK);
    fake_phys_put64(&ram, TASK + TS_MM, 0, XKPHYS + MM);
    fake_phys_put64(&ram, MM + MM_PGD, 0, XKPHYS + PGD64);
    for (unsigned i = 0; i < 20000; i++) {
        gpm__xlate_t x;
        uint64_t va = fake_rand(&seed) & (is64 ? 0xffffffffffull : 0x7fffffff);
        unsigned before = ram.reads;

        if (fn(st, va, fake_phys_read, &ram, &x) == 0) {
            assert_true(x.page_left > 0);
            assert_true(x.phys < (1ull << 48));
        }
        if (ram.reads - before > most)
            most = ram.reads - before;
    }
    return most;
}

static void test_hostile_tables(void **state)
{
    gpm__mmu_state_t s32 = {{PGDCUR}}, s64 = {{KSP, TS_MM, MM_PGD}};
    gpm__xlate_t x;

    (void)state;
    /* A directory entry pointing back at the directory: 3 reads. */
    fake_phys_put32(&ram, PGD32, 1, K0 + PGD32);
    ram.reads = 0;
    (void)xl32(0x400000, &x);
    assert_int_equal(ram.reads, 3);
    ram.reads = 0;
    assert_int_equal(xl64(0x120000000ull, &x), 0);
    assert_int_equal(ram.reads, 7);
    ram.refused = 0;
    assert_true(garbage(gpm__mmu_mips32_xlate, &s32, false, 1) <= 3);
    assert_true(ram.refused > 0);
    ram.refused = 0;
    assert_true(garbage(gpm__mmu_mips64_xlate, &s64, true, 2) <= 7);
    assert_true(ram.refused > 0);
    /* Input addresses outside RAM. */
    s32.reg[0] = RAM_SIZE;
    s64.reg[0] = RAM_SIZE;
    assert_int_equal(
        gpm__mmu_mips32_xlate(&s32, 0x400000, fake_phys_read, &ram, &x),
        GPM_EFAULT);
    assert_int_equal(
        gpm__mmu_mips64_xlate(&s64, 0x400000, fake_phys_read, &ram, &x),
        GPM_EFAULT);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_mips32_user), T(test_mips32_segments), T(test_mips32_check_user),
        T(test_mips64_user), T(test_mips64_chain),    T(test_hostile_tables),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
