/*
 * linjector.c - the linjector PANDA plugin: starts a program (the
 * guest daemon) in a running guest by hijacking one process at a system
 * call entry, with the core's injector (gpm/injector.h).
 *
 * Arguments (-panda linjector:key=value,...):
 *   guest_binary=PATH|NAME  the static ELF to start (required); a NAME
 *                           without '/' is found on the inventory path;
 *   proc_name=A:B:...       hijack only a process whose comm is one of
 *                           these (default: DEFAULT_PROC_NAMES, the
 *                           usual shells); "*" for any process;
 *   require_root=true       hijack only a process whose real uid is 0;
 *   retries=N               after a failed injection, try that many more
 *                           processes (default DEFAULT_RETRIES);
 *   args=A B ...            extra arguments after argv[0], split at spaces
 *                           (guest_plugin_manager passes "-n" to the
 *                           daemon: linjector already detached it).
 * Needs syscalls2, osi and osi_linux, so an OS profile (-os linux-...)
 * and an osi_linux kernelinfo group; it loads them itself (osi with
 * disable-autoload) and fails init_plugin with one line if any of that
 * is missing, instead of letting panda_require() abort PANDA.
 *
 * Which processes: never one that cannot exec the payload. A shell is
 * the default target because it runs after /proc is mounted (the payload
 * is executed as /proc/self/fd/N) and makes system calls whenever the
 * user types; children of kthreadd (asynchronous usermode helpers) and
 * PID 1 are never used. With proc_name=* an early-boot process may run
 * before /proc exists: the injector checks that /proc/self/fd/N opens
 * before it forks, so such a process is only restored, and the next
 * matching one is tried. A failure after the fork (the child's execve)
 * is retried on another process up to retries=N times; failures before
 * it change nothing in the guest and have a larger budget of their own.
 * A process that failed is never tried again.
 *
 * How the injector's re-entry trick maps onto PANDA
 * -------------------------------------------------
 * The injector was written for a stop at the kernel's system call entry
 * (the stock-QEMU host breaks at entry_SYSCALL_64): there the SYSCALL
 * instruction has already run, RAX holds the call number and RCX the user
 * return address. The injector rewrites RAX and the argument registers
 * and sets RCX to the SYSCALL instruction (return address - 2); the kernel
 * saves RCX as the user pc, so when the injected call returns the thread
 * executes SYSCALL again, entering with RAX = the injected call's result.
 * A forked child inherits the same saved pc and re-enters the same way.
 *
 * syscalls2's on_all_sys_enter runs earlier: from an instruction callback
 * BEFORE the SYSCALL instruction executes, in user mode, with @pc the
 * instruction's address. RAX and the argument registers already hold what
 * the kernel will read, so rewriting them there works unchanged. RCX does
 * not: SYSCALL itself overwrites RCX with the next pc. So:
 *
 *  1. The injector runs through a register view (gpm_panda_mem.h) that
 *     presents RCX as pc + 2 and records what the injector writes to it
 *     instead of writing it: "pc" means re-enter, "pc + 2" (the restore
 *     at the end) means return normally. Nothing else is intercepted.
 *  2. A re-entry request arms a one-shot hook on the kernel's SYSCALL
 *     entry point (the LSTAR MSR, env->lstar): an instruction callback at
 *     that address, which is the first instruction the CPU executes after
 *     SYSCALL (interrupts are masked through SFMASK). It sets RCX to the
 *     syscall instruction's address there, which is exactly the state the
 *     stock-QEMU host creates at entry_SYSCALL_64. From then on the
 *     kernel does the rest: the saved user pc is the SYSCALL instruction,
 *     so the thread (and a child forked by an injected fork, whose pt_regs
 *     are a copy) comes back to it and syscalls2 reports the re-entry as a
 *     new system call whose "number" is the previous call's result, which
 *     the injector reads from RAX.
 *
 * Why not on_all_sys_return: syscalls2 matches returns by (return address,
 * ASID) and fires them at the instruction after SYSCALL. Sending the pc
 * back from there would need a mid-block pc change, and a forked child
 * (new ASID) never gets a return callback at all, so it would run the
 * parent's code with fork's 0 in RAX. The kernel-entry hook has neither
 * problem.
 *
 * Consequences other syscalls2 users see while an injection runs: the
 * hijacked thread's re-entries arrive as system calls numbered with the
 * previous call's result (e.g. 0 after munmap), and the return callback
 * of the original call carries the last re-entry's number. Only SYSCALL
 * (0f 05) stops are used; int 0x80 and SYSENTER stops are never hijacked.
 *
 * After a snapshot is loaded (PANDA_CB_AFTER_LOADVM: -loadvm, a revert)
 * the injector starts over, so every restored guest state gets a daemon.
 *
 * Injection is x86_64-only for now, like the core's system call tables;
 * on other targets init_plugin() fails with a message. Thread identity
 * comes from OSI (tid, tgid, ppid, comm); OSI has no uid, so with
 * require_root the injector asks with an injected getuid.
 */
