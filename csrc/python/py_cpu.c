/*
 * py_cpu.c - Manager.dispatch(): hypercalls of a guest CPU implemented in
 * Python, through host ops that call its methods with the GIL taken back.
 */
#include "python/py_manager.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

/*
 * The host ops for a CPU implemented in Python: an object with
 * read_reg(n) -> int, write_reg(n, v), read_mem(addr, n) -> bytes and
 * write_mem(addr, data). A method reports a guest condition by raising
 * _gpm.Error (pandagpm.GuestMemoryFault, GuestPageReadOnly, ...) or by
 * returning a negative GPM_E* int; the code goes to the core. Any other
 * exception is a bug of the CPU object: the op fails with GPM_EIO and the
 * exception is re-raised by dispatch() once the core has returned.
 */
typedef struct py_cpu {
    PyObject *py_cpu;        /* borrowed; the caller keeps it alive */
    PyObject *py_error_type; /* borrowed from the module state */
    PyObject *exc;           /* the first unexpected exception, or NULL */
} py_cpu;

/* Turns the pending exception into a code; needs the GIL. */
static int py_cpu_fail(py_cpu *c)
{
    PyObject *exc = gpm__py_exc_take();
    int known = exc != NULL ? PyObject_IsInstance(exc, c->py_error_type) : 0;

    if (known < 0)
        PyErr_Clear();
    if (known == 1) {
        PyObject *py_code = PyObject_GetAttrString(exc, "code");
        long code = 0;

        if (py_code != NULL && PyLong_Check(py_code))
            code = PyLong_AsLong(py_code);
        Py_XDECREF(py_code);
        PyErr_Clear();
        if (code < 0 && code > INT_MIN) {
            Py_DECREF(exc);
            return (int)code;
        }
    }
    if (c->exc == NULL) {
        c->exc = exc;
    } else {
        /* Keep the first; report the others rather than lose them. */
        gpm__py_exc_give(exc);
        PyErr_WriteUnraisable(c->py_cpu);
    }
    return GPM_EIO;
}

/* A method's int result as a code: negative ints are codes, else 0. */
static int py_cpu_result_code(PyObject *py_res)
{
    long v;

    if (!PyLong_Check(py_res))
        return 0;
    v = PyLong_AsLong(py_res);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return GPM_EINVAL;
    }
    return (v < 0 && v > INT_MIN) ? (int)v : 0;
}

static int py_cpu_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    py_cpu *c = cpu;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *py_res;
    int err = 0;

    py_res = PyObject_CallMethod(c->py_cpu, "read_reg", "I", regno);
    if (py_res != NULL && !PyLong_Check(py_res)) {
        PyErr_Format(PyExc_TypeError, "read_reg() must return int, not %.100s",
                     Py_TYPE(py_res)->tp_name);
        Py_CLEAR(py_res);
    }
    if (py_res != NULL) {
        /* Registers are unsigned; a negative int is its two's complement. */
        *val = (uint64_t)PyLong_AsUnsignedLongLongMask(py_res);
        if (PyErr_Occurred())
            err = py_cpu_fail(c);
        Py_DECREF(py_res);
    } else {
        err = py_cpu_fail(c);
    }
    PyGILState_Release(gil);
    return err;
}

static int py_cpu_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    py_cpu *c = cpu;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *py_res;
    int err;

    py_res = PyObject_CallMethod(c->py_cpu, "write_reg", "IK", regno,
                                 (unsigned long long)val);
    if (py_res == NULL) {
        err = py_cpu_fail(c);
    } else {
        err = py_cpu_result_code(py_res);
        Py_DECREF(py_res);
    }
    PyGILState_Release(gil);
    return err;
}

static int py_cpu_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    py_cpu *c = cpu;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *py_res;
    Py_buffer view;
    int err = 0;

    py_res = PyObject_CallMethod(c->py_cpu, "read_mem", "Kn",
                                 (unsigned long long)addr, (Py_ssize_t)len);
    if (py_res == NULL) {
        err = py_cpu_fail(c);
        goto out;
    }
    if (PyLong_Check(py_res)) {
        err = py_cpu_result_code(py_res);
        if (err == 0) {
            PyErr_SetString(PyExc_TypeError,
                            "read_mem() must return bytes or a negative "
                            "error code");
            err = py_cpu_fail(c);
        }
        goto out;
    }
    if (PyObject_GetBuffer(py_res, &view, PyBUF_SIMPLE) < 0) {
        err = py_cpu_fail(c);
        goto out;
    }
    if ((size_t)view.len != len) {
        PyErr_Format(PyExc_ValueError,
                     "read_mem(0x%llx, %zd) returned %zd bytes",
                     (unsigned long long)addr, (Py_ssize_t)len, view.len);
        err = py_cpu_fail(c);
    } else {
        memcpy(buf, view.buf, len);
    }
    PyBuffer_Release(&view);
