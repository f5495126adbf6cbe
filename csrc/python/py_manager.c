/*
 * py_manager.c - _gpm.Manager, a Python object around gpm_manager_t.
 *
 * Ownership: each channel created from Python owns a small py_chan context
 * that holds a strong reference to the channel's Python callback. The core
 * calls gpm__py_chan_release_cb() exactly once when the channel is destroyed
 * (closed, or the manager freed), and that drops the reference. The
 * contexts are also linked into their Manager so that the garbage collector
 * can see the callbacks (a callback that refers back to its Manager makes a
 * cycle).
 *
 * Threads and the GIL: callbacks may run on an emulator thread that has
 * never run Python, so every trampoline takes the GIL with
 * PyGILState_Ensure(). The GIL is released around every call into the
 * core, so a thread never holds the GIL while it waits for the manager's
 * lock; this keeps a core call on one thread and a callback on another
 * from deadlocking. The context list is only touched with the GIL held.
 *
 * Python exceptions never cross into the core: an exception raised by a
 * channel or event callback is reported through sys.unraisablehook and
 * counted in stats()["callback_errors"].
 */
#include "python/py_manager.h"

#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* Room for the explanation of a failed gpm_guest_plugin_add(). */
#define PY_WHY_LEN 2048

PyObject *gpm__py_manager_module(py_manager *self)
{
    return PyType_GetModule(Py_TYPE(self));
}

/* Raises @err for channel @id, naming the channel in the message. */
PyObject *gpm__py_raise_chan(py_manager *self, int err, gpm_channel_id_t id)
{
    char detail[32];

    snprintf(detail, sizeof(detail), "channel %lu", (unsigned long)id);
    return gpm__py_raise(gpm__py_manager_module(self), err, detail);
}

/*
 * O& converter for a channel id. A value that cannot be an id (negative or
 * above 32 bits) becomes GPM_CHANNEL_NONE, which the core answers with
 * GPM_EBADF like any other unknown id.
 */
int gpm__py_chan_id_conv(PyObject *obj, void *out)
{
    gpm_channel_id_t *id = out;
    int overflow;
    long long v;

    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "channel id must be int, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred())
        return 0;
    if (overflow != 0 || v < 0 || v > (long long)UINT32_MAX)
        *id = GPM_CHANNEL_NONE;
    else
        *id = (gpm_channel_id_t)v;
    return 1;
}

/* Checks an optional callback argument; None becomes NULL. */
static int py_callback_arg(PyObject *obj, PyObject **out, const char *what)
{
    if (obj == NULL || obj == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyCallable_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be callable or None, not %.100s",
                     what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = obj;
    return 0;
}

/* A new channel context holding @py_cb, linked into @self. */
static py_chan *py_chan_new(py_manager *self, PyObject *py_cb)
{
    py_chan *ch = PyMem_RawCalloc(1, sizeof(*ch));

    if (ch == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    ch->py_callback = Py_XNewRef(py_cb);
    ch->manager = self;
    ch->next = self->chans.next;
    ch->prev = &self->chans;
    self->chans.next->prev = ch;
    self->chans.next = ch;
    return ch;
}

/* Undoes py_chan_new() after the core refused the channel. */
static void py_chan_discard(py_chan *ch)
{
    gpm__py_chan_unlink(ch);
    Py_CLEAR(ch->py_callback);
    PyMem_RawFree(ch);
}

static PyObject *py_manager_new(PyTypeObject *type, PyObject *args,
                                PyObject *kwargs)
{
    static char *kwlist[] = {
        "arch",         "queue_limit",        "total_queue_limit",
        "max_channels", "max_guest_channels", NULL};
    PyObject *module = PyType_GetModule(type);
    gpm_manager_config_t cfg = {0};
    const char *arch = "x86_64";
    Py_ssize_t queue_limit = 0, total_limit = 0;
    Py_ssize_t max_channels = 0, max_guest = 0;
    py_manager *self;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|snnnn:Manager", kwlist,
                                     &arch, &queue_limit, &total_limit,
                                     &max_channels, &max_guest))
        return NULL;
    if (queue_limit < 0 || total_limit < 0 || max_channels < 0 ||
        max_guest < 0 || (size_t)max_channels > UINT_MAX ||
        (size_t)max_guest > UINT_MAX) {
        PyErr_SetString(PyExc_ValueError,
                        "limits must be between 0 (the default) and the "
                        "largest value the core takes");
        return NULL;
    }
    err = gpm_arch_from_name(arch, &cfg.arch);
    if (err < 0) {
        char detail[96];

        snprintf(detail, sizeof(detail), "unknown architecture '%.64s'", arch);
        return gpm__py_raise(module, err, detail);
    }
    cfg.queue_limit = (size_t)queue_limit;
    cfg.total_queue_limit = (size_t)total_limit;
    cfg.max_channels = (unsigned)max_channels;
    cfg.max_guest_channels = (unsigned)max_guest;

    self = (py_manager *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->chans.prev = self->chans.next = &self->chans;
    err = gpm_manager_new(&cfg, &self->mgr);
    if (err < 0) {
        Py_DECREF(self);
        return gpm__py_raise(module, err, NULL);
    }
    /* The trampoline reads py_event_cb under the GIL at each event. */
    gpm_manager_set_event_cb(self->mgr, gpm__py_manager_event_cb, self);
    return (PyObject *)self;
}

static int py_manager_traverse(py_manager *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->py_event_cb);
    Py_VISIT(self->py_listeners);
    if (self->chans.next == NULL)
        return 0;
    for (py_chan *ch = self->chans.next; ch != &self->chans; ch = ch->next)
        Py_VISIT(ch->py_callback);
    return 0;
}