#include "panda/plugin.h"
#include "panda/plugin_plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "osi/osi_types.h"
#include "osi/osi_ext.h"
#include "syscalls2/syscalls_ext_typedefs.h"

#include "gpm_panda_host.h"
#include "gpm_panda_mem.h"
#include "linjector.h"
#include "syscalls.h"

bool init_plugin(void *self);
void uninit_plugin(void *self);

PPP_PROT_REG_CB(before_guest_inject)
PPP_CB_BOILERPLATE(before_guest_inject)
PPP_PROT_REG_CB(after_guest_inject)
PPP_CB_BOILERPLATE(after_guest_inject)

/* Process names hijacked when proc_name= is not given. */
#define DEFAULT_PROC_NAMES    "sh:bash:ash:dash:zsh"
#define DEFAULT_RETRIES       8
/* kthreadd's pid: its children are kernel threads and usermode helpers. */
#define KTHREADD_PID          2
/* Processes (hijacked or forked) of failed attempts, never tried again. */
#define MAX_FAILED            256
/*
 * Failed attempts that forked nothing (e.g. the pre-fork check found no
 * /proc) have no effect on the guest; they get their own, larger budget.
 */
#define MAX_HARMLESS_FAILURES 128

static struct {
    gpm_injector_t *inj;
    gpm_inj_config_t cfg; /* kept to start over after a snapshot load */
    gchar *elf;
    char **names; /* NULL-ended comm names, or NULL for any process */
    char **argv;  /* NULL-ended, for cfg.argv */
    unsigned retries_left;
    unsigned max_retries;
    unsigned harmless_failures;
    int64_t failed[MAX_FAILED];
    unsigned n_failed;
    const gpm_arch_info_t *ai;
    const gpm__sys_table_t *sys;
    gpm_inj_state_t reported; /* the last state logged */
    bool have_pc;
    uint64_t hijack_pc; /* the hijacked SYSCALL instruction */
    /* One-shot RCX rewrite at the next kernel entry of @cpu. */
    bool armed;
    CPUState *armed_cpu;
    uint64_t armed_rcx;
} lj;

static void inj_log(int level, const char *msg, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "%s%s\n", level == GPM_INJ_LOG_ERROR ? "ERROR: " : "", msg);
}

/* Fills @t from OSI; false if OSI does not know the current thread. */
static bool current_thread(CPUState *cpu, gpm_inj_thread_t *t)
{
    OsiThread *th = get_current_thread(cpu);
    OsiProc *pr = get_current_process(cpu);
    bool ok = th != NULL && pr != NULL;

    if (ok) {
        memset(t, 0, sizeof(*t));
        t->tid = th->tid;
        t->tgid = th->pid;
        t->ppid = pr->ppid;
        t->uid = -1;
        if (pr->name != NULL)
            g_strlcpy(t->comm, pr->name, sizeof(t->comm));
    }
    /* OSI allocates both with glib. */
    g_free(th);
    if (pr != NULL) {
        g_free(pr->name);
        g_free(pr->pages);
        g_free(pr);
    }
    return ok;
}

