/*
 * guest_ram.c - guest RAM mapping, and guest virtual memory through the
 * arch's page walk (csrc/arch). See
 * guest_ram.h.
 */
#include "qemu/guest_ram.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOUR_G 0x100000000ull

void gpm__ram_init_buffer(gpm__ram_t *ram, void *buf, uint64_t size,
                          uint64_t below_4g)
{
    ram->base = buf;
    ram->base_pa = 0;
    ram->size = size;
    ram->below_4g = below_4g == 0 || below_4g > size ? size : below_4g;
    ram->fd = -1;
}

int gpm__ram_open(gpm__ram_t *ram, const char *path, uint64_t size,
                  uint64_t below_4g)
{
    struct stat st;
    void *p;
    int fd;

    memset(ram, 0, sizeof(*ram));
    ram->fd = -1;
    if (!path || size == 0 || size > SIZE_MAX) {
        return GPM_EINVAL;
    }
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT   ? GPM_ENOENT
               : errno == EACCES ? GPM_EACCES
                                 : GPM_EIO;
    }
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < size) {
        close(fd);
        return GPM_EINVAL;
    }
    p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return GPM_ENOMEM;
    }
    gpm__ram_init_buffer(ram, p, size, below_4g);
    ram->fd = fd;
    return 0;
}

void gpm__ram_close(gpm__ram_t *ram)
{
    if (ram->fd >= 0) {
        munmap(ram->base, (size_t)ram->size);
        close(ram->fd);
    }
    memset(ram, 0, sizeof(*ram));
    ram->fd = -1;
}

uint8_t *gpm__ram_phys(const gpm__ram_t *ram, uint64_t pa, uint64_t len)
{
    uint64_t off;

    if (!ram->base || pa < ram->base_pa) {
        return NULL;
    }
    pa -= ram->base_pa; /* the file's first byte is at base_pa */
    if (pa < ram->below_4g) {
        if (len > ram->below_4g - pa) {
            return NULL;
        }
        off = pa;
    } else if (pa >= FOUR_G && pa - FOUR_G < ram->size - ram->below_4g) {
        if (len > ram->size - ram->below_4g - (pa - FOUR_G)) {
            return NULL;
        }
        off = ram->below_4g + (pa - FOUR_G);
    } else {
        return NULL;
    }
    return ram->base + off;
}

int gpm__ram_read_phys(const gpm__ram_t *ram, uint64_t pa, void *buf,
                       size_t len)
{
    const uint8_t *p;

    if (len == 0) {
        return 0;
    }
    p = gpm__ram_phys(ram, pa, len);
    if (!p) {
        return GPM_EFAULT;
    }
    memcpy(buf, p, len);
    return 0;
}

/* The walkers' access to guest-physical memory: the RAM file only. */
static int ram_phys_read(void *opaque, uint64_t pa, void *buf, size_t len)
{
    return gpm__ram_read_phys(opaque, pa, buf, len);
}

int gpm__ram_xlate(const gpm__ram_t *ram, const gpm__ram_walk_t *w, uint64_t va,
                   gpm__xlate_t *out)
{
    if (!w->ops || !w->ops->xlate) {
        return GPM_EINVAL;
    }
    /* The walker only reads; the cast drops const for the callback. */
    return w->ops->xlate(&w->st, va, ram_phys_read, (void *)ram, out);
}

/* The host pointer and length of the first piece of [va, va+len). */
static int piece(const gpm__ram_t *ram, const gpm__ram_walk_t *w, uint64_t va,
                 size_t len, gpm__xlate_t *x, uint8_t **host, size_t *n)
{
    int err = gpm__ram_xlate(ram, w, va, x);

    if (err < 0) {
        return err;
    }
    *n = len < x->page_left ? len : (size_t)x->page_left;
    *host = gpm__ram_phys(ram, x->phys, *n);
    return *host ? 0 : GPM_EFAULT;
}

int gpm__ram_read_virt(const gpm__ram_t *ram, const gpm__ram_walk_t *w,
                       uint64_t va, void *buf, size_t len, unsigned flags)
{
    uint8_t *dst = buf;

    if (len && va + (len - 1) < va) {
        return GPM_EFAULT;
    }
    while (len) {
        gpm__xlate_t x;
        uint8_t *host;
        size_t n;
        int err = piece(ram, w, va, len, &x, &host, &n);

        if (err < 0) {
            return err;
        }
        if ((flags & GPM__RAM_USER) && !x.user) {
            return GPM_EFAULT; /* a kernel page is not mapped for users */
        }
        memcpy(dst, host, n);
        dst += n;
        va += n;
        len -= n;
    }
    return 0;
}

int gpm__ram_write_virt(const gpm__ram_t *ram, const gpm__ram_walk_t *w,
                        uint64_t va, const void *buf, size_t len)
{
    const uint8_t *src = buf;
    uint64_t v = va;
    size_t left = len;

    if (len && va + (len - 1) < va) {
        return GPM_EFAULT;
    }
    /* Check every page first, so a refused range writes nothing. */
    while (left) {
        gpm__xlate_t x;
        uint8_t *host;
        size_t n;
        int err = piece(ram, w, v, left, &x, &host, &n);

        if (err < 0) {
            return err;
        }
        /*
         * A supervisor page is not the guest program's memory: it is a
         * fault, never "touch it and retry", which would make the program
         * touch kernel memory. A read-only user page (the zero page, a
         * copy-on-write page) is the retry case.
         */
        if (!x.user) {
            return GPM_EFAULT;
        }
        if (!x.writable) {
            return GPM_EROFS;
        }
        v += n;
        left -= n;
    }
    while (len) {
        gpm__xlate_t x;
        uint8_t *host;
        size_t n;
        int err = piece(ram, w, va, len, &x, &host, &n);

        if (err < 0) {
            return err;
        }
        memcpy(host, src, n);
        src += n;
        va += n;
        len -= n;
    }
    return 0;
}
