/*
 * gpm/pty_proto.h - the framed protocol of the "pty_shell" guest plugin.
 *
 * Plain C99, shared by the guest plugin (guest/plugins/pty_shell) and the
 * host (pandagpm/tools/shell.py reads the numbers from pandagpm._gpm).
 * Frames are gpm/wire.h's with magic GPM_WIRE_MAGIC_PTY on the channel
 * "pty_shell". One command runs at a time; @seq of OPEN is echoed by every
 * frame of that command, and frames of another seq are dropped.
 *
 * Host -> guest (payload):
 *   OPEN     u32 flags (GPM_PTY_F_TTY), u16 rows, u16 cols, u32 timeout_ms
 *            (0: none), u32 argc, u32 envc, then argc + envc NUL-terminated
 *            strings (argv, then "NAME=value"). argc 0 runs the user's
 *            login shell interactively ("/bin/sh -i"). With GPM_PTY_F_TTY
 *            the command gets a new session whose controlling terminal is
 *            a fresh PTY (stdin, stdout and stderr); without, three pipes.
 *   STDIN    bytes for the command's stdin (the PTY's input with a tty)
 *   EOF      close the command's stdin (without a tty)
 *   WINSIZE  u16 rows, u16 cols: the PTY's size (the command gets SIGWINCH)
 *   SIGNAL   u32 signal number for the command's process group
 *   QUIT     the plugin exits
 * Guest -> host:
 *   STARTED  u32 pid of the command
 *   STDOUT   bytes (everything the PTY prints, with a tty)
 *   STDERR   bytes
 *   EXIT     i32 status: exit code 0..255, 128 + signal number if killed,
 *            or a negative errno if it could not start; u32 flags
 *            (GPM_PTY_X_TIMEOUT: killed because the timeout passed)
 * No payload is longer than GPM_PTY_MAX_FRAME bytes.
 */
#ifndef GPM_PTY_PROTO_H
#define GPM_PTY_PROTO_H

#include "gpm/wire.h"

#define GPM_PTY_CHANNEL   "pty_shell"
#define GPM_PTY_MAX_FRAME (64u << 10)
#define GPM_PTY_MAX_ARGS  256u

enum gpm_pty_type {
    GPM_PTY_OPEN = 1,
    GPM_PTY_STDIN = 2,
    GPM_PTY_EOF = 3,
    GPM_PTY_WINSIZE = 4,
    GPM_PTY_SIGNAL = 5,
    GPM_PTY_QUIT = 6,
    GPM_PTY_STARTED = 16,
    GPM_PTY_STDOUT = 17,
    GPM_PTY_STDERR = 18,
    GPM_PTY_EXIT = 19,
};

#define GPM_PTY_F_TTY     1u
#define GPM_PTY_X_TIMEOUT 1u

#endif /* GPM_PTY_PROTO_H */
