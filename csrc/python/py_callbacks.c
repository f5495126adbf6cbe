/*
 * py_callbacks.c - the core's callbacks into Python: channel receive and
 * release, and manager events (see py_manager.c for who owns what).
 *
 * They run on whatever thread the core calls them on (an emulator thread
 * that may never have run Python): each takes the GIL, keeps an exception
 * the thread may have pending, and reports its own through
 * sys.unraisablehook, so no Python exception ever reaches the core.
 */
#include "python/py_manager.h"

#include <stdbool.h>
#include <string.h>

/*
 * How deep this thread is inside channel and event callbacks of any
 * Manager: such a thread is the emulator's, and the guest cannot run
 * until it returns (Manager.in_callback()).
 */
static _Thread_local unsigned py_cb_depth;

bool gpm__py_in_callback(void)
{
    return py_cb_depth > 0;
}

/*
 * Whether this thread may take the GIL. Once the interpreter is finalizing,
 * PyGILState_Ensure() on another thread never returns (the thread hangs or
 * is terminated), so a callback on the emulator thread is skipped instead.
 * The check is best effort: finalization may start just after it.
 */
static bool py_can_enter(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return !Py_IsFinalizing() || PyGILState_Check();
#else
    return !_Py_IsFinalizing() || PyGILState_Check();
#endif
}

/* Takes the pending exception, normalized, with its traceback attached. */
PyObject *gpm__py_exc_take(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(tb);
    Py_DECREF(type);
    return value;
#endif
}

/* Makes @exc (a reference this steals; may be NULL) the pending one. */
void gpm__py_exc_give(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc == NULL)
        return;
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                  PyException_GetTraceback(exc));
#endif
}

/* Calls @py_cb(*@py_args), reporting an exception as unraisable. */
static void py_call_reported(py_manager *self, PyObject *py_cb,
                             PyObject *py_args)
{
    PyObject *py_res;

    if (py_args == NULL) {
        PyErr_WriteUnraisable(py_cb);
        return;
    }
    py_res = PyObject_Call(py_cb, py_args, NULL);
    if (py_res == NULL) {
        self->callback_errors++;
        PyErr_WriteUnraisable(py_cb);
        return;
    }
    Py_DECREF(py_res);
}

/* The core's receive callback for every channel made from Python. */
void gpm__py_chan_recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                          void *opaque)
{
    py_chan *ch = opaque;
    PyGILState_STATE gil;
    PyObject *py_cb;
    PyObject *py_args;
    PyObject *saved;

    if (!py_can_enter())
        return;
    gil = PyGILState_Ensure();
    /* Keep an exception a caller on this thread may have pending. */
    saved = gpm__py_exc_take();
    py_cb = Py_XNewRef(ch->py_callback);
    if (py_cb != NULL) {
        py_args = Py_BuildValue("(ky#)", (unsigned long)id, (const char *)buf,
                                (Py_ssize_t)len);
        py_cb_depth++;
        py_call_reported(ch->manager, py_cb, py_args);
        py_cb_depth--;
        Py_XDECREF(py_args);
        Py_DECREF(py_cb);
    }
    gpm__py_exc_give(saved);
    PyGILState_Release(gil);
}

void gpm__py_chan_unlink(py_chan *ch)
{
    ch->prev->next = ch->next;
    ch->next->prev = ch->prev;
    ch->prev = ch->next = ch;
}

/* The core's release callback: drops the context and its callback. */
void gpm__py_chan_release_cb(void *opaque)
{
    py_chan *ch = opaque;
    PyGILState_STATE gil;
    PyObject *saved;

    if (!py_can_enter())
        return; /* At exit a small leak beats a hang. */
    gil = PyGILState_Ensure();
    saved = gpm__py_exc_take();
    gpm__py_chan_unlink(ch);
    Py_CLEAR(ch->py_callback);
    PyMem_RawFree(ch);
    gpm__py_exc_give(saved);
    PyGILState_Release(gil);
}

static const char *py_event_type_name(gpm_event_type_t type)
{
    switch (type) {
    case GPM_EVENT_CHANNEL_START:
        return "CHANNEL_START";
    case GPM_EVENT_CHANNEL_STOP:
        return "CHANNEL_STOP";
    case GPM_EVENT_GUEST_ERROR:
        return "GUEST_ERROR";
    case GPM_EVENT_GUEST_CHANNEL:
        return "GUEST_CHANNEL";
    case GPM_EVENT_DAEMON_READY:
        return "DAEMON_READY";
    case GPM_EVENT_PLUGIN_STARTED:
        return "PLUGIN_STARTED";
    case GPM_EVENT_PLUGIN_EXITED:
        return "PLUGIN_EXITED";
    case GPM_EVENT_PLUGIN_FAILED:
        return "PLUGIN_FAILED";
    case GPM_EVENT_PROTOCOL_ERROR:
        return "PROTOCOL_ERROR";
    case GPM_EVENT_CHANNEL_DRAINED:
        return "CHANNEL_DRAINED";
    }
    return "UNKNOWN";
}

/* Guest text as str, never failing on bad UTF-8; None for NULL. */
static PyObject *py_guest_text(const char *text)
{
    if (text == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
}

/*
 * The core's event callback. Events reach Python as plain tuples
 * (type, channel, name, text, pid, status, err, stage); pandagpm turns
 * them into pandagpm.Event.
 */
void gpm__py_manager_event_cb(const gpm_event_t *ev, void *opaque)
{
    py_manager *self = opaque;
    PyGILState_STATE gil;
    PyObject *py_cb;
    PyObject *py_list;
    PyObject *py_name = NULL;
    PyObject *py_text = NULL;
    PyObject *py_args = NULL;
    PyObject *saved;

    if (!py_can_enter())
        return;
    gil = PyGILState_Ensure();
    saved = gpm__py_exc_take();
    py_cb = Py_XNewRef(self->py_event_cb);
    /* A copy: a listener may add or remove listeners. */
    py_list = self->py_listeners != NULL && PyList_GET_SIZE(self->py_listeners)
                  ? PyList_GetSlice(self->py_listeners, 0, PY_SSIZE_T_MAX)
                  : NULL;
    if (py_cb == NULL && py_list == NULL)
        goto out;
    py_name = py_guest_text(ev->name);
    py_text = py_guest_text(ev->text);
    if (py_name != NULL && py_text != NULL)
        py_args = Py_BuildValue("((skOOLLiI))", py_event_type_name(ev->type),
                                (unsigned long)ev->channel, py_name, py_text,
                                (long long)ev->pid, (long long)ev->status,
                                ev->err, (unsigned)ev->stage);
    py_cb_depth++;
    if (py_cb != NULL)
        py_call_reported(self, py_cb, py_args);
    for (Py_ssize_t i = 0; py_list != NULL && i < PyList_GET_SIZE(py_list); i++)
        py_call_reported(self, PyList_GET_ITEM(py_list, i), py_args);
    py_cb_depth--;
    Py_XDECREF(py_args);
    Py_XDECREF(py_text);
    Py_XDECREF(py_name);
    Py_XDECREF(py_cb);
    Py_XDECREF(py_list);
out:
    gpm__py_exc_give(saved);
    PyGILState_Release(gil);
}
