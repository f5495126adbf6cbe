/*
 * mipsel.c - the hypercall of 32-bit little-endian MIPS guests (o32).
 *
 * The stub and the call are mips_hc.h's. Registers are 32 bits wide:
 * each 64-bit argument is truncated, and the result is zero-extended
 * (gpm_hc_err() reads it as a 32-bit value).
 */
#include "gpm_guest.h"

#if !defined(__mips__) || !defined(__MIPSEL__) || _MIPS_SIM != _ABIO32
#error "arch/mipsel.c built for another architecture"
#endif

#include "mips_hc.h"