/* True if the instruction at @pc is SYSCALL (0f 05). */
static bool is_syscall_insn(CPUState *cpu, target_ulong pc)
{
    uint8_t b[2];

    return panda_virtual_memory_rw(cpu, pc, b, 2, false) == 0 && b[0] == 0x0f &&
           b[1] == 0x05;
}

/* False for a process linjector must not hijack (see the top comment). */
static bool candidate(const gpm_inj_thread_t *t)
{
    if (t->ppid == 0 || t->ppid == KTHREADD_PID || t->tgid <= 1)
        return false;
    for (unsigned i = 0; i < lj.n_failed; i++)
        if (lj.failed[i] == t->tgid)
            return false;
    if (lj.names == NULL)
        return true;
    for (unsigned i = 0; lj.names[i] != NULL; i++)
        if (strncmp(t->comm, lj.names[i], sizeof(t->comm) - 1) == 0 &&
            strlen(lj.names[i]) < sizeof(t->comm))
            return true;
    return false;
}

static void remember_failed(int64_t tgid)
{
    if (tgid > 0 && lj.n_failed < MAX_FAILED)
        lj.failed[lj.n_failed++] = tgid;
}

/* Replaces the injector with a fresh one that waits for a target. */
static int start_over(void)
{
    gpm_injector_t *fresh = NULL;
    int rc = gpm_injector_new(&lj.cfg, &fresh);

    if (rc != 0)
        return rc;
    gpm_injector_free(lj.inj);
    lj.inj = fresh;
    lj.reported = GPM_INJ_WAITING;
    lj.have_pc = false;
    return 0;
}

/*
 * After a failure, once no thread needs the old injector any more, try
 * the next matching process (the failed ones are never tried again).
 */
static void maybe_retry(void)
{
    int64_t tgid, child;
    int rc;

    if (gpm_injector_state(lj.inj) != GPM_INJ_FAILED ||
        !gpm_injector_settled(lj.inj))
        return;
    gpm_injector_target(lj.inj, &tgid, &child);
    if ((child >= 0 && lj.retries_left == 0) ||
        (child < 0 && lj.harmless_failures >= MAX_HARMLESS_FAILURES)) {
        fprintf(stderr,
                "linjector: giving up after %u failed injections; the "
                "program was not started\n",
                lj.max_retries - lj.retries_left + lj.harmless_failures + 1);
        gpm_injector_free(lj.inj);
        lj.inj = NULL;
        return;
    }
    remember_failed(tgid);
    remember_failed(child);
    rc = start_over();
    if (rc != 0) {
        fprintf(stderr, "linjector: cannot retry: %s\n", gpm_strerror(rc));
        return;
    }
    if (child >= 0) {
        lj.retries_left--;
        fprintf(stderr,
                "linjector: will try another process (%u more attempts "
                "after this one)\n",
                lj.retries_left);
    } else {
        /* Nothing was forked: that process was restored as it was. */
        lj.harmless_failures++;
        fprintf(stderr, "linjector: will try another process\n");
    }
}

static void report_state(CPUState *cpu)
{
    gpm_inj_state_t st = gpm_injector_state(lj.inj);
    int64_t tgid, child;

    if (st == lj.reported)
        return;
    lj.reported = st;
    gpm_injector_target(lj.inj, &tgid, &child);
    if (st == GPM_INJ_DONE) {
        fprintf(stderr, "linjector: injected through pid %lld, child %lld\n",
                (long long)tgid, (long long)child);
        PPP_RUN_CB(after_guest_inject, cpu, tgid, child);
    } else if (st == GPM_INJ_FAILED)
        fprintf(stderr, "linjector: injection failed: %s\n",
                gpm_injector_error(lj.inj) != NULL ? gpm_injector_error(lj.inj)
                                                   : "unknown error");
}

