/*
 * fuzz_hypercall.c - libFuzzer target for the hypercall dispatcher.
 *
 * The input is the guest: each 41-byte record gives the five hypercall
 * registers and one byte of page permissions, and the bytes after the
 * records fill guest memory. Channels exist with queued host messages,
 * including the daemon channel, so READ, WRITE and the daemon's frame
 * parser all see hostile input. Any crash, sanitizer report or leak is a
 * finding; the dispatcher must answer every record.
 */
#include <stdint.h>
#include <string.h>

#include "../tests/c/fake_cpu.h"

#define RECORD      41u
#define MAX_RECORDS 64u

static void sink_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                    void *opaque)
{
    volatile uint8_t x = 0;

    (void)id;
    (void)opaque;
    for (size_t i = 0; i < len; i += 512)
        x ^= buf[i];
}

static void event_cb(const gpm_event_t *ev, void *opaque)
{
    (void)opaque;
    if (ev->text != NULL)
        (void)strlen(ev->text);
    if (ev->name != NULL)
        (void)strlen(ev->name);
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fake_cpu_t cpu;
    gpm_manager_config_t cfg = {.arch = GPM_ARCH_X86_64,
                                .queue_limit = 1 << 16,
                                .max_guest_channels = 8};
    gpm_manager_t *m;
    gpm_channel_id_t a, b, d;
    size_t n = size / RECORD, off;

    static const gpm_arch_t mips[4] = {GPM_ARCH_MIPSEL, GPM_ARCH_MIPS,
                                       GPM_ARCH_MIPS64EL, GPM_ARCH_MIPS64};

    if (size > 0 && (data[0] & 0x80))
        cfg.arch = GPM_ARCH_I386;
    else if (size > 0 && (data[0] & 0x40)) /* both byte orders, both sizes */
        cfg.arch = mips[data[0] & 3];
    if (n > MAX_RECORDS)
        n = MAX_RECORDS;
    if (gpm_manager_new(&cfg, &m) != 0)
        return 0;
    gpm_manager_set_event_cb(m, event_cb, NULL);
    gpm_channel_allocate(m, "alpha", sink_cb, NULL, NULL, &a);
    gpm_channel_allocate(m, NULL, NULL, NULL, NULL, &b);
    gpm_daemon_channel(m, &d);
    gpm_channel_write(m, a, "queued message one", 18);
    gpm_channel_write(m, a, "two", 3);
    gpm_channel_write(m, d, "\x47\x50\x4d\x44", 4);

    fake_init(&cpu);
    off = n * RECORD;
    if (size > off)
        memcpy(cpu.mem, data + off,
               size - off < sizeof(cpu.mem) ? size - off : sizeof(cpu.mem));

    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = data + i * RECORD;
        const gpm_arch_info_t *ai = gpm_arch_info(cfg.arch);
        bool handled;

        for (unsigned k = 0; k < 5; k++)
            cpu.regs[ai->hc_regs[k]] = rd64(r + 8 * k);
        /* Most records are hypercalls; keep the magic mostly intact. */
        if (!(r[40] & 0x80))
            cpu.regs[ai->hc_regs[0]] = GPM_HC_MAGIC;
        /* Small ids and ops are the interesting ones. */
        if (r[40] & 0x40)
            cpu.regs[ai->hc_regs[2]] &= 7;
        if (r[40] & 0x20)
            cpu.regs[ai->hc_regs[1]] &= 7;
        /* Pointers land in the fake memory most of the time. */
        if (r[40] & 0x10)
            cpu.regs[ai->hc_regs[3]] =
                FAKE_BASE + (cpu.regs[ai->hc_regs[3]] % sizeof(cpu.mem));
        cpu.flags[r[40] & 7] = (uint8_t)((r[40] >> 3) & 3);
        if (gpm_hypercall_handle(m, &fake_ops, &cpu, &handled) != 0)
            __builtin_trap();
    }
    gpm_manager_free(m);
    return 0;
}
