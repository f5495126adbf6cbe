/*
 * py_inventory.c - the plugin inventory for Python: _gpm.inspect_plugin(),
 * find_plugin(), list_plugins(), add_plugin_dir(), clear_plugin_dirs().
 *
 * The inventory reads files, so each call releases the GIL around the
 * core and returns plain dicts (pandagpm.manager builds PluginInfo).
 */
#include "python/pymod.h"

#include <stdbool.h>
#include <stdlib.h>

/* Room for the explanations the inventory functions write. */
#define PY_WHY_LEN 2048

/* A plugin description as a plain dict. */
static PyObject *py_plugin_dict(const gpm_plugin_info_t *info)
{
    PyObject *py_arch = gpm__py_arch_name(info->arch);
    PyObject *py_dict;

    if (py_arch == NULL)
        return NULL;
    py_dict = Py_BuildValue(
        "{s:s,s:s,s:s,s:s,s:O,s:I,s:I,s:I}", "path", info->path, "name",
        info->name, "version", info->version, "description", info->description,
        "arch", py_arch, "elf_machine", info->elf_machine, "elf_class",
        info->elf_class, "desc_abi", (unsigned)info->desc_abi);
    Py_DECREF(py_arch);
    return py_dict;
}

/* One lookup: inspect the file at @path, or (@path NULL) find @name. */
typedef struct py_lookup {
    const char *path;
    const char *name;
    const char *dir; /* the explicit directory, or NULL */
    gpm_arch_t arch;
} py_lookup;

/* Runs @q without the GIL: the plugin's dict, or NULL with an exception. */
static PyObject *py_lookup_run(PyObject *module, const py_lookup *q)
{
    gpm_plugin_info_t *info = calloc(1, sizeof(*info));
    char why[PY_WHY_LEN] = "";
    PyThreadState *ts;
    PyObject *py_ret;
    int err;

    if (info == NULL)
        return PyErr_NoMemory();
    ts = PyEval_SaveThread();
    if (q->path != NULL)
        err = gpm_plugin_inspect(q->path, info, why, sizeof(why));
    else
        err = gpm_plugin_find(q->name, q->dir, q->arch, info, why, sizeof(why));
    PyEval_RestoreThread(ts);
    py_ret = err < 0 ? gpm__py_raise(module, err, why) : py_plugin_dict(info);
    free(info);
    return py_ret;
}

PyObject *gpm__py_inspect_plugin(PyObject *module, PyObject *args)
{
    py_lookup q = {0};
    PyObject *py_path = NULL;
    PyObject *py_ret;

    if (!PyArg_ParseTuple(args, "O&:inspect_plugin", PyUnicode_FSConverter,
                          &py_path))
        return NULL;
    q.path = PyBytes_AS_STRING(py_path);
    py_ret = py_lookup_run(module, &q);
    Py_DECREF(py_path);
    return py_ret;
}

PyObject *gpm__py_find_plugin(PyObject *module, PyObject *args,
                              PyObject *kwargs)
{
    static char *kwlist[] = {"name", "arch", "explicit_dir", NULL};
    const char *arch_name = "x86_64";
    py_lookup q = {0};
    PyObject *py_dir = NULL;
    PyObject *py_ret = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|sO&:find_plugin", kwlist,
                                     &q.name, &arch_name, gpm__py_opt_path_conv,
                                     &py_dir))
        return NULL;
    if (gpm__py_arch_parse(module, arch_name, &q.arch) == 0) {
        q.dir = py_dir ? PyBytes_AS_STRING(py_dir) : NULL;
        py_ret = py_lookup_run(module, &q);
    }
    Py_XDECREF(py_dir);
    return py_ret;
}

/* What gpm_plugin_list() collects, without the GIL. */
struct py_plugin_vec {
    gpm_plugin_info_t *items;
    size_t len;
    size_t cap;
    bool oom;
};

static void py_plugin_collect_cb(const gpm_plugin_info_t *info, void *opaque)
{
    struct py_plugin_vec *vec = opaque;

    if (vec->oom)
        return;
    if (vec->len == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 8;
        gpm_plugin_info_t *items = realloc(vec->items, cap * sizeof(*items));

        if (items == NULL) {
            vec->oom = true;
            return;
        }
        vec->items = items;
        vec->cap = cap;
    }
    vec->items[vec->len++] = *info;
}

PyObject *gpm__py_list_plugins(PyObject *module, PyObject *args,
                               PyObject *kwargs)
{
    static char *kwlist[] = {"explicit_dir", NULL};
    PyThreadState *ts;
    struct py_plugin_vec vec = {0};
    PyObject *py_dir = NULL;
    PyObject *py_list = NULL;
    PyObject *py_ret = NULL;
    int err;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O&:list_plugins", kwlist,
                                     gpm__py_opt_path_conv, &py_dir))
        return NULL;
    ts = PyEval_SaveThread();
    err = gpm_plugin_list(py_dir ? PyBytes_AS_STRING(py_dir) : NULL,
                          py_plugin_collect_cb, &vec);
    PyEval_RestoreThread(ts);
    if (err == 0 && vec.oom)
        err = GPM_ENOMEM;
    if (err < 0) {
        gpm__py_raise(module, err, NULL);
        goto error;
    }
    py_list = PyList_New(0);
    if (py_list == NULL)
        goto error;
    for (size_t i = 0; i < vec.len; i++) {
        PyObject *py_item = py_plugin_dict(&vec.items[i]);

        if (py_item == NULL || PyList_Append(py_list, py_item) < 0) {
            Py_XDECREF(py_item);
            goto error;
        }
        Py_DECREF(py_item);
    }
    py_ret = Py_NewRef(py_list);
error:
    Py_XDECREF(py_list);
    Py_XDECREF(py_dir);
    free(vec.items);
    return py_ret;
}

PyObject *gpm__py_add_plugin_dir(PyObject *module, PyObject *args)
{
    PyObject *py_dir = NULL;
    int err;

    if (!PyArg_ParseTuple(args, "O&:add_plugin_dir", PyUnicode_FSConverter,
                          &py_dir))
        return NULL;
    err = gpm_inventory_add_dir(PyBytes_AS_STRING(py_dir));
    Py_DECREF(py_dir);
    if (err < 0)
        return gpm__py_raise(module, err, NULL);
    Py_RETURN_NONE;
}

PyObject *gpm__py_clear_plugin_dirs(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    gpm_inventory_clear_dirs();
    Py_RETURN_NONE;
}