static void on_sys_enter(CPUState *cpu, target_ulong pc, target_ulong callno)
{
    gpm_entry_view_t view;
    gpm_inj_thread_t t;
    gpm_inj_state_t before;
    int rc;

    (void)callno;
    if (lj.inj == NULL)
        return;
    if (lj.armed && lj.armed_cpu == cpu) {
        /* The kernel entry hook never fired: should not happen. */
        fprintf(stderr, "linjector: kernel entry hook missed; the hijacked "
                        "thread may be left in an injected call\n");
        lj.armed = false;
    }
    before = gpm_injector_state(lj.inj);
    /* After the hijack only its SYSCALL instruction matters. */
    if (before != GPM_INJ_WAITING && (!lj.have_pc || pc != lj.hijack_pc))
        return;
    if (!is_syscall_insn(cpu, pc) || !current_thread(cpu, &t))
        return;
    if (before == GPM_INJ_WAITING && !candidate(&t))
        return;

    gpm_entry_view_init(&view, &gpm_panda_host_ops, cpu, lj.sys->retaddr_reg,
                        pc, lj.sys->insn_len, lj.ai->word_bits);
    rc = gpm_injector_on_syscall(lj.inj, &gpm_entry_view_ops, &view, &t);
    if (rc != 0)
        fprintf(stderr, "linjector: register access failed: %s\n",
                gpm_strerror(rc));
    if (before == GPM_INJ_WAITING &&
        gpm_injector_state(lj.inj) != GPM_INJ_WAITING) {
        lj.have_pc = true;
        lj.hijack_pc = pc;
        PPP_RUN_CB(before_guest_inject, cpu);
    }
    if (view.written && view.reenter) {
        lj.armed = true;
        lj.armed_cpu = cpu;
        lj.armed_rcx = pc;
    }
    report_state(cpu);
    maybe_retry();
}

#if defined(TARGET_X86_64)
/* Instruments the kernel's SYSCALL entry point in every translation. */
static bool on_insn_translate(CPUState *cpu, target_ulong pc)
{
    CPUX86State *env = cpu->env_ptr;

    return env->lstar != 0 && pc == env->lstar;
}

static int on_insn_exec(CPUState *cpu, target_ulong pc)
{
    CPUX86State *env = cpu->env_ptr;

    if (lj.armed && lj.armed_cpu == cpu && pc == env->lstar) {
        env->regs[R_ECX] = (target_ulong)lj.armed_rcx;
        lj.armed = false;
    }
    return 0;
}
#endif

/*
 * Forgets the injection under way (its guest state is gone) and waits
 * for a new target, with every retry available again.
 */
static void on_after_loadvm(CPUState *cpu)
{
    int rc;

    (void)cpu;
    if (lj.cfg.elf == NULL)
        return;
    rc = start_over();
    if (rc != 0) {
        fprintf(stderr, "linjector: cannot start over: %s\n", gpm_strerror(rc));
        return;
    }
    lj.armed = false;
    lj.n_failed = 0;
    lj.retries_left = lj.max_retries;
    lj.harmless_failures = 0;
}

/* Reads the program named by guest_binary= into memory. */
static bool load_binary(const char *what, gpm_arch_t arch, gchar **elf,
                        gsize *len)
{
    gpm_plugin_info_t *info = g_new0(gpm_plugin_info_t, 1);
    char why[2048] = "";
    GError *err = NULL;
    const char *path = what;
    int rc;

    if (strchr(what, '/') == NULL) {
        rc = gpm_plugin_find(what, NULL, arch, info, why, sizeof(why));
        if (rc != 0) {
            fprintf(stderr, "linjector: guest_binary=%s: %s (%s)\n", what,
                    gpm_strerror(rc), why);
            g_free(info);
            return false;
        }
        path = info->path;
    }
    if (!g_file_get_contents(path, elf, len, &err)) {
        fprintf(stderr, "linjector: guest_binary=%s: %s\n", path, err->message);
        g_error_free(err);
        g_free(info);
        return false;
    }
    g_free(info);
    return true;
}

