/*
 * gpm/gpm.h - everything of the pandagpm host C API.
 *
 * GPM_API_VERSION changes whenever a declaration in these headers does.
 *   1: first version.
 *   2: GPM_ARCH_MIPS64EL (appended: the other values are unchanged);
 *      GPM_HC_ADDR_MIPSEL and GPM_HC_ADDR_MIPS64EL.
 */
#ifndef GPM_GPM_H
#define GPM_GPM_H

#define GPM_API_VERSION 2

#include "gpm/abi.h"
#include "gpm/arch.h"
#include "gpm/daemon_proto.h"
#include "gpm/descriptor.h"
#include "gpm/error.h"
#include "gpm/host.h"
#include "gpm/injector.h"
#include "gpm/inventory.h"
#include "gpm/manager.h"

#endif /* GPM_GPM_H */
