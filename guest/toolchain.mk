# guest/toolchain.mk - the guest toolchain and flags, per GUEST_ARCH.
#
# Included by guest/Makefile, guest/testprogs/Makefile and
# guest/bench/Makefile, so every guest binary is built the same way.
# Before including it, set GUEST_DIR (the guest/ directory, absolute).
# It defines GUEST_ARCH, GUEST_CROSS, GUEST_CC, GUEST_AR, GUEST_HC_ADDR,
# WARN, INCLUDES, GUEST_CFLAGS, GUEST_LDFLAGS and BUILD_ROOT/BUILD.
#
# Adding an architecture: a GUEST_CROSS_<arch> prefix below (the Debian
# cross compiler's triple), GPM_HC_ADDR_<ARCH> in csrc/include/gpm/abi.h
# and guest/lib/arch/<arch>.c (see guest/README.md).

GUEST_ARCH ?= x86_64

BUILD_ROOT := $(GUEST_DIR)/build
BUILD := $(BUILD_ROOT)/$(GUEST_ARCH)

# x86_64 uses musl-gcc (Debian musl-tools); the other arches use Debian's
# cross compilers (gcc-<triple>), linked -static against their glibc.
# Override GUEST_CC / GUEST_AR to use another one. 32-bit ARM is armhf
# (ARMv7, hard float), what Debian's armmp kernel and userland are.
# mipsel is o32 (Debian's mipsel: MIPS32R2, hard float) and mips64el n64
# (Debian's mips64el: MIPS64R2); both run on the malta kernels.
GUEST_CROSS_i386 := i686-linux-gnu-
GUEST_CROSS_arm := arm-linux-gnueabihf-
GUEST_CROSS_aarch64 := aarch64-linux-gnu-
GUEST_CROSS_mips := mips-linux-gnu-
GUEST_CROSS_mipsel := mipsel-linux-gnu-
GUEST_CROSS_mips64 := mips64-linux-gnuabi64-
GUEST_CROSS_mips64el := mips64el-linux-gnuabi64-
GUEST_CROSS := $(GUEST_CROSS_$(GUEST_ARCH))

ifeq ($(GUEST_ARCH),x86_64)
GUEST_CC ?= musl-gcc
GUEST_AR ?= ar
else
GUEST_CC ?= $(GUEST_CROSS)gcc
GUEST_AR ?= $(GUEST_CROSS)ar
endif

# The hypercall stub's address, read from csrc/include/gpm/abi.h (its only
# home): GPM_HC_ADDR_<GUEST_ARCH in upper case>, expanded by the host's
# preprocessor (the header is the same for every arch), "u" suffix
# dropped. Empty when abi.h has no address for GUEST_ARCH; cc-check then
# says so.
HOST_CPP_CC ?= cc
GUEST_HC_MACRO := GPM_HC_ADDR_$(shell echo '$(GUEST_ARCH)' | tr a-z A-Z)
GUEST_HC_ADDR := $(shell echo '$(GUEST_HC_MACRO)' | \
	$(HOST_CPP_CC) -E -P -I$(GUEST_DIR)/../csrc/include \
	-include gpm/abi.h -x c - 2>/dev/null | \
	sed -n 's/^[[:space:]]*\(0[xX][0-9a-fA-F][0-9a-fA-F]*\)[uUlL]*[[:space:]]*$$/\1/p')

# 32-bit glibc arches: 64-bit file offsets, inode numbers and time_t, or
# readdir() and stat() fail with EOVERFLOW on large inode numbers.
GUEST_ARCH_CFLAGS_arm := -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64
GUEST_ARCH_CFLAGS_i386 := -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64
GUEST_ARCH_CFLAGS_mips := -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64
GUEST_ARCH_CFLAGS_mipsel := -D_FILE_OFFSET_BITS=64 -D_TIME_BITS=64

WARN := -Wall -Wextra -Werror
INCLUDES := -I$(GUEST_DIR)/lib -I$(GUEST_DIR)/../csrc/include
GUEST_CFLAGS ?= -std=gnu11 -O2 -fno-pie $(WARN) \
	$(GUEST_ARCH_CFLAGS_$(GUEST_ARCH))
GUEST_LDFLAGS ?= -static -no-pie \
	-Wl,--section-start=.gpmhc=$(GUEST_HC_ADDR)

# Fails (the guest build only) with what to install or write when the
# toolchain, the hypercall file or the address for GUEST_ARCH is missing.
# A rule's order-only prerequisite in each including Makefile.
define guest_cc_check
	@if ! command -v $(firstword $(GUEST_CC)) >/dev/null 2>&1; then \
	  echo "guest build: compiler '$(firstword $(GUEST_CC))' for" \
	       "GUEST_ARCH=$(GUEST_ARCH) not found." >&2; \
	  if [ "$(GUEST_ARCH)" = x86_64 ]; then \
	    echo "  install it with: apt-get install musl-tools" >&2; \
	  elif [ -n "$(GUEST_CROSS)" ]; then \
	    echo "  install Debian's gcc-$(patsubst %-,%,$(GUEST_CROSS))" \
	         "or set GUEST_CC" >&2; \
	  else \
	    echo "  GUEST_ARCH=$(GUEST_ARCH) is not an architecture" \
	         "guest/toolchain.mk knows" >&2; \
	  fi; \
	  exit 1; \
	fi
	@if [ ! -f "$(GUEST_DIR)/lib/arch/$(GUEST_ARCH).c" ]; then \
	  echo "guest build: no hypercall implementation for" \
	       "GUEST_ARCH=$(GUEST_ARCH) (expected" \
	       "$(GUEST_DIR)/lib/arch/$(GUEST_ARCH).c)" >&2; \
	  exit 1; \
	fi
	@if [ -z "$(GUEST_HC_ADDR)" ]; then \
	  echo "guest build: csrc/include/gpm/abi.h defines no" \
	       "$(GUEST_HC_MACRO) (the hypercall stub's address)" >&2; \
	  exit 1; \
	fi
endef