/*
 * Loads PANDA plugin @name unless it is loaded, without panda_require(),
 * which aborts PANDA when the plugin is missing or its init fails.
 */
static bool load_dep(const char *name)
{
    char *path;
    bool ok;

    if (panda_get_plugin_by_name(name) != NULL)
        return true;
    path = panda_plugin_path(name);
    if (path == NULL) {
        fprintf(stderr,
                "linjector: PANDA plugin %s not found (no panda_%s.so in "
                "PANDA's plugin directories); build it with PANDA\n",
                name, name);
        return false;
    }
    ok = panda_load_plugin(path, name);
    if (!ok)
        fprintf(stderr,
                "linjector: PANDA plugin %s (%s) failed to load; see its "
                "messages above%s\n",
                name, path,
                strcmp(name, "osi_linux") == 0
                    ? " (it needs a kernelinfo group for this kernel: "
                      "-panda-arg osi_linux:kconf_file=FILE,kconf_group=NAME)"
                    : "");
    g_free(path);
    return ok;
}

/* syscalls2, osi and osi_linux, or one line saying what is missing. */
static bool load_deps(void)
{
    if (panda_os_familyno != OS_LINUX) {
        fprintf(stderr,
                "linjector: needs a Linux OS profile: start PANDA with "
                "-os linux-64-<name> (pypanda: Panda(os_version=...)), and "
                "an osi_linux kernelinfo group for the guest's kernel\n");
        return false;
    }
    if (!load_dep("syscalls2"))
        return false;
    /* We load osi_linux ourselves, so that its failure cannot abort. */
    if (panda_get_plugin_by_name("osi") == NULL)
        panda_add_arg("osi", "disable-autoload=true");
    if (!load_dep("osi") || !load_dep("osi_linux"))
        return false;
    if (!init_osi_api()) {
        fprintf(stderr, "linjector: the osi plugin's API is incomplete\n");
        return false;
    }
    return true;
}

/* "a:b" -> {"a", "b", NULL}; NULL for "*" (any process). */
static char **split_names(const char *list)
{
    char **names = g_strsplit(list, ":", -1);
    unsigned n = 0;

    for (unsigned i = 0; names[i] != NULL; i++) {
        if (names[i][0] != '\0')
            names[n++] = names[i];
        else
            g_free(names[i]);
    }
    names[n] = NULL;
    if (n == 0 || (n == 1 && strcmp(names[0], "*") == 0)) {
        g_strfreev(names);
        return NULL;
    }
    return names;
}

