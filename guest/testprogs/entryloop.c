/*
 * entryloop.c - a process that enters the i386 kernel one chosen way.
 *
 * On i386 with the vDSO mapped, glibc and musl enter the kernel by
 * sysenter through the vDSO's __kernel_vsyscall. This program makes every
 * call of its loop itself, so that each of linjector's i386 paths is
 * tested on a real process (tests/test_e2e_linjector.py injects with
 * proc_name "entryloop"):
 *
 *   entryloop int80     every call with int $0x80
 *   entryloop sysenter  every call through __kernel_vsyscall (AT_SYSINFO)
 *
 * Each round calls getpid with known values in ebx, ecx, edx, esi, edi
 * and ebp and checks that they, esp, and the pid in eax come back
 * unchanged, then sleeps 20 ms (nanosleep). Every 50 rounds, and after a
 * failed check, it writes one line (the same way):
 *
 *   entryloop rounds=N bad=M
 *
 * Exit status 2 for a bad argument or no AT_SYSINFO; on other arches it
 * prints "entryloop: i386 only" and exits with 1.
 */
#include <stdio.h>
#include <string.h>

#if defined(__i386__)
#include <sys/auxv.h>

long entry_check(void);
long entry_call3(long nr, long a, long b, long c);

/* __kernel_vsyscall, or 0: int $0x80. */
unsigned long entry_vsyscall;
unsigned long entry_saved_esp;

/*
 * entry_check: getpid (20) with ebx..ebp set to known values; returns the
 * pid if those six and esp came back unchanged, else -1. entry_call3: a
 * call with three arguments (cdecl: the number and arguments on the
 * stack). Both enter the kernel the way entry_vsyscall says.
 */
#define ENTER                                                                  \
    "  cmpl $0, entry_vsyscall\n"                                              \
    "  je 8f\n"                                                                \
    "  call *entry_vsyscall\n"                                                 \
    "  jmp 9f\n"                                                               \
    "8:\n"                                                                     \
    "  int $0x80\n"                                                            \
    "9:\n"

__asm__(".text\n"
        ".globl entry_check\n"
        ".type entry_check, @function\n"
        "entry_check:\n"
        "  pushl %ebx\n"
        "  pushl %esi\n"
        "  pushl %edi\n"
        "  pushl %ebp\n"
        "  movl %esp, entry_saved_esp\n"
        "  movl $0x11111111, %ebx\n"
        "  movl $0x22222222, %ecx\n"
        "  movl $0x33333333, %edx\n"
        "  movl $0x44444444, %esi\n"
        "  movl $0x55555555, %edi\n"
        "  movl $0x66666666, %ebp\n"
        "  movl $20, %eax\n" ENTER "  cmpl $0x11111111, %ebx\n"
        "  jne 1f\n"
        "  cmpl $0x22222222, %ecx\n"
        "  jne 1f\n"
        "  cmpl $0x33333333, %edx\n"
        "  jne 1f\n"
        "  cmpl $0x44444444, %esi\n"
        "  jne 1f\n"
        "  cmpl $0x55555555, %edi\n"
        "  jne 1f\n"
        "  cmpl $0x66666666, %ebp\n"
        "  jne 1f\n"
        "  cmpl %esp, entry_saved_esp\n"
        "  je 2f\n"
        "1:\n"
        "  movl entry_saved_esp, %esp\n"
        "  movl $-1, %eax\n"
        "2:\n"
        "  popl %ebp\n"
        "  popl %edi\n"
        "  popl %esi\n"
        "  popl %ebx\n"
        "  ret\n"
        ".size entry_check, . - entry_check\n"
        ".globl entry_call3\n"
        ".type entry_call3, @function\n"
        "entry_call3:\n"
        "  pushl %ebx\n"
        "  movl 8(%esp), %eax\n"
        "  movl 12(%esp), %ebx\n"
        "  movl 16(%esp), %ecx\n"
        "  movl 20(%esp), %edx\n" ENTER "  popl %ebx\n"
        "  ret\n"
        ".size entry_call3, . - entry_call3\n");

#define NR_WRITE     4
#define NR_GETPID    20
#define NR_NANOSLEEP 162

static void say(const char *s)
{
    entry_call3(NR_WRITE, 1, (long)s, (long)strlen(s));
}

int main(int argc, char **argv)
{
    struct {
        long sec, nsec;
    } ts = {0, 20 * 1000 * 1000};
    unsigned long rounds = 0, bad = 0;
    char line[64];
    long pid;

    if (argc != 2 ||
        (strcmp(argv[1], "int80") != 0 && strcmp(argv[1], "sysenter") != 0)) {
        fputs("usage: entryloop int80|sysenter\n", stderr);
        return 2;
    }
    if (strcmp(argv[1], "sysenter") == 0) {
        entry_vsyscall = getauxval(AT_SYSINFO);
        if (entry_vsyscall == 0) {
            fputs("entryloop: no AT_SYSINFO (no vDSO)\n", stderr);
            return 2;
        }
    }
    pid = entry_call3(NR_GETPID, 0, 0, 0);
    for (;;) {
        long r = entry_check();

        rounds++;
        if (r != pid)
            bad++;
        if (rounds % 50 == 0 || r != pid) {
            snprintf(line, sizeof(line), "entryloop rounds=%lu bad=%lu\n",
                     rounds, bad);
            say(line);
        }
        entry_call3(NR_NANOSLEEP, (long)&ts, 0, 0);
    }
}

#else

int main(void)
{
    fputs("entryloop: i386 only\n", stderr);
    return 1;
}

#endif