/*
 * Drops every Python reference, breaking cycles through callbacks. The
 * core manager stays alive until dealloc; a channel whose callback was
 * cleared drops what the guest writes to it.
 */
static int py_manager_clear(py_manager *self)
{
    Py_CLEAR(self->py_event_cb);
    Py_CLEAR(self->py_listeners);
    if (self->chans.next == NULL)
        return 0;
    /* A DECREF may run code that closes channels, so restart each time. */
    for (;;) {
        py_chan *ch = self->chans.next;
        PyObject *py_cb;

        while (ch != &self->chans && ch->py_callback == NULL)
            ch = ch->next;
        if (ch == &self->chans)
            break;
        py_cb = ch->py_callback;
        ch->py_callback = NULL;
        Py_DECREF(py_cb);
    }
    return 0;
}

static void py_manager_dealloc(py_manager *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->py_weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->mgr != NULL) {
        gpm_manager_set_event_cb(self->mgr, NULL, NULL);
        /* Runs every release callback, which frees each context. */
        gpm_manager_free(self->mgr);
        self->mgr = NULL;
    }
    py_manager_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *py_manager_allocate_channel(py_manager *self, PyObject *args,
                                             PyObject *kwargs)
{
    static char *kwlist[] = {"name", "callback", NULL};
    PyThreadState *ts;
    const char *name = NULL;
    PyObject *py_arg = NULL;
    PyObject *py_cb;
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    py_chan *ch;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|zO:allocate_channel",
                                     kwlist, &name, &py_arg))
        return NULL;
    if (py_callback_arg(py_arg, &py_cb, "callback") < 0)
        return NULL;
    ch = py_chan_new(self, py_cb);
    if (ch == NULL)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_channel_allocate(self->mgr, name,
                               py_cb != NULL ? gpm__py_chan_recv_cb : NULL,
                               gpm__py_chan_release_cb, ch, &id);
    PyEval_RestoreThread(ts);
    if (err < 0) {
        py_chan_discard(ch);
        return gpm__py_raise(gpm__py_manager_module(self), err, name);
    }
    return PyLong_FromUnsignedLong(id);
}

static PyObject *py_manager_set_callback(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    PyObject *py_arg;
    PyObject *py_cb;
    py_chan *ch;
    int err;

    if (!PyArg_ParseTuple(args, "O&O:set_callback", gpm__py_chan_id_conv, &id,
                          &py_arg))
        return NULL;
    if (py_callback_arg(py_arg, &py_cb, "callback") < 0)
        return NULL;
    ch = py_chan_new(self, py_cb);
    if (ch == NULL)
        return NULL;
    /* The old context's release callback takes the GIL back itself. */
    ts = PyEval_SaveThread();
    err = gpm_channel_set_callback(self->mgr, id,
                                   py_cb != NULL ? gpm__py_chan_recv_cb : NULL,
                                   gpm__py_chan_release_cb, ch);
    PyEval_RestoreThread(ts);
    if (err < 0) {
        py_chan_discard(ch);
        return gpm__py_raise_chan(self, err, id);
    }
    Py_RETURN_NONE;
}

