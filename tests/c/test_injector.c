/*
 * test_injector.c - linjector's chain against a simulated kernel: each
 * injected system call is carried out here on a fake CPU, and the thread
 * enters again at the syscall instruction, as it does in a real guest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <glib.h>

#define FAKE_PAGES 80u
#include "fake_cpu.h"

#define RAX         0
#define RCX         2
#define RDX         3
#define RSI         4
#define RDI         5
#define R8          8
#define R9          9
#define R10         10
#define SYSCALL_END 0x401002u /* address after the target's syscall */

typedef struct sim {
    fake_cpu_t parent, child, other;
    gpm_inj_thread_t pt, ct, ot;
    GByteArray *file;
    bool mapped;
    bool child_exists;
    /* Behaviour switches. */
    bool memfd_enosys, mmap_fails, execve_fails, short_writes;
    int write_fails_at; /* fail the Nth write, 0 = never */
    int writes;
    /* What the guest saw. */
    char exec_path[64];
    char argv[4][32];
    char envp0[64];
    int exit_code;
    bool executed;
    /* Signal masks: the parent's, the child's, and what exec saw. */
    uint64_t pmask, cmask, exec_mask;
    bool blocked_during_fork;
    GPtrArray *log;
} sim_t;

static void log_cb(int level, const char *msg, void *opaque)
{
    sim_t *s = opaque;

    g_ptr_array_add(s->log, g_strdup_printf("%d %s", level, msg));
}

static bool log_has(sim_t *s, const char *needle)
{
    for (guint i = 0; i < s->log->len; i++)
        if (strstr(g_ptr_array_index(s->log, i), needle) != NULL)
            return true;
    return false;
}

static void read_str(fake_cpu_t *c, uint64_t addr, char *out, size_t cap)
{
    assert_int_equal(fake_read_mem(c, addr, out, cap), 0);
    out[cap - 1] = '\0';
}

static uint64_t read_ptr(fake_cpu_t *c, uint64_t addr)
{
    uint64_t v = 0;

    assert_int_equal(fake_read_mem(c, addr, &v, 8), 0);
    return v;
}

/*
 * Carries out the call in @c's registers the way the kernel would and
 * reports whether the thread comes back to the syscall instruction.
 */
static bool run_syscall(sim_t *s, fake_cpu_t *c, bool is_child)
{
    uint64_t nr = c->regs[RAX], a0 = c->regs[RDI], a1 = c->regs[RSI],
             a2 = c->regs[RDX];
    int64_t res = -38;

    switch (nr) {
    case 0: /* the target's own read */
        assert_false(is_child);
        res = 64;
        break;
    case 102: /* getuid */
        res = 1000;
        break;
    case 9: /* mmap */
        assert_int_equal(a0, 0);
        assert_true(a1 <= FAKE_PAGES * FAKE_PAGE);
        assert_int_equal(c->regs[R10], 0x8022);
        assert_int_equal(c->regs[R8], UINT64_MAX);
        res = s->mmap_fails ? -12 : (int64_t)FAKE_BASE;
        s->mapped = !s->mmap_fails;
        break;
    case 319: /* memfd_create */
        res = s->memfd_enosys ? -38 : 5;
        break;
    case 2: /* open */
        res = 6;
        break;
    case 1: /* write */
        s->writes++;
        if (s->write_fails_at == s->writes) {
            res = -28;
            break;
        }
        if (s->short_writes && a2 > 1000)
            a2 = 1000;
        g_byte_array_append(s->file, c->mem + (a1 - FAKE_BASE), (guint)a2);
        res = (int64_t)a2;
        break;
    case 3:  /* close */
    case 11: /* munmap */
        res = 0;
        break;
    case 14: { /* rt_sigprocmask(SIG_SETMASK, set, oldset, 8) */
        uint64_t *mask = is_child ? &s->cmask : &s->pmask;
        uint64_t set = 0;

        assert_int_equal(a0, 2);
        assert_int_equal(c->regs[R10], 8);
        if (a2 != 0)
            assert_int_equal(fake_write_mem(c, a2, mask, 8), 0);
        if (a1 != 0) {
            assert_int_equal(fake_read_mem(c, a1, &set, 8), 0);
            *mask = set;
        }
        res = 0;
        break;
    }
    case 57: /* fork: the child returns to the same place with 0 */
        s->blocked_during_fork = s->pmask == UINT64_MAX;
        s->cmask = s->pmask;
        s->child = *c;
        s->child.regs[RAX] = 0;
        /* It comes back to the syscall instruction and enters again. */
        s->child.regs[RCX] = SYSCALL_END;
        s->child_exists = true;
        res = 200;
        break;
    case 112: /* setsid */
        res = 200;
        break;
    case 59: /* execve */
        assert_true(is_child);
        read_str(c, a0, s->exec_path, sizeof(s->exec_path));
        for (int i = 0; i < 4; i++) {
            uint64_t p = read_ptr(c, a1 + 8 * (uint64_t)i);

            if (p == 0)
                break;
            read_str(c, p, s->argv[i], sizeof(s->argv[i]));
        }
        read_str(c, read_ptr(c, a2), s->envp0, sizeof(s->envp0));
        assert_int_equal(read_ptr(c, a2 + 8), 0);
        s->exec_mask = s->cmask;
        if (s->execve_fails) {
            res = -8;
            break;
        }
        s->executed = true;
        return false;
    case 231: /* exit_group */
        s->exit_code = (int)a0;
        return false;
    default:
        fail_msg("unexpected syscall %llu", (unsigned long long)nr);
    }
    c->regs[RAX] = (uint64_t)res;
    if (c->regs[RCX] == SYSCALL_END - 2) {
        c->regs[RCX] = SYSCALL_END;
        return true;
    }
    return false;
}

