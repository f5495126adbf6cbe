/*
 * py_arch.c - the arch backends' page walk for Python:
 * _gpm.mmu_check_user(), the one walker per MMU that the pypanda path's
 * Python fallback shares with the C hosts.
 */
#include "python/pymod.h"

#include <string.h>

#include "arch/arch_ops.h"

typedef struct py_phys {
    PyObject *fn; /* phys_read(paddr, n) -> bytes of length n, or None */
    int failed;   /* the callable raised: the exception is set */
} py_phys;

/* Reads guest-physical memory through the Python callable. */
static int py_phys_read(void *opaque, uint64_t paddr, void *buf, size_t len)
{
    py_phys *p = opaque;
    PyObject *r;
    int rc = GPM_EFAULT;

    if (p->failed)
        return GPM_EFAULT;
    r = PyObject_CallFunction(p->fn, "Kn", (unsigned long long)paddr,
                              (Py_ssize_t)len);
    if (r == NULL) {
        p->failed = 1;
        return GPM_EFAULT;
    }
    if (PyBytes_Check(r) && (size_t)PyBytes_GET_SIZE(r) == len) {
        memcpy(buf, PyBytes_AS_STRING(r), len);
        rc = 0;
    }
    Py_DECREF(r);
    return rc;
}

PyObject *gpm__py_mmu_check_user(PyObject *module, PyObject *args)
{
    const char *name;
    PyObject *regs, *fn;
    unsigned long long va;
    Py_ssize_t length;
    int write, rc;
    gpm__mmu_state_t st;
    const gpm__arch_ops_t *ops;
    py_phys p = {NULL, 0};
    gpm_arch_t arch;

    if (!PyArg_ParseTuple(args, "sOKnpO:mmu_check_user", &name, &regs, &va,
                          &length, &write, &fn))
        return NULL;
    if (gpm_arch_from_name(name, &arch) < 0 ||
        (ops = gpm__arch_ops(arch)) == NULL || ops->xlate == NULL)
        return gpm__py_raise(module, GPM_EINVAL, "no page walk for this arch");
    if (length < 0 || !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_ValueError,
                        "length must be >= 0 and phys_read callable");
        return NULL;
    }
    regs = PySequence_Fast(regs, "regs must be a sequence of integers");
    if (regs == NULL)
        return NULL;
    memset(&st, 0, sizeof(st));
    if (PySequence_Fast_GET_SIZE(regs) > GPM__MMU_NREGS) {
        Py_DECREF(regs);
        PyErr_SetString(PyExc_ValueError, "too many MMU registers");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(regs); i++) {
        st.reg[i] =
            PyLong_AsUnsignedLongLongMask(PySequence_Fast_GET_ITEM(regs, i));
        if (PyErr_Occurred()) {
            Py_DECREF(regs);
            return NULL;
        }
    }
    Py_DECREF(regs);
    p.fn = fn;
    rc = gpm__mmu_check_user(ops, &st, va, (size_t)length, write != 0,
                             py_phys_read, &p);
    if (p.failed)
        return NULL;
    return PyLong_FromLong(rc);
}
