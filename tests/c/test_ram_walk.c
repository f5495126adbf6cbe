/*
 * test_ram_walk.c - the x86_64 page walk and the guarded guest memory
 * access over fake page tables in a malloc'd "RAM".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qemu/guest_ram.h"

/* An x86_64 walk (4-level: CR4 0) from @cr3, for the calls below. */
static const gpm__ram_walk_t *walk(uint64_t cr3)
{
    static gpm__ram_walk_t w;

    w.ops = gpm__arch_ops(GPM_ARCH_X86_64);
    w.st.reg[0] = cr3;
    w.st.reg[1] = 0;
    return &w;
}

#define RAM_SIZE (8u << 20) /* 8 MiB */
#define P        1ull
#define RW       2ull
#define US       4ull
#define PS       0x80ull
#define NX       (1ull << 63)

/* Table pages at fixed physical addresses. */
#define PML4    0x1000ull
#define PDPT    0x2000ull
#define PD      0x3000ull
#define PT      0x4000ull
#define PT_KERN 0x5000ull
#define CR3     (PML4 | 0x5ull) /* PCID 5 in the low bits */

typedef struct fixture {
    uint8_t *mem;
    gpm__ram_t ram;
} fixture_t;

static void set_entry(fixture_t *f, uint64_t table, unsigned idx, uint64_t e)
{
    memcpy(f->mem + table + idx * 8, &e, 8);
}

/*
 * Layout (VA -> PA):
 *  0x00400000 4K user rw      -> 0x100000
 *  0x00401000 4K user ro      -> 0x101000 (a zero-page-like mapping)
 *  0x00402000 not present
 *  0x00403000 4K supervisor rw-> 0x103000
 *  0x00404000 4K user rw      -> 0x104000
 *  0x00405000 4K user rw      -> 0x7ff000 + ... beyond RAM: 0x900000
 *  0x00600000 2M user rw      -> 0x200000
 *  0x40000000 1G user rw      -> 0 (whole first GiB; RAM only 8 MiB)
 *  0x80000000 PDPT entry not present
 *  0xffff800000000000 kernel 2M -> 0x400000 (PML4 256, supervisor)
 */
static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    uint8_t *mem = calloc(1, RAM_SIZE);

    f->mem = mem;
    gpm__ram_init_buffer(&f->ram, mem, RAM_SIZE, 0);
    set_entry(f, PML4, 0, PDPT | P | RW | US);
    set_entry(f, PDPT, 0, PD | P | RW | US);
    set_entry(f, PD, 2, PT | P | RW | US | NX);
    set_entry(f, PT, 0, 0x100000 | P | RW | US);
    set_entry(f, PT, 1, 0x101000 | P | US);
    set_entry(f, PT, 2, 0x102000 | RW | US);
    set_entry(f, PT, 3, 0x103000 | P | RW);
    set_entry(f, PT, 4, 0x104000 | P | RW | US | NX);
    set_entry(f, PT, 5, 0x900000 | P | RW | US);
    set_entry(f, PD, 3, 0x200000 | P | RW | US | PS);
    set_entry(f, PDPT, 1, 0x0 | P | RW | US | PS);
    set_entry(f, PML4, 256, PT_KERN | P | RW);
    set_entry(f, PT_KERN, 0, (PT_KERN + 0x1000) | P | RW);
    set_entry(f, PT_KERN + 0x1000, 0, 0x400000 | P | RW | PS);
    memcpy(mem + 0x100000, "user-rw page", 12);
    memcpy(mem + 0x101000, "\0\0\0\0", 4);
    memcpy(mem + 0x103000, "kernel data", 11);
    memcpy(mem + 0x104000, "next page", 9);
    memcpy(mem + 0x200000 + 0x1234, "huge 2M", 7);
    memcpy(mem + 0x400000 + 0x10, "kernel 2M", 9);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    free(f->mem);
    free(f);
    return 0;
}

static void test_xlate_4k(void **state)
{
    fixture_t *f = *state;
    gpm__xlate_t x;

    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 0x400123, &x), 0);
    assert_int_equal(x.phys, 0x100123);
    assert_int_equal(x.page_left, 0x1000 - 0x123);
    assert_true(x.writable);
    assert_true(x.user);
    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 0x401000, &x), 0);
    assert_false(x.writable);
    assert_true(x.user);
    /* A kernel page: "writable" means by user mode, so it is not. */
    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 0x403000, &x), 0);
    assert_false(x.writable);
    assert_false(x.user);
    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 0x402000, &x),
                     GPM_EFAULT);
}

