/*
 * module.c - the pandagpm._gpm module: definition, state, errors, and the
 * module-level functions (error names, architectures; the plugin
 * inventory's are in py_inventory.c).
 *
 * Each C function parses its own arguments and returns plain Python values
 * (ints, bytes, tuples, dicts); the pandagpm package builds the friendly
 * objects on top and narrows _gpm.Error into its exception hierarchy.
 */
#include "python/pymod.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch_ops.h"
#include "gpm/files_proto.h"
#include "gpm/pty_proto.h"
#include "gpm/wire.h"

/*
 * O& converter for an optional file system path: None stays NULL,
 * anything else goes through PyUnicode_FSConverter (the caller releases
 * the bytes object).
 */
int gpm__py_opt_path_conv(PyObject *obj, void *out)
{
    if (obj == Py_None) {
        *(PyObject **)out = NULL;
        return 1;
    }
    return PyUnicode_FSConverter(obj, out);
}

/*
 * The default gdbstub-host hook, used until csrc/python/py_gdbhost.c
 * provides the real one: it adds nothing. Weak, so either order links.
 */
__attribute__((weak)) int gpm__py_gdbhost_exec(PyObject *module)
{
    (void)module;
    return 0;
}

gpm__py_state *gpm__py_state_from_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &gpm__py_moduledef);

    if (module == NULL) {
        /* Only reached for a type this module did not define. */
        PyErr_Clear();
        return NULL;
    }
    return PyModule_GetState(module);
}

/* The module's state, or NULL with an exception set. */
static gpm__py_state *py_state_of(PyObject *module_or_null)
{
    PyObject *module = module_or_null;
    gpm__py_state *st;

    if (module == NULL) {
        /* The module is in sys.modules while anything of it runs. */
        module = PyImport_ImportModule("pandagpm._gpm");
        if (module == NULL)
            return NULL;
        st = PyModule_GetState(module);
        Py_DECREF(module);
        return st;
    }
    return PyModule_GetState(module);
}

PyObject *gpm__py_raise(PyObject *module_or_null, int err, const char *detail)
{
    gpm__py_state *st = py_state_of(module_or_null);
    PyObject *py_msg = NULL;
    PyObject *py_exc = NULL;

    if (st == NULL || st->error_type == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "pandagpm error %d (%s)", err,
                         gpm_strerror(err));
        return NULL;
    }
    if (detail != NULL && detail[0] != '\0')
        py_msg = PyUnicode_FromFormat("%s: %s", gpm_strerror(err), detail);
    else
        py_msg = PyUnicode_FromString(gpm_strerror(err));
    if (py_msg == NULL)
        goto error;
    py_exc = PyObject_CallFunction(st->error_type, "isO", err,
                                   gpm_err_name(err), py_msg);
    if (py_exc == NULL)
        goto error;
    PyErr_SetObject((PyObject *)Py_TYPE(py_exc), py_exc);
error:
    Py_XDECREF(py_exc);
    Py_XDECREF(py_msg);
    return NULL;
}

/*
 * _gpm.Error keeps (code, name, message) in its args. These helpers back the
 * properties and __str__ that the exec slot puts in the class dictionary.
 */
static PyObject *py_error_arg(PyObject *self, Py_ssize_t index)
{
    PyObject *py_args = PyObject_GetAttrString(self, "args");
    PyObject *py_item;

    if (py_args == NULL)
        return NULL;
    if (!PyTuple_Check(py_args) || PyTuple_GET_SIZE(py_args) != 3) {
        Py_DECREF(py_args);
        Py_RETURN_NONE;
    }
    py_item = Py_NewRef(PyTuple_GET_ITEM(py_args, index));
    Py_DECREF(py_args);
    return py_item;
}

static PyObject *py_error_code(PyObject *unused, PyObject *self)
{
    (void)unused;
    return py_error_arg(self, 0);
}

static PyObject *py_error_name(PyObject *unused, PyObject *self)
{
    (void)unused;
    return py_error_arg(self, 1);
}

static PyObject *py_error_message(PyObject *unused, PyObject *self)
{
    (void)unused;
    return py_error_arg(self, 2);
}

