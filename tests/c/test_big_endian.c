/*
 * test_big_endian.c - the core on big-endian guests, through a fake CPU:
 * GPM_ARCH_MIPS (32-bit) and GPM_ARCH_MIPS64 (64-bit), both big-endian,
 * with GPM_ARCH_MIPSEL as the little-endian control.
 *
 * What is checked, for every value that crosses into or out of the guest:
 *   - registers: the hypercall's magic, op, channel and arguments are read
 *     from v0, a0-a3 (GDB 2, 4-7) and the result written to v0 only, as a
 *     value of the guest's word (32 bits on mips: upper bits ignored going
 *     in, errors zero-extended coming out); no other register changes;
 *   - guest memory: the bytes of a WRITE, GET_CHANNEL and ERROR are taken
 *     in address order and a READ stores them in address order, exactly at
 *     the buffer, nothing around it (the core never reinterprets them as
 *     integers of the guest's order);
 *   - the daemon channel: frames the guest reads are little-endian
 *     (gpm/wire.h) whatever the guest's order, and a reply written in the
 *     guest's own (big-endian) order is not taken for a frame;
 *   - the shared-memory rings (gpm/ring_abi.h): the header, indices and
 *     record headers are little-endian words whatever the guest's order,
 *     payloads bytes in address order, and a record header in the guest's
 *     own order breaks only that ring;
 *   - the inventory: ELF headers and the descriptor note are read in the
 *     file's byte order; a big-endian MIPS binary is mips (or mips64),
 *     never mipsel, and the other way round;
 *   - the injector: the pointer arrays it writes (argv, envp) are words of
 *     the guest's size and byte order (every injectable arch; an arch
 *     that has no injector registers yet is refused with GPM_ENOSYS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#define FAKE_PAGES 80u
#include "core/syscalls.h"
#include "elf_builder.h"
#include "fake_cpu.h"
#include "gpm/daemon_proto.h"
#include "gpm/ring_abi.h"

#define EM_MIPS 8
#define EM_PPC  20
#define MIPS_V0 2u

/* The arches of one test run: a big-endian arch and its word size. */
typedef struct be_case {
    gpm_arch_t arch;
    unsigned word;
} be_case_t;

static const be_case_t mips32 = {GPM_ARCH_MIPS, 32};
static const be_case_t mips64 = {GPM_ARCH_MIPS64, 64};

typedef struct fixture {
    const be_case_t *c;
    gpm_manager_t *m;
    fake_cpu_t *cpu;
    GByteArray *got; /* bytes the host received */
    unsigned calls;
} fixture_t;

static void recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                    void *opaque)
{
    fixture_t *f = opaque;

    (void)id;
    f->calls++;
    g_byte_array_append(f->got, buf, (guint)len);
}

static int setup_case(void **state, const be_case_t *c)
{
    fixture_t *f = g_new0(fixture_t, 1);
    gpm_manager_config_t cfg = {.arch = c->arch};

    f->c = c;
    assert_int_equal(gpm_manager_new(&cfg, &f->m), 0);
    f->cpu = g_new(fake_cpu_t, 1);
    fake_init(f->cpu);
    f->got = g_byte_array_new();
    *state = f;
    return 0;
}

static int setup_mips32(void **state)
{
    return setup_case(state, &mips32);
}

static int setup_mips64(void **state)
{
    return setup_case(state, &mips64);
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    gpm_manager_free(f->m);
    g_byte_array_free(f->got, TRUE);
    g_free(f->cpu);
    g_free(f);
    return 0;
}

static uint64_t word_mask(const fixture_t *f)
{
    return f->c->word == 64 ? UINT64_MAX : UINT32_MAX;
}

/*
 * Runs one hypercall with @junk in the upper half of every argument
 * register (ignored on a 32-bit guest) and checks that only v0 changed;
 * returns v0 as the guest's word.
 */
