/*
 * py_panda_inject.c - linjector for pypanda users, with no PANDA plugin of
 * ours compiled into their PANDA.
 *
 * The core's injector (gpm/injector.h) runs from C callbacks that pypanda
 * registers through pandare's ffi. syscalls2's on_all_sys_enter (a PPP
 * callback) only chooses the process: it hijacks the call through the
 * register view of csrc/panda/linjector.c, which turns the write of RCX
 * into a "re-enter" request. From then on PANDA's start_block_exec,
 * enabled only while an injection runs, does the rest at the kernel's
 * SYSCALL entry (the first kernel block after the hijacked SYSCALL): it
 * points RCX back at the instruction there, learns the entry's address,
 * and runs every later step of the injector at that address with the
 * registers the kernel sees, exactly as the stock-QEMU host does at its
 * breakpoint on entry_SYSCALL_64. (syscalls2 does not report a SYSCALL
 * that starts a translation block, which is where every re-entry lands.)
 * Registers and memory go through the hypercall hot path's CPU view
 * (py_panda.c); thread identity comes from OSI's get_current_thread and
 * get_current_process, whose addresses and struct offsets Python takes
 * from pandare's cffi types.
 *
 * Every callback runs on PANDA's CPU thread and never takes the GIL. A
 * failed injection is retried on another process, up to max_attempts;
 * processes that failed are not chosen again.
 */
#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/syscalls.h"
#include "gpm/injector.h"
#include "panda/gpm_panda_mem.h"
#include "python/py_panda.h"
#include "python/pymod.h"

#define MAX_FAILED_TGIDS 32
/* Kernel entries watched after DONE, for the child's execve result. */
#define TAIL_ENTRIES     256
/* ... and at most this many blocks, so an idle guest is not slowed. */
#define TAIL_BLOCKS      (4u << 20)

typedef void *(*osi_get_fn)(void *cpu);
/* libpanda's panda_enable_callback_helper/panda_disable_callback_helper:
 * (plugin handle, panda_cb_type, panda_cb *). */
typedef void (*cb_toggle_fn)(void *plugin, int type, void *pcb);

/* GDB's x86_64 register numbers used here. */
#define GPM_X86_64_RIP 16

static void on_block(void *cpu, void *tb);
static void hook_enable(bool on);

typedef struct osi_layout {
    long thr_tid, thr_pid;                 /* OsiThread */
    long proc_ppid, proc_name, proc_pages; /* OsiProc */
    unsigned pid_bytes;                    /* sizeof(target_pid_t) */
} osi_layout_t;

static struct {
    GMutex lock; /* Python's calls against the CPU thread */
    gpm_injector_t *inj;
    gpm_inj_config_t cfg; /* owns elf, proc_name, argv */
    uint8_t *elf;
    char *proc_name;
    char **argv;
    const gpm_arch_info_t *ai;
    const gpm__sys_table_t *sys;
    osi_get_fn get_thread, get_process;
    osi_layout_t osi;
    cb_toggle_fn cb_enable, cb_disable;
    void *cb_handle; /* pandare's handle for our start_block_exec */
    int cb_type;     /* PANDA_CB_START_BLOCK_EXEC */
    void *cb_pcb;    /* pandare's panda_cb holding it (pandare keeps it) */
    bool hook_on;
    unsigned rcx_reg;
    /* The injection under way. */
    uint64_t hijack_pc;
    uint64_t entry_pc; /* the kernel's SYSCALL entry, learnt at a hijack */
    unsigned tail_entries, tail_blocks;
    bool armed;
    void *armed_cpu;
    uint64_t armed_rcx;
    /* Retries. */
    unsigned attempts, max_attempts;
    int64_t failed[MAX_FAILED_TGIDS];
    unsigned n_failed;
    gpm_inj_state_t reported;
    int64_t done_tgid, done_child;
    uint64_t hooks_placed, hooks_run; /* kernel-entry hook, for status */
    char last_error[256];
} pj;

static void inj_log(int level, const char *msg, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "pandagpm: %s%s\n",
            level == GPM_INJ_LOG_ERROR ? "ERROR: " : "", msg);
    if (level == GPM_INJ_LOG_ERROR)
        g_strlcpy(pj.last_error, msg, sizeof(pj.last_error));
}

static int64_t read_pid(const uint8_t *base, long off)
{
    int32_t v32;
    int64_t v64;

    if (pj.osi.pid_bytes == 8) {
        memcpy(&v64, base + off, 8);
        return v64;
    }
    memcpy(&v32, base + off, 4);
    return v32;
}

