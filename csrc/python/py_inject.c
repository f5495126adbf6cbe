/*
 * py_inject.c - _gpm.inject(): run linjector on the stock-QEMU host.
 *
 * The wait happens without the GIL; the injector's log lines are gathered
 * on the host's I/O thread and handed back as a list.
 */
#include <glib.h>

#include "python/pymod.h"
#include "qemu/linjector_qemu.h"

/* A running injection can take this long after its target was chosen. */
#define FINISH_GRACE_MS 20000

typedef struct inject_log {
    GMutex lock;
    GPtrArray *lines;
} inject_log_t;

static void log_cb(int level, const char *msg, void *opaque)
{
    inject_log_t *log = opaque;

    g_mutex_lock(&log->lock);
    if (log->lines->len < 1000)
        g_ptr_array_add(log->lines,
                        g_strdup_printf("%s%s", level ? "error: " : "", msg));
    g_mutex_unlock(&log->lock);
}

static int profile_u64(PyObject *profile, const char *key, uint64_t *out)
{
    PyObject *v = PyDict_GetItemString(profile, key);

    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "kernel profile lacks '%s'", key);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(v);
    return PyErr_Occurred() ? -1 : 0;
}

/* "entry_syscall": one address, or a sequence of up to four. */
static int profile_entries(PyObject *profile, gpm_kernel_profile_t *p)
{
    PyObject *v = PyDict_GetItemString(profile, "entry_syscall"), *seq;
    Py_ssize_t n;

    if (v == NULL) {
        PyErr_SetString(PyExc_KeyError, "kernel profile lacks 'entry_syscall'");
        return -1;
    }
    if (PyLong_Check(v))
        return profile_u64(profile, "entry_syscall", &p->entry_syscall[0]);
    seq = PySequence_Fast(v, "entry_syscall must be an int or a sequence");
    if (seq == NULL)
        return -1;
    n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > GPM_KERNEL_MAX_ENTRIES) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError,
                     "entry_syscall: 1 to %d addresses, not %zd",
                     GPM_KERNEL_MAX_ENTRIES, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        p->entry_syscall[i] =
            PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred() || p->entry_syscall[i] == 0) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "entry_syscall: address 0");
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static int parse_profile(PyObject *profile, gpm_kernel_profile_t *p)
{
    uint64_t v[8];
    static const char *const keys[8] = {
        NULL,        "current_task",     "task_pid",  "task_tgid",
        "task_comm", "task_real_parent", "task_cred", "cred_uid"};

    if (!PyDict_Check(profile)) {
        PyErr_SetString(PyExc_TypeError, "profile must be a dict");
        return -1;
    }
    memset(p, 0, sizeof(*p));
    if (profile_entries(profile, p) < 0)
        return -1;
    for (int i = 1; i < 8; i++)
        if (profile_u64(profile, keys[i], &v[i]) < 0)
            return -1;
    p->current_task = v[1];
    p->task_pid = (uint32_t)v[2];
    p->task_tgid = (uint32_t)v[3];
    p->task_comm = (uint32_t)v[4];
    p->task_real_parent = (uint32_t)v[5];
    p->task_cred = (uint32_t)v[6];
    p->cred_uid = (uint32_t)v[7];
    /* The bounce entry and its exit (i386's sysenter): optional. */
    if (PyDict_GetItemString(profile, "bounce_entry") != NULL &&
        (profile_u64(profile, "bounce_entry", &p->bounce_entry) < 0 ||
         profile_u64(profile, "bounce_exit", &p->bounce_exit) < 0))
        return -1;
    return 0;
}

const char *gpm__py_inj_state_name(gpm_inj_state_t s)
{
    switch (s) {
    case GPM_INJ_WAITING:
        return "waiting";
    case GPM_INJ_RUNNING:
        return "running";
    case GPM_INJ_DONE:
        return "done";
    default:
        return "failed";
    }
}

