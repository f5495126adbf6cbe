/*
 * gpm/inventory.h - finding guest plugin binaries and checking them.
 *
 * A guest plugin is a static ELF executable carrying the descriptor note of
 * gpm/descriptor.h. The host finds one by name along an ordered search
 * path; in each directory D it tries "D/<arch>/<name>" then "D/<name>".
 * The default search path is, in order: the directories of the
 * EXTRA_GUEST_PLUGINS_PATH environment variable (colon-separated; each
 * directory's "build" subdirectory is tried before the directory itself),
 * then the directories added with gpm_inventory_add_dir() (the Python
 * package adds its built plugins there).
 *
 * Thread-safety: gpm_plugin_inspect() and gpm_plugin_check_arch() are
 * thread-safe; the search-path functions take a global lock.
 */
#ifndef GPM_INVENTORY_H
#define GPM_INVENTORY_H

#include <stddef.h>
#include <stdint.h>

#include "gpm/arch.h"
#include "gpm/descriptor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPM_PATH_MAX 4096

typedef struct gpm_plugin_info {
    char path[GPM_PATH_MAX]; /* where the binary is */
    unsigned elf_machine;    /* e_machine */
    unsigned elf_class;      /* 1 = 32-bit, 2 = 64-bit */
    int arch;                /* a gpm_arch_t, or -1 if none matches */
    uint32_t desc_abi;       /* descriptor ABI version */
    char name[GPM_DESC_NAME_MAX + 1];
    char version[GPM_DESC_VERSION_MAX + 1];
    char description[GPM_DESC_TEXT_MAX + 1];
} gpm_plugin_info_t;

/**
 * gpm_plugin_inspect() - read a binary's ELF header and descriptor.
 * @path: the file. @out: filled on success (and partly on GPM_EDESC).
 * @why, @why_len: optional buffer for an explanation of a failure.
 *
 * Returns 0; GPM_ENOENT (cannot open); GPM_ENOEXEC (not an ELF executable);
 * GPM_EDESC (no descriptor note, or an ABI version this host does not
 * know).
 */
int gpm_plugin_inspect(const char *path, gpm_plugin_info_t *out, char *why,
                       size_t why_len);

/**
 * gpm_plugin_check_arch() - refuse a binary for another guest.
 *
 * Returns 0, or GPM_EARCH if @info's machine, word size or byte order is
 * not @arch's (the explanation names both).
 */
int gpm_plugin_check_arch(const gpm_plugin_info_t *info, gpm_arch_t arch,
                          char *why, size_t why_len);

/**
 * gpm_inventory_add_dir() - append a directory to the search path.
 * @dir: copied. Returns 0, GPM_EINVAL or GPM_ENOMEM.
 */
int gpm_inventory_add_dir(const char *dir);

/**
 * gpm_inventory_clear_dirs() - forget directories added with
 * gpm_inventory_add_dir().
 */
void gpm_inventory_clear_dirs(void);

/**
 * gpm_plugin_find() - find plugin @name for @arch along the search path.
 * @explicit_dir: a directory searched first, or NULL.
 * @out: filled with the first binary named @name that passes
 *       gpm_plugin_inspect() and gpm_plugin_check_arch().
 *
 * A binary built for another arch is passed over, so one search path may
 * hold several arches' builds. Returns 0; GPM_ENOENT if no candidate
 * exists (@why lists every path tried); the error of the first candidate
 * that exists but was refused (@why explains it); or, if the only
 * candidates are for other arches, GPM_EARCH for the first of them.
 */
int gpm_plugin_find(const char *name, const char *explicit_dir, gpm_arch_t arch,
                    gpm_plugin_info_t *out, char *why, size_t why_len);

/**
 * gpm_plugin_list() - call @cb for every plugin on the search path.
 * @cb: gets each valid binary once (first match per name wins); its
 *      @info pointer is only valid during the call.
 *
 * Returns 0 or GPM_ENOMEM.
 */
int gpm_plugin_list(const char *explicit_dir,
                    void (*cb)(const gpm_plugin_info_t *info, void *opaque),
                    void *opaque);

#ifdef __cplusplus
}
#endif

#endif /* GPM_INVENTORY_H */