/* Fills @t from OSI; false if OSI does not know the current thread. */
static bool current_thread(void *cpu, gpm_inj_thread_t *t)
{
    uint8_t *th = pj.get_thread(cpu);
    uint8_t *pr = pj.get_process(cpu);
    bool ok = th != NULL && pr != NULL;

    if (ok) {
        char *name;

        memset(t, 0, sizeof(*t));
        t->tid = read_pid(th, pj.osi.thr_tid);
        t->tgid = read_pid(th, pj.osi.thr_pid);
        t->ppid = read_pid(pr, pj.osi.proc_ppid);
        t->uid = -1;
        memcpy(&name, pr + pj.osi.proc_name, sizeof(name));
        if (name != NULL)
            g_strlcpy(t->comm, name, sizeof(t->comm));
    }
    /* OSI allocates both, and the process's strings, with glib. */
    g_free(th);
    if (pr != NULL) {
        void *p;

        memcpy(&p, pr + pj.osi.proc_name, sizeof(p));
        g_free(p);
        memcpy(&p, pr + pj.osi.proc_pages, sizeof(p));
        g_free(p);
        g_free(pr);
    }
    return ok;
}

static bool failed_before(int64_t tgid)
{
    for (unsigned i = 0; i < pj.n_failed; i++)
        if (pj.failed[i] == tgid)
            return true;
    return false;
}

/* After a failure: remember the process and start a new injector. */
static void retry_after_failure(void)
{
    gpm_injector_t *fresh = NULL;
    int64_t tgid, child;

    gpm_injector_target(pj.inj, &tgid, &child);
    if (tgid > 0 && pj.n_failed < MAX_FAILED_TGIDS)
        pj.failed[pj.n_failed++] = tgid;
    if (pj.attempts >= pj.max_attempts) {
        fprintf(stderr, "pandagpm: injection failed %u times; giving up\n",
                pj.attempts);
        return;
    }
    if (gpm_injector_new(&pj.cfg, &fresh) != 0)
        return;
    gpm_injector_free(pj.inj);
    pj.inj = fresh;
    pj.armed = false;
    pj.reported = GPM_INJ_WAITING;
    fprintf(stderr, "pandagpm: retrying the injection on another process\n");
}

static void note_state(void)
{
    gpm_inj_state_t now = gpm_injector_state(pj.inj);

    if (now == pj.reported)
        return;
    pj.reported = now;
    if (now == GPM_INJ_DONE) {
        gpm_injector_target(pj.inj, &pj.done_tgid, &pj.done_child);
        /* Only the injected process may speak for the daemon. */
        if (pj.done_child > 0)
            (void)gpm__panda_set_daemon_owner(pj.done_child);
        /* Watch a little longer: the child's execve may still fail. */
        pj.tail_entries = TAIL_ENTRIES;
        pj.tail_blocks = TAIL_BLOCKS;
    } else if (now == GPM_INJ_FAILED) {
        retry_after_failure();
    }
}

static void hook_enable(bool on)
{
    if (on != pj.hook_on) {
        (on ? pj.cb_enable : pj.cb_disable)(pj.cb_handle, pj.cb_type,
                                            pj.cb_pcb);
        pj.hook_on = on;
    }
}

typedef struct first_args {
    uint64_t pc;
    const gpm_inj_thread_t *t;
    bool reenter;
} first_args_t;

/* The hijack itself, at syscalls2's stop before SYSCALL: RCX is virtual. */
static int first_step(const gpm_host_ops_t *ops, void *view_cpu, uint8_t *env,
                      void *opaque)
{
    first_args_t *a = opaque;
    gpm_entry_view_t view;
    int rc;

    (void)env;
    gpm_entry_view_init(&view, ops, view_cpu, pj.sys->retaddr_reg, a->pc,
                        pj.sys->insn_len, pj.ai->word_bits);
    rc = gpm_injector_on_syscall(pj.inj, &gpm_entry_view_ops, &view, a->t);
    a->reenter = view.written && view.reenter;
    return rc;
}

static int read_insn(const gpm_host_ops_t *ops, void *view_cpu, uint8_t *env,
                     void *opaque)
{
    (void)env;
    return ops->read_mem(view_cpu, *(uint64_t *)opaque, (uint8_t *)opaque + 8,
                         2);
}

/*
 * syscalls2's on_all_sys_enter: void (*)(CPUState *, target_ulong pc,
 * target_ulong callno), on x86_64 (target_ulong = uint64_t). Used only to
 * choose the process: everything after the hijack happens at the
 * kernel's entry (on_block), because syscalls2 misses a SYSCALL that
 * starts a translation block, which is where every re-entry lands.
 */