static void sim_init(sim_t *s)
{
    memset(s, 0, sizeof(*s));
    fake_init(&s->parent);
    s->parent.regs[RAX] = 0; /* read(0, buf, 64) */
    s->parent.regs[RDI] = 0;
    s->parent.regs[RSI] = 0x7ffd0000;
    s->parent.regs[RDX] = 64;
    s->parent.regs[R10] = 0x1111;
    s->parent.regs[R8] = 0x2222;
    s->parent.regs[R9] = 0x3333;
    s->parent.regs[RCX] = SYSCALL_END;
    s->parent.regs[11] = 0x246;
    s->pmask = 0x10000; /* the shell blocks SIGCHLD, say */
    s->pt = (gpm_inj_thread_t){100, 100, 1, 0, "sh", 0};
    s->ct = (gpm_inj_thread_t){200, 200, 100, 0, "sh", 0};
    s->ot = (gpm_inj_thread_t){300, 300, 1, 0, "other", 0};
    fake_init(&s->other);
    s->other.regs[RAX] = 0;
    s->other.regs[RCX] = SYSCALL_END;
    s->file = g_byte_array_new();
    s->log = g_ptr_array_new_with_free_func(g_free);
}

static void sim_free(sim_t *s)
{
    g_byte_array_free(s->file, TRUE);
    g_ptr_array_free(s->log, TRUE);
}

static gpm_injector_t *make(sim_t *s, const uint8_t *elf, size_t len,
                            const char *proc, bool root)
{
    static const char *const args[] = {"-v", "x", NULL};
    gpm_inj_config_t cfg = {GPM_ARCH_X86_64, elf, len, proc, root, args,
                            log_cb,          s};
    gpm_injector_t *inj;

    assert_int_equal(gpm_injector_new(&cfg, &inj), 0);
    return inj;
}

/*
 * Runs the target (and, once forked, the child; an unrelated process in
 * between) until every thread has left the injected instruction.
 */
