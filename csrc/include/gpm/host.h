/*
 * gpm/host.h - how the core reaches a guest CPU.
 *
 * Each host (the stock-QEMU gdbstub host, PANDA, or a test's fake CPU)
 * supplies one gpm_host_ops_t. The core calls these functions only from
 * inside gpm_hypercall_handle() or the injector, on the thread that called
 * it, while the guest CPU is stopped. @cpu is the host's own opaque handle,
 * passed through unchanged.
 */
#ifndef GPM_HOST_H
#define GPM_HOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpm_host_ops {
    /*
     * Read register @regno (GDB numbering, see gpm/arch.h) into @val,
     * zero-extended to 64 bits. Returns 0 or a negative GPM_E* code.
     */
    int (*read_reg)(void *cpu, unsigned regno, uint64_t *val);

    /*
     * Write register @regno; a 32-bit register takes the low bits of @val.
     * Returns 0 or a negative GPM_E* code.
     */
    int (*write_reg)(void *cpu, unsigned regno, uint64_t val);

    /*
     * Copy @len bytes of guest virtual memory at @addr into @buf.
     * Returns 0, or GPM_EFAULT if any byte is not mapped (the content of
     * @buf is then unspecified). Never faults a page in.
     */
    int (*read_mem)(void *cpu, uint64_t addr, void *buf, size_t len);

    /*
     * Copy @len bytes from @buf into guest virtual memory at @addr.
     * Returns 0; GPM_EFAULT if a page is not mapped, not resident or not
     * a user page; GPM_EROFS if a user page is present but read-only
     * (this includes the kernel's shared zero page and copy-on-write pages,
     * which must never be written: the guest is told to touch and retry). On an
     * error a prefix of the range may have been written.
     */
    int (*write_mem)(void *cpu, uint64_t addr, const void *buf, size_t len);
} gpm_host_ops_t;

#ifdef __cplusplus
}
#endif

#endif /* GPM_HOST_H */
