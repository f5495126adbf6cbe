/*
 * loader.c - write a plugin's ELF to a memfd (or /tmp) and execute it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loader.h"

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

extern char **environ;

static unsigned loader_counter;

static int fail(int err, int stage, int *stage_out, char *msg, size_t cap,
                const char *what)
{
    *stage_out = stage;
    snprintf(msg, cap, "%s: %s", what, strerror(err));
    return -err;
}

/*
 * Create the file that will hold the ELF. Returns an fd, and in @path the
 * /tmp path when the fallback was used (empty for a memfd).
 */
static int open_image(const char *name, unsigned flags, char *path, size_t cap)
{
    int fd = -1;

    path[0] = '\0';
#ifdef SYS_memfd_create
    if (!(flags & GPM_LAUNCH_NO_MEMFD)) {
        fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
#endif
    snprintf(path, cap, "/tmp/gpm-%.64s-%ld-%u", name, (long)getpid(),
             ++loader_counter);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (fd < 0)
        path[0] = '\0';
    return fd;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* In the child: never returns. Reports errno through @errfd. */
static void child_exec(int fd, const char *path, char *const argv[], int errfd)
{
    char fdpath[32];
    sigset_t none;
    int err;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    setsid();
    if (path[0]) {
        execve(path, argv, environ);
        err = errno;
    } else {
        snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
        execve(fdpath, argv, environ);
        err = errno;
#ifdef SYS_execveat
        /* No /proc mounted: execveat works on the fd itself. */
        syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
        if (errno != ENOSYS)
            err = errno;
#endif
    }
    while (write(errfd, &err, sizeof(err)) < 0 && errno == EINTR)
        ;
    _exit(127);
}

/* Wait for the child's exec: 0 if it ran, else the errno it sent. */
static int exec_result(int rfd)
{
    int err = 0;
    ssize_t n;

    do
        n = read(rfd, &err, sizeof(err));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(err))
        return err ? err : EIO;
    return 0;
}

int gpm_launch(const struct gpm_dload *ld, unsigned flags, pid_t *pid,
               int *stage, char *msg, size_t msgcap)
{
    char path[128];
    char *argv[GPM_DFRAME_MAX_ARGS + 2];
    int fd, pfd[2], err, status;
    pid_t child;
    unsigned i;

    fd = open_image(ld->name, flags, path, sizeof(path));
    if (fd < 0)
        return fail(errno, GPM_DSTAGE_FILE, stage, msg, msgcap,
                    "memfd_create and /tmp fallback");
    err = write_all(fd, ld->elf, ld->elf_len);
    if (err == 0 && fchmod(fd, 0755) < 0)
        err = -errno;
    if (err < 0) {
        close(fd);
        if (path[0])
            unlink(path);
        return fail(-err, GPM_DSTAGE_WRITE, stage, msg, msgcap,
                    "writing the ELF");
    }
    if (path[0]) {
        /* A file open for writing cannot be executed (ETXTBSY). */
        close(fd);
        fd = -1;
    }
    argv[0] = (char *)ld->name;
    for (i = 0; i < ld->argc; i++)
        argv[i + 1] = (char *)ld->argv[i];
    argv[ld->argc + 1] = NULL;
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        err = errno;
        goto fail_fork;
    }
    child = fork();
    if (child < 0) {
        err = errno;
        close(pfd[0]);
        close(pfd[1]);
        goto fail_fork;
    }
    if (child == 0) {
        close(pfd[0]);
        child_exec(fd, path, argv, pfd[1]);
    }
    close(pfd[1]);
    err = exec_result(pfd[0]);
    close(pfd[0]);
    if (fd >= 0)
        close(fd);
    if (path[0])
        unlink(path);
    if (err) {
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
            ;
        return fail(err, GPM_DSTAGE_EXEC, stage, msg, msgcap, "execve");
    }
    *pid = child;
    return 0;

fail_fork:
    if (fd >= 0)
        close(fd);
    if (path[0])
        unlink(path);
    return fail(err, GPM_DSTAGE_FORK, stage, msg, msgcap, "fork");
}