static void test_xlate_huge(void **state)
{
    fixture_t *f = *state;
    gpm__xlate_t x;

    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 0x601234, &x), 0);
    assert_int_equal(x.phys, 0x201234);
    assert_int_equal(x.page_left, 0x200000 - 0x1234);
    assert_int_equal(
        gpm__ram_xlate(&f->ram, walk(CR3), 0x40000000 + 0x5000, &x), 0);
    assert_int_equal(x.phys, 0x5000);
    assert_int_equal(x.page_left, (1ull << 30) - 0x5000);
    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 0x80000000, &x),
                     GPM_EFAULT);
    assert_int_equal(
        gpm__ram_xlate(&f->ram, walk(CR3), 0xffff800000000010ull, &x), 0);
    assert_int_equal(x.phys, 0x400010);
    assert_false(x.user);
}

static void test_xlate_bad(void **state)
{
    fixture_t *f = *state;
    gpm__xlate_t x;

    /* Not canonical. */
    assert_int_equal(
        gpm__ram_xlate(&f->ram, walk(CR3), 0x0000800000000000ull, &x),
        GPM_EFAULT);
    /* A PML4 outside RAM. */
    assert_int_equal(
        gpm__ram_xlate(&f->ram, walk(0x7fff0000000ull), 0x400000, &x),
        GPM_EFAULT);
    /* A table pointer outside RAM. */
    set_entry(f, PML4, 1, 0x123456789000ull | P | RW | US);
    assert_int_equal(gpm__ram_xlate(&f->ram, walk(CR3), 1ull << 39, &x),
                     GPM_EFAULT);
}

static void test_read_virt(void **state)
{
    fixture_t *f = *state;
    char buf[32];

    memset(buf, 0, sizeof(buf));
    assert_int_equal(gpm__ram_read_virt(&f->ram, walk(CR3), 0x400000, buf, 12,
                                        GPM__RAM_USER),
                     0);
    assert_string_equal(buf, "user-rw page");
    /* Read-only user pages can be read. */
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x401000, buf, 4, GPM__RAM_USER),
        0);
    /* Supervisor pages only without GPM__RAM_USER. */
    assert_int_equal(gpm__ram_read_virt(&f->ram, walk(CR3), 0x403000, buf, 11,
                                        GPM__RAM_USER),
                     GPM_EFAULT);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x403000, buf, 11, 0), 0);
    assert_string_equal(buf, "kernel data");
    memset(buf, 0, sizeof(buf));
    assert_int_equal(gpm__ram_read_virt(&f->ram, walk(CR3),
                                        0xffff800000000010ull, buf, 9, 0),
                     0);
    assert_string_equal(buf, "kernel 2M");
    memset(buf, 0, sizeof(buf));
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x601234, buf, 7, GPM__RAM_USER),
        0);
    assert_string_equal(buf, "huge 2M");
    /* Not present, beyond RAM, wrapping. */
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x402000, buf, 1, GPM__RAM_USER),
        GPM_EFAULT);
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x405000, buf, 1, GPM__RAM_USER),
        GPM_EFAULT);
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), ~0ull - 2, buf, 8, 0),
        GPM_EFAULT);
    /* Zero length touches nothing. */
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x402000, buf, 0, 0), 0);
}

static void test_read_cross_page(void **state)
{
    fixture_t *f = *state;
    char buf[16];

    /* 0x403ffc..0x404004: supervisor page then user page. */
    memcpy(f->mem + 0x103ffc, "ABCD", 4);
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x403ffc, buf, 8, 0), 0);
    assert_memory_equal(buf, "ABCDnext", 8);
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x403ffc, buf, 8, GPM__RAM_USER),
        GPM_EFAULT);
    /* 0x400ffe..0x401002: rw page then ro page: readable. */
    memcpy(f->mem + 0x100ffe, "xy", 2);
    assert_int_equal(
        gpm__ram_read_virt(&f->ram, walk(CR3), 0x400ffe, buf, 4, GPM__RAM_USER),
        0);
    assert_memory_equal(buf, "xy\0\0", 4);
}