bool init_plugin(void *self)
{
    panda_arg_list *args = panda_get_args("linjector");
    char *binary = g_strdup(panda_parse_string_opt(
        args, "guest_binary", NULL, "the static ELF to start in the guest"));
    char **names = split_names(panda_parse_string_opt(
        args, "proc_name", DEFAULT_PROC_NAMES,
        "hijack only a process with one of these names (a:b:c; * = any)"));
    bool require_root = panda_parse_bool_opt(
        args, "require_root", "hijack only a process running as root");
    uint32_t retries = panda_parse_uint32_opt(
        args, "retries", DEFAULT_RETRIES,
        "after a failed injection, try this many more processes");
    char **argv = g_strsplit(
        panda_parse_string_opt(args, "args", "",
                               "extra arguments for the program, split at "
                               "spaces"),
        " ", -1);
    gpm_inj_config_t cfg = {0};
    gchar *elf = NULL;
    gsize elf_len = 0;
    gpm_arch_t arch;
    bool ok = false;
    int rc;

    panda_free_args(args);
    /* Drop the empty strings that repeated spaces leave. */
    {
        unsigned n = 0;

        for (unsigned i = 0; argv[i] != NULL; i++) {
            if (argv[i][0] != '\0')
                argv[n++] = argv[i];
            else
                g_free(argv[i]);
        }
        argv[n] = NULL;
    }
    if (binary == NULL) {
        fprintf(stderr, "linjector: guest_binary= is required\n");
        goto out;
    }
    if (gpm_panda_guest_arch(&arch) != 0) {
        fprintf(stderr, "linjector: this PANDA target has no pandagpm ABI\n");
        goto out;
    }
    if (!load_binary(binary, arch, &elf, &elf_len))
        goto out;
    cfg.arch = arch;
    cfg.elf = (const uint8_t *)elf;
    cfg.elf_len = elf_len;
    /* The names are matched here (candidate()), before the core sees one. */
    cfg.proc_name = NULL;
    cfg.require_root = require_root;
    cfg.argv = (const char *const *)argv;
    cfg.log = inj_log;
    rc = gpm_injector_new(&cfg, &lj.inj);
    if (rc != 0) {
        fprintf(stderr, "linjector: cannot inject on %s: %s\n",
                gpm_arch_info(arch)->name, gpm_strerror(rc));
        goto out;
    }
    /*
     * Nothing is registered with PANDA before this point: a failed
     * init_plugin() is dlclose()d without its callbacks being removed.
     */
    if (!load_deps()) {
        gpm_injector_free(lj.inj);
        lj.inj = NULL;
        goto out;
    }
    /* The config's buffers now belong to lj, until uninit_plugin(). */
    lj.cfg = cfg;
    lj.elf = elf;
    lj.names = names;
    lj.argv = argv;
    elf = NULL;
    names = NULL;
    argv = NULL;
    lj.ai = gpm_arch_info(arch);
    lj.sys = gpm__sys_table(arch);
    lj.reported = GPM_INJ_WAITING;
    lj.max_retries = retries;
    lj.retries_left = retries;

    {
        panda_cb pcb;

        pcb.after_loadvm = on_after_loadvm;
        panda_register_callback(self, PANDA_CB_AFTER_LOADVM, pcb);
#if defined(TARGET_X86_64)
        pcb.insn_translate = on_insn_translate;
        panda_register_callback(self, PANDA_CB_INSN_TRANSLATE, pcb);
        pcb.insn_exec = on_insn_exec;
        panda_register_callback(self, PANDA_CB_INSN_EXEC, pcb);
        /* Code translated before we loaded lacks the entry hook. */
        panda_do_flush_tb();
#endif
    }
    PPP_REG_CB("syscalls2", on_all_sys_enter, on_sys_enter);
    ok = true;
out:
    g_free(elf);
    g_free(binary);
    g_strfreev(names);
    g_strfreev(argv);
    return ok;
}

void uninit_plugin(void *self)
{
    void *sc2 = panda_get_plugin_by_name("syscalls2");

    (void)self;
    if (sc2 != NULL) {
        bool (*remove_cb)(on_all_sys_enter_t);

        void *sym = dlsym(sc2, "ppp_remove_cb_on_all_sys_enter");

        /* POSIX: a dlsym() result converts to a function pointer. */
        memcpy(&remove_cb, &sym, sizeof(sym));
        if (remove_cb != NULL)
            remove_cb(on_sys_enter);
    }
    if (lj.inj != NULL && !gpm_injector_settled(lj.inj))
        fprintf(stderr, "linjector: unloaded during an injection; the "
                        "hijacked process is left as it is\n");
    gpm_injector_free(lj.inj);
    g_free(lj.elf);
    g_strfreev(lj.names);
    g_strfreev(lj.argv);
    memset(&lj, 0, sizeof(lj));
}