static PyObject *py_manager_lookup(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    const char *name;
    int err;

    if (!PyArg_ParseTuple(args, "s:lookup", &name))
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_channel_lookup(self->mgr, name, &id);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise(gpm__py_manager_module(self), err, name);
    return PyLong_FromUnsignedLong(id);
}

static PyObject *py_manager_write(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    Py_buffer view;
    int err;

    if (!PyArg_ParseTuple(args, "O&y*:write", gpm__py_chan_id_conv, &id, &view))
        return NULL;
    /* The export keeps the buffer's memory still while the GIL is off. */
    ts = PyEval_SaveThread();
    err = gpm_channel_write(self->mgr, id, view.buf, (size_t)view.len);
    PyEval_RestoreThread(ts);
    PyBuffer_Release(&view);
    if (err < 0)
        return gpm__py_raise_chan(self, err, id);
    Py_RETURN_NONE;
}

static PyObject *py_manager_read(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    PyObject *py_buf = NULL;
    gpm_channel_id_t id;
    Py_ssize_t n;
    size_t queued = 0, got = 0;
    int err;

    if (!PyArg_ParseTuple(args, "O&n:read", gpm__py_chan_id_conv, &id, &n))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "read size must be >= 0");
        return NULL;
    }
    /* Size the buffer by what is queued, not by a caller's huge n. */
    ts = PyEval_SaveThread();
    err = gpm_channel_pending(self->mgr, id, &queued, NULL);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise_chan(self, err, id);
    if ((size_t)n > queued)
        n = (Py_ssize_t)queued;
    py_buf = PyBytes_FromStringAndSize(NULL, n);
    if (py_buf == NULL)
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_channel_read(self->mgr, id, PyBytes_AS_STRING(py_buf), (size_t)n,
                           &got);
    PyEval_RestoreThread(ts);
    if (err < 0) {
        Py_DECREF(py_buf);
        return gpm__py_raise_chan(self, err, id);
    }
    if ((Py_ssize_t)got != n && _PyBytes_Resize(&py_buf, (Py_ssize_t)got) < 0)
        return NULL;
    return py_buf;
}

static PyObject *py_manager_pending(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    size_t bytes = 0, msgs = 0;
    int err;

    if (!PyArg_ParseTuple(args, "O&:pending", gpm__py_chan_id_conv, &id))
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_channel_pending(self->mgr, id, &bytes, &msgs);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise_chan(self, err, id);
    return Py_BuildValue("(nn)", (Py_ssize_t)bytes, (Py_ssize_t)msgs);
}

static PyObject *py_manager_started(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    int rc;

    if (!PyArg_ParseTuple(args, "O&:started", gpm__py_chan_id_conv, &id))
        return NULL;
    ts = PyEval_SaveThread();
    rc = gpm_channel_started(self->mgr, id);
    PyEval_RestoreThread(ts);
    if (rc < 0)
        return gpm__py_raise_chan(self, rc, id);
    return PyBool_FromLong(rc);
}

static PyObject *py_manager_set_paused(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    int paused, rc;

    if (!PyArg_ParseTuple(args, "O&p:set_paused", gpm__py_chan_id_conv, &id,
                          &paused))
        return NULL;
    ts = PyEval_SaveThread();
    rc = gpm_channel_set_paused(self->mgr, id, paused != 0);
    PyEval_RestoreThread(ts);
    if (rc < 0)
        return gpm__py_raise_chan(self, rc, id);
    Py_RETURN_NONE;
}

static PyObject *py_manager_set_queue_limit(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    Py_ssize_t limit;
    int rc;

    if (!PyArg_ParseTuple(args, "O&n:set_queue_limit", gpm__py_chan_id_conv,
                          &id, &limit))
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "limit must not be negative");
        return NULL;
    }
    ts = PyEval_SaveThread();
    rc = gpm_channel_set_queue_limit(self->mgr, id, (size_t)limit);
    PyEval_RestoreThread(ts);
    if (rc < 0)
        return gpm__py_raise_chan(self, rc, id);
    Py_RETURN_NONE;
}