static void on_sys_enter(void *cpu, uint64_t pc, uint64_t callno)
{
    struct {
        uint64_t pc;
        uint8_t insn[8];
    } probe = {pc, {0}};
    gpm_inj_thread_t t;
    first_args_t a = {pc, &t, false};
    int rc;

    (void)callno;
    g_mutex_lock(&pj.lock);
    if (pj.inj == NULL || gpm_injector_state(pj.inj) != GPM_INJ_WAITING ||
        pj.armed)
        goto out;
    /* Only SYSCALL (0f 05) stops: the re-entry trick needs its RCX. */
    if (gpm__panda_with_cpu(cpu, read_insn, &probe) != 0 ||
        probe.insn[0] != 0x0f || probe.insn[1] != 0x05)
        goto out;
    /* Never a usermode helper the kernel started (a child of kthreadd):
     * early in boot it may run before /proc exists. */
    if (!current_thread(cpu, &t) || failed_before(t.tgid) || t.ppid == 2)
        goto out;
    rc = gpm__panda_with_cpu(cpu, first_step, &a);
    if (rc != 0) {
        fprintf(stderr, "pandagpm: injector register access failed: %s\n",
                gpm_strerror(rc));
        goto out;
    }
    if (gpm_injector_state(pj.inj) != GPM_INJ_WAITING) {
        pj.attempts++;
        pj.hijack_pc = pc;
    }
    if (a.reenter) {
        pj.armed = true;
        pj.armed_cpu = cpu;
        pj.armed_rcx = pc;
        hook_enable(true);
    }
    note_state();
out:
    g_mutex_unlock(&pj.lock);
}

typedef struct entry_args {
    void *cpu;
    bool kernel, entry;
} entry_args_t;

/* Classifies the block: user, the kernel's SYSCALL entry, other kernel. */
static int classify(const gpm_host_ops_t *ops, void *view_cpu, uint8_t *env,
                    void *opaque)
{
    entry_args_t *a = opaque;
    uint64_t rip;
    int rc;

    (void)env;
    rc = ops->read_reg(view_cpu, GPM_X86_64_RIP, &rip);
    if (rc != 0)
        return rc;
    a->kernel = (rip >> 63) != 0;
    if (pj.armed && a->kernel) {
        /* The first kernel block after the hijacked SYSCALL is the entry. */
        pj.entry_pc = rip;
        a->entry = false;
        return ops->write_reg(view_cpu, pj.rcx_reg, pj.armed_rcx);
    }
    a->entry = a->kernel && pj.entry_pc != 0 && rip == pj.entry_pc;
    return 0;
}

typedef struct step_args {
    const gpm_inj_thread_t *t;
} step_args_t;

/* A later step, at the kernel's entry: the registers are real there, as
 * at the stock-QEMU host's breakpoint on entry_SYSCALL_64. */
static int entry_step(const gpm_host_ops_t *ops, void *view_cpu, uint8_t *env,
                      void *opaque)
{
    (void)env;
    return gpm_injector_on_syscall(pj.inj, ops, view_cpu,
                                   ((step_args_t *)opaque)->t);
}

/*
 * PANDA's start_block_exec: void (*)(CPUState *, TranslationBlock *),
 * enabled only while an injection runs (and a few entries after). The
 * first kernel-mode block after the hijacked SYSCALL is the kernel's
 * entry point (interrupts are masked there): RCX, which the kernel saves
 * as the user pc, is pointed back at the instruction, and the entry's
 * address is learnt. Every later SYSCALL of any thread arrives at that
 * block with the registers as the kernel sees them; the injector takes
 * its steps there. No struct layout beyond the general registers is
 * needed, so pandare's cffi types (whose later CPUX86State offsets are
 * wrong: cffi drops FPReg's 16-byte alignment) cannot mislead it.
 */
