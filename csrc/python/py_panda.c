/*
 * py_panda.c - the pypanda hypercall hot path in C.
 *
 * pypanda registers gpm__panda_hypercall_cb (its address comes from
 * _gpm.panda_hc_install()) as PANDA's guest_hypercall callback, so a
 * hypercall runs no Python: registers are read at byte offsets into
 * CPUArchState that Python derived from pandare's own cffi types, memory
 * goes through libpanda's *_external functions whose addresses Python
 * passed in, and only a channel's Python receive callback takes the GIL.
 *
 * PANDA calls the callback on its CPU thread; one context is active per
 * process (PANDA runs one guest), swapped under a mutex when the manager
 * changes (after a snapshot load).
 */
#include <glib.h>
#include <stdbool.h>
#include <string.h>

#include "panda/gpm_panda_mem.h"
#include "python/py_panda.h"
#include "python/pymod.h"

#define MAX_REGS    80
#define HF_LMA_MASK (1u << 14)
#define CR4_LA57    (1u << 12)
/* libpanda copies at most this much per call (its length is an int). */
#define MAX_CHUNK   (1u << 20)

typedef int (*virt_rw_fn)(void *cpu, uint64_t addr, char *buf, int len);
typedef int (*phys_rd_fn)(uint64_t paddr, char *buf, int len);

typedef struct panda_ctx {
    gpm_manager_t *mgr;
    PyObject *py_manager; /* strong reference keeping mgr alive */
    size_t env_off;       /* offsetof(CPUState, env_ptr) */
    long reg_off[MAX_REGS];
    unsigned reg_bytes; /* 4 or 8 */
    virt_rw_fn vread, vwrite;
    phys_rd_fn pread;      /* NULL: no page walk before writes */
    long cr3_off, cr4_off; /* -1 unless x86_64 */
    long hflags_off;
    /* The caller's tgid, for channel ownership: the kernel virtual address
     * of CPU 0's current_task slot and task_struct.tgid's offset; -1 when
     * unknown (then every hypercall's caller is GPM_TGID_UNKNOWN). */
    uint64_t current_task_va;
    long task_tgid_off;
} panda_ctx_t;

typedef struct panda_cpu {
    const panda_ctx_t *ctx;
    void *cpu;
    uint8_t *env;
} panda_cpu_t;

static GMutex ctx_lock;
static panda_ctx_t *active;
static uint64_t calls, handled_calls;

static int reg_ptr(panda_cpu_t *c, unsigned regno, uint8_t **p)
{
    if (regno >= MAX_REGS || c->ctx->reg_off[regno] < 0)
        return GPM_EINVAL;
    *p = c->env + c->ctx->reg_off[regno];
    return 0;
}

static int pc_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    panda_cpu_t *c = cpu;
    uint8_t *p;
    int rc = reg_ptr(c, regno, &p);

    if (rc == 0) {
        *val = 0;
        memcpy(val, p, c->ctx->reg_bytes); /* little-endian host */
    }
    return rc;
}

static int pc_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    panda_cpu_t *c = cpu;
    uint8_t *p;
    int rc = reg_ptr(c, regno, &p);

    if (rc == 0)
        memcpy(p, &val, c->ctx->reg_bytes);
    return rc;
}

static uint64_t env_u64(const panda_cpu_t *c, long off);
static int phys_adapter(void *opaque, uint64_t paddr, void *buf, size_t len);

/*
 * In x86_64 long mode, true if the page walk says user mode may not touch
 * [addr, addr + len): libpanda's virtual reads and writes translate
 * supervisor pages too, so without this a guest program could make the
 * host read (or write) kernel memory. Sets *rc to the refusal.
 */