static PyObject *py_error_str(PyObject *unused, PyObject *self)
{
    PyObject *py_args = PyObject_GetAttrString(self, "args");
    PyObject *py_str;

    (void)unused;
    if (py_args == NULL)
        return NULL;
    if (PyTuple_Check(py_args) && PyTuple_GET_SIZE(py_args) == 3)
        py_str = PyUnicode_FromFormat("%S [%S]", PyTuple_GET_ITEM(py_args, 2),
                                      PyTuple_GET_ITEM(py_args, 1));
    else
        py_str = PyObject_Str(py_args);
    Py_DECREF(py_args);
    return py_str;
}

static PyMethodDef py_error_code_def = {"code", py_error_code, METH_O,
                                        "The negative GPM_E* code."};
static PyMethodDef py_error_name_def = {"name", py_error_name, METH_O,
                                        "The code's name, e.g. GPM_ENOENT."};
static PyMethodDef py_error_message_def = {"message", py_error_message, METH_O,
                                           "The message."};
static PyMethodDef py_error_str_def = {"__str__", py_error_str, METH_O,
                                       "message [name]"};

/* Adds property @name backed by @def to @dict. */
static int py_add_property(PyObject *dict, PyMethodDef *def)
{
    PyObject *py_fget = PyCFunction_New(def, NULL);
    PyObject *py_prop = NULL;
    int rc = -1;

    if (py_fget == NULL)
        goto error;
    py_prop = PyObject_CallFunctionObjArgs((PyObject *)&PyProperty_Type,
                                           py_fget, NULL);
    if (py_prop == NULL)
        goto error;
    rc = PyDict_SetItemString(dict, def->ml_name, py_prop);
error:
    Py_XDECREF(py_prop);
    Py_XDECREF(py_fget);
    return rc;
}

/* Creates _gpm.Error and stores it in the state. */
static int py_error_type_init(PyObject *module, gpm__py_state *st)
{
    PyObject *py_dict = PyDict_New();
    PyObject *py_fn = NULL;
    PyObject *py_meth = NULL;
    int rc = -1;

    if (py_dict == NULL)
        goto error;
    if (py_add_property(py_dict, &py_error_code_def) < 0 ||
        py_add_property(py_dict, &py_error_name_def) < 0 ||
        py_add_property(py_dict, &py_error_message_def) < 0)
        goto error;
    /* An instancemethod binds like a Python function, so self is passed. */
    py_fn = PyCFunction_New(&py_error_str_def, NULL);
    if (py_fn == NULL)
        goto error;
    py_meth = PyInstanceMethod_New(py_fn);
    if (py_meth == NULL || PyDict_SetItemString(py_dict, "__str__", py_meth))
        goto error;
    st->error_type = PyErr_NewExceptionWithDoc(
        "pandagpm._gpm.Error",
        "Error(code, name, message): a pandagpm C API call failed.\n\n"
        "code is the negative GPM_E* value, name its symbolic name.",
        NULL, py_dict);
    if (st->error_type == NULL)
        goto error;
    rc = PyModule_AddObjectRef(module, "Error", st->error_type);
error:
    Py_XDECREF(py_meth);
    Py_XDECREF(py_fn);
    Py_XDECREF(py_dict);
    return rc;
}

/* Reads an error code argument; codes out of int's range are unknown. */
static int py_code_arg(PyObject *arg, int *out)
{
    int overflow;
    long v = PyLong_AsLongAndOverflow(arg, &overflow);

    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow != 0 || v < INT_MIN || v > INT_MAX)
        v = INT_MIN;
    *out = (int)v;
    return 0;
}

static PyObject *py_strerror(PyObject *module, PyObject *arg)
{
    int err;

    (void)module;
    if (py_code_arg(arg, &err) < 0)
        return NULL;
    return PyUnicode_FromString(gpm_strerror(err));
}

static PyObject *py_err_name(PyObject *module, PyObject *arg)
{
    int err;

    (void)module;
    if (py_code_arg(arg, &err) < 0)
        return NULL;
    return PyUnicode_FromString(gpm_err_name(err));
}

PyObject *gpm__py_arch_name(int arch)
{
    const gpm_arch_info_t *info;

    if (arch < 0 || (info = gpm_arch_info((gpm_arch_t)arch)) == NULL)
        Py_RETURN_NONE;
    return PyUnicode_FromString(info->name);
}

