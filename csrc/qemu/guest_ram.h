/*
 * guest_ram.h - direct access to guest RAM, and guest virtual memory
 * through the arch's page walk
 * (internal).
 *
 * QEMU started with
 *   -object memory-backend-file,id=mem,size=S,mem-path=FILE,share=on
 *   -machine memory-backend=mem
 * keeps guest RAM in FILE. On the pc and q35 machines RAM below the PCI
 * hole is at guest-physical address == file offset; RAM above it starts at
 * 4 GiB and continues the file at offset @below_4g. With -m 512M there is
 * no split (@below_4g == size). The legacy VGA/ROM window 0xa0000-0xfffff
 * reads the file, not what the guest sees there; no user page lives there.
 *
 * Everything below works over a caller-supplied (ram, size) buffer, so the
 * page walk is unit-tested on fake page tables in a malloc'd buffer.
 *
 * Threads: the functions are thread-safe; the caller keeps the guest CPU
 * stopped during a page walk (the tables must not change under it) and the
 * mapping alive while calling.
 */
#ifndef GPM_QEMU_GUEST_RAM_H
#define GPM_QEMU_GUEST_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/arch_ops.h"
#include "gpm/error.h"

/* A view of guest RAM. */
typedef struct gpm__ram {
    uint8_t *base;     /* the mapping, or a test buffer */
    uint64_t size;     /* bytes of RAM at @base */
    uint64_t below_4g; /* bytes mapped at base_pa; the rest at base_pa+4G */
    uint64_t base_pa;  /* guest-physical address of the first byte (0 on
                        * x86 pc/q35, 0x40000000 on ARM virt) */
    int fd;            /* -1 for a caller-supplied buffer */
} gpm__ram_t;

/* Access checks for gpm__ram_read_virt()/gpm__ram_write_virt(). */
#define GPM__RAM_USER 1u /* require U/S at every level */

/**
 * gpm__ram_init_buffer() - wrap a caller-owned buffer (tests).
 * @below_4g: 0 means @size (no split).
 */
void gpm__ram_init_buffer(gpm__ram_t *ram, void *buf, uint64_t size,
                          uint64_t below_4g);

/**
 * gpm__ram_open() - map the RAM file @path, shared and read-write.
 * @size: the guest's RAM size (-m); the file must be at least this long.
 * @below_4g: as for gpm__ram_init_buffer().
 *
 * Returns 0, GPM_ENOENT, GPM_EINVAL (file too short, size 0), GPM_EIO or
 * GPM_ENOMEM. Release with gpm__ram_close().
 */
int gpm__ram_open(gpm__ram_t *ram, const char *path, uint64_t size,
                  uint64_t below_4g);

/* Unmaps a mapping made by gpm__ram_open(); a no-op for a buffer. */
void gpm__ram_close(gpm__ram_t *ram);

/**
 * gpm__ram_phys() - a host pointer to @len bytes at guest-physical @pa.
 *
 * Returns NULL unless the whole range is RAM in one contiguous piece.
 * The pointer is valid while the mapping is.
 */
uint8_t *gpm__ram_phys(const gpm__ram_t *ram, uint64_t pa, uint64_t len);

/**
 * gpm__ram_read_phys() - copy guest-physical memory, range-checked.
 * Returns 0 or GPM_EFAULT.
 */
int gpm__ram_read_phys(const gpm__ram_t *ram, uint64_t pa, void *buf,
                       size_t len);

/* Which page walk, and its inputs (the MMU registers of the stopped CPU). */
typedef struct gpm__ram_walk {
    const gpm__arch_ops_t *ops;
    gpm__mmu_state_t st;
} gpm__ram_walk_t;

/**
 * gpm__ram_xlate() - translate @va with @w's walker over the RAM file.
 *
 * Returns 0, GPM_EFAULT (not mapped, a table outside RAM) or GPM_EINVAL
 * (no walker for the arch). The final physical address may still lie
 * outside RAM (MMIO); callers check it with gpm__ram_phys().
 */
int gpm__ram_xlate(const gpm__ram_t *ram, const gpm__ram_walk_t *w, uint64_t va,
                   gpm__xlate_t *out);

/**
 * gpm__ram_read_virt() - copy guest virtual memory page by page.
 * @flags: 0, or GPM__RAM_USER to require user pages (what a hypercall
 *         uses for guest-supplied pointers, so a process cannot make the
 *         host read kernel memory for it).
 *
 * Returns 0, or GPM_EFAULT (a page not mapped, not in RAM, a supervisor
 * page with GPM__RAM_USER, or the range wraps); @buf is then partly
 * written.
 */
int gpm__ram_read_virt(const gpm__ram_t *ram, const gpm__ram_walk_t *w,
                       uint64_t va, void *buf, size_t len, unsigned flags);

/**
 * gpm__ram_write_virt() - copy into guest virtual memory page by page.
 *
 * Writes only to pages that are present, writable and user-accessible at
 * every level of the walk: the kernel's shared zero page and copy-on-write
 * pages are mapped read-only in user page tables and are refused. Every
 * page of the range is checked before any byte is written.
 * Returns 0, GPM_EFAULT (not mapped, not in RAM, wraps, or a supervisor
 * page) or GPM_EROFS (a user page that is present but read-only).
 */
int gpm__ram_write_virt(const gpm__ram_t *ram, const gpm__ram_walk_t *w,
                        uint64_t va, const void *buf, size_t len);

#endif /* GPM_QEMU_GUEST_RAM_H */