static bool refused_by_walk(panda_cpu_t *c, uint64_t addr, size_t len,
                            bool write, int *rc)
{
    const panda_ctx_t *ctx = c->ctx;
    uint32_t hflags;
    bool la57;

    if (ctx->pread == NULL || ctx->cr3_off < 0 || ctx->hflags_off < 0)
        return false;
    memcpy(&hflags, c->env + ctx->hflags_off, sizeof(hflags));
    if (!(hflags & HF_LMA_MASK))
        return false;
    la57 = (env_u64(c, ctx->cr4_off) & CR4_LA57) != 0;
    *rc =
        write
            ? gpm_x86_64_check_user_write(env_u64(c, ctx->cr3_off), la57, addr,
                                          len, phys_adapter, (void *)ctx)
            : gpm_x86_64_check_user_read(env_u64(c, ctx->cr3_off), la57, addr,
                                         len, phys_adapter, (void *)ctx);
    return *rc != 0;
}

static int pc_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    panda_cpu_t *c = cpu;
    int rc;

    if (refused_by_walk(c, addr, len, false, &rc))
        return rc;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < MAX_CHUNK ? len - done : MAX_CHUNK;

        if (c->ctx->vread(c->cpu, addr + done, (char *)buf + done, (int)n))
            return GPM_EFAULT;
        done += n;
    }
    return 0;
}

static int phys_adapter(void *opaque, uint64_t paddr, void *buf, size_t len)
{
    const panda_ctx_t *ctx = opaque;

    if (len > MAX_CHUNK || ctx->pread(paddr, buf, (int)len) != 0)
        return GPM_EFAULT;
    return 0;
}

static uint64_t env_u64(const panda_cpu_t *c, long off)
{
    uint64_t v;

    memcpy(&v, c->env + off, sizeof(v));
    return v;
}

static int pc_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    panda_cpu_t *c = cpu;
    const panda_ctx_t *ctx = c->ctx;
    int rc;

    /*
     * In x86_64 long mode, refuse pages the guest could not write itself
     * (the zero page, copy-on-write pages, kernel pages): the guest then
     * touches its buffer and retries. Elsewhere libpanda's own failure is
     * the only signal, reported as "retry" too.
     */
    if (refused_by_walk(c, addr, len, true, &rc))
        return rc;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < MAX_CHUNK ? len - done : MAX_CHUNK;

        if (ctx->vwrite(c->cpu, addr + done, (char *)buf + done, (int)n)) {
            char probe;

            /* Unreadable is not mapped; readable but refused is "retry". */
            if (ctx->vread(c->cpu, addr + done, &probe, 1) != 0)
                return GPM_EFAULT;
            return GPM_EROFS;
        }
        done += n;
    }
    return 0;
}

static const gpm_host_ops_t panda_ops = {pc_read_reg, pc_write_reg, pc_read_mem,
                                         pc_write_mem};

int gpm__panda_with_cpu(void *cpu, gpm__panda_cpu_fn fn, void *opaque)
{
    panda_cpu_t c;
    int rc = GPM_ENOSYS;

    g_mutex_lock(&ctx_lock);
    if (active != NULL && cpu != NULL) {
        c.ctx = active;
        c.cpu = cpu;
        memcpy(&c.env, (uint8_t *)cpu + active->env_off, sizeof(c.env));
        rc = c.env != NULL ? fn(&panda_ops, &c, c.env, opaque) : GPM_EFAULT;
    }
    g_mutex_unlock(&ctx_lock);
    return rc;
}

/* The calling process's tgid, read from the kernel's current task. */
static int64_t caller_tgid(const panda_ctx_t *ctx, void *cpu)
{
    uint64_t task = 0;
    int32_t tgid = 0;

    if (ctx->task_tgid_off < 0 ||
        ctx->vread(cpu, ctx->current_task_va, (char *)&task, 8) != 0 ||
        (task >> 63) == 0 ||
        ctx->vread(cpu, task + (uint64_t)ctx->task_tgid_off, (char *)&tgid,
                   4) != 0 ||
        tgid <= 0)
        return GPM_TGID_UNKNOWN;
    return tgid;
}

int gpm__panda_set_daemon_owner(int64_t tgid)
{
    gpm_channel_id_t id;
    int rc = GPM_ENOSYS;

    g_mutex_lock(&ctx_lock);
    if (active != NULL && active->task_tgid_off >= 0) {
        rc = gpm_daemon_channel(active->mgr, &id);
        if (rc == 0)
            rc = gpm_channel_set_owner(active->mgr, id, tgid);
    }
    g_mutex_unlock(&ctx_lock);
    return rc;
}