static void on_block(void *cpu, void *tb)
{
    entry_args_t a = {cpu, false, false};
    gpm_inj_thread_t t;
    step_args_t sa = {&t};
    int rc;

    (void)tb;
    g_mutex_lock(&pj.lock);
    if (pj.inj == NULL || !pj.hook_on)
        goto out;
    pj.hooks_run++;
    if (gpm_injector_state(pj.inj) == GPM_INJ_DONE &&
        (pj.tail_blocks == 0 || --pj.tail_blocks == 0)) {
        pj.tail_entries = 0;
        hook_enable(false);
        goto out;
    }
    if (gpm__panda_with_cpu(cpu, classify, &a) != 0 || !a.kernel)
        goto out;
    if (pj.armed) {
        pj.armed = false;
        pj.hooks_placed++;
        goto out;
    }
    if (!a.entry)
        goto out;
    if (gpm_injector_state(pj.inj) == GPM_INJ_RUNNING ||
        (gpm_injector_state(pj.inj) == GPM_INJ_DONE && pj.tail_entries > 0)) {
        if (gpm_injector_state(pj.inj) == GPM_INJ_DONE)
            pj.tail_entries--;
        if (current_thread(cpu, &t)) {
            rc = gpm__panda_with_cpu(cpu, entry_step, &sa);
            if (rc != 0)
                fprintf(stderr,
                        "pandagpm: injector register access "
                        "failed: %s\n",
                        gpm_strerror(rc));
        }
        note_state();
    }
    if (gpm_injector_state(pj.inj) == GPM_INJ_WAITING ||
        (gpm_injector_state(pj.inj) == GPM_INJ_DONE && pj.tail_entries == 0))
        hook_enable(false);
out:
    g_mutex_unlock(&pj.lock);
}

static void pj_clear(void)
{
    gpm_injector_free(pj.inj);
    g_free(pj.elf);
    g_free(pj.proc_name);
    g_strfreev(pj.argv);
    pj.inj = NULL;
    pj.elf = NULL;
    pj.proc_name = NULL;
    pj.argv = NULL;
    memset(&pj.cfg, 0, sizeof(pj.cfg));
    pj.armed = false;
    pj.attempts = pj.n_failed = 0;
    pj.reported = GPM_INJ_WAITING;
    pj.done_tgid = pj.done_child = -1;
    pj.last_error[0] = '\0';
}

static long dict_long(PyObject *d, const char *key)
{
    PyObject *v = PyDict_GetItemString(d, key);

    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "osi layout needs %s", key);
        return -1;
    }
    return PyLong_AsLong(v);
}

PyObject *gpm__py_panda_inj_install(PyObject *module, PyObject *args,
                                    PyObject *kwargs)
{
    static char *kwlist[] = {"elf",          "argv",       "get_thread",
                             "get_process",  "osi_layout", "cb_enable",
                             "cb_disable",   "cb_handle",  "cb_type",
                             "cb_pcb",       "proc_name",  "require_root",
                             "max_attempts", NULL};
    Py_buffer elf = {0};
    PyObject *py_argv, *py_osi;
    unsigned long long get_thread, get_process, cb_enable, cb_disable;
    unsigned long long cb_handle, cb_pcb;
    int cb_type;
    const char *proc_name = NULL;
    int require_root = 0;
    unsigned max_attempts = 8;
    gpm_injector_t *inj = NULL;
    gpm_inj_config_t cfg = {0};
    osi_layout_t osi;
    Py_ssize_t n;
    char **argv;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "y*O!KKO!KKKiK|zpI:panda_inj_install", kwlist, &elf,
            &PyList_Type, &py_argv, &get_thread, &get_process, &PyDict_Type,
            &py_osi, &cb_enable, &cb_disable, &cb_handle, &cb_type, &cb_pcb,
            &proc_name, &require_root, &max_attempts))
        return NULL;
    osi.thr_tid = dict_long(py_osi, "thread_tid");
    osi.thr_pid = dict_long(py_osi, "thread_pid");
    osi.proc_ppid = dict_long(py_osi, "proc_ppid");
    osi.proc_name = dict_long(py_osi, "proc_name");
    osi.proc_pages = dict_long(py_osi, "proc_pages");
    osi.pid_bytes = (unsigned)dict_long(py_osi, "pid_bytes");
    if (PyErr_Occurred()) {
        PyBuffer_Release(&elf);
        return NULL;
    }
    if (get_thread == 0 || get_process == 0 || cb_enable == 0 ||
        cb_disable == 0 || cb_type < 0 || cb_pcb == 0 ||
        (osi.pid_bytes != 4 && osi.pid_bytes != 8) || osi.thr_tid < 0 ||
        osi.thr_pid < 0 || osi.proc_ppid < 0 || osi.proc_name < 0 ||
        osi.proc_pages < 0 || max_attempts == 0) {
        PyBuffer_Release(&elf);
        return gpm__py_raise(module, GPM_EINVAL,
                             "OSI functions, their layout and libpanda's "
                             "callback toggles must be set; max_attempts >= 1");
    }
    n = PyList_GET_SIZE(py_argv);
    argv = g_new0(char *, n + 1);
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *a = PyUnicode_AsUTF8(PyList_GET_ITEM(py_argv, i));

        if (a == NULL) {
            g_strfreev(argv);
            PyBuffer_Release(&elf);
            return NULL;
        }
        argv[i] = g_strdup(a);
    }
    cfg.arch = GPM_ARCH_X86_64;
    cfg.elf = g_memdup2(elf.buf, elf.len);
    cfg.elf_len = elf.len;
    cfg.proc_name = g_strdup(proc_name);
    cfg.require_root = require_root != 0;
    cfg.argv = (const char *const *)argv;
    cfg.log = inj_log;
    PyBuffer_Release(&elf);
    rc = gpm_injector_new(&cfg, &inj);
    if (rc != 0) {
        g_free((void *)cfg.elf);
        g_free((char *)cfg.proc_name);
        g_strfreev(argv);
        return gpm__py_raise(module, rc, "cannot make the injector");
    }
    Py_BEGIN_ALLOW_THREADS g_mutex_lock(&pj.lock);
    pj_clear();
    pj.inj = inj;
    pj.cfg = cfg;
    pj.elf = (uint8_t *)cfg.elf;
    pj.proc_name = (char *)cfg.proc_name;
    pj.argv = argv;
    pj.ai = gpm_arch_info(GPM_ARCH_X86_64);
    pj.sys = gpm__sys_table(GPM_ARCH_X86_64);
    pj.rcx_reg = pj.sys->retaddr_reg;
    pj.get_thread = (osi_get_fn)(uintptr_t)get_thread;
    pj.get_process = (osi_get_fn)(uintptr_t)get_process;
    pj.osi = osi;
    pj.cb_enable = (cb_toggle_fn)(uintptr_t)cb_enable;
    pj.cb_disable = (cb_toggle_fn)(uintptr_t)cb_disable;
    pj.cb_handle = (void *)(uintptr_t)cb_handle;
    pj.cb_type = cb_type;
    pj.cb_pcb = (void *)(uintptr_t)cb_pcb;
    pj.hook_on = false; /* registered disabled */
    pj.max_attempts = max_attempts;
    g_mutex_unlock(&pj.lock);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject *gpm__py_panda_inj_callbacks(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:N,s:N}", "on_all_sys_enter",
                         PyLong_FromVoidPtr((void *)(uintptr_t)on_sys_enter),
                         "start_block_exec",
                         PyLong_FromVoidPtr((void *)(uintptr_t)on_block));
}