static void test_write_virt(void **state)
{
    fixture_t *f = *state;

    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x400004, "RW!", 3), 0);
    assert_memory_equal(f->mem + 0x100004, "RW!", 3);
    /* The zero-page-like read-only page is never written. */
    assert_int_equal(gpm__ram_write_virt(&f->ram, walk(CR3), 0x401000, "X", 1),
                     GPM_EROFS);
    assert_memory_equal(f->mem + 0x101000, "\0", 1);
    /* Supervisor pages are refused too, as not the program's memory. */
    assert_int_equal(gpm__ram_write_virt(&f->ram, walk(CR3), 0x403000, "X", 1),
                     GPM_EFAULT);
    assert_int_equal(f->mem[0x103000], 'k');
    /* Not present; beyond RAM. */
    assert_int_equal(gpm__ram_write_virt(&f->ram, walk(CR3), 0x402000, "X", 1),
                     GPM_EFAULT);
    assert_int_equal(gpm__ram_write_virt(&f->ram, walk(CR3), 0x405000, "X", 1),
                     GPM_EFAULT);
    /* Huge pages. */
    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x600010, "big", 3), 0);
    assert_memory_equal(f->mem + 0x200010, "big", 3);
    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x40000000 + 0x7ff000, "1G", 2),
        0);
    assert_memory_equal(f->mem + 0x7ff000, "1G", 2);
    /* 1G page maps beyond the end of RAM. */
    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x40000000 + RAM_SIZE, "X", 1),
        GPM_EFAULT);
}

static void test_write_cross_page_all_or_nothing(void **state)
{
    fixture_t *f = *state;

    /* rw then ro: nothing may be written, not even the rw prefix. */
    memset(f->mem + 0x100ff0, '.', 16);
    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x400ffc, "abcdefgh", 8),
        GPM_EROFS);
    assert_memory_equal(f->mem + 0x100ffc, "....", 4);
    assert_memory_equal(f->mem + 0x101000, "\0\0\0\0", 4);
    /* rw then rw (PT entries 4 and 5: 5 is outside RAM). */
    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x404ffe, "abcd", 4),
        GPM_EFAULT);
    /* Across the 2M page into the next PD entry (not present). */
    assert_int_equal(
        gpm__ram_write_virt(&f->ram, walk(CR3), 0x7ffffe, "abcd", 4),
        GPM_EFAULT);
    assert_int_equal(f->mem[0x3ffffe], 0);
}

static void test_phys(void **state)
{
    fixture_t *f = *state;
    gpm__ram_t split;
    char buf[8];

    assert_non_null(gpm__ram_phys(&f->ram, RAM_SIZE - 8, 8));
    assert_null(gpm__ram_phys(&f->ram, RAM_SIZE - 8, 9));
    assert_null(gpm__ram_phys(&f->ram, RAM_SIZE, 1));
    assert_null(gpm__ram_phys(&f->ram, ~0ull, 2));
    assert_int_equal(gpm__ram_read_phys(&f->ram, 0x100000, buf, 4), 0);
    assert_memory_equal(buf, "user", 4);
    assert_int_equal(gpm__ram_read_phys(&f->ram, RAM_SIZE, buf, 1), GPM_EFAULT);
    /* A split layout: 4 MiB low, the other 4 MiB at 4 GiB. */
    gpm__ram_init_buffer(&split, f->mem, RAM_SIZE, 4u << 20);
    assert_ptr_equal(gpm__ram_phys(&split, 0x100000000ull, 1),
                     f->mem + (4u << 20));
    assert_null(gpm__ram_phys(&split, 4u << 20, 1));
    assert_null(gpm__ram_phys(&split, 0x100000000ull + (4u << 20), 1));
    assert_null(gpm__ram_phys(&split, 0x100000000ull + (4u << 20) - 1, 2));
}

static void test_open_errors(void **state)
{
    gpm__ram_t r;

    (void)state;
    assert_int_equal(gpm__ram_open(&r, "/nonexistent/ram", 4096, 0),
                     GPM_ENOENT);
    assert_int_equal(gpm__ram_open(&r, "/dev/null", 0, 0), GPM_EINVAL);
    assert_int_equal(gpm__ram_open(&r, "/dev/null", 4096, 0), GPM_EINVAL);
    gpm__ram_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_xlate_4k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xlate_huge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_xlate_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_virt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_cross_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_virt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_cross_page_all_or_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_phys, setup, teardown),
        cmocka_unit_test(test_open_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