/* PANDA's guest_hypercall callback: bool (*)(CPUState *). */
static bool gpm__panda_hypercall_cb(void *cpu)
{
    panda_cpu_t c;
    bool handled = false;

    g_mutex_lock(&ctx_lock);
    if (active != NULL && cpu != NULL) {
        c.ctx = active;
        c.cpu = cpu;
        memcpy(&c.env, (uint8_t *)cpu + active->env_off, sizeof(c.env));
        calls++;
        if (c.env != NULL &&
            gpm_hypercall_handle_as(active->mgr, &panda_ops, &c,
                                    caller_tgid(active, cpu), &handled) == 0 &&
            handled)
            handled_calls++;
    }
    g_mutex_unlock(&ctx_lock);
    return handled;
}

/*
 * The benchmark's baseline (bench/bench_panda.py): a guest_hypercall
 * callback that answers a magic hypercall with 0 ("nothing") and does
 * nothing else, so its round trip is PANDA's own cost of a hypercall.
 */
static struct {
    size_t env_off;
    long rax_off;
    uint64_t calls;
} bare = {0, -1, 0};

static bool gpm__panda_bare_hypercall_cb(void *cpu)
{
    uint8_t *env;
    uint64_t rax;

    if (cpu == NULL || bare.rax_off < 0)
        return false;
    memcpy(&env, (uint8_t *)cpu + bare.env_off, sizeof(env));
    memcpy(&rax, env + bare.rax_off, sizeof(rax));
    if ((uint32_t)rax != GPM_HC_MAGIC)
        return false;
    rax = 0;
    memcpy(env + bare.rax_off, &rax, sizeof(rax));
    bare.calls++;
    return true;
}

PyObject *gpm__py_panda_bare_hc_install(PyObject *module, PyObject *args)
{
    Py_ssize_t env_off, rax_off;

    if (!PyArg_ParseTuple(args, "nn:panda_bare_hc_install", &env_off, &rax_off))
        return NULL;
    if (env_off < 0 || rax_off < 0)
        return gpm__py_raise(module, GPM_EINVAL, "offsets must be >= 0");
    bare.env_off = (size_t)env_off;
    bare.rax_off = rax_off;
    return PyLong_FromVoidPtr((void *)(uintptr_t)gpm__panda_bare_hypercall_cb);
}

static void ctx_free(panda_ctx_t *ctx)
{
    if (ctx != NULL) {
        Py_XDECREF(ctx->py_manager);
        g_free(ctx);
    }
}

/* Swaps in @ctx (may be NULL) and frees the previous context. */
static void ctx_swap(panda_ctx_t *ctx)
{
    panda_ctx_t *old;
    PyThreadState *ts = PyEval_SaveThread();

    /* The CPU thread may hold the lock while a callback wants the GIL. */
    g_mutex_lock(&ctx_lock);
    old = active;
    active = ctx;
    g_mutex_unlock(&ctx_lock);
    PyEval_RestoreThread(ts);
    ctx_free(old);
}

static long opt_off(PyObject *v)
{
    return v == NULL || v == Py_None ? -1 : PyLong_AsLong(v);
}

