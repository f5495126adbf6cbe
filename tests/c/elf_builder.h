/*
 * elf_builder.h - writes small synthetic ELF executables for the inventory
 * tests: little-endian, 32 or 64-bit, with or without a descriptor note.
 */
#ifndef GPM_TEST_ELF_BUILDER_H
#define GPM_TEST_ELF_BUILDER_H

#include <stdbool.h>
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

/* Writes the file; returns 0 or -1. */
static inline int elf_write(const char *path, const elf_spec_t *s)
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
    img[5] = 1;
    img[6] = 1;
    le16(img + 16, 2);
    le16(img + 18, (uint16_t)s->machine);
    le32(img + 20, 1);
    if (s->is64) {
        le64(img + 0x28, sh_off);
        le16(img + 0x34, (uint16_t)ehsize);
        le16(img + 0x3a, (uint16_t)shsize);
        le16(img + 0x3c, (uint16_t)shnum);
    } else {
        le32(img + 0x20, sh_off);
        le16(img + 0x28, (uint16_t)ehsize);
        le16(img + 0x2e, (uint16_t)shsize);
        le16(img + 0x30, (uint16_t)shnum);
    }
    if (s->with_note) {
        note.desc.abi_version = s->abi;
        snprintf(note.desc.name, sizeof(note.desc.name), "%s", s->name);
        snprintf(note.desc.version, sizeof(note.desc.version), "1.2.3");
        snprintf(note.desc.description, sizeof(note.desc.description),
                 "a test plugin");
        memcpy(img + note_off, &note, sizeof(note));
        sh = img + sh_off + shsize;
        le32(sh + 4, 7);
        if (s->is64) {
            le64(sh + 0x18, note_off);
            le64(sh + 0x20, sizeof(note));
        } else {
            le32(sh + 0x10, note_off);
            le32(sh + 0x14, sizeof(note));
        }
    }
    f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    fwrite(img, 1, sh_off + shnum * shsize, f);
    fclose(f);
    return 0;
}

#endif /* GPM_TEST_ELF_BUILDER_H */
