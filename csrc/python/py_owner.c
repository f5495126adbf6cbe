/*
 * py_owner.c - _gpm.Manager's event listeners and channel ownership
 * (issue 11): any number of listeners, owners of channels, the
 * compatibility mode, the anonymous-channel quota, and the daemon's reset
 * and probe. See gpm/manager.h for the contracts; the GIL is released
 * around every call into the core, as in py_manager.c.
 */
#include "python/py_manager.h"

PyObject *gpm__py_manager_add_event_listener(py_manager *self, PyObject *py_arg)
{
    if (!PyCallable_Check(py_arg)) {
        PyErr_Format(PyExc_TypeError,
                     "event listener must be callable, "
                     "not %.100s",
                     Py_TYPE(py_arg)->tp_name);
        return NULL;
    }
    if (self->py_listeners == NULL) {
        self->py_listeners = PyList_New(0);
        if (self->py_listeners == NULL)
            return NULL;
    }
    if (PyList_Append(self->py_listeners, py_arg) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *gpm__py_manager_remove_event_listener(py_manager *self,
                                                PyObject *py_arg)
{
    Py_ssize_t n = self->py_listeners ? PyList_GET_SIZE(self->py_listeners) : 0;

    /* By identity, the last one added first. */
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        if (PyList_GET_ITEM(self->py_listeners, i) == py_arg) {
            if (PySequence_DelItem(self->py_listeners, i) < 0)
                return NULL;
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

/* O& converter for an owner: a tgid > 0 or a GPM_OWNER_* value. */
static int py_owner_conv(PyObject *obj, void *out)
{
    long long v = PyLong_AsLongLong(obj);

    if (v == -1 && PyErr_Occurred())
        return 0;
    *(int64_t *)out = (int64_t)v;
    return 1;
}

PyObject *gpm__py_manager_set_owner(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    int64_t owner;
    int err;

    if (!PyArg_ParseTuple(args, "O&O&:set_owner", gpm__py_chan_id_conv, &id,
                          py_owner_conv, &owner))
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_channel_set_owner(self->mgr, id, owner);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise_chan(self, err, id);
    Py_RETURN_NONE;
}

PyObject *gpm__py_manager_owner(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    int64_t owner = GPM_OWNER_NONE;
    int err;

    if (!PyArg_ParseTuple(args, "O&:owner", gpm__py_chan_id_conv, &id))
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_channel_owner(self->mgr, id, &owner);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise_chan(self, err, id);
    return PyLong_FromLongLong((long long)owner);
}

PyObject *gpm__py_manager_set_ownership(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    int enforce;

    if (!PyArg_ParseTuple(args, "p:set_ownership", &enforce))
        return NULL;
    ts = PyEval_SaveThread();
    gpm_manager_set_ownership(self->mgr, enforce != 0);
    PyEval_RestoreThread(ts);
    Py_RETURN_NONE;
}

PyObject *gpm__py_manager_set_guest_quota(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    unsigned int n;
    int err;

    if (!PyArg_ParseTuple(args, "I:set_guest_quota", &n))
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_manager_set_guest_quota(self->mgr, n);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise(gpm__py_manager_module(self), err, "guest quota");
    Py_RETURN_NONE;
}

PyObject *gpm__py_manager_process_gone(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    long long tgid;
    unsigned n;

    if (!PyArg_ParseTuple(args, "L:process_gone", &tgid))
        return NULL;
    /* Release callbacks take the GIL back on this thread. */
    ts = PyEval_SaveThread();
    n = gpm_process_gone(self->mgr, (int64_t)tgid);
    PyEval_RestoreThread(ts);
    return PyLong_FromUnsignedLong(n);
}

PyObject *gpm__py_manager_daemon_reset(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    int64_t owner;
    int rc;

    if (!PyArg_ParseTuple(args, "O&:daemon_reset", py_owner_conv, &owner))
        return NULL;
    /* The PLUGIN_FAILED events take the GIL back on this thread. */
    ts = PyEval_SaveThread();
    rc = gpm_daemon_reset(self->mgr, owner);
    PyEval_RestoreThread(ts);
    if (rc < 0)
        return gpm__py_raise(gpm__py_manager_module(self), rc, "daemon reset");
    return PyLong_FromLong(rc);
}

PyObject *gpm__py_manager_daemon_probe(py_manager *self, PyObject *unused)
{
    PyThreadState *ts;
    int rc;

    (void)unused;
    ts = PyEval_SaveThread();
    rc = gpm_daemon_probe(self->mgr);
    PyEval_RestoreThread(ts);
    if (rc == GPM_EAGAIN)
        Py_RETURN_FALSE;
    if (rc < 0)
        return gpm__py_raise(gpm__py_manager_module(self), rc, "daemon probe");
    Py_RETURN_TRUE;
}