PyObject *gpm__py_panda_hc_install(PyObject *module, PyObject *args,
                                   PyObject *kwargs)
{
    static char *kwlist[] = {
        "manager", "env_off", "reg_offsets", "reg_bytes",  "vread", "vwrite",
        "pread",   "cr3_off", "cr4_off",     "hflags_off", NULL};
    PyObject *py_manager, *py_regs, *py_cr3 = NULL, *py_cr4 = NULL;
    PyObject *py_hflags = NULL, *key, *value;
    unsigned long long vread, vwrite, pread = 0;
    Py_ssize_t env_off, pos = 0;
    unsigned reg_bytes;
    panda_ctx_t *ctx;

    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "OnO!IKK|KOOO:panda_hc_install", kwlist, &py_manager,
            &env_off, &PyDict_Type, &py_regs, &reg_bytes, &vread, &vwrite,
            &pread, &py_cr3, &py_cr4, &py_hflags))
        return NULL;
    if (gpm__py_manager_get(py_manager) == NULL)
        return NULL;
    if ((reg_bytes != 4 && reg_bytes != 8) || env_off < 0 || vread == 0 ||
        vwrite == 0)
        return gpm__py_raise(module, GPM_EINVAL,
                             "reg_bytes must be 4 or 8; env_off, vread and "
                             "vwrite must be set");
    ctx = g_new0(panda_ctx_t, 1);
    for (int i = 0; i < MAX_REGS; i++)
        ctx->reg_off[i] = -1;
    while (PyDict_Next(py_regs, &pos, &key, &value)) {
        long regno = PyLong_AsLong(key), off = PyLong_AsLong(value);

        if (PyErr_Occurred()) {
            g_free(ctx);
            return NULL;
        }
        if (regno < 0 || regno >= MAX_REGS || off < 0) {
            g_free(ctx);
            return gpm__py_raise(module, GPM_EINVAL, "bad register offset");
        }
        ctx->reg_off[regno] = off;
    }
    ctx->task_tgid_off = -1;
    ctx->cr3_off = opt_off(py_cr3);
    ctx->cr4_off = opt_off(py_cr4);
    ctx->hflags_off = opt_off(py_hflags);
    if (PyErr_Occurred()) {
        g_free(ctx);
        return NULL;
    }
    ctx->mgr = gpm__py_manager_get(py_manager);
    ctx->py_manager = Py_NewRef(py_manager);
    ctx->env_off = (size_t)env_off;
    ctx->reg_bytes = reg_bytes;
    ctx->vread = (virt_rw_fn)(uintptr_t)vread;
    ctx->vwrite = (virt_rw_fn)(uintptr_t)vwrite;
    ctx->pread = (phys_rd_fn)(uintptr_t)pread;
    ctx_swap(ctx);
    return PyLong_FromVoidPtr((void *)(uintptr_t)gpm__panda_hypercall_cb);
}

PyObject *gpm__py_panda_hc_set_task(PyObject *module, PyObject *args)
{
    unsigned long long current_task_va;
    Py_ssize_t tgid_off;
    bool ok = false;

    if (!PyArg_ParseTuple(args, "Kn:panda_hc_set_task", &current_task_va,
                          &tgid_off))
        return NULL;
    if (tgid_off < 0 || (current_task_va >> 63) == 0)
        return gpm__py_raise(module, GPM_EINVAL,
                             "current_task_va must be a kernel address and "
                             "tgid_off >= 0");
    Py_BEGIN_ALLOW_THREADS g_mutex_lock(&ctx_lock);
    if (active != NULL) {
        active->current_task_va = current_task_va;
        active->task_tgid_off = tgid_off;
        ok = true;
    }
    g_mutex_unlock(&ctx_lock);
    Py_END_ALLOW_THREADS if (!ok) return gpm__py_raise(
        module, GPM_ENOSYS, "panda_hc_install() first");
    Py_RETURN_NONE;
}

PyObject *gpm__py_panda_hc_uninstall(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    ctx_swap(NULL);
    Py_RETURN_NONE;
}

PyObject *gpm__py_panda_hc_stats(PyObject *module, PyObject *unused)
{
    uint64_t n, h;
    bool on;

    (void)module;
    (void)unused;
    /*
     * The CPU thread holds ctx_lock across a hypercall, whose receive
     * callbacks take the GIL: wait for the lock without the GIL.
     */
    Py_BEGIN_ALLOW_THREADS g_mutex_lock(&ctx_lock);
    n = calls;
    h = handled_calls;
    on = active != NULL;
    g_mutex_unlock(&ctx_lock);
    Py_END_ALLOW_THREADS return Py_BuildValue(
        "{s:K,s:K,s:O}", "calls", (unsigned long long)n, "handled",
        (unsigned long long)h, "installed", on ? Py_True : Py_False);
}
