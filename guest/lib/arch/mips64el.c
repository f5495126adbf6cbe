/*
 * mips64el.c - the hypercall of 64-bit little-endian MIPS guests (n64).
 *
 * The stub and the call are mips_hc.h's; registers are 64 bits wide.
 */
#include "gpm_guest.h"

#if !defined(__mips__) || !defined(__MIPSEL__) || _MIPS_SIM != _ABI64
#error "arch/mips64el.c built for another architecture"
#endif

#include "mips_hc.h"