out:
    Py_XDECREF(py_res);
    PyGILState_Release(gil);
    return err;
}

static int py_cpu_write_mem(void *cpu, uint64_t addr, const void *buf,
                            size_t len)
{
    py_cpu *c = cpu;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *py_data;
    PyObject *py_res = NULL;
    int err;
    int gc_was_enabled;

    /*
     * The core calls this op (a guest READ) without the manager's lock: it
     * copies the head message, writes it unlocked and consumes it only if
     * nobody consumed from the channel meanwhile (hypercall.c, op_read).
     * Cyclic collection stays off anyway, so that no finalizer reads or
     * closes the channel between the copy and the write, which would turn
     * the READ into EAGAIN or EBADF for the guest.
     */
    gc_was_enabled = PyGC_Disable();
    py_data = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    if (py_data != NULL)
        py_res = PyObject_CallMethod(c->py_cpu, "write_mem", "KO",
                                     (unsigned long long)addr, py_data);
    if (gc_was_enabled)
        PyGC_Enable();
    if (py_res == NULL) {
        err = py_cpu_fail(c);
    } else {
        err = py_cpu_result_code(py_res);
        Py_DECREF(py_res);
    }
    Py_XDECREF(py_data);
    PyGILState_Release(gil);
    return err;
}

static const gpm_host_ops_t py_cpu_ops = {
    .read_reg = py_cpu_read_reg,
    .write_reg = py_cpu_write_reg,
    .read_mem = py_cpu_read_mem,
    .write_mem = py_cpu_write_mem,
};

/* What dispatch() returns once the core is done with @c. */
static PyObject *py_dispatch_result(py_manager *self, py_cpu *c, int err,
                                    bool handled)
{
    if (c->exc != NULL) {
        gpm__py_exc_give(c->exc);
        return NULL;
    }
    if (err < 0)
        return gpm__py_raise(gpm__py_manager_module(self), err, NULL);
    return PyBool_FromLong(handled);
}

PyObject *gpm__py_manager_dispatch(py_manager *self, PyObject *args,
                                   PyObject *kwargs)
{
    static char *kwlist[] = {"cpu", "tgid", NULL};
    PyThreadState *ts;
    gpm__py_state *st = PyModule_GetState(gpm__py_manager_module(self));
    PyObject *py_cpu_obj;
    long long tgid = GPM_TGID_UNKNOWN;
    bool handled = false;
    py_cpu c;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|L:dispatch", kwlist,
                                     &py_cpu_obj, &tgid))
        return NULL;
    c.py_cpu = py_cpu_obj;
    c.py_error_type = st->error_type;
    c.exc = NULL;
    /* Each op takes the GIL back; other Python threads run meanwhile. */
    ts = PyEval_SaveThread();
    err = gpm_hypercall_handle_as(self->mgr, &py_cpu_ops, &c, (int64_t)tgid,
                                  &handled);
    PyEval_RestoreThread(ts);
    return py_dispatch_result(self, &c, err, handled);
}

/* Test support: a hypercall handled on a thread Python never saw. */
struct py_thread_job {
    gpm_manager_t *mgr;
    py_cpu *cpu;
    bool handled;
    int err;
};

static void *py_thread_job_main(void *arg)
{
    struct py_thread_job *job = arg;

    job->err =
        gpm_hypercall_handle(job->mgr, &py_cpu_ops, job->cpu, &job->handled);
    return NULL;
}

PyObject *gpm__py_manager_test_dispatch_in_thread(py_manager *self,
                                                  PyObject *py_cpu_obj)
{
    PyThreadState *ts;
    gpm__py_state *st = PyModule_GetState(gpm__py_manager_module(self));
    py_cpu c = {py_cpu_obj, st->error_type, NULL};
    struct py_thread_job job = {self->mgr, &c, false, 0};
    pthread_t thread;
    int rc;

    ts = PyEval_SaveThread();
    rc = pthread_create(&thread, NULL, py_thread_job_main, &job);
    if (rc == 0)
        pthread_join(thread, NULL);
    PyEval_RestoreThread(ts);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return py_dispatch_result(self, &c, job.err, job.handled);
}