PyObject *gpm__py_inject(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"host",         "elf",  "profile", "proc_name",
                             "require_root", "argv", "timeout", NULL};
    PyObject *py_host, *profile, *py_argv = NULL, *seq = NULL;
    PyObject *result = NULL;
    const char *proc_name = NULL;
    int require_root = 1;
    double timeout = 30.0;
    Py_buffer elf = {0};
    gpm_kernel_profile_t prof;
    gpm_inj_config_t cfg = {0};
    gpm_injector_t *inj = NULL;
    gpm_qemu_inject_t *qi = NULL;
    gpm_qemu_host_t *h;
    inject_log_t log;
    const char **argv = NULL;
    PyObject *lines = NULL;
    Py_ssize_t nargs = 0;
    int64_t tgid, child;
    uint64_t stops = 0, bounces = 0;
    const char *entry = NULL;
    PyThreadState *ts;
    int rc;

    g_mutex_init(&log.lock);
    log.lines = g_ptr_array_new_with_free_func(g_free);
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Oy*O|zpOd:inject", kwlist,
                                     &py_host, &elf, &profile, &proc_name,
                                     &require_root, &py_argv, &timeout))
        goto error;
    h = gpm__py_gdbhost_get(py_host);
    if (h == NULL || parse_profile(profile, &prof) < 0)
        goto error;
    if (py_argv != NULL && py_argv != Py_None) {
        seq = PySequence_Fast(py_argv, "argv must be a sequence of str");
        if (seq == NULL)
            goto error;
        nargs = PySequence_Fast_GET_SIZE(seq);
        argv = g_new0(const char *, nargs + 1);
        for (Py_ssize_t i = 0; i < nargs; i++) {
            argv[i] = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
            if (argv[i] == NULL)
                goto error;
        }
    }

    /* The guest's arch is the host's. */
    prof.arch = gpm_qemu_host_arch(h);
    cfg.arch = prof.arch;
    cfg.elf = elf.buf;
    cfg.elf_len = (size_t)elf.len;
    cfg.proc_name = proc_name;
    cfg.require_root = require_root != 0;
    cfg.argv = argv;
    cfg.log = log_cb;
    cfg.log_opaque = &log;
    rc = gpm_injector_new(&cfg, &inj);
    if (rc != 0) {
        gpm__py_raise(module, rc, "cannot prepare the injection");
        goto error;
    }

    ts = PyEval_SaveThread();
    rc = gpm_qemu_inject_start(h, &prof, inj, &qi);
    if (rc == 0) {
        rc = gpm_qemu_inject_wait(qi, (int)(timeout * 1000));
        /* Never leave a hijacked process half way: let it finish. */
        if (rc == GPM_ETIMEDOUT && gpm_injector_state(inj) == GPM_INJ_RUNNING)
            rc = gpm_qemu_inject_wait(qi, FINISH_GRACE_MS);
        stops = gpm_qemu_inject_stops(qi);
        entry = gpm_qemu_inject_entry(qi, &bounces);
        gpm_qemu_inject_free(qi);
    }
    PyEval_RestoreThread(ts);

    gpm_injector_target(inj, &tgid, &child);
    lines = PyList_New(0);
    if (lines == NULL)
        goto error;
    g_mutex_lock(&log.lock);
    for (guint i = 0; i < log.lines->len; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(
            g_ptr_array_index(log.lines, i),
            (Py_ssize_t)strlen(g_ptr_array_index(log.lines, i)), "replace");

        if (s == NULL || PyList_Append(lines, s) < 0) {
            Py_XDECREF(s);
            g_mutex_unlock(&log.lock);
            goto error;
        }
        Py_DECREF(s);
    }
    g_mutex_unlock(&log.lock);
    result = Py_BuildValue(
        "{s:s,s:i,s:s,s:L,s:L,s:K,s:O,s:s,s:z,s:K}", "state",
        gpm__py_inj_state_name(gpm_injector_state(inj)), "code", rc,
        "code_name", gpm_err_name(rc), "tgid", (long long)tgid, "child",
        (long long)child, "stops", (unsigned long long)stops, "log", lines,
        "error", gpm_injector_error(inj) != NULL ? gpm_injector_error(inj) : "",
        "entry", entry, "bounces", (unsigned long long)bounces);
error:
    Py_XDECREF(lines);
    gpm_injector_free(inj);
    g_free(argv);
    Py_XDECREF(seq);
    if (elf.obj != NULL)
        PyBuffer_Release(&elf);
    g_ptr_array_free(log.lines, TRUE);
    g_mutex_clear(&log.lock);
    return result;
}
