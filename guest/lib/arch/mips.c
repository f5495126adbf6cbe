/*
 * mips.c - the hypercall of 32-bit big-endian MIPS guests (o32).
 *
 * The same stub and call as mipsel (mips_hc.h): the instruction word is
 * the same, the toolchain stores it big-endian (00 00 00 0a). Registers
 * are 32 bits wide: each 64-bit argument is truncated, and the result is
 * zero-extended. Debian has no big-endian MIPS port (docs/arch.md,
 * "Big-endian guests"); this builds with gcc-mips-linux-gnu.
 */
#include "gpm_guest.h"

#if !defined(__mips__) || !defined(__MIPSEB__) || _MIPS_SIM != _ABIO32
#error "arch/mips.c built for another architecture"
#endif

#include "mips_hc.h"