static uint64_t hc(fixture_t *f, uint64_t op, uint64_t chan, uint64_t a1,
                   uint64_t a2)
{
    const uint64_t junk = f->c->word == 32 ? 0xa5a5a5a500000000ull : 0;
    uint64_t before[FAKE_NREGS];
    bool handled = false;

    f->cpu->regs[2] = junk | GPM_HC_MAGIC;
    f->cpu->regs[4] = junk | op;
    f->cpu->regs[5] = junk | chan;
    f->cpu->regs[6] = junk | a1;
    f->cpu->regs[7] = junk | a2;
    memcpy(before, f->cpu->regs, sizeof(before));
    assert_int_equal(gpm_hypercall_handle(f->m, &fake_ops, f->cpu, &handled),
                     0);
    assert_true(handled);
    for (unsigned i = 0; i < FAKE_NREGS; i++)
        if (i != MIPS_V0)
            assert_int_equal(f->cpu->regs[i], before[i]);
    /* Written as a value of the guest's word: no bits above it. */
    assert_int_equal(f->cpu->regs[MIPS_V0] & ~word_mask(f), 0);
    return f->cpu->regs[MIPS_V0];
}

static void test_arch_rows(void **state)
{
    fixture_t *f = *state;
    const gpm_arch_info_t *a = gpm_arch_info(f->c->arch);
    const unsigned want[GPM_HC_NREGS] = {2, 4, 5, 6, 7};

    assert_true(a->big_endian);
    assert_int_equal(a->word_bits, f->c->word);
    assert_int_equal(a->elf_machine, EM_MIPS);
    assert_int_equal(a->elf_class, f->c->word == 64 ? 2 : 1);
    assert_memory_equal(a->hc_regs, want, sizeof(want));
    assert_int_equal(a->ret_reg, MIPS_V0);
    assert_false(gpm_arch_info(GPM_ARCH_MIPSEL)->big_endian);
    assert_true(gpm_arch_info(GPM_ARCH_PPC)->big_endian);
}

static void test_registers(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id;
    bool handled = true;

    assert_int_equal(gpm_channel_allocate(f->m, "be", recv_cb, NULL, f, &id),
                     0);
    /* The channel id is a0's low word (junk above it on mips). */
    assert_int_equal(hc(f, GPM_HC_OP_START, id, 0, 0), 0);
    assert_int_equal(gpm_channel_started(f->m, id), 1);
    /* Errors come back as the guest's word: -9 is 0xfffffff7 on mips. */
    assert_int_equal(hc(f, GPM_HC_OP_WRITE, 0x7fffffff, FAKE_BASE, 4),
                     (uint64_t)(int64_t)GPM_HC_EBADF & word_mask(f));
    assert_int_equal(hc(f, 99, 0, 0, 0),
                     (uint64_t)(int64_t)GPM_HC_ENOSYS & word_mask(f));
    /* The magic in the wrong byte order is not a hypercall. */
    f->cpu->regs[2] = 0xd3c03713u;
    f->cpu->regs[4] = GPM_HC_OP_START;
    assert_int_equal(gpm_hypercall_handle(f->m, &fake_ops, f->cpu, &handled),
                     0);
    assert_false(handled);
    assert_int_equal(f->cpu->regs[2], 0xd3c03713u);
}