static PyObject *py_manager_daemon_channel(py_manager *self,
                                           PyObject *Py_UNUSED(ignored))
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    int rc;

    ts = PyEval_SaveThread();
    rc = gpm_daemon_channel(self->mgr, &id);
    PyEval_RestoreThread(ts);
    if (rc != 0)
        return gpm__py_raise(gpm__py_manager_module(self), rc,
                             "the guest_daemon channel");
    return PyLong_FromUnsignedLong(id);
}

static PyObject *py_manager_close(py_manager *self, PyObject *args)
{
    PyThreadState *ts;
    gpm_channel_id_t id;
    int err;

    if (!PyArg_ParseTuple(args, "O&:close", gpm__py_chan_id_conv, &id))
        return NULL;
    /* The release callback takes the GIL back on this thread. */
    ts = PyEval_SaveThread();
    err = gpm_channel_close(self->mgr, id);
    PyEval_RestoreThread(ts);
    if (err < 0)
        return gpm__py_raise_chan(self, err, id);
    Py_RETURN_NONE;
}

static PyObject *py_manager_add_guest_plugin(py_manager *self, PyObject *args,
                                             PyObject *kwargs)
{
    static char *kwlist[] = {"name", "path", "callback", NULL};
    PyThreadState *ts;
    const char *name;
    PyObject *py_path = NULL;
    PyObject *py_arg = NULL;
    PyObject *py_cb;
    PyObject *py_ret = NULL;
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    char why[PY_WHY_LEN] = "";
    py_chan *ch;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|O&O:add_guest_plugin",
                                     kwlist, &name, gpm__py_opt_path_conv,
                                     &py_path, &py_arg))
        return NULL;
    if (py_callback_arg(py_arg, &py_cb, "callback") < 0)
        goto error;
    ch = py_chan_new(self, py_cb);
    if (ch == NULL)
        goto error;
    ts = PyEval_SaveThread();
    err = gpm_guest_plugin_add(
        self->mgr, name, py_path ? PyBytes_AS_STRING(py_path) : NULL,
        py_cb != NULL ? gpm__py_chan_recv_cb : NULL, gpm__py_chan_release_cb,
        ch, &id, why, sizeof(why));
    PyEval_RestoreThread(ts);
    if (err < 0) {
        py_chan_discard(ch);
        gpm__py_raise(gpm__py_manager_module(self), err, why[0] ? why : name);
        goto error;
    }
    py_ret = PyLong_FromUnsignedLong(id);
error:
    Py_XDECREF(py_path);
    return py_ret;
}

static PyObject *py_manager_set_event_callback(py_manager *self,
                                               PyObject *py_arg)
{
    PyObject *py_cb;
    PyObject *py_old;

    if (py_callback_arg(py_arg, &py_cb, "event callback") < 0)
        return NULL;
    py_old = self->py_event_cb;
    self->py_event_cb = Py_XNewRef(py_cb);
    Py_XDECREF(py_old);
    Py_RETURN_NONE;
}

static PyObject *py_manager_in_callback(py_manager *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyBool_FromLong(gpm__py_in_callback());
}

static PyObject *py_manager_stats(py_manager *self, PyObject *unused)
{
    PyThreadState *ts;
    gpm_manager_stats_t s;

    (void)unused;
    ts = PyEval_SaveThread();
    gpm_manager_stats(self->mgr, &s);
    PyEval_RestoreThread(ts);
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:n,s:I,s:K,s:K,s:K,s:I,s:K,s:K,s:K,s:K,s:K,s:O,"
        "s:K}",
        "hypercalls", (unsigned long long)s.hypercalls, "not_ours",
        (unsigned long long)s.not_ours, "guest_errors",
        (unsigned long long)s.guest_errors, "bytes_to_guest",
        (unsigned long long)s.bytes_to_guest, "bytes_from_guest",
        (unsigned long long)s.bytes_from_guest, "queued_bytes",
        (Py_ssize_t)s.queued_bytes, "channels", s.channels, "callback_errors",
        (unsigned long long)self->callback_errors, "refused",
        (unsigned long long)s.refused, "protocol_errors",
        (unsigned long long)s.protocol_errors, "rings_attached",
        s.rings_attached, "ring_msgs_from_guest",
        (unsigned long long)s.ring_msgs_from_guest, "ring_bytes_from_guest",
        (unsigned long long)s.ring_bytes_from_guest, "ring_msgs_to_guest",
        (unsigned long long)s.ring_msgs_to_guest, "ring_bytes_to_guest",
        (unsigned long long)s.ring_bytes_to_guest, "ring_broken",
        (unsigned long long)s.ring_broken, "ring_delivering",
        s.ring_delivering ? Py_True : Py_False, "probes_declined",
        (unsigned long long)s.probes_declined);
}

