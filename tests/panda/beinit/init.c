/*
 * init.c - PID 1 of the big-endian MIPS test initramfs
 * (tests/test_panda_real_mips.py): Debian has no big-endian MIPS
 * userland, so instead of busybox this mounts what the guest daemon needs
 * (/proc for /proc/self/fd, /dev, a /tmp), starts the daemon and reaps
 * children. Built static with the guest toolchain (mips-linux-gnu-gcc).
 */
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    char *argv[] = {"/gpm/guest_daemon", NULL};

    mkdir("/proc", 0755);
    mkdir("/dev", 0755);
    mkdir("/tmp", 01777);
    if (mount("proc", "/proc", "proc", 0, NULL) != 0 ||
        mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0 ||
        mount("tmpfs", "/tmp", "tmpfs", 0, NULL) != 0)
        perror("beinit: mount");
    printf("beinit: starting %s\n", argv[0]);
    fflush(stdout);
    if (fork() == 0) {
        execv(argv[0], argv);
        perror("beinit: execv");
        _exit(127);
    }
    for (;;)
        if (wait(NULL) < 0)
            sleep(1);
}