static void test_memory_bytes(void **state)
{
    fixture_t *f = *state;
    static const uint8_t data[8] = {0x11, 0x22, 0x33, 0x44,
                                    0x55, 0x66, 0x77, 0x88};
    static const char name[] = "be-chan";
    const uint64_t buf = FAKE_BASE + 0x101; /* odd: no word alignment */
    uint8_t *mem = f->cpu->mem + 0x101;
    gpm_channel_id_t id;

    assert_int_equal(gpm_channel_allocate(f->m, name, recv_cb, NULL, f, &id),
                     0);
    /* GET_CHANNEL reads the name in address order. */
    memcpy(f->cpu->mem, name, sizeof(name) - 1);
    assert_int_equal(
        hc(f, GPM_HC_OP_GET_CHANNEL, 0, FAKE_BASE, sizeof(name) - 1), id);
    assert_int_equal(hc(f, GPM_HC_OP_START, id, 0, 0), 0);

    /* Guest -> host: the bytes as they are in guest memory. */
    memcpy(mem, data, sizeof(data));
    assert_int_equal(hc(f, GPM_HC_OP_WRITE, id, buf, sizeof(data)),
                     sizeof(data));
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->got->len, sizeof(data));
    assert_memory_equal(f->got->data, data, sizeof(data));

    /* Host -> guest: stored in address order, nothing around it. */
    memset(f->cpu->mem, 0xee, 0x200);
    assert_int_equal(gpm_channel_write(f->m, id, data, sizeof(data)), 0);
    assert_int_equal(hc(f, GPM_HC_OP_READ, id, buf, 64), sizeof(data));
    assert_memory_equal(mem, data, sizeof(data));
    assert_int_equal(mem[-1], 0xee);
    assert_int_equal(mem[sizeof(data)], 0xee);

    /* A partial READ leaves the rest queued, in order. */
    assert_int_equal(gpm_channel_write(f->m, id, data, sizeof(data)), 0);
    assert_int_equal(hc(f, GPM_HC_OP_READ, id, buf, 3), 3);
    assert_int_equal(hc(f, GPM_HC_OP_READ, id, buf + 3, 64), 5);
    assert_memory_equal(mem, data, sizeof(data));
}

/* The 32-bit guest's address space ends at 4 GiB, whatever a1 holds. */
static void test_address_word(void **state)
{
    fixture_t *f = *state;
    gpm_channel_id_t id;

    assert_int_equal(gpm_channel_allocate(f->m, "w", recv_cb, NULL, f, &id), 0);
    assert_int_equal(hc(f, GPM_HC_OP_START, id, 0, 0), 0);
    /* A buffer at FAKE_BASE with junk above bit 31 is FAKE_BASE on mips. */
    memcpy(f->cpu->mem, "abcd", 4);
    assert_int_equal(hc(f, GPM_HC_OP_WRITE, id, FAKE_BASE, 4), 4);
    assert_memory_equal(f->got->data, "abcd", 4);
    if (f->c->word == 32)
        assert_int_equal(hc(f, GPM_HC_OP_WRITE, id, 0xfffffff0u, 0x20),
                         (uint32_t)GPM_HC_EFAULT);
    else
        assert_int_equal(
            hc(f, GPM_HC_OP_WRITE, id, 0xfffffffffffffff0ull, 0x20),
            (uint64_t)(int64_t)GPM_HC_EFAULT);
}

/* ------------------------------------------------------------------ */
/* The daemon channel: little-endian frames on a big-endian guest. */

static char *tmpdir;

static char *put_elf(const char *file, elf_spec_t spec, bool big)
{
    char *p = g_build_filename(tmpdir, file, NULL);

    assert_int_equal(elf_write_order(p, &spec, big), 0);
    return p;
}

typedef struct events {
    GPtrArray *lines;
} events_t;

static void event_cb(const gpm_event_t *ev, void *opaque)
{
    events_t *e = opaque;

    g_ptr_array_add(e->lines, g_strdup_printf("%d|%s|%lld|%s", ev->type,
                                              ev->name ? ev->name : "",
                                              (long long)ev->pid,
                                              ev->text ? ev->text : ""));
}

/* A guest -> host frame at @mem; @big: header in big-endian order. */
static size_t put_reply(uint8_t *mem, uint16_t type, uint32_t seq,
                        const uint8_t *payload, uint32_t len, bool big)
{
    elf_put(big, mem, GPM_DFRAME_MAGIC, 4);
    elf_put(big, mem + 4, GPM_DFRAME_VERSION, 2);
    elf_put(big, mem + 6, type, 2);
    elf_put(big, mem + 8, seq, 4);
    elf_put(big, mem + 12, len, 4);
    memcpy(mem + 16, payload, len);
    return 16 + len;
}