static PyObject *py_manager_get_arch(py_manager *self, void *closure)
{
    const gpm_arch_info_t *info = gpm_arch_info(gpm_manager_arch(self->mgr));

    (void)closure;
    return PyUnicode_FromString(info != NULL ? info->name : "unknown");
}

static PyMethodDef py_manager_methods[] = {
    {"allocate_channel",
     (PyCFunction)(void (*)(void))py_manager_allocate_channel,
     METH_VARARGS | METH_KEYWORDS,
     "allocate_channel(name=None, callback=None) -> int\n\n"
     "Creates a channel; callback(channel_id, data: bytes) receives what "
     "the guest writes to it (None: guest writes fail with HC_EPIPE)."},
    {"set_callback", (PyCFunction)py_manager_set_callback, METH_VARARGS,
     "set_callback(id, callback): replaces the receive callback of a "
     "channel, e.g. one the guest allocated; the old one is released."},
    {"lookup", (PyCFunction)py_manager_lookup, METH_VARARGS,
     "lookup(name) -> int: the id of the channel called name."},
    {"write", (PyCFunction)py_manager_write, METH_VARARGS,
     "write(id, data): queues one host -> guest message (copied)."},
    {"read", (PyCFunction)py_manager_read, METH_VARARGS,
     "read(id, n) -> bytes: takes up to n queued host -> guest bytes of "
     "the head message on the host side; b'' if nothing is queued."},
    {"pending", (PyCFunction)py_manager_pending, METH_VARARGS,
     "pending(id) -> (bytes, msgs): what is queued host -> guest."},
    {"started", (PyCFunction)py_manager_started, METH_VARARGS,
     "started(id) -> bool: whether the guest sent START on id."},
    {"set_paused", (PyCFunction)py_manager_set_paused, METH_VARARGS,
     "set_paused(id, paused): while paused, guest writes on id get EBUSY "
     "and are retried by the guest."},
    {"set_queue_limit", (PyCFunction)py_manager_set_queue_limit, METH_VARARGS,
     "set_queue_limit(id, limit): a smaller host -> guest queue for id "
     "(0: the manager's); a write refused for a full queue is followed by "
     "a CHANNEL_DRAINED event once it is half empty."},
    {"daemon_channel", (PyCFunction)py_manager_daemon_channel, METH_NOARGS,
     "daemon_channel() -> int: the guest_daemon channel, created if "
     "needed."},
    {"close", (PyCFunction)py_manager_close, METH_VARARGS,
     "close(id): destroys the channel and releases its callback."},
    {"add_guest_plugin",
     (PyCFunction)(void (*)(void))py_manager_add_guest_plugin,
     METH_VARARGS | METH_KEYWORDS,
     "add_guest_plugin(name, path=None, callback=None) -> int\n\n"
     "Registers a guest plugin and queues its LOAD for the daemon; returns "
     "the id of its main channel."},
    {"set_event_callback", (PyCFunction)py_manager_set_event_callback, METH_O,
     "set_event_callback(cb): cb(event_tuple) for every lifecycle event, "
     "or None. The tuple is (type, channel, name, text, pid, status, err, "
     "stage)."},
    {"add_event_listener", (PyCFunction)gpm__py_manager_add_event_listener,
     METH_O,
     "add_event_listener(cb): also call cb(event_tuple) for every event; "
     "any number of listeners, called in the order added, after the "
     "set_event_callback() one. The Manager keeps a strong reference."},
    {"remove_event_listener",
     (PyCFunction)gpm__py_manager_remove_event_listener, METH_O,
     "remove_event_listener(cb) -> bool: forgets one registration of cb "
     "(by identity); False if there was none."},
    {"in_callback", (PyCFunction)py_manager_in_callback, METH_NOARGS,
     "in_callback() -> bool: whether the calling thread runs a channel or "
     "event callback of any Manager (the guest is stopped until it "
     "returns, so waiting for the guest there would never end)."},
    {"set_owner", (PyCFunction)gpm__py_manager_set_owner, METH_VARARGS,
     "set_owner(id, owner): only guest process owner (a tgid) may use the "
     "channel; OWNER_ANY, OWNER_PENDING or OWNER_NONE otherwise."},
    {"owner", (PyCFunction)gpm__py_manager_owner, METH_VARARGS,
     "owner(id) -> int: the channel's owner (tgid or an OWNER_* value)."},
    {"set_ownership", (PyCFunction)gpm__py_manager_set_ownership, METH_VARARGS,
     "set_ownership(enforce): False is the compatibility mode for guest "
     "binaries built with the original channel library."},
    {"set_guest_quota", (PyCFunction)gpm__py_manager_set_guest_quota,
     METH_VARARGS,
     "set_guest_quota(n): anonymous channels one guest process may hold "
     "(0: the default, 32)."},
    {"process_gone", (PyCFunction)gpm__py_manager_process_gone, METH_VARARGS,
     "process_gone(tgid) -> int: guest process tgid ended; frees its "
     "anonymous channels and retires its other ones."},
    {"daemon_reset", (PyCFunction)gpm__py_manager_daemon_reset, METH_VARARGS,
     "daemon_reset(owner) -> int: forget the guest daemon: drop what is "
     "queued for it, fail its pending loads (PLUGIN_FAILED, stage LOST), "
     "and give the channel to owner (the injected daemon's tgid, or "
     "OWNER_PENDING). Returns the number of loads failed."},
    {"daemon_probe", (PyCFunction)gpm__py_manager_daemon_probe, METH_NOARGS,
     "daemon_probe() -> bool: ask the daemon which guest processes holding "
     "anonymous channels have ended (their channels are then freed); False "
     "if one was asked less than a second ago or nobody holds any."},
    {"stats", (PyCFunction)py_manager_stats, METH_NOARGS,
     "stats() -> dict: the core's counters and callback_errors."},
    {"dispatch", (PyCFunction)(void (*)(void))gpm__py_manager_dispatch,
     METH_VARARGS | METH_KEYWORDS,
     "dispatch(cpu, tgid=-1) -> bool: handles a possible hypercall of a CPU "
     "implemented in Python; True if it was one. tgid is the calling guest "
     "process (-1: unknown, ownership is not checked)."},
    {"_test_dispatch_in_thread",
     (PyCFunction)gpm__py_manager_test_dispatch_in_thread, METH_O,
     "TEST ONLY: dispatch(cpu) on a new native thread, waiting for it."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef py_manager_getset[] = {
    {"arch", (getter)py_manager_get_arch, NULL,
     "The guest architecture's name.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef py_manager_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(py_manager, py_weakrefs),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot py_manager_slots[] = {
    {Py_tp_doc,
     "Manager(arch='x86_64', queue_limit=0, total_queue_limit=0, "
     "max_channels=0, max_guest_channels=0)\n\n"
     "A channel manager and hypercall dispatcher (gpm_manager_t). Zero "
     "limits take the core's defaults."},
    {Py_tp_new, py_manager_new},
    {Py_tp_dealloc, py_manager_dealloc},
    {Py_tp_traverse, py_manager_traverse},
    {Py_tp_clear, py_manager_clear},
    {Py_tp_methods, py_manager_methods},
    {Py_tp_getset, py_manager_getset},
    {Py_tp_members, py_manager_members},
    {0, NULL},
};

static PyType_Spec py_manager_spec = {
    .name = "pandagpm._gpm.Manager",
    .basicsize = sizeof(py_manager),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = py_manager_slots,
};

int gpm__py_manager_exec(PyObject *module)
{
    gpm__py_state *st = PyModule_GetState(module);

    st->manager_type = (PyTypeObject *)PyType_FromModuleAndSpec(
        module, &py_manager_spec, NULL);
    if (st->manager_type == NULL)
        return -1;
    return PyModule_AddType(module, st->manager_type);
}

gpm_manager_t *gpm__py_manager_get(PyObject *obj)
{
    gpm__py_state *st = gpm__py_state_from_type(Py_TYPE(obj));

    if (st == NULL || st->manager_type == NULL ||
        !PyObject_TypeCheck(obj, st->manager_type)) {
        PyErr_Format(PyExc_TypeError,
                     "expected a pandagpm._gpm.Manager, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return ((py_manager *)obj)->mgr;
}
