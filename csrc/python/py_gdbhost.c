/*
 * py_gdbhost.c - _gpm.GdbHost, the stock-QEMU host (csrc/qemu/qemu_host.h)
 * as a Python type.
 *
 * Hypercalls are served in C on the host's I/O thread with no Python
 * involved, except the Manager's channel callbacks, which take the GIL
 * themselves. Every method that waits for the I/O thread releases the GIL,
 * so those callbacks can run meanwhile.
 */
#include "python/pymod.h"

#include <limits.h>
#include <string.h>

#include "qemu/qemu_host.h"

/* Largest read one call returns, to bound a typo's allocation. */
#define PY_MAX_READ ((Py_ssize_t)64 << 20)

typedef struct py_gdbhost {
    PyObject_HEAD gpm_qemu_host_t *host;
    PyObject *py_manager; /* strong reference, or NULL */
    int closed;
} py_gdbhost;

static PyObject *py_gdbhost_module(py_gdbhost *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

static PyObject *py_gdbhost_raise(py_gdbhost *self, int err, const char *detail)
{
    return gpm__py_raise(py_gdbhost_module(self), err, detail);
}

/* Fails with an exception if the host is closed. */
static int py_gdbhost_check(py_gdbhost *self)
{
    if (self->host == NULL || self->closed) {
        py_gdbhost_raise(self, GPM_ECONNRESET, "the host is closed");
        return -1;
    }
    return 0;
}

static void py_gdbhost_close_host(py_gdbhost *self)
{
    if (self->host != NULL && !self->closed) {
        gpm_qemu_host_t *h = self->host;
        PyThreadState *ts;

        self->closed = 1;
        ts = PyEval_SaveThread();
        gpm_qemu_host_close(h);
        PyEval_RestoreThread(ts);
    }
}

static PyObject *py_gdbhost_new(PyTypeObject *type, PyObject *args,
                                PyObject *kwargs)
{
    static char *kwlist[] = {
        "manager", "gdb_socket_path", "ram_path", "ram_size",
        "arch",    "timeout_ms",      "ram_base", NULL};
    PyObject *module = PyType_GetModule(type);
    PyObject *py_manager = NULL, *py_ram_path = Py_None;
    PyObject *py_sock = NULL, *py_ram_bytes = NULL;
    unsigned long long ram_size = 0, ram_base = 0;
    const char *arch = "x86_64";
    int timeout_ms = 5000;
    gpm_qemu_host_config_t cfg;
    py_gdbhost *self = NULL;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&|OKsiK:GdbHost", kwlist,
                                     &py_manager, PyUnicode_FSConverter,
                                     &py_sock, &py_ram_path, &ram_size, &arch,
                                     &timeout_ms, &ram_base))
        return NULL;
    memset(&cfg, 0, sizeof(cfg));
    if (py_manager != Py_None) {
        cfg.manager = gpm__py_manager_get(py_manager);
        if (cfg.manager == NULL)
            goto error;
    }
    if (py_ram_path != Py_None) {
        if (!PyUnicode_FSConverter(py_ram_path, &py_ram_bytes))
            goto error;
        cfg.ram_path = PyBytes_AS_STRING(py_ram_bytes);
        if (ram_size == 0) {
            PyErr_SetString(PyExc_ValueError,
                            "ram_size is needed with ram_path");
            goto error;
        }
    }
    if (timeout_ms <= 0) {
        PyErr_SetString(PyExc_ValueError, "timeout_ms must be positive");
        goto error;
    }
    err = gpm_arch_from_name(arch, &cfg.arch);
    if (err < 0) {
        gpm__py_raise(module, err, arch);
        goto error;
    }
    cfg.gdb_socket_path = PyBytes_AS_STRING(py_sock);
    cfg.ram_size = ram_size;
    cfg.ram_base = ram_base;
    cfg.timeout_ms = timeout_ms;

    self = (py_gdbhost *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto error;
    err = gpm_qemu_host_new(&cfg, &self->host);
    if (err < 0) {
        gpm__py_raise(module, err,
                      err == GPM_EINVAL ? "GdbHost has no backend for this "
                                          "arch, or bad arguments"
                                        : NULL);
        goto error;
    }
    if (py_manager != Py_None) {
        Py_INCREF(py_manager);
        self->py_manager = py_manager;
    }
    Py_DECREF(py_sock);
    Py_XDECREF(py_ram_bytes);
    return (PyObject *)self;

error:
    Py_XDECREF(self);
    Py_XDECREF(py_sock);
    Py_XDECREF(py_ram_bytes);
    return NULL;
}