/* Reads an architecture name argument; 0 or -1 with an exception set. */
int gpm__py_arch_parse(PyObject *module, const char *name, gpm_arch_t *out)
{
    int err = gpm_arch_from_name(name, out);

    if (err < 0) {
        char detail[96];

        snprintf(detail, sizeof(detail), "unknown architecture '%.64s'", name);
        gpm__py_raise(module, err, detail);
        return -1;
    }
    return 0;
}

/* Adds the arch backend's facts (csrc/arch) to @d; 0 or -1. */
static int py_arch_backend(PyObject *d, const gpm__arch_ops_t *ops)
{
    PyObject *mmu = PyList_New(0);
    PyObject *env, *entries, *extra;
    int rc;

    if (mmu == NULL)
        return -1;
    for (unsigned i = 0; i < GPM__MMU_NREGS && ops->mmu_regs[i]; i++) {
        PyObject *s = PyUnicode_FromString(ops->mmu_regs[i]);

        if (s == NULL || PyList_Append(mmu, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(mmu);
            return -1;
        }
        Py_DECREF(s);
    }
    env = PyList_New(0);
    if (env == NULL) {
        Py_DECREF(mmu);
        return -1;
    }
    entries = PyList_New(0);
    if (entries == NULL) {
        Py_DECREF(env);
        Py_DECREF(mmu);
        return -1;
    }
    for (int i = -1; i < 3; i++) {
        const char *name =
            i < 0 ? ops->syscall_entry_symbol : ops->syscall_entry_alt[i];
        PyObject *s;

        if (name == NULL)
            continue;
        s = PyUnicode_FromString(name);
        if (s == NULL || PyList_Append(entries, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(entries);
            Py_DECREF(env);
            Py_DECREF(mmu);
            return -1;
        }
        Py_DECREF(s);
    }
    for (unsigned i = 0; i < ops->env_ngpr; i++) {
        PyObject *n = PyLong_FromLong(ops->env_gpr_index[i]);

        if (n == NULL || PyList_Append(env, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(env);
            Py_DECREF(mmu);
            return -1;
        }
        Py_DECREF(n);
    }
    extra = Py_BuildValue(
        "{s:K,s:y#,s:z,s:z,s:z,s:I,s:K,s:N,s:z,s:z,s:N,s:O,s:z,s:N,s:z,s:O,"
        "s:z,s:z}",
        "hc_addr", (unsigned long long)ops->hc_addr, "hc_insn",
        (const char *)ops->hc_insn, (Py_ssize_t)ops->hc_insn_len, "mode_reg",
        ops->mode_reg, "pc_name", ops->pc_reg, "gdb_xml_arch",
        ops->gdb_xml_arch, "bp_kind", ops->bp_kind, "user_top",
        (unsigned long long)ops->user_top, "syscall_entry_symbols", entries,
        "current_task_symbol", ops->current_task_symbol, "user_percpu_reg",
        ops->user_percpu_reg, "mmu_regs", mmu, "page_walk",
        ops->xlate ? Py_True : Py_False, "env_gpr_field", ops->env_gpr_field,
        "env_gpr_index", env, "env_pc_field", ops->env_pc_field,
        "mmu_inputs_const", ops->mmu_inputs_const ? Py_True : Py_False,
        "bounce_entry_symbol", ops->bounce_entry_symbol, "bounce_exit_symbol",
        ops->bounce_entry_symbol ? ops->bounce_exit_symbol : NULL);
    if (extra == NULL)
        return -1;
    rc = PyDict_Update(d, extra);
    Py_DECREF(extra);
    return rc;
}

static PyObject *py_arch_info(PyObject *module, PyObject *args)
{
    const gpm_arch_info_t *info;
    const gpm__arch_ops_t *ops;
    const char *name;
    gpm_arch_t arch;
    PyObject *d;

    if (!PyArg_ParseTuple(args, "s:arch_info", &name))
        return NULL;
    if (gpm__py_arch_parse(module, name, &arch) < 0)
        return NULL;
    info = gpm_arch_info(arch);
    if (info == NULL)
        return gpm__py_raise(module, GPM_EINVAL, name);
    d = Py_BuildValue(
        "{s:s,s:i,s:I,s:O,s:I,s:I,s:(IIIII),s:I,s:I,s:O}", "name", info->name,
        "id", (int)arch, "word_bits", info->word_bits, "big_endian",
        info->big_endian ? Py_True : Py_False, "elf_machine", info->elf_machine,
        "elf_class", info->elf_class, "hc_regs", info->hc_regs[0],
        info->hc_regs[1], info->hc_regs[2], info->hc_regs[3], info->hc_regs[4],
        "ret_reg", info->ret_reg, "pc_reg", info->pc_reg, "backend",
        gpm__arch_ops(arch) ? Py_True : Py_False);
    ops = gpm__arch_ops(arch);
    if (d != NULL && ops != NULL && py_arch_backend(d, ops) < 0)
        Py_CLEAR(d);
    return d;
}

/* wire_header(magic, type, seq, len) -> bytes, from gpm/wire.h itself. */
static PyObject *py_wire_header(PyObject *Py_UNUSED(module), PyObject *args)
{
    unsigned long magic, seq, len;
    unsigned int type;
    uint8_t hdr[GPM_WIRE_HDR_SIZE];

    if (!PyArg_ParseTuple(args, "kIkk:wire_header", &magic, &type, &seq, &len))
        return NULL;
    if (magic > UINT32_MAX || type > UINT16_MAX || seq > UINT32_MAX ||
        len > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a header field is too large");
        return NULL;
    }
    gpm_wire_hdr_put(hdr, (uint32_t)magic, (uint16_t)type, (uint32_t)seq,
                     (uint32_t)len);
    return PyBytes_FromStringAndSize((const char *)hdr, sizeof(hdr));
}

static PyMethodDef py_module_methods[] = {
    {"wire_header", py_wire_header, METH_VARARGS,
     "wire_header(magic, type, seq, len) -> bytes: a frame header encoded "
     "by gpm/wire.h (for checking the Python encoder against it)."},
    {"strerror", py_strerror, METH_O,
     "strerror(code) -> str: the message of a GPM_E* code."},
    {"err_name", py_err_name, METH_O,
     "err_name(code) -> str: the symbolic name of a code, e.g. "
     "'GPM_ENOENT'."},
    {"arch_info", py_arch_info, METH_VARARGS,
     "arch_info(name) -> dict: the core's table entry for an architecture."},
    {"mmu_check_user", gpm__py_mmu_check_user, METH_VARARGS,
     "mmu_check_user(arch, regs, va, length, write, phys_read) -> int: may "
     "the guest's user mode read (write) [va, va+length)? regs: the values "
     "of arch_info(arch)['mmu_regs']; phys_read(paddr, n) returns n bytes "
     "of guest-physical memory or None. 0, EFAULT or EROFS."},
    {"inspect_plugin", gpm__py_inspect_plugin, METH_VARARGS,
     "inspect_plugin(path) -> dict: a guest binary's ELF header and "
     "descriptor."},
    {"find_plugin", (PyCFunction)(void (*)(void))gpm__py_find_plugin,
     METH_VARARGS | METH_KEYWORDS,
     "find_plugin(name, arch='x86_64', explicit_dir=None) -> dict: the "
     "first valid binary for name along the search path."},
    {"list_plugins", (PyCFunction)(void (*)(void))gpm__py_list_plugins,
     METH_VARARGS | METH_KEYWORDS,
     "list_plugins(explicit_dir=None) -> list[dict]: every plugin on the "
     "search path."},
    {"add_plugin_dir", gpm__py_add_plugin_dir, METH_VARARGS,
     "add_plugin_dir(dir): append a directory to the search path."},
    {"clear_plugin_dirs", gpm__py_clear_plugin_dirs, METH_NOARGS,
     "clear_plugin_dirs(): forget the directories of add_plugin_dir()."},
    {"inject", (PyCFunction)(void (*)(void))gpm__py_inject,
     METH_VARARGS | METH_KEYWORDS,
     "inject(host, elf, profile, proc_name=None, require_root=True, "
     "argv=(), timeout=30.0) -> dict: run linjector on a GdbHost; waits "
     "without the GIL."},
    {"panda_hc_install", (PyCFunction)(void (*)(void))gpm__py_panda_hc_install,
     METH_VARARGS | METH_KEYWORDS,
     "panda_hc_install(manager, env_off, reg_offsets, reg_bytes, vread, "
     "vwrite, pread=0, cr3_off=None, cr4_off=None, hflags_off=None) -> int: "
     "make the C hypercall callback serve manager; returns its address "
     "for PANDA's guest_hypercall."},
    {"panda_hc_uninstall", gpm__py_panda_hc_uninstall, METH_NOARGS,
     "panda_hc_uninstall(): the C hypercall callback serves nothing."},
    {"panda_hc_stats", gpm__py_panda_hc_stats, METH_NOARGS,
     "panda_hc_stats() -> dict: calls, handled, installed."},
    {"panda_hc_set_task", gpm__py_panda_hc_set_task, METH_VARARGS,
     "panda_hc_set_task(current_task_va, tgid_off): read each hypercall's "
     "caller tgid from the kernel (CPU 0's current_task slot, "
     "task_struct.tgid), so channel ownership is enforced."},
    {"panda_bare_hc_install", gpm__py_panda_bare_hc_install, METH_VARARGS,
     "panda_bare_hc_install(env_off, rax_off) -> address of a bare "
     "guest_hypercall callback (answers 0, does nothing else): the "
     "benchmark's baseline."},
    {"panda_inj_callbacks", gpm__py_panda_inj_callbacks, METH_NOARGS,
     "panda_inj_callbacks() -> dict: the C callbacks on_all_sys_enter "
     "(syscalls2 PPP) and start_block_exec (register it disabled) of the "
     "pypanda injector."},
    {"panda_inj_install",
     (PyCFunction)(void (*)(void))gpm__py_panda_inj_install,
     METH_VARARGS | METH_KEYWORDS,
     "panda_inj_install(elf, argv, get_thread, get_process, osi_layout, "
     "cb_enable, cb_disable, cb_handle, cb_type, cb_pcb, proc_name=None, "
     "require_root=False, max_attempts=8): arm the injector that starts "
     "the guest daemon; needs panda_hc_install() first and the callbacks "
     "of panda_inj_callbacks() registered."},
    {"panda_inj_restart", gpm__py_panda_inj_restart, METH_NOARGS,
     "panda_inj_restart(): start over after a snapshot load."},
    {"panda_inj_uninstall", gpm__py_panda_inj_uninstall, METH_NOARGS,
     "panda_inj_uninstall(): the injector callbacks do nothing."},
    {"panda_inj_status", gpm__py_panda_inj_status, METH_NOARGS,
     "panda_inj_status() -> dict: state, tgid, child, attempts, failed, "
     "last_error."},
    {NULL, NULL, 0, NULL},
};

/* Adds the integer constants and the code tables. */
static int py_add_constants(PyObject *module)
{
    PyObject *py_names = NULL;
    PyObject *py_arches = NULL;
    int rc = -1;

#define PY_ADD_INT(name, value)                                                \
    do {                                                                       \
        if (PyModule_AddIntConstant(module, name, (long)(value)) < 0)          \
            goto error;                                                        \
    } while (0)

    /* The error codes, as E* constants and as a code -> name dict. */
    py_names = PyDict_New();
    if (py_names == NULL)
        goto error;
#define PY_ADD_ERR(name, value, msg)                                           \
    PY_ADD_INT(#name, value);                                                  \
    {                                                                          \
        PyObject *py_k = PyLong_FromLong(value);                               \
        PyObject *py_v = PyUnicode_FromString("GPM_" #name);                   \
        int e = (py_k && py_v) ? PyDict_SetItem(py_names, py_k, py_v) : -1;    \
        Py_XDECREF(py_k);                                                      \
        Py_XDECREF(py_v);                                                      \
        if (e < 0)                                                             \
            goto error;                                                        \
    }
    GPM_ERRNO_MAP(PY_ADD_ERR)
#undef PY_ADD_ERR
    if (PyModule_AddObjectRef(module, "ERROR_NAMES", py_names) < 0)
        goto error;

    /* The hypercall ABI. */
    PY_ADD_INT("HC_MAGIC", GPM_HC_MAGIC);
    PY_ADD_INT("HC_X86_ADDR", GPM_HC_X86_ADDR);
    PY_ADD_INT("HC_OP_START", GPM_HC_OP_START);
    PY_ADD_INT("HC_OP_STOP", GPM_HC_OP_STOP);
    PY_ADD_INT("HC_OP_READ", GPM_HC_OP_READ);
    PY_ADD_INT("HC_OP_WRITE", GPM_HC_OP_WRITE);
    PY_ADD_INT("HC_OP_ERROR", GPM_HC_OP_ERROR);
    PY_ADD_INT("HC_OP_GET_MANAGER", GPM_HC_OP_GET_MANAGER);
    PY_ADD_INT("HC_OP_GET_CHANNEL", GPM_HC_OP_GET_CHANNEL);
    PY_ADD_INT("HC_NOT_FOUND", GPM_HC_NOT_FOUND);
    PY_ADD_INT("HC_EBADF", GPM_HC_EBADF);
    PY_ADD_INT("HC_EAGAIN", GPM_HC_EAGAIN);
    PY_ADD_INT("HC_EFAULT", GPM_HC_EFAULT);
    PY_ADD_INT("HC_EINVAL", GPM_HC_EINVAL);
    PY_ADD_INT("HC_ENOSPC", GPM_HC_ENOSPC);
    PY_ADD_INT("HC_EPIPE", GPM_HC_EPIPE);
    PY_ADD_INT("HC_ENAMETOOLONG", GPM_HC_ENAMETOOLONG);
    PY_ADD_INT("HC_ENOSYS", GPM_HC_ENOSYS);
    PY_ADD_INT("HC_EBUSY", GPM_HC_EBUSY);
    PY_ADD_INT("HC_MAX_TRANSFER", GPM_HC_MAX_TRANSFER);
    PY_ADD_INT("HC_MAX_NAME", GPM_HC_MAX_NAME);
    PY_ADD_INT("HC_MAX_ERROR_MSG", GPM_HC_MAX_ERROR_MSG);

    /* Manager limits and events. */
    PY_ADD_INT("API_VERSION", GPM_API_VERSION);
    PY_ADD_INT("NAME_MAX", GPM_NAME_MAX);
    PY_ADD_INT("CHANNEL_NONE", GPM_CHANNEL_NONE);
    PY_ADD_INT("EVENT_CHANNEL_START", GPM_EVENT_CHANNEL_START);
    PY_ADD_INT("EVENT_CHANNEL_STOP", GPM_EVENT_CHANNEL_STOP);
    PY_ADD_INT("EVENT_GUEST_ERROR", GPM_EVENT_GUEST_ERROR);
    PY_ADD_INT("EVENT_GUEST_CHANNEL", GPM_EVENT_GUEST_CHANNEL);
    PY_ADD_INT("EVENT_DAEMON_READY", GPM_EVENT_DAEMON_READY);
    PY_ADD_INT("EVENT_PLUGIN_STARTED", GPM_EVENT_PLUGIN_STARTED);
    PY_ADD_INT("EVENT_PLUGIN_EXITED", GPM_EVENT_PLUGIN_EXITED);
    PY_ADD_INT("EVENT_PLUGIN_FAILED", GPM_EVENT_PLUGIN_FAILED);
    PY_ADD_INT("EVENT_PROTOCOL_ERROR", GPM_EVENT_PROTOCOL_ERROR);
    PY_ADD_INT("EVENT_CHANNEL_DRAINED", GPM_EVENT_CHANNEL_DRAINED);

    /* The frame layout of gpm/wire.h and the daemon protocol's types. */
    PY_ADD_INT("WIRE_HDR_SIZE", GPM_WIRE_HDR_SIZE);
    PY_ADD_INT("WIRE_VERSION", GPM_WIRE_VERSION);
    PY_ADD_INT("WIRE_MAGIC_DAEMON", GPM_WIRE_MAGIC_DAEMON);
    PY_ADD_INT("WIRE_MAGIC_FILES", GPM_WIRE_MAGIC_FILES);
    PY_ADD_INT("WIRE_MAGIC_PTY", GPM_WIRE_MAGIC_PTY);
    PY_ADD_INT("DFRAME_MAX_PAYLOAD", GPM_DFRAME_MAX_PAYLOAD);
    PY_ADD_INT("DFRAME_MAX_REPLY", GPM_DFRAME_MAX_REPLY);
    PY_ADD_INT("DFRAME_LOAD", GPM_DFRAME_LOAD);
    PY_ADD_INT("DFRAME_PING", GPM_DFRAME_PING);
    PY_ADD_INT("DFRAME_PROBE", GPM_DFRAME_PROBE);
    PY_ADD_INT("DFRAME_HELLO", GPM_DFRAME_HELLO);
    PY_ADD_INT("DFRAME_STARTED", GPM_DFRAME_STARTED);
    PY_ADD_INT("DFRAME_EXITED", GPM_DFRAME_EXITED);
    PY_ADD_INT("DFRAME_FAILED", GPM_DFRAME_FAILED);
    PY_ADD_INT("DFRAME_GONE", GPM_DFRAME_GONE);
    PY_ADD_INT("DSTAGE_LOST", GPM_DSTAGE_LOST);

    /* The files plugin's protocol (gpm/files_proto.h). */
    PY_ADD_INT("FILES_STAT", GPM_FILES_STAT);
    PY_ADD_INT("FILES_LISTDIR", GPM_FILES_LISTDIR);
    PY_ADD_INT("FILES_GET", GPM_FILES_GET);
    PY_ADD_INT("FILES_PUT", GPM_FILES_PUT);
    PY_ADD_INT("FILES_REMOVE", GPM_FILES_REMOVE);
    PY_ADD_INT("FILES_MKDIR", GPM_FILES_MKDIR);
    PY_ADD_INT("FILES_CHMOD", GPM_FILES_CHMOD);
    PY_ADD_INT("FILES_CHOWN", GPM_FILES_CHOWN);
    PY_ADD_INT("FILES_UTIMES", GPM_FILES_UTIMES);
    PY_ADD_INT("FILES_READLINK", GPM_FILES_READLINK);
    PY_ADD_INT("FILES_SYMLINK", GPM_FILES_SYMLINK);
    PY_ADD_INT("FILES_RENAME", GPM_FILES_RENAME);
    PY_ADD_INT("FILES_TRUNCATE", GPM_FILES_TRUNCATE);
    PY_ADD_INT("FILES_QUIT", GPM_FILES_QUIT);
    PY_ADD_INT("FILES_SETUSER", GPM_FILES_SETUSER);

    /* The pty_shell plugin's protocol (gpm/pty_proto.h). */
    PY_ADD_INT("PTY_OPEN", GPM_PTY_OPEN);
    PY_ADD_INT("PTY_STDIN", GPM_PTY_STDIN);
    PY_ADD_INT("PTY_EOF", GPM_PTY_EOF);
    PY_ADD_INT("PTY_WINSIZE", GPM_PTY_WINSIZE);
    PY_ADD_INT("PTY_SIGNAL", GPM_PTY_SIGNAL);
    PY_ADD_INT("PTY_QUIT", GPM_PTY_QUIT);
    PY_ADD_INT("PTY_STARTED", GPM_PTY_STARTED);
    PY_ADD_INT("PTY_STDOUT", GPM_PTY_STDOUT);
    PY_ADD_INT("PTY_STDERR", GPM_PTY_STDERR);
    PY_ADD_INT("PTY_EXIT", GPM_PTY_EXIT);
    PY_ADD_INT("PTY_MAX_FRAME", GPM_PTY_MAX_FRAME);
    PY_ADD_INT("PTY_MAX_ARGS", GPM_PTY_MAX_ARGS);
    PY_ADD_INT("PTY_F_TTY", GPM_PTY_F_TTY);
    PY_ADD_INT("PTY_X_TIMEOUT", GPM_PTY_X_TIMEOUT);
    PY_ADD_INT("FILES_R_STATUS", GPM_FILES_R_STATUS);
    PY_ADD_INT("FILES_R_ATTR", GPM_FILES_R_ATTR);
    PY_ADD_INT("FILES_R_DIRENTS", GPM_FILES_R_DIRENTS);
    PY_ADD_INT("FILES_R_DATA", GPM_FILES_R_DATA);
    PY_ADD_INT("FILES_PATH_MAX", GPM_FILES_PATH_MAX);
    PY_ADD_INT("FILES_CHUNK", GPM_FILES_CHUNK);
    PY_ADD_INT("FILES_DIRENTS_MAX", GPM_FILES_DIRENTS_MAX);
    PY_ADD_INT("FILES_ATTR_SIZE", GPM_FILES_ATTR_SIZE);
    PY_ADD_INT("FILES_MAX_REQUEST", GPM_FILES_MAX_REQUEST);
    PY_ADD_INT("FILES_NOFOLLOW", GPM_FILES_NOFOLLOW);
    PY_ADD_INT("FILES_DIR", GPM_FILES_DIR);
    PY_ADD_INT("FILES_TRUNC", GPM_FILES_TRUNC);
    PY_ADD_INT("FILES_EXCL", GPM_FILES_EXCL);
    PY_ADD_INT("FILES_CREATE", GPM_FILES_CREATE);
    PY_ADD_INT("DSTAGE_PROTOCOL", GPM_DSTAGE_PROTOCOL);
    PY_ADD_INT("DSTAGE_MEMORY", GPM_DSTAGE_MEMORY);
    PY_ADD_INT("DSTAGE_FILE", GPM_DSTAGE_FILE);
    PY_ADD_INT("DSTAGE_WRITE", GPM_DSTAGE_WRITE);
    PY_ADD_INT("DSTAGE_FORK", GPM_DSTAGE_FORK);
    PY_ADD_INT("DSTAGE_EXEC", GPM_DSTAGE_EXEC);
#undef PY_ADD_INT
    if (PyModule_AddStringConstant(module, "DAEMON_CHANNEL",
                                   GPM_DAEMON_CHANNEL) < 0)
        goto error;

    /* The architecture names, in gpm_arch_t order. */
    py_arches = PyTuple_New(GPM_ARCH_COUNT);
    if (py_arches == NULL)
        goto error;
    for (int i = 0; i < GPM_ARCH_COUNT; i++) {
        PyObject *py_name = gpm__py_arch_name(i);

        if (py_name == NULL)
            goto error;
        PyTuple_SET_ITEM(py_arches, i, py_name);
    }
    if (PyModule_AddObjectRef(module, "ARCHES", py_arches) < 0)
        goto error;
    rc = 0;
error:
    Py_XDECREF(py_arches);
    Py_XDECREF(py_names);
    return rc;
}

static int py_module_exec(PyObject *module)
{
    gpm__py_state *st = PyModule_GetState(module);

    if (py_error_type_init(module, st) < 0)
        return -1;
    if (py_add_constants(module) < 0)
        return -1;
    if (gpm__py_manager_exec(module) < 0)
        return -1;
    if (gpm__py_gdbhost_exec(module) < 0)
        return -1;
    return 0;
}

static int py_module_traverse(PyObject *module, visitproc visit, void *arg)
{
    gpm__py_state *st = PyModule_GetState(module);

    Py_VISIT(st->error_type);
    Py_VISIT(st->manager_type);
    Py_VISIT(st->gdbhost_type);
    return 0;
}

static int py_module_clear(PyObject *module)
{
    gpm__py_state *st = PyModule_GetState(module);

    Py_CLEAR(st->error_type);
    Py_CLEAR(st->manager_type);
    Py_CLEAR(st->gdbhost_type);
    return 0;
}

static void py_module_free(void *module)
{
    py_module_clear((PyObject *)module);
}

static PyModuleDef_Slot py_module_slots[] = {
    {Py_mod_exec, py_module_exec},
    {0, NULL},
};

PyModuleDef gpm__py_moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pandagpm._gpm",
    .m_doc = "Private C extension of pandagpm: the channel manager, the "
             "hypercall dispatcher and the plugin inventory. Use the "
             "pandagpm package instead.",
    .m_size = sizeof(gpm__py_state),
    .m_methods = py_module_methods,
    .m_slots = py_module_slots,
    .m_traverse = py_module_traverse,
    .m_clear = py_module_clear,
    .m_free = py_module_free,
};

PyMODINIT_FUNC PyInit__gpm(void)
{
    return PyModuleDef_Init(&gpm__py_moduledef);
}