static void test_daemon_frames(void **state)
{
    fixture_t *f = *state;
    events_t ev = {g_ptr_array_new_with_free_func(g_free)};
    elf_spec_t spec = {f->c->word == 64, EM_MIPS, true, 1, "beplug"};
    char *path = put_elf(f->c->word == 64 ? "be64" : "be32", spec, true);
    uint8_t *mem = f->cpu->mem;
    gpm_channel_id_t id, daemon;
    uint8_t payload[16];
    uint32_t seq, len;
    size_t n;
    char why[512];

    gpm_manager_set_event_cb(f->m, event_cb, &ev);
    assert_int_equal(gpm_guest_plugin_add(f->m, "beplug", path, recv_cb, NULL,
                                          f, &id, why, sizeof(why)),
                     0);
    assert_int_equal(gpm_channel_lookup(f->m, GPM_DAEMON_CHANNEL, &daemon), 0);

    /* The guest reads the LOAD frame: every integer little-endian. */
    n = (size_t)hc(f, GPM_HC_OP_READ, daemon, FAKE_BASE, 4096);
    assert_true(n > 16 + 8 + 6);
    assert_memory_equal(mem, "GPMD", 4);
    assert_memory_equal(mem + 4, "\x01\x00", 2);
    assert_memory_equal(mem + 6, "\x01\x00", 2); /* GPM_DFRAME_LOAD */
    seq = gpm_wire_get32(mem + 8);
    len = gpm_wire_get32(mem + 12);
    assert_int_equal(16 + len, n);
    assert_memory_equal(mem + 16, "\x06\x00", 2); /* name_len */
    assert_int_equal(gpm_wire_get32(mem + 20), n - 16 - 8 - 6);
    assert_memory_equal(mem + 24, "beplug", 6);
    /* The ELF goes as its bytes: big-endian inside, ELFDATA2MSB. */
    assert_memory_equal(mem + 30, "\177ELF", 4);
    assert_int_equal(mem[30 + 5], 2);
    assert_int_equal(mem[30 + 18], 0);
    assert_int_equal(mem[30 + 19], EM_MIPS);

    /* A reply in little-endian order is taken; its pid is 0x01020304. */
    gpm_wire_put32(payload, 0x01020304u);
    gpm_wire_put32(payload + 4, 1);
    n = put_reply(mem, GPM_DFRAME_HELLO, 0, payload, 8, false);
    assert_int_equal(hc(f, GPM_HC_OP_WRITE, daemon, FAKE_BASE, n), n);
    gpm_wire_put32(payload, 0x0a0b0c0du);
    memcpy(payload + 4, "beplug", 6);
    n = put_reply(mem, GPM_DFRAME_STARTED, seq, payload, 10, false);
    assert_int_equal(hc(f, GPM_HC_OP_WRITE, daemon, FAKE_BASE, n), n);
    assert_int_equal(ev.lines->len, 2);
    assert_string_equal(g_ptr_array_index(ev.lines, 0), "5||16909060|");
    assert_string_equal(g_ptr_array_index(ev.lines, 1), "6|beplug|168496141|");

    /* The same frame in the guest's own order is no frame at all. */
    n = put_reply(mem, GPM_DFRAME_HELLO, 0, payload, 8, true);
    assert_int_equal(hc(f, GPM_HC_OP_WRITE, daemon, FAKE_BASE, n), n);
    assert_int_equal(ev.lines->len, 3);
    assert_non_null(
        strstr(g_ptr_array_index(ev.lines, 2), "outside any frame"));

    g_ptr_array_free(ev.lines, TRUE);
    g_free(path);
}

/* ------------------------------------------------------------------ */
/* The rings: little-endian words in guest memory on a big-endian guest. */

#define RING_PHYS 0x1000000u

