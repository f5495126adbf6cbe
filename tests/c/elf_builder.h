/*
 * elf_builder.h - writes small synthetic ELF executables for the inventory
 * tests: either byte order (ELFDATA2LSB unless @big), 32 or 64-bit, with or
 * without a descriptor note, every header field and the note's integers in
 * the file's own byte order.
 */
#ifndef GPM_TEST_ELF_BUILDER_H
#define GPM_TEST_ELF_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gpm/descriptor.h"

typedef struct elf_spec {
    bool is64;
    unsigned machine;
    bool with_note;
    uint32_t abi;
    const char *name;
} elf_spec_t;

static inline void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* @v in @n bytes at @p, big-endian if @big, else little-endian. */
static inline void elf_put(bool big, uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (big ? n - 1 - i : i)));
}

/* Writes the file, ELFDATA2MSB if @big; returns 0 or -1. */
static inline int elf_write_order(const char *path, const elf_spec_t *s,
                                  bool big)
{
    uint8_t img[1024] = {0};
    struct gpm_plugin_note note = {sizeof(GPM_NOTE_OWNER),
                                   sizeof(struct gpm_plugin_desc),
                                   GPM_NOTE_TYPE,
                                   GPM_NOTE_OWNER,
                                   {0}};
    unsigned ehsize = s->is64 ? 64 : 52, shsize = s->is64 ? 64 : 40;
    unsigned note_off = 64, sh_off = 512, shnum = s->with_note ? 2 : 1;
    uint8_t *sh;
    FILE *f;

    memcpy(img, "\177ELF", 4);
    img[4] = s->is64 ? 2 : 1;
    img[5] = big ? 2 : 1;
    img[6] = 1;
    elf_put(big, img + 16, 2, 2);
    elf_put(big, img + 18, s->machine, 2);
    elf_put(big, img + 20, 1, 4);
    if (s->is64) {
        elf_put(big, img + 0x28, sh_off, 8);
        elf_put(big, img + 0x34, ehsize, 2);
        elf_put(big, img + 0x3a, shsize, 2);
        elf_put(big, img + 0x3c, shnum, 2);
    } else {
        elf_put(big, img + 0x20, sh_off, 4);
        elf_put(big, img + 0x28, ehsize, 2);
        elf_put(big, img + 0x2e, shsize, 2);
        elf_put(big, img + 0x30, shnum, 2);
    }
    if (s->with_note) {
        uint8_t *n = img + note_off;

        note.desc.abi_version = s->abi;
        snprintf(note.desc.name, sizeof(note.desc.name), "%s", s->name);
        snprintf(note.desc.version, sizeof(note.desc.version), "1.2.3");
        snprintf(note.desc.description, sizeof(note.desc.description),
                 "a test plugin");
        memcpy(n, &note, sizeof(note));
        /* The note's integers in the file's byte order. */
        elf_put(big, n, note.namesz, 4);
        elf_put(big, n + 4, note.descsz, 4);
        elf_put(big, n + 8, note.type, 4);
        elf_put(big, n + offsetof(struct gpm_plugin_note, desc), s->abi, 4);
        sh = img + sh_off + shsize;
        elf_put(big, sh + 4, 7, 4);
        if (s->is64) {
            elf_put(big, sh + 0x18, note_off, 8);
            elf_put(big, sh + 0x20, sizeof(note), 8);
        } else {
            elf_put(big, sh + 0x10, note_off, 4);
            elf_put(big, sh + 0x14, sizeof(note), 4);
        }
    }
    f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    fwrite(img, 1, sh_off + shnum * shsize, f);
    fclose(f);
    return 0;
}

/* A little-endian file. */
static inline int elf_write(const char *path, const elf_spec_t *s)
{
    return elf_write_order(path, s, false);
}

#endif /* GPM_TEST_ELF_BUILDER_H */