PyObject *gpm__py_panda_inj_restart(PyObject *module, PyObject *unused)
{
    gpm_injector_t *fresh = NULL;
    int rc = 0;

    (void)unused;
    Py_BEGIN_ALLOW_THREADS g_mutex_lock(&pj.lock);
    if (pj.inj != NULL) {
        rc = gpm_injector_new(&pj.cfg, &fresh);
        if (rc == 0) {
            gpm_injector_free(pj.inj);
            pj.inj = fresh;
            pj.armed = false;
            pj.attempts = pj.n_failed = 0;
            pj.reported = GPM_INJ_WAITING;
            pj.done_tgid = pj.done_child = -1;
            pj.last_error[0] = '\0';
        }
    }
    g_mutex_unlock(&pj.lock);
    Py_END_ALLOW_THREADS if (rc != 0) return gpm__py_raise(module, rc, NULL);
    Py_RETURN_NONE;
}

PyObject *gpm__py_panda_inj_uninstall(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    Py_BEGIN_ALLOW_THREADS g_mutex_lock(&pj.lock);
    pj_clear();
    g_mutex_unlock(&pj.lock);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject *gpm__py_panda_inj_status(PyObject *module, PyObject *unused)
{
    const char *state = "none";
    long long tgid = -1, child = -1;
    unsigned attempts, failed;
    unsigned long long placed, ran;
    char err[sizeof(pj.last_error)];

    (void)module;
    (void)unused;
    Py_BEGIN_ALLOW_THREADS g_mutex_lock(&pj.lock);
    if (pj.inj != NULL)
        state = gpm__py_inj_state_name(gpm_injector_state(pj.inj));
    tgid = pj.done_tgid;
    child = pj.done_child;
    attempts = pj.attempts;
    failed = pj.n_failed;
    placed = pj.hooks_placed;
    ran = pj.hooks_run;
    memcpy(err, pj.last_error, sizeof(err));
    g_mutex_unlock(&pj.lock);
    Py_END_ALLOW_THREADS return Py_BuildValue(
        "{s:s,s:L,s:L,s:I,s:I,s:s,s:K,s:K}", "state", state, "tgid", tgid,
        "child", child, "attempts", attempts, "failed", failed, "last_error",
        err, "hooks_placed", placed, "hooks_run", ran);
}