static void test_rings(void **state)
{
    fixture_t *f = *state;
    uint8_t *region = g_malloc0(2 * GPM_RING_SLOT_SIZE);
    gpm_channel_id_t id;
    uint8_t *pair, *g2h, *h2g;
    uint64_t phys;

    assert_int_equal(gpm_channel_allocate(f->m, "r", recv_cb, NULL, f, &id), 0);
    assert_int_equal(gpm_manager_set_rings(f->m, RING_PHYS,
                                           2 * GPM_RING_SLOT_SIZE, region, NULL,
                                           NULL),
                     0);
    phys = hc(f, GPM_HC_OP_RING_ATTACH, id, 0, 0);
    assert_int_equal(phys, RING_PHYS);
    pair = region + (phys - RING_PHYS);
    g2h = pair + GPM_RING_OFF_G2H_DATA;
    h2g = pair + GPM_RING_OFF_H2G_DATA;
    /* The host's header words, byte by byte: "GRNG", 1, the id, sizes. */
    assert_memory_equal(pair + GPM_RING_OFF_MAGIC, "GRNG", 4);
    assert_memory_equal(pair + GPM_RING_OFF_VERSION, "\x01\0\0\0", 4);
    assert_int_equal(gpm_wire_get32(pair + GPM_RING_OFF_CHANNEL), id);
    assert_memory_equal(pair + GPM_RING_OFF_DATASIZE, "\0\0\x04\0", 4);
    /* The guest library's words (ready, its head) are little-endian too. */
    gpm_wire_put32(pair + GPM_RING_OFF_READY, GPM_RING_MAGIC);

    /* Guest -> host: header {5, 0}, then "abcde", head 16. */
    gpm_wire_put32(g2h, 5);
    memcpy(g2h + 8, "abcde", 5);
    gpm_wire_put32(pair + GPM_RING_OFF_G2H_HEAD, GPM_RING_REC_SPACE(5));
    assert_true(gpm_manager_ring_service(f->m) > 0);
    assert_int_equal(f->got->len, 5);
    assert_memory_equal(f->got->data, "abcde", 5);
    assert_memory_equal(pair + GPM_RING_OFF_G2H_TAIL, "\x10\0\0\0", 4);

    /* Host -> guest: the record header and head in little-endian bytes. */
    assert_int_equal(gpm_channel_write(f->m, id, "\x01\x02\x03", 3), 0);
    assert_true(gpm_manager_ring_service(f->m) > 0);
    assert_memory_equal(h2g, "\x03\0\0\0\0\0\0\0\x01\x02\x03", 11);
    assert_memory_equal(pair + GPM_RING_OFF_H2G_HEAD, "\x10\0\0\0", 4);
    assert_memory_equal(pair + GPM_RING_OFF_STATUS, "\0\0\0\0", 4);

    /*
     * A header in the guest's own order (00 00 00 05: 0x05000000 read as
     * little-endian, a length above GPM_RING_MAX_FRAG) breaks the ring:
     * its status word turns to GPM_HC_EPROTO, little-endian.
     */
    memcpy(g2h + 16, "\0\0\0\x05\0\0\0\0hello", 13);
    gpm_wire_put32(pair + GPM_RING_OFF_G2H_HEAD, 2 * GPM_RING_REC_SPACE(5));
    gpm_manager_ring_service(f->m);
    assert_int_equal(f->got->len, 5);
    assert_int_equal((int32_t)gpm_wire_get32(pair + GPM_RING_OFF_STATUS),
                     GPM_HC_EPROTO);

    assert_int_equal(gpm_manager_set_rings(f->m, 0, 0, NULL, NULL, NULL), 0);
    g_free(region);
}

/* ------------------------------------------------------------------ */
/* The inventory reads each ELF in its own byte order. */

static void check_inspect(elf_spec_t spec, bool big, int want_arch)
{
    char *p = put_elf("inspect", spec, big);
    gpm_plugin_info_t info;
    char why[512];

    assert_int_equal(gpm_plugin_inspect(p, &info, why, sizeof(why)), 0);
    assert_int_equal(info.arch, want_arch);
    assert_int_equal(info.elf_machine, spec.machine);
    assert_int_equal(info.desc_abi, 1);
    assert_string_equal(info.name, spec.name);
    g_free(p);
}