static void drive(sim_t *s, gpm_injector_t *inj, bool child_first)
{
    fake_cpu_t saved = s->parent;
    bool parent_back = true, child_back = false;
    int guard = 0;

    while ((parent_back || child_back) && guard++ < 1000) {
        /* Once a target is chosen, others at that address are left be. */
        fake_cpu_t before = s->other;

        if (gpm_injector_state(inj) == GPM_INJ_RUNNING) {
            assert_int_equal(
                gpm_injector_on_syscall(inj, &fake_ops, &s->other, &s->ot), 0);
            assert_memory_equal(before.regs, s->other.regs,
                                sizeof(before.regs));
        }

        if (child_back && (child_first || !parent_back)) {
            assert_int_equal(
                gpm_injector_on_syscall(inj, &fake_ops, &s->child, &s->ct), 0);
            child_back = run_syscall(s, &s->child, true);
            continue;
        }
        if (parent_back) {
            bool had_child = s->child_exists;

            assert_int_equal(
                gpm_injector_on_syscall(inj, &fake_ops, &s->parent, &s->pt), 0);
            parent_back = run_syscall(s, &s->parent, false);
            if (!had_child && s->child_exists)
                child_back = true;
        }
    }
    assert_true(guard < 1000);
    /* The original call ran with exactly the original registers. */
    assert_int_equal(s->parent.regs[RCX], SYSCALL_END);
    for (unsigned r = 3; r < FAKE_NREGS; r++)
        assert_int_equal(s->parent.regs[r], saved.regs[r]);
}

static uint8_t *fake_elf(size_t len)
{
    uint8_t *e = g_malloc(len);

    for (size_t i = 0; i < len; i++)
        e[i] = (uint8_t)(i * 7 + 3);
    memcpy(e, "\177ELF", 4);
    return e;
}

static void test_memfd_path(void **state)
{
    size_t len = 300 * 1024; /* more than one scratch window */
    uint8_t *elf = fake_elf(len);
    gpm_injector_t *inj;
    int64_t tgid, child;
    sim_t s;

    (void)state;
    sim_init(&s);
    inj = make(&s, elf, len, NULL, true);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_WAITING);
    drive(&s, inj, false);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_DONE);
    assert_int_equal(s.file->len, len);
    assert_memory_equal(s.file->data, elf, len);
    assert_string_equal(s.exec_path, "/proc/self/fd/5");
    assert_string_equal(s.argv[0], "guest_daemon");
    assert_string_equal(s.argv[1], "-v");
    assert_string_equal(s.argv[2], "x");
    assert_string_equal(s.envp0, "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    assert_true(s.executed);
    assert_int_equal(s.parent.regs[RAX], 64); /* the original read ran */
    /* Signals were blocked around fork; both ended with the old mask. */
    assert_true(s.blocked_during_fork);
    assert_int_equal(s.pmask, 0x10000);
    assert_int_equal(s.exec_mask, 0x10000);
    gpm_injector_target(inj, &tgid, &child);
    assert_int_equal(tgid, 100);
    assert_int_equal(child, 200);
    assert_null(gpm_injector_error(inj));
    gpm_injector_free(inj);
    sim_free(&s);
    g_free(elf);
}

static void test_tmp_fallback_child_first_short_writes(void **state)
{
    uint8_t *elf = fake_elf(5000);
    gpm_injector_t *inj;
    sim_t s;

    (void)state;
    sim_init(&s);
    s.memfd_enosys = true;
    s.short_writes = true;
    inj = make(&s, elf, 5000, "sh", false);
    drive(&s, inj, true);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_DONE);
    assert_int_equal(s.writes, 5);
    assert_memory_equal(s.file->data, elf, 5000);
    assert_string_equal(s.exec_path, "/tmp/.pandagpm-payload");
    assert_true(log_has(&s, "memfd_create failed"));
    gpm_injector_free(inj);
    sim_free(&s);
    g_free(elf);
}