static int py_gdbhost_traverse(py_gdbhost *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->py_manager);
    return 0;
}

static int py_gdbhost_clear(py_gdbhost *self)
{
    /* The I/O thread uses the manager: stop it before dropping it. */
    py_gdbhost_close_host(self);
    Py_CLEAR(self->py_manager);
    return 0;
}

static void py_gdbhost_dealloc(py_gdbhost *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    py_gdbhost_clear(self);
    if (self->host != NULL) {
        gpm_qemu_host_free(self->host);
        self->host = NULL;
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *py_gdbhost_start(py_gdbhost *self, PyObject *unused)
{
    PyThreadState *ts;
    int err;

    (void)unused;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_start(self->host);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, "connecting to the gdbstub");
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_pause(py_gdbhost *self, PyObject *unused)
{
    PyThreadState *ts;
    uint64_t pc = 0;
    int err;

    (void)unused;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_pause(self->host, &pc);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    return PyLong_FromUnsignedLongLong(pc);
}

static PyObject *py_gdbhost_resume(py_gdbhost *self, PyObject *unused)
{
    PyThreadState *ts;
    int err;

    (void)unused;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_resume(self->host);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_enable_doorbell(py_gdbhost *self, PyObject *arg)
{
    unsigned long long phys;
    int err;

    phys = PyLong_AsUnsignedLongLong(arg);
    if (phys == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    err = gpm_qemu_host_enable_doorbell(self->host, phys);
    if (err < 0)
        return py_gdbhost_raise(self, err, "doorbell page");
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_enable_rings(py_gdbhost *self, PyObject *args)
{
    unsigned long long phys, size;
    int err;

    if (!PyArg_ParseTuple(args, "KK:enable_rings", &phys, &size))
        return NULL;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    err = gpm_qemu_host_enable_rings(self->host, phys, (size_t)size);
    if (err < 0)
        return py_gdbhost_raise(self, err, "channel rings");
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_set_task_profile(py_gdbhost *self, PyObject *args)
{
    const char *base_reg;
    unsigned long long current_task;
    unsigned int task_tgid;
    int err;

    if (!PyArg_ParseTuple(args, "sKI:set_task_profile", &base_reg,
                          &current_task, &task_tgid))
        return NULL;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    err = gpm_qemu_host_set_task_profile(self->host, base_reg, current_task,
                                         task_tgid);
    if (err < 0)
        return py_gdbhost_raise(self, err, "task profile");
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_wait_paused(py_gdbhost *self, PyObject *args)
{
    PyThreadState *ts;
    PyObject *py_timeout = Py_None;
    int timeout_ms = -1;
    uint64_t pc = 0;
    int err;

    if (!PyArg_ParseTuple(args, "|O:wait_paused", &py_timeout))
        return NULL;
    if (py_timeout != Py_None) {
        double t = PyFloat_AsDouble(py_timeout);

        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (t < 0 || t > INT_MAX / 1000) {
            PyErr_SetString(PyExc_ValueError, "timeout out of range");
            return NULL;
        }
        timeout_ms = (int)(t * 1000);
    }
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_wait_paused(self->host, timeout_ms, &pc);
    PyEval_RestoreThread(ts);
    if (err == GPM_ETIMEDOUT)
        Py_RETURN_NONE;
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    return PyLong_FromUnsignedLongLong(pc);
}

/* A register given as a number or a name; -1 with an exception set. */
static int py_gdbhost_regno(py_gdbhost *self, PyObject *obj, unsigned *out)
{
    if (PyUnicode_Check(obj)) {
        const char *name = PyUnicode_AsUTF8(obj);
        int n;

        if (name == NULL)
            return -1;
        n = gpm_qemu_host_reg_number(self->host, name);
        if (n < 0) {
            py_gdbhost_raise(self, n, name);
            return -1;
        }
        *out = (unsigned)n;
        return 0;
    } else {
        unsigned long v = PyLong_AsUnsignedLong(obj);

        if (v == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        if (v > UINT_MAX) {
            PyErr_SetString(PyExc_ValueError, "register number too large");
            return -1;
        }
        *out = (unsigned)v;
        return 0;
    }
}

static PyObject *py_gdbhost_read_reg(py_gdbhost *self, PyObject *obj)
{
    PyThreadState *ts;
    unsigned regno;
    uint64_t val = 0;
    int err;

    if (py_gdbhost_check(self) < 0 || py_gdbhost_regno(self, obj, &regno) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_read_reg(self->host, regno, &val);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    return PyLong_FromUnsignedLongLong(val);
}

static PyObject *py_gdbhost_write_reg(py_gdbhost *self, PyObject *args)
{
    PyThreadState *ts;
    PyObject *py_reg;
    unsigned long long val;
    unsigned regno;
    int err;

    if (!PyArg_ParseTuple(args, "OK:write_reg", &py_reg, &val))
        return NULL;
    if (py_gdbhost_check(self) < 0 ||
        py_gdbhost_regno(self, py_reg, &regno) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_write_reg(self->host, regno, (uint64_t)val);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_reg_number(py_gdbhost *self, PyObject *obj)
{
    unsigned regno;

    if (py_gdbhost_check(self) < 0 || py_gdbhost_regno(self, obj, &regno) < 0)
        return NULL;
    return PyLong_FromUnsignedLong(regno);
}

enum { READ_VIRT, READ_PHYS, READ_GDB };

static PyObject *py_gdbhost_read(py_gdbhost *self, PyObject *args, int how,
                                 const char *fmt)
{
    PyThreadState *ts;
    unsigned long long addr;
    Py_ssize_t n;
    PyObject *out;
    char *p;
    int err;

    if (!PyArg_ParseTuple(args, fmt, &addr, &n))
        return NULL;
    if (n < 0 || n > PY_MAX_READ) {
        PyErr_SetString(PyExc_ValueError, "length out of range");
        return NULL;
    }
    if (py_gdbhost_check(self) < 0)
        return NULL;
    out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    p = PyBytes_AS_STRING(out);
    ts = PyEval_SaveThread();
    switch (how) {
    case READ_VIRT:
        err = gpm_qemu_host_read_virt(self->host, addr, p, (size_t)n);
        break;
    case READ_PHYS:
        err = gpm_qemu_host_read_phys(self->host, addr, p, (size_t)n);
        break;
    default:
        err = gpm_qemu_host_gdb_read_mem(self->host, addr, p, (size_t)n);
        break;
    }
    PyEval_RestoreThread(ts);
    if (err < 0) {
        Py_DECREF(out);
        return py_gdbhost_raise(self, err, NULL);
    }
    return out;
}

static PyObject *py_gdbhost_read_virt(py_gdbhost *self, PyObject *args)
{
    return py_gdbhost_read(self, args, READ_VIRT, "Kn:read_virt");
}

static PyObject *py_gdbhost_read_phys(py_gdbhost *self, PyObject *args)
{
    return py_gdbhost_read(self, args, READ_PHYS, "Kn:read_phys");
}

static PyObject *py_gdbhost_gdb_read_mem(py_gdbhost *self, PyObject *args)
{
    return py_gdbhost_read(self, args, READ_GDB, "Kn:gdb_read_mem");
}

static PyObject *py_gdbhost_write_virt(py_gdbhost *self, PyObject *args)
{
    PyThreadState *ts;
    unsigned long long addr;
    Py_buffer buf;
    int err;

    if (!PyArg_ParseTuple(args, "Ky*:write_virt", &addr, &buf))
        return NULL;
    if (py_gdbhost_check(self) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_write_virt(self->host, addr, buf.buf, (size_t)buf.len);
    PyEval_RestoreThread(ts);
    PyBuffer_Release(&buf);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_add_breakpoint(py_gdbhost *self, PyObject *obj)
{
    PyThreadState *ts;
    unsigned long long addr = PyLong_AsUnsignedLongLong(obj);
    int err;

    if (addr == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_add_breakpoint(self->host, addr, NULL, NULL);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_remove_breakpoint(py_gdbhost *self, PyObject *obj)
{
    PyThreadState *ts;
    unsigned long long addr = PyLong_AsUnsignedLongLong(obj);
    int err;

    if (addr == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_remove_breakpoint(self->host, addr);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_bench_regs(py_gdbhost *self, PyObject *args)
{
    PyThreadState *ts;
    unsigned int iters = 100;
    uint64_t g_ns = 0, p5_ns = 0;
    int err;

    if (!PyArg_ParseTuple(args, "|I:bench_regs", &iters))
        return NULL;
    if (py_gdbhost_check(self) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_qemu_host_bench_regs(self->host, iters, &g_ns, &p5_ns);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return py_gdbhost_raise(self, err, NULL);
    return Py_BuildValue("KK", (unsigned long long)g_ns,
                         (unsigned long long)p5_ns);
}

static PyObject *py_gdbhost_stats(py_gdbhost *self, PyObject *unused)
{
    gpm_qemu_host_stats_t st;

    (void)unused;
    if (self->host == NULL)
        return py_gdbhost_raise(self, GPM_ECONNRESET, NULL);
    gpm_qemu_host_stats(self->host, &st);
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsKsOsO}", "stops",
                         (unsigned long long)st.stops, "hypercalls",
                         (unsigned long long)st.hypercalls, "hc_unhandled",
                         (unsigned long long)st.hc_unhandled, "bp_hits",
                         (unsigned long long)st.bp_hits, "interrupts",
                         (unsigned long long)st.interrupts, "steps",
                         (unsigned long long)st.steps, "handler_ns",
                         (unsigned long long)st.handler_ns, "stop_ns",
                         (unsigned long long)st.stop_ns, "g_packets",
                         (unsigned long long)st.g_packets, "p_packets",
                         (unsigned long long)st.p_packets, "P_packets",
                         (unsigned long long)st.P_packets, "packets_sent",
                         (unsigned long long)st.packets_sent, "bytes_sent",
                         (unsigned long long)st.bytes_sent, "bytes_received",
                         (unsigned long long)st.bytes_received, "retransmits",
                         (unsigned long long)st.retransmits, "ring_passes",
                         (unsigned long long)st.ring_passes, "ring_busy_passes",
                         (unsigned long long)st.ring_busy_passes, "ring_sleeps",
                         (unsigned long long)st.ring_sleeps, "running",
                         st.running ? Py_True : Py_False, "connected",
                         st.connected ? Py_True : Py_False);
}

static PyObject *py_gdbhost_close(py_gdbhost *self, PyObject *unused)
{
    (void)unused;
    py_gdbhost_close_host(self);
    Py_RETURN_NONE;
}

static PyObject *py_gdbhost_enter(py_gdbhost *self, PyObject *unused)
{
    (void)unused;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *py_gdbhost_exit(py_gdbhost *self, PyObject *args)
{
    (void)args;
    py_gdbhost_close_host(self);
    Py_RETURN_FALSE;
}

static PyObject *py_gdbhost_get_closed(py_gdbhost *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->closed);
}

static PyMethodDef py_gdbhost_methods[] = {
    {"start", (PyCFunction)py_gdbhost_start, METH_NOARGS,
     "start(): connect to the gdbstub, insert the hypercall breakpoint and "
     "let the guest run. Returns once that is done."},
    {"pause", (PyCFunction)py_gdbhost_pause, METH_NOARGS,
     "pause() -> pc: stop the guest and keep it stopped."},
    {"resume", (PyCFunction)py_gdbhost_resume, METH_NOARGS,
     "resume(): let a paused guest run again."},
    {"wait_paused", (PyCFunction)py_gdbhost_wait_paused, METH_VARARGS,
     "wait_paused(timeout=None) -> pc or None: wait until the guest is "
     "paused (by pause() or a breakpoint); None on timeout."},
    {"read_reg", (PyCFunction)py_gdbhost_read_reg, METH_O,
     "read_reg(n) -> int: register n (GDB number or name like 'cr3')."},
    {"write_reg", (PyCFunction)py_gdbhost_write_reg, METH_VARARGS,
     "write_reg(n, value): set a register of the paused guest."},
    {"reg_number", (PyCFunction)py_gdbhost_reg_number, METH_O,
     "reg_number(name) -> int: the GDB number of a register."},
    {"read_virt", (PyCFunction)py_gdbhost_read_virt, METH_VARARGS,
     "read_virt(addr, n) -> bytes: guest virtual memory of the current "
     "address space, through the page walk (kernel addresses allowed)."},
    {"write_virt", (PyCFunction)py_gdbhost_write_virt, METH_VARARGS,
     "write_virt(addr, data): write guest virtual memory; only present, "
     "writable user pages (Error GPM_EROFS / GPM_EFAULT otherwise)."},
    {"read_phys", (PyCFunction)py_gdbhost_read_phys, METH_VARARGS,
     "read_phys(addr, n) -> bytes: guest-physical RAM."},
    {"gdb_read_mem", (PyCFunction)py_gdbhost_gdb_read_mem, METH_VARARGS,
     "gdb_read_mem(addr, n) -> bytes: guest virtual memory through 'm' "
     "packets (slow)."},
    {"add_breakpoint", (PyCFunction)py_gdbhost_add_breakpoint, METH_O,
     "add_breakpoint(addr): pause the guest whenever it reaches addr."},
    {"remove_breakpoint", (PyCFunction)py_gdbhost_remove_breakpoint, METH_O,
     "remove_breakpoint(addr)."},
    {"set_task_profile", (PyCFunction)py_gdbhost_set_task_profile, METH_VARARGS,
     "set_task_profile(base_reg, current_task, task_tgid): tell each "
     "hypercall's guest process (for channel ownership): base_reg holds the "
     "kernel's per-CPU base in user mode, current_task is the per-CPU "
     "offset of the running task's pointer, task_tgid the offset of tgid "
     "in task_struct; current_task 0 turns it off."},
    {"enable_doorbell", (PyCFunction)py_gdbhost_enable_doorbell, METH_O,
     "enable_doorbell(phys): offer the guest the doorbell page at that "
     "guest-physical address; host writes then ring it without a stop."},
    {"enable_rings", (PyCFunction)py_gdbhost_enable_rings, METH_VARARGS,
     "enable_rings(phys, size): offer the guest shared-memory channel "
     "rings in that reserved guest-physical region, served by a ring "
     "thread without stopping the guest (gpm/ring_abi.h)."},
    {"bench_regs", (PyCFunction)py_gdbhost_bench_regs, METH_VARARGS,
     "bench_regs(iters=100) -> (g_ns, p5_ns): mean cost of one 'g' and of "
     "five 'p' requests."},
    {"stats", (PyCFunction)py_gdbhost_stats, METH_NOARGS,
     "stats() -> dict of counters."},
    {"close", (PyCFunction)py_gdbhost_close, METH_NOARGS,
     "close(): remove breakpoints, detach (the guest keeps running) and "
     "join the I/O thread. Idempotent."},
    {"__enter__", (PyCFunction)py_gdbhost_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)py_gdbhost_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef py_gdbhost_getset[] = {
    {"closed", (getter)py_gdbhost_get_closed, NULL,
     "True once close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot py_gdbhost_slots[] = {
    {Py_tp_doc,
     "GdbHost(manager, gdb_socket_path, ram_path=None, ram_size=0, "
     "arch='x86_64', timeout_ms=5000, ram_base=0)\n\n"
     "A guest CPU in stock QEMU reached through its gdbstub (a unix "
     "socket), with guest RAM mapped from the memory-backend-file at "
     "ram_path (its first byte at guest-physical ram_base). Hypercalls at "
     "the arch's stub address (arch_info(arch)['hc_addr']) go to manager "
     "(a Manager, or None)."},
    {Py_tp_new, py_gdbhost_new},
    {Py_tp_dealloc, py_gdbhost_dealloc},
    {Py_tp_traverse, py_gdbhost_traverse},
    {Py_tp_clear, py_gdbhost_clear},
    {Py_tp_methods, py_gdbhost_methods},
    {Py_tp_getset, py_gdbhost_getset},
    {0, NULL},
};

static PyType_Spec py_gdbhost_spec = {
    .name = "pandagpm._gpm.GdbHost",
    .basicsize = sizeof(py_gdbhost),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = py_gdbhost_slots,
};

int gpm__py_gdbhost_exec(PyObject *module)
{
    gpm__py_state *st = PyModule_GetState(module);

    st->gdbhost_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &py_gdbhost_spec, NULL);
    if (st->gdbhost_type == NULL)
        return -1;
    return PyModule_AddType(module, st->gdbhost_type);
}

gpm_qemu_host_t *gpm__py_gdbhost_get(PyObject *obj)
{
    PyObject *module = PyType_GetModuleByDef(Py_TYPE(obj), &gpm__py_moduledef);
    gpm__py_state *st;

    if (module == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "expected a GdbHost, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    st = PyModule_GetState(module);
    if (!PyObject_TypeCheck(obj, st->gdbhost_type)) {
        PyErr_Format(PyExc_TypeError, "expected a GdbHost, got %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (py_gdbhost_check((py_gdbhost *)obj) < 0)
        return NULL;
    return ((py_gdbhost *)obj)->host;
}
