/*
 * fuzz_rsp.c - libFuzzer target for the GDB remote protocol parser.
 *
 * The input is what a hostile or broken gdbstub could send: it is fed to
 * the packet parser in pieces whose sizes come from the input itself, and
 * every packet is decoded and parsed as a stop reply. The tail of the
 * input also serves as a target description.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/gdb_remote.h"

typedef struct xml_src {
    const uint8_t *data;
    size_t len;
} xml_src_t;

static int fetch_cb(void *opaque, const char *name, char **out, size_t *len)
{
    xml_src_t *src = opaque;

    (void)name;
    *out = malloc(src->len + 1);
    if (*out == NULL)
        return GPM_ENOMEM;
    memcpy(*out, src->data, src->len);
    (*out)[src->len] = '\0';
    *len = src->len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[4096], dec[8192];
    gpm__rsp_parser_t p;
    gpm__rsp_kind_t kind;
    size_t off = 0, step = 1;

    gpm__rsp_parser_init(&p, buf, sizeof(buf));
    while (off < size) {
        size_t n = step < size - off ? step : size - off;
        size_t used = gpm__rsp_parse(&p, data + off, n, &kind);

        if (used == 0 && kind == GPM__RSP_NONE)
            break;
        off += used;
        if (kind == GPM__RSP_PACKET || kind == GPM__RSP_NOTIFICATION) {
            size_t dlen;

            if (gpm__rsp_decode(p.buf, p.len, dec, sizeof(dec) - 1, &dlen) ==
                0) {
                gpm__rsp_stop_t st;
                uint64_t v;

                dec[dlen] = '\0';
                gpm__rsp_parse_stop((const char *)dec, dlen, &st);
                gpm__hex_u64((const char *)dec, dlen < 20 ? dlen : 20, &v);
            }
        }
        step = (data[off % size] % 64) + 1;
    }
    if (size > 0 && data[0] == '<') {
        static gpm__tdesc_t td;
        xml_src_t src = {data, size};

        if (gpm__tdesc_load(fetch_cb, &src, &td) == 0)
            (void)gpm__tdesc_find(&td, "rip");
    }
    return 0;
}