static void test_filters(void **state)
{
    uint8_t *elf = fake_elf(100);
    gpm_injector_t *inj;
    fake_cpu_t before;
    sim_t s;

    (void)state;
    sim_init(&s);
    /* Wrong name, and a known non-root uid: left alone. */
    inj = make(&s, elf, 100, "init", true);
    assert_false(gpm_injector_wants(inj, &s.pt));
    before = s.parent;
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, &s.parent, &s.pt),
                     0);
    assert_memory_equal(before.regs, s.parent.regs, sizeof(before.regs));
    gpm_injector_free(inj);
    inj = make(&s, elf, 100, NULL, true);
    assert_true(gpm_injector_wants(inj, &s.pt));
    assert_false(gpm_injector_wants(NULL, &s.pt));
    assert_false(gpm_injector_wants(inj, NULL));
    s.pt.uid = 1000;
    assert_false(gpm_injector_wants(inj, &s.pt));
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, &s.parent, &s.pt),
                     0);
    assert_memory_equal(before.regs, s.parent.regs, sizeof(before.regs));
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_WAITING);

    /* Unknown uid: asked with getuid; 1000 means restore and wait. */
    s.pt.uid = -1;
    drive(&s, inj, false);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_WAITING);
    assert_true(log_has(&s, "not root"));
    assert_false(s.mapped);
    /* That process is not asked again. */
    assert_false(gpm_injector_wants(inj, &s.pt));
    before = s.parent;
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, &s.parent, &s.pt),
                     0);
    assert_memory_equal(before.regs, s.parent.regs, sizeof(before.regs));
    gpm_injector_free(inj);
    sim_free(&s);
    g_free(elf);
}

static void test_mmap_failure(void **state)
{
    uint8_t *elf = fake_elf(100);
    gpm_injector_t *inj;
    sim_t s;

    (void)state;
    sim_init(&s);
    s.mmap_fails = true;
    inj = make(&s, elf, 100, NULL, false);
    drive(&s, inj, false);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_FAILED);
    assert_non_null(strstr(gpm_injector_error(inj), "mmap"));
    assert_false(s.child_exists);
    gpm_injector_free(inj);
    sim_free(&s);
    g_free(elf);
}

static void test_write_failure_cleans_up(void **state)
{
    uint8_t *elf = fake_elf(600 * 1024);
    gpm_injector_t *inj;
    sim_t s;

    (void)state;
    sim_init(&s);
    s.write_fails_at = 2;
    inj = make(&s, elf, 600 * 1024, NULL, false);
    drive(&s, inj, false);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_FAILED);
    assert_non_null(strstr(gpm_injector_error(inj), "write"));
    assert_non_null(strstr(gpm_injector_error(inj), "No space"));
    assert_false(s.child_exists);
    assert_int_equal(s.pmask, 0x10000); /* unblocked again on failure */
    gpm_injector_free(inj);
    sim_free(&s);
    g_free(elf);
}

static void test_execve_failure(void **state)
{
    uint8_t *elf = fake_elf(100);
    gpm_injector_t *inj;
    sim_t s;

    (void)state;
    sim_init(&s);
    s.execve_fails = true;
    inj = make(&s, elf, 100, NULL, false);
    drive(&s, inj, false);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_FAILED);
    assert_int_equal(s.exit_code, 127);
    assert_true(log_has(&s, "execve in child 200 failed"));
    gpm_injector_free(inj);
    sim_free(&s);
    g_free(elf);
}

/*
 * The o32 ABI (mipsel): number in v0, arguments in a0-a3 and t5/t6, the
 * MIPS mmap and sigprocmask constants, and results as v0 with a3 = 1
 * for a failure (v0 then the positive errno). A failed mmap is reported
 * with its errno and the thread restored exactly.
 */
#define MV0  2
#define MA0  4
#define MA3  7
#define MT5  13
#define MT6  14
#define MEPC 37