static void test_inventory(void **state)
{
    gpm_plugin_info_t info;
    char why[512];
    char *p;

    (void)state;
    check_inspect((elf_spec_t){false, EM_MIPS, true, 1, "m32"}, true,
                  GPM_ARCH_MIPS);
    check_inspect((elf_spec_t){false, EM_MIPS, true, 1, "m32el"}, false,
                  GPM_ARCH_MIPSEL);
    check_inspect((elf_spec_t){true, EM_MIPS, true, 1, "m64"}, true,
                  GPM_ARCH_MIPS64);
    check_inspect((elf_spec_t){false, EM_PPC, true, 1, "ppc"}, true,
                  GPM_ARCH_PPC);

    /* A big-endian binary is refused on the little-endian twin. */
    p = put_elf("m32", (elf_spec_t){false, EM_MIPS, true, 1, "m32"}, true);
    assert_int_equal(gpm_plugin_inspect(p, &info, why, sizeof(why)), 0);
    assert_int_equal(
        gpm_plugin_check_arch(&info, GPM_ARCH_MIPSEL, why, sizeof(why)),
        GPM_EARCH);
    assert_non_null(strstr(why, "built for mips"));
    assert_int_equal(
        gpm_plugin_check_arch(&info, GPM_ARCH_MIPS, why, sizeof(why)), 0);
    g_free(p);

    /* A descriptor version 2 in big-endian order is version 2, not 2^25. */
    p = put_elf("v2", (elf_spec_t){false, EM_MIPS, true, 2, "v2"}, true);
    assert_int_equal(gpm_plugin_inspect(p, &info, why, sizeof(why)), GPM_EDESC);
    assert_non_null(strstr(why, "version 2 "));
    g_free(p);
}

/* ------------------------------------------------------------------ */
/* The injector's pointer arrays, on a simulated kernel. */

#define SYSCALL_END 0x401000u

/* A word of @a's size and byte order at @p, decoded by hand. */
static uint64_t guest_word(const gpm_arch_info_t *a, const uint8_t *p)
{
    unsigned n = a->word_bits / 8;
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[a->big_endian ? i : n - 1 - i];
    return v;
}

static const uint8_t *guest_ptr(fake_cpu_t *c, uint64_t addr, size_t len)
{
    assert_true(addr >= FAKE_BASE &&
                addr + len <= FAKE_BASE + FAKE_PAGES * FAKE_PAGE);
    return c->mem + (addr - FAKE_BASE);
}

/*
 * Drives one injection on @arch to the child's execve, answering every
 * call from its number; returns the execve's argv[1] and envp[0].
 */
static void inject_on(gpm_arch_t arch, char *arg1, char *env0)
{
    const gpm_arch_info_t *a = gpm_arch_info(arch);
    const gpm__sys_table_t *t = gpm__sys_table(arch);
    const char *argv[] = {"-x", NULL};
    static const uint8_t elf[300] = {0x7f, 'E', 'L', 'F'};
    gpm_inj_config_t cfg = {arch,  elf,  sizeof(elf), NULL,
                            false, argv, NULL,        NULL};
    gpm_inj_thread_t pt = {100, 100, 1, 0, "sh", 0};
    gpm_inj_thread_t ct = {101, 101, 100, 0, "sh", 0};
    fake_cpu_t *c = g_new(fake_cpu_t, 1), *child = g_new(fake_cpu_t, 1);
    gpm_injector_t *inj;
    bool in_child = false;

    fake_init(c);
    /*
     * Every register not named below points into fake memory beyond the
     * scratch area, so an arch whose injector also uses the user stack
     * (o32 passes arguments 5 and 6 there) finds one.
     */
    for (unsigned i = 0; i < FAKE_NREGS; i++)
        c->regs[i] = FAKE_BASE + (FAKE_PAGES - 4) * FAKE_PAGE;
    c->regs[t->retaddr_reg] = SYSCALL_END;
    c->regs[t->nr_reg] = (uint64_t)t->getuid;
    assert_int_equal(gpm_injector_new(&cfg, &inj), 0);
    for (int step = 0; step < 64; step++) {
        fake_cpu_t *cur = in_child ? child : c;
        int64_t nr, res = 0;

        assert_int_equal(
            gpm_injector_on_syscall(inj, &fake_ops, cur, in_child ? &ct : &pt),
            0);
        if (cur->regs[t->retaddr_reg] != SYSCALL_END - t->insn_len)
            break; /* restored: the original call runs */
        nr = (int64_t)cur->regs[t->nr_reg];
        if (nr == t->mmap)
            res = FAKE_BASE;
        else if (nr == t->memfd_create || nr == t->open || nr == t->openat)
            res = 5;
        else if (nr == t->write)
            res = (int64_t)cur->regs[t->arg_regs[2]];
        else if (nr == t->fork || nr == t->clone) {
            *child = *c;
            child->regs[t->ret_reg] = 0;
            child->regs[t->retaddr_reg] = SYSCALL_END;
            res = ct.tgid;
        } else if (nr == t->execve) {
            uint64_t av = cur->regs[t->arg_regs[1]];
            uint64_t ev = cur->regs[t->arg_regs[2]];
            unsigned w = a->word_bits / 8;
            uint64_t p1 = guest_word(a, guest_ptr(cur, av + w, w));
            uint64_t e0 = guest_word(a, guest_ptr(cur, ev, w));

            /* argv[2] and envp[1] end the arrays. */
            assert_int_equal(guest_word(a, guest_ptr(cur, av + 2 * w, w)), 0);
            assert_int_equal(guest_word(a, guest_ptr(cur, ev + w, w)), 0);
            snprintf(arg1, 32, "%s", (const char *)guest_ptr(cur, p1, 1));
            snprintf(env0, 64, "%s", (const char *)guest_ptr(cur, e0, 1));
            break;
        }
        cur->regs[t->ret_reg] =
            (uint64_t)res & (a->word_bits == 64 ? UINT64_MAX : UINT32_MAX);
        /* MIPS: success clears the error flag (a3), as the kernel does. */
        if (t->err_flag)
            cur->regs[t->err_flag_reg] = 0;
        cur->regs[t->retaddr_reg] = SYSCALL_END;
        /* After the fork the child enters next (the parent waits). */
        if (nr == t->fork || nr == t->clone)
            in_child = true;
    }
    gpm_injector_free(inj);
    g_free(c);
    g_free(child);
}

