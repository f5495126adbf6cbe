/*
 * pymod.h - internal contract between the files of pandagpm._gpm.
 *
 * module.c owns the module definition, its state and the one function
 * that turns a GPM_E* code into a Python exception. Each type lives in its
 * own file and is added to the module by an exec hook declared here.
 */
#ifndef GPM_PYMOD_H
#define GPM_PYMOD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "gpm/gpm.h"
#include "gpm/injector.h"

/* Per-module state: the module's exception type and heap types. */
typedef struct gpm__py_state {
    PyObject *error_type;       /* _gpm.Error(code, name, message) */
    PyTypeObject *manager_type; /* _gpm.Manager */
    PyTypeObject *gdbhost_type; /* _gpm.GdbHost (stock-QEMU host) */
} gpm__py_state;

extern PyModuleDef gpm__py_moduledef;

/* The state of the module that defined @type's class; never NULL. */
gpm__py_state *gpm__py_state_from_type(PyTypeObject *type);

/*
 * Raises _gpm.Error(code, name, message) for @err, with @detail (may be
 * NULL) appended to the message. Always returns NULL. Needs the GIL.
 */
PyObject *gpm__py_raise(PyObject *module_or_null, int err, const char *detail);

/* O& converter: None stays NULL, else PyUnicode_FSConverter's bytes. */
int gpm__py_opt_path_conv(PyObject *obj, void *out);
/* An arch's name as str, or None for an unknown one; NULL on error. */
PyObject *gpm__py_arch_name(int arch);
/* Reads an architecture name argument; 0, or -1 with an exception set. */
int gpm__py_arch_parse(PyObject *module, const char *name, gpm_arch_t *out);

/* The plugin inventory's module functions (py_inventory.c). */
PyObject *gpm__py_inspect_plugin(PyObject *module, PyObject *args);
PyObject *gpm__py_find_plugin(PyObject *module, PyObject *args,
                              PyObject *kwargs);
PyObject *gpm__py_list_plugins(PyObject *module, PyObject *args,
                               PyObject *kwargs);
PyObject *gpm__py_add_plugin_dir(PyObject *module, PyObject *args);
PyObject *gpm__py_clear_plugin_dirs(PyObject *module, PyObject *unused);

/*
 * Exec hooks, called by module.c's exec slot in this order. Each adds its
 * type(s) to @module and stores them in the state. Return 0 or -1 with an
 * exception set.
 */
int gpm__py_manager_exec(PyObject *module);
int gpm__py_gdbhost_exec(PyObject *module);

/*
 * The core manager wrapped by a _gpm.Manager object, or NULL with
 * TypeError set if @obj is not one. The pointer is valid while @obj lives;
 * callers that keep it must keep a strong reference to @obj.
 */
gpm_manager_t *gpm__py_manager_get(PyObject *obj);

/*
 * The stock-QEMU host wrapped by a _gpm.GdbHost object, or NULL with
 * TypeError (not a GdbHost) or an error (closed) set. Valid while @obj
 * lives and is not closed.
 */
struct gpm_qemu_host;
struct gpm_qemu_host *gpm__py_gdbhost_get(PyObject *obj);

/* _gpm.inject(host, elf, profile, ...): see py_inject.c. */
/* "waiting", "running", "done" or "failed"; a static string. */
const char *gpm__py_inj_state_name(gpm_inj_state_t s);
PyObject *gpm__py_inject(PyObject *module, PyObject *args, PyObject *kwargs);

/* py_arch.c */
PyObject *gpm__py_mmu_check_user(PyObject *module, PyObject *args);

/* The pypanda hot path: see py_panda.c. */
PyObject *gpm__py_panda_hc_install(PyObject *module, PyObject *args,
                                   PyObject *kwargs);
PyObject *gpm__py_panda_hc_uninstall(PyObject *module, PyObject *unused);
PyObject *gpm__py_panda_hc_stats(PyObject *module, PyObject *unused);
PyObject *gpm__py_panda_bare_hc_install(PyObject *module, PyObject *args);
PyObject *gpm__py_panda_hc_set_task(PyObject *module, PyObject *args);

/* linjector for pypanda, driven by syscalls2: see py_panda_inject.c. */
PyObject *gpm__py_panda_inj_install(PyObject *module, PyObject *args,
                                    PyObject *kwargs);
PyObject *gpm__py_panda_inj_callbacks(PyObject *module, PyObject *unused);
PyObject *gpm__py_panda_inj_restart(PyObject *module, PyObject *unused);
PyObject *gpm__py_panda_inj_uninstall(PyObject *module, PyObject *unused);
PyObject *gpm__py_panda_inj_status(PyObject *module, PyObject *unused);

#endif /* GPM_PYMOD_H */