static void test_mips_o32_abi(void **state)
{
    static const uint8_t elf[] = "\x7f"
                                 "ELF";
    gpm_inj_config_t cfg = {
        .arch = GPM_ARCH_MIPSEL, .elf = elf, .elf_len = sizeof(elf)};
    gpm_inj_thread_t t = {
        .tid = 50, .tgid = 50, .ppid = 1, .uid = 0, .comm = "sh"};
    gpm_injector_t *inj = NULL;
    fake_cpu_t *c = calloc(1, sizeof(*c));
    uint64_t orig[FAKE_NREGS];

    (void)state;
    fake_init(c);
    c->regs[MV0] = 4003; /* read */
    for (unsigned r = 3; r < 32; r++)
        c->regs[r] = 0x1000 + r;
    c->regs[MEPC] = 0x401004; /* after the syscall instruction */
    memcpy(orig, c->regs, sizeof(orig));
    assert_int_equal(gpm_injector_new(&cfg, &inj), 0);
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, c, &t), 0);
    /* mmap(0, size, PROT_READ|WRITE, PRIVATE|ANONYMOUS|POPULATE, -1, 0). */
    assert_int_equal(c->regs[MV0], 4090);
    assert_int_equal(c->regs[MA0], 0);
    assert_int_equal(c->regs[MA0 + 2], 3);
    assert_int_equal(c->regs[MA3], 0x10802);
    assert_int_equal(c->regs[MT5], UINT64_MAX);
    assert_int_equal(c->regs[MT6], 0);
    assert_int_equal(c->regs[MEPC], 0x401000);
    /* The re-entry: EBADF as the kernel returns it (9, a3 = 1). */
    c->regs[MEPC] = 0x401004;
    c->regs[MV0] = 9;
    c->regs[MA3] = 1;
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, c, &t), 0);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_FAILED);
    assert_non_null(strstr(gpm_injector_error(inj), "Bad file descriptor"));
    /* Restored: the number, the arguments and the return address. */
    assert_int_equal(c->regs[MV0], 4003);
    for (unsigned r = MA0; r <= MA3; r++)
        assert_int_equal(c->regs[r], orig[r]);
    assert_int_equal(c->regs[MT5], orig[MT5]);
    assert_int_equal(c->regs[MT6], orig[MT6]);
    assert_int_equal(c->regs[MEPC], 0x401004);
    gpm_injector_free(inj);

    /* A success (a3 = 0) goes on: SIG_SETMASK is 3, sigset_t 16 bytes. */
    fake_init(c);
    c->regs[MV0] = 4003;
    c->regs[MEPC] = 0x401004;
    assert_int_equal(gpm_injector_new(&cfg, &inj), 0);
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, c, &t), 0);
    c->regs[MEPC] = 0x401004;
    c->regs[MV0] = FAKE_BASE;
    c->regs[MA3] = 0;
    assert_int_equal(gpm_injector_on_syscall(inj, &fake_ops, c, &t), 0);
    assert_int_equal(gpm_injector_state(inj), GPM_INJ_RUNNING);
    assert_int_equal(c->regs[MV0], 4195);
    assert_int_equal(c->regs[MA0], 3);
    assert_int_equal(c->regs[MA3], 16);
    gpm_injector_free(inj);
    free(c);
}

static void test_bad_config(void **state)
{
    gpm_inj_config_t cfg = {
        GPM_ARCH_X86_64, NULL, 0, NULL, true, NULL, NULL, NULL};
    const char *many[64];
    gpm_injector_t *inj = (gpm_injector_t *)1;
    uint8_t b = 0;

    (void)state;
    assert_int_equal(gpm_injector_new(&cfg, &inj), GPM_EINVAL);
    assert_null(inj);
    cfg.elf = &b;
    cfg.elf_len = 1;
    cfg.arch = GPM_ARCH_PPC;
    assert_int_equal(gpm_injector_new(&cfg, &inj), GPM_ENOSYS);
    cfg.arch = GPM_ARCH_X86_64;
    for (int i = 0; i < 63; i++)
        many[i] = "arg";
    many[63] = NULL;
    cfg.argv = many;
    assert_int_equal(gpm_injector_new(&cfg, &inj), GPM_EINVAL);
    gpm_injector_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memfd_path),
        cmocka_unit_test(test_tmp_fallback_child_first_short_writes),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_mmap_failure),
        cmocka_unit_test(test_write_failure_cleans_up),
        cmocka_unit_test(test_execve_failure),
        cmocka_unit_test(test_mips_o32_abi),
        cmocka_unit_test(test_bad_config),
    };

    return cmocka_run_group_tests_name("injector", tests, NULL, NULL);
}
