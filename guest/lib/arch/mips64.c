/*
 * mips64.c - the hypercall of 64-bit big-endian MIPS guests (n64).
 *
 * The same stub and call as mips64el (mips_hc.h); registers are 64 bits
 * wide. Built with gcc-mips64-linux-gnuabi64 (docs/arch.md, "Big-endian
 * guests").
 */
#include "gpm_guest.h"

#if !defined(__mips__) || !defined(__MIPSEB__) || _MIPS_SIM != _ABI64
#error "arch/mips64.c built for another architecture"
#endif

#include "mips_hc.h"
