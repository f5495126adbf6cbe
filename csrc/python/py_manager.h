/*
 * py_manager.h - what the files of _gpm.Manager share (py_manager.c, the
 * type and its channels; py_callbacks.c, the core's callbacks into Python;
 * py_owner.c, event listeners and channel ownership; py_cpu.c, hypercalls
 * of a CPU implemented in Python). Not a public header.
 */
#ifndef GPM_PY_MANAGER_H
#define GPM_PY_MANAGER_H

#include "python/pymod.h"

#include <stdbool.h>
#include <stdint.h>

struct py_manager;

/* The Python side of one channel; owned by the core channel. */
typedef struct py_chan {
    struct py_chan *prev; /* in the Manager's list, guarded by the GIL */
    struct py_chan *next;
    PyObject *py_callback;      /* strong, or NULL once cleared */
    struct py_manager *manager; /* borrowed: outlives every channel */
} py_chan;

typedef struct py_manager {
    PyObject ob_base; /* PyObject_HEAD, spelled out for clang-format */
    gpm_manager_t *mgr;
    PyObject *py_event_cb;  /* strong, or NULL */
    PyObject *py_listeners; /* list of callables, strong; NULL until used */
    PyObject *py_weakrefs;
    py_chan chans; /* sentinel of the circular context list */
    uint64_t callback_errors;
} py_manager;

/*
 * The core's callbacks into Python (py_callbacks.c). Each takes the GIL
 * and never lets an exception reach the core; any thread.
 */
/* Receive callback of every channel made from Python; @opaque: py_chan. */
void gpm__py_chan_recv_cb(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                          void *opaque);
/* Release callback: unlinks and frees the py_chan @opaque. */
void gpm__py_chan_release_cb(void *opaque);
/* Event callback; @opaque is the py_manager. */
void gpm__py_manager_event_cb(const gpm_event_t *ev, void *opaque);
/* Takes @ch out of its Manager's list; the GIL held. */
void gpm__py_chan_unlink(py_chan *ch);
/* Whether this thread is inside a channel or event callback now. */
bool gpm__py_in_callback(void);

/* The pending exception, normalized with its traceback, or NULL. */
PyObject *gpm__py_exc_take(void);
/* Makes @exc (a reference this steals; may be NULL) the pending one. */
void gpm__py_exc_give(PyObject *exc);
/* The module that defined @self's type (borrowed). */
PyObject *gpm__py_manager_module(py_manager *self);
/* Raises @err for channel @id, naming the channel; returns NULL. */
PyObject *gpm__py_raise_chan(py_manager *self, int err, gpm_channel_id_t id);
/* O& converter for a channel id (see py_manager.c). */
int gpm__py_chan_id_conv(PyObject *obj, void *out);

/*
 * Methods of _gpm.Manager defined in py_owner.c (METH_O or METH_VARARGS
 * or METH_NOARGS, as listed in py_manager.c's method table).
 */
PyObject *gpm__py_manager_add_event_listener(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_remove_event_listener(py_manager *self,
                                                PyObject *arg);
PyObject *gpm__py_manager_set_owner(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_owner(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_set_ownership(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_set_guest_quota(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_process_gone(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_daemon_reset(py_manager *self, PyObject *arg);
PyObject *gpm__py_manager_daemon_probe(py_manager *self, PyObject *arg);

/* Methods defined in py_cpu.c. */
PyObject *gpm__py_manager_dispatch(py_manager *self, PyObject *args,
                                   PyObject *kwargs);
PyObject *gpm__py_manager_test_dispatch_in_thread(py_manager *self,
                                                  PyObject *py_cpu_obj);

#endif /* GPM_PY_MANAGER_H */
