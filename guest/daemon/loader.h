/*
 * loader.h - run an ELF received from the host as a new process.
 */
#ifndef GPM_GUEST_LOADER_H
#define GPM_GUEST_LOADER_H

#include <stddef.h>
#include <sys/types.h>

#include "dframe.h"

/* gpm_launch() flags. */
#define GPM_LAUNCH_NO_MEMFD 0x1u /* use the /tmp fallback even with memfd */

/**
 * gpm_launch() - write an ELF to a memory file and execute it.
 * @ld:     the parsed LOAD request; only read during the call.
 * @flags:  GPM_LAUNCH_* bits.
 * @pid:    receives the pid of the new process on success.
 * @stage:  on failure receives the enum gpm_dstage where it failed.
 * @msg:    on failure receives a NUL-terminated message.
 * @msgcap: size of @msg.
 *
 * The ELF goes to a memfd (memfd_create), or when the kernel has none to a
 * file under /tmp that is unlinked once the exec is done. The child calls
 * setsid() and execs it with argv[0] = the plugin name; an exec failure in
 * the child reaches the parent through a close-on-exec pipe, and the child
 * is reaped here. Returns 0 once the new program runs, or a negative errno.
 * Must be called with SIGCHLD not ignored.
 */
int gpm_launch(const struct gpm_dload *ld, unsigned flags, pid_t *pid,
               int *stage, char *msg, size_t msgcap);

#endif /* GPM_GUEST_LOADER_H */
