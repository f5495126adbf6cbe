/*
 * fuzz_ring.c - libFuzzer target for the host side of the shared-memory
 * rings (core/ring.c, ring_h2g.c).
 *
 * The input is a hostile guest: 8-byte steps, each an op byte and its
 * arguments, that scribble on two ring pairs (indices, record headers,
 * payload bytes, READY and PART words), attach and stop channels, and let
 * the host queue messages and run service passes in between. Any crash,
 * sanitizer report or leak is a finding; the host must never touch memory
 * outside the two pairs (ASan guards the region's edges).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/c/fake_cpu.h"
#include "gpm/ring_abi.h"

#define NSLOTS    2u
#define RING_PHYS 0x1000000u
#define STEP      8u

static void sink_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                    void *opaque)
{
    volatile uint8_t x = 0;

    (void)id;
    (void)opaque;
    for (size_t i = 0; i < len; i += 256)
        x ^= buf[i];
}

static void event_cb(const gpm_event_t *ev, void *opaque)
{
    (void)opaque;
    if (ev->text != NULL)
        (void)strlen(ev->text);
}

static const uint32_t offsets[] = {
    GPM_RING_OFF_G2H_HEAD, GPM_RING_OFF_H2G_TAIL, GPM_RING_OFF_READY,
    GPM_RING_OFF_H2G_PART, GPM_RING_OFF_G2H_TAIL, GPM_RING_OFF_H2G_HEAD,
    GPM_RING_OFF_STATUS,   GPM_RING_OFF_MAGIC,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t msg[70000];
    gpm_manager_t *m;
    gpm_channel_id_t ch[2];
    fake_cpu_t cpu;
    uint8_t *region = malloc(NSLOTS * GPM_RING_SLOT_SIZE);

    if (region == NULL || gpm_manager_new(NULL, &m) != 0) {
        free(region);
        return 0;
    }
    memset(region, 0, NSLOTS * GPM_RING_SLOT_SIZE);
    fake_init(&cpu);
    gpm_manager_set_event_cb(m, event_cb, NULL);
    gpm_channel_allocate(m, "a", sink_cb, NULL, NULL, &ch[0]);
    gpm_channel_allocate(m, "b", sink_cb, NULL, NULL, &ch[1]);
    gpm_manager_set_rings(m, RING_PHYS, NSLOTS * GPM_RING_SLOT_SIZE, region,
                          NULL, NULL);
    for (size_t at = 0; at + STEP <= size; at += STEP) {
        const uint8_t *s = data + at;
        unsigned slot = s[1] % NSLOTS;
        uint8_t *pair = region + (size_t)slot * GPM_RING_SLOT_SIZE;
        uint32_t v, pos;

        memcpy(&v, s + 4, 4);
        pos = (uint32_t)s[2] | (uint32_t)s[3] << 8 | (v & 0x3u) << 16;
        switch (s[0] % 8) {
        case 0: /* a header word */
            memcpy(pair + offsets[s[2] % 8], &v, 4);
            break;
        case 1: /* a word in the guest->host data area */
            memcpy(pair + GPM_RING_OFF_G2H_DATA +
                       (pos % (GPM_RING_DATA_SIZE / 4)) * 4,
                   &v, 4);
            break;
        case 2: /* a word in the host->guest data area */
            memcpy(pair + GPM_RING_OFF_H2G_DATA +
                       (pos % (GPM_RING_DATA_SIZE / 4)) * 4,
                   &v, 4);
            break;
        case 3: /* the host queues a message */
            gpm_channel_write(m, ch[slot], msg, 1 + v % sizeof(msg));
            break;
        case 4:
            gpm_manager_ring_service(m);
            break;
        case 5: /* RING_ATTACH as some process */
            fake_hc_as(m, &cpu, 1 + s[2] % 3, GPM_HC_OP_RING_ATTACH, ch[slot],
                       0, 0, NULL);
            break;
        case 6:
            fake_hc_as(m, &cpu, 1 + s[2] % 3,
                       s[3] & 1 ? GPM_HC_OP_STOP : GPM_HC_OP_READ, ch[slot],
                       FAKE_BASE, v % 8192, NULL);
            break;
        default:
            gpm_channel_set_paused(m, ch[slot], (v & 1) != 0);
            break;
        }
    }
    gpm_manager_ring_service(m);
    gpm_manager_free(m);
    free(region);
    return 0;
}
