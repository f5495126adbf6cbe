/*
 * gpm/descriptor.h - the descriptor ELF note every guest binary carries.
 *
 * Plain C99, shared by the guest build (which emits the note) and the host
 * inventory (which reads it). The note lives in a section named
 * ".note.pandagpm" of type SHT_NOTE, with owner name "pandagpm" and type
 * GPM_NOTE_TYPE. Its descriptor is struct gpm_plugin_desc: fixed-size,
 * NUL-padded strings, integers in the binary's own byte order.
 *
 * A guest binary declares itself with, at file scope:
 *     GPM_PLUGIN_DESCRIPTOR("hello", "1.0.0", "Says hello to the host");
 */
#ifndef GPM_DESCRIPTOR_H
#define GPM_DESCRIPTOR_H

#include <stdint.h>

#define GPM_NOTE_OWNER       "pandagpm"
#define GPM_NOTE_SECTION     ".note.pandagpm"
#define GPM_NOTE_TYPE        0x47504d01u
#define GPM_DESC_ABI_VERSION 1u

#define GPM_DESC_NAME_MAX    64
#define GPM_DESC_VERSION_MAX 32
#define GPM_DESC_TEXT_MAX    160

struct gpm_plugin_desc {
    uint32_t abi_version; /* GPM_DESC_ABI_VERSION */
    char name[GPM_DESC_NAME_MAX];
    char version[GPM_DESC_VERSION_MAX];
    char description[GPM_DESC_TEXT_MAX];
};

/* A whole ELF note: header, owner name padded to 4 bytes, descriptor. */
struct gpm_plugin_note {
    uint32_t namesz; /* sizeof(GPM_NOTE_OWNER) = 9 */
    uint32_t descsz; /* sizeof(struct gpm_plugin_desc) = 260 */
    uint32_t type;   /* GPM_NOTE_TYPE */
    char owner[12];  /* "pandagpm" + NUL, padded to a multiple of 4 */
    struct gpm_plugin_desc desc;
};

#define GPM_PLUGIN_DESCRIPTOR(NAME, VERSION, TEXT)                             \
    __attribute__((                                                            \
        used, section(GPM_NOTE_SECTION),                                       \
        aligned(4))) static const struct gpm_plugin_note gpm__plugin_note = {  \
        sizeof(GPM_NOTE_OWNER),                                                \
        sizeof(struct gpm_plugin_desc),                                        \
        GPM_NOTE_TYPE,                                                         \
        GPM_NOTE_OWNER,                                                        \
        {GPM_DESC_ABI_VERSION, NAME, VERSION, TEXT}}

#endif /* GPM_DESCRIPTOR_H */