static void test_injector_words(void **state)
{
    unsigned ran = 0;

    (void)state;
    for (unsigned i = 0; i < GPM_ARCH_COUNT; i++) {
        const gpm_arch_info_t *a = gpm_arch_info((gpm_arch_t)i);
        const uint8_t elf[4] = {0x7f, 'E', 'L', 'F'};
        gpm_inj_config_t cfg = {(gpm_arch_t)i, elf,  4,    NULL,
                                false,         NULL, NULL, NULL};
        gpm_injector_t *inj = NULL;
        char arg1[32] = "", env0[64] = "";

        if (!gpm__sys_table((gpm_arch_t)i)->injectable) {
            assert_int_equal(gpm_injector_new(&cfg, &inj), GPM_ENOSYS);
            assert_null(inj);
            continue;
        }
        inject_on((gpm_arch_t)i, arg1, env0);
        assert_string_equal(arg1, "-x");
        assert_string_equal(env0, "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
        print_message("injector: %s (%u-bit, %s-endian) argv/envp ok\n",
                      a->name, a->word_bits, a->big_endian ? "big" : "little");
        ran++;
    }
    assert_true(ran >= 4);
}

static int group_setup(void **state)
{
    (void)state;
    tmpdir = g_dir_make_tmp("gpmbe-XXXXXX", NULL);
    return tmpdir == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    char *cmd = g_strdup_printf("rm -rf '%s'", tmpdir);

    (void)state;
    assert_int_equal(system(cmd), 0);
    g_free(cmd);
    g_free(tmpdir);
    return 0;
}

#define BE_TEST(fn)                                                            \
    cmocka_unit_test_setup_teardown(fn, setup_mips32, teardown),               \
        cmocka_unit_test_setup_teardown(fn, setup_mips64, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BE_TEST(test_arch_rows),          BE_TEST(test_registers),
        BE_TEST(test_memory_bytes),       BE_TEST(test_address_word),
        BE_TEST(test_daemon_frames),      BE_TEST(test_rings),
        cmocka_unit_test(test_inventory), cmocka_unit_test(test_injector_words),
    };

    return cmocka_run_group_tests_name("big_endian", tests, group_setup,
                                       group_teardown);
}
