/*
 * guest_plugin_manager.c - the guest_plugin_manager PANDA plugin.
 *
 * Owns the process-wide manager (gpm_panda_api.c), answers the guest's
 * hypercalls (PANDA_CB_GUEST_HYPERCALL: CPUID on x86, PANDA's hypercall
 * instruction on the other targets), answers monitor commands, and loads
 * linjector to start the guest daemon.
 *
 * Arguments (-panda guest_plugin_manager:key=value,...):
 *   guest_daemon=PATH  the guest daemon's static ELF (default: found as
 *                      "guest_daemon" on the inventory search path);
 *   plugin_dir=DIR     one more directory for the inventory search path;
 *   proc_name=A:B      handed to linjector: hijack only these processes
 *                      (default: linjector's, the usual shells; * = any);
 *   require_root       handed to linjector: hijack only a root process;
 *   no_inject          do not load linjector (start the daemon yourself);
 *   osi_provider       serve PANDA's OSI process list and memory maps from
 *                      the guest agent (osi_provider.h; needs -panda osi).
 *
 * Other plugins call the C API of guest_plugin_manager.h. This plugin
 * exports PANDA_EXPORT_SYMBOLS_guest_plugin_manager, so PANDA reopens it
 * with RTLD_GLOBAL and a plugin loaded after it may call the API directly;
 * any plugin may also look it up with dlsym() on the handle
 * panda_get_plugin_by_name("guest_plugin_manager") returns.
 *
 * Failures never abort PANDA: a missing daemon, linjector or one of its
 * plugins is one line on stderr and a false init_plugin().
 *
 * PANDA runs the hypercall callback as part of executing the instruction:
 * when it returns true the instruction's own effect is skipped and the
 * guest continues after it, so, unlike the stock-QEMU host, nothing here
 * moves the program counter.
 */
#include "panda/plugin.h"
#include "panda/plugin_plugin.h"

#include "monitor/monitor.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "osi/osi_types.h"
/*
 * This unit is the plugin's main one, so osi_ext.h defines OSI's API
 * pointers and init_osi_api() here. Hidden: PANDA reopens this plugin
 * with RTLD_GLOBAL, and linjector, which has its own copy, would
 * otherwise bind to this one.
 */
#pragma GCC visibility push(hidden)
#include "osi/osi_ext.h"
#pragma GCC visibility pop

#include "gpm_panda_api.h"
#include "gpm_panda_host.h"
#include "linjector.h"
#include "osi_provider.h"

bool init_plugin(void *self);
void uninit_plugin(void *self);

/* Its presence makes PANDA reload this plugin with RTLD_GLOBAL. */
extern const int PANDA_EXPORT_SYMBOLS_guest_plugin_manager;
const int PANDA_EXPORT_SYMBOLS_guest_plugin_manager = 1;

PPP_PROT_REG_CB(on_guest_agent_load)
PPP_CB_BOILERPLATE(on_guest_agent_load)

/* The CPU whose hypercall is being handled, for the PPP callback. */
static CPUState *hc_cpu;
static const gpm_arch_info_t *hc_arch;
/* OSI is there: hypercalls carry their caller's pid (channel ownership). */
static bool have_osi;
/* No linjector: whoever starts the daemon, any process may serve it. */
static bool daemon_any;
static bool reported_host_error;

static void on_manager_event(const gpm_event_t *ev, void *opaque)
{
    (void)opaque;
    gpm_osi_provider_event(ev);
    switch (ev->type) {
    case GPM_EVENT_DAEMON_READY:
        fprintf(stderr, "guest_plugin_manager: guest daemon ready (pid %lld)\n",
                (long long)ev->pid);
        PPP_RUN_CB(on_guest_agent_load, hc_cpu);
        break;
    case GPM_EVENT_PLUGIN_STARTED:
        fprintf(stderr, "guest_plugin_manager: %s started (pid %lld)\n",
                ev->name != NULL ? ev->name : "?", (long long)ev->pid);
        break;
    case GPM_EVENT_PLUGIN_EXITED:
        fprintf(stderr, "guest_plugin_manager: %s exited (status 0x%llx)\n",
                ev->name != NULL ? ev->name : "?",
                (unsigned long long)ev->status);
        break;
    case GPM_EVENT_PROTOCOL_ERROR:
        fprintf(stderr, "guest_plugin_manager: malformed frame from the "
                        "guest daemon\n");
        break;
    default:
        break;
    }
}

/*
 * The guest process (thread group) whose thread made the hypercall, from
 * OSI; GPM_TGID_UNKNOWN without OSI, and the core then checks no owner.
 */
static int64_t caller_tgid(CPUState *cpu)
{
    OsiThread *th;
    int64_t tgid = GPM_TGID_UNKNOWN;

    if (!have_osi)
        return tgid;
    th = get_current_thread(cpu);
    if (th != NULL && th->pid > 0)
        tgid = th->pid;
    g_free(th);
    return tgid;
}

static bool on_hypercall(CPUState *cpu)
{
    gpm_manager_t *m = gpm_panda_api_manager();
    uint64_t magic = 0, op = 0, result = 0;
    bool handled = false;
    int rc;

    if (m == NULL)
        return false;
    /* The op register, read before the call overwrites the result's. */
    if (gpm_panda_read_reg(cpu, hc_arch->hc_regs[0], &magic) != 0 ||
        gpm_panda_read_reg(cpu, hc_arch->hc_regs[1], &op) != 0)
        magic = op = 0;
    hc_cpu = cpu;
    /* Ask OSI only for our hypercalls, not for every CPUID. */
    if ((magic & 0xffffffffu) == GPM_HC_MAGIC)
        rc = gpm_hypercall_handle_as(m, &gpm_panda_host_ops, cpu,
                                     caller_tgid(cpu), &handled);
    else
        rc = gpm_hypercall_handle(m, &gpm_panda_host_ops, cpu, &handled);
    hc_cpu = NULL;
    if (handled)
        gpm_osi_provider_tick();
    /* PANDA has no doorbell page: "none" is an answer, not an error. */
    if (handled && op == GPM_HC_OP_GET_DOORBELL &&
        gpm_panda_read_reg(cpu, hc_arch->ret_reg, &result) == 0 &&
        result == ((uint64_t)(int64_t)GPM_HC_ENOSYS &
                   (hc_arch->word_bits == 64 ? UINT64_MAX : UINT32_MAX)))
        gpm_panda_api_count_no_doorbell();
    if (rc != 0 && !reported_host_error) {
        /* A register the glue cannot reach: a bug, reported once. */
        reported_host_error = true;
        fprintf(stderr,
                "guest_plugin_manager: hypercall registers unreachable: %s\n",
                gpm_strerror(rc));
    }
    return handled;
}

/*
 * A snapshot was loaded (-loadvm, a revert, replay start): if the guest
 * had talked to us, that guest state is gone, so start over like the
 * stock-QEMU host does after a revert. Plugins added before the guest's
 * first hypercall are kept.
 */
/*
 * Makes the daemon's channel; it waits for its owner (the process
 * linjector starts, see on_injected()) unless linjector is not used.
 */
static int make_daemon_channel(void)
{
    gpm_manager_t *m = gpm_panda_api_manager();
    gpm_channel_id_t id;
    int rc = gpm_daemon_channel(m, &id);

    if (rc == 0 && daemon_any)
        rc = gpm_channel_set_owner(m, id, GPM_OWNER_ANY);
    return rc;
}

static void on_after_loadvm(CPUState *cpu)
{
    (void)cpu;
    if (gpm_panda_api_reset_if_used() != 1)
        return;
    gpm_osi_provider_reset();
    fprintf(stderr, "guest_plugin_manager: snapshot loaded; channels and "
                    "guest plugins of the previous state closed\n");
    /* The next daemon looks its channel up as soon as it starts. */
    make_daemon_channel();
}

/* linjector started @child: only that process may serve the daemon. */
static void on_injected(CPUState *cpu, int64_t pid, int64_t child)
{
    gpm_manager_t *m = gpm_panda_api_manager();
    gpm_channel_id_t id;

    (void)cpu;
    (void)pid;
    if (m == NULL || gpm_daemon_channel(m, &id) != 0)
        return;
    gpm_channel_set_owner(m, id, child > 0 ? child : GPM_OWNER_ANY);
}

static void monitor_print(void *opaque, const char *line)
{
    monitor_printf((Monitor *)opaque, "%s\n", line);
}

static int on_monitor(Monitor *mon, const char *cmd)
{
    gpm_panda_api_monitor(cmd, monitor_print, mon);
    return 0;
}

/* Passes our linjector arguments on and loads it. */
static bool start_linjector(gpm_arch_t arch, const char *daemon,
                            const char *proc_name, bool require_root)
{
    char why[2048] = "";
    gpm_plugin_info_t *info = g_new0(gpm_plugin_info_t, 1);
    char *arg, *path;
    int rc = 0;
    bool ok;

    if (daemon == NULL) {
        rc =
            gpm_plugin_find("guest_daemon", NULL, arch, info, why, sizeof(why));
        daemon = info->path;
    }
    if (rc != 0) {
        fprintf(stderr,
                "guest_plugin_manager: no guest daemon for %s: %s (%s); "
                "pass guest_daemon=PATH or set EXTRA_GUEST_PLUGINS_PATH\n",
                gpm_arch_info(arch)->name, gpm_strerror(rc), why);
        g_free(info);
        return false;
    }
    arg = g_strdup_printf("guest_binary=%s", daemon);
    panda_add_arg("linjector", arg);
    g_free(arg);
    /*
     * linjector detaches the daemon itself: no fork in the daemon (-n);
     * a daemon left over from before a snapshot load or a re-injection is
     * killed by the new one (-r), as on the other hosts.
     */
    panda_add_arg("linjector", "args=-n -r");
    if (proc_name != NULL) {
        arg = g_strdup_printf("proc_name=%s", proc_name);
        panda_add_arg("linjector", arg);
        g_free(arg);
    }
    if (require_root)
        panda_add_arg("linjector", "require_root=true");
    g_free(info);
    if (panda_get_plugin_by_name("linjector") != NULL)
        return true;
    /* Not panda_require(): it aborts PANDA when loading fails. */
    path = panda_plugin_path("linjector");
    if (path == NULL) {
        fprintf(stderr, "guest_plugin_manager: PANDA plugin linjector not "
                        "found (no panda_linjector.so in PANDA's plugin "
                        "directories); build it, or pass no_inject\n");
        return false;
    }
    ok = panda_load_plugin(path, "linjector");
    if (!ok)
        fprintf(stderr, "guest_plugin_manager: linjector failed to load (its "
                        "message is above); pass no_inject to start the guest "
                        "daemon another way\n");
    g_free(path);
    return ok;
}

bool init_plugin(void *self)
{
    panda_arg_list *args = panda_get_args("guest_plugin_manager");
    char *daemon = g_strdup(panda_parse_string_opt(
        args, "guest_daemon", NULL, "the guest daemon's static ELF"));
    char *plugin_dir = g_strdup(panda_parse_string_opt(
        args, "plugin_dir", NULL, "one more guest plugin directory"));
    char *proc_name = g_strdup(panda_parse_string_opt(
        args, "proc_name", NULL,
        "linjector: hijack only these processes (a:b; * = any)"));
    bool require_root = panda_parse_bool_opt(
        args, "require_root", "linjector: hijack only a root process");
    bool no_inject = panda_parse_bool_opt(
        args, "no_inject", "do not load linjector to start the daemon");
    bool osi_provider = panda_parse_bool_opt(
        args, "osi_provider", "serve OSI's process list from the agent");
    gpm_arch_t arch;
    panda_cb pcb;
    bool ok = false;
    int rc;

    panda_free_args(args);
    rc = gpm_panda_guest_arch(&arch);
    if (rc != 0) {
        fprintf(stderr, "guest_plugin_manager: this PANDA target has no "
                        "pandagpm hypercall ABI\n");
        goto out;
    }
    if (plugin_dir != NULL && (rc = gpm_inventory_add_dir(plugin_dir)) != 0) {
        fprintf(stderr, "guest_plugin_manager: plugin_dir=%s: %s\n", plugin_dir,
                gpm_strerror(rc));
        goto out;
    }
    hc_arch = gpm_arch_info(arch);
    daemon_any = no_inject;
    rc = gpm_panda_api_init(arch, on_manager_event, NULL);
    if (rc == 0)
        rc = make_daemon_channel();
    if (rc != 0) {
        fprintf(stderr, "guest_plugin_manager: %s\n", gpm_strerror(rc));
        gpm_panda_api_fini();
        goto out;
    }

    /*
     * linjector first: a failed init_plugin() is dlclose()d without its
     * callbacks being removed, so none may be registered before.
     */
    if (!no_inject && !start_linjector(arch, daemon, proc_name, require_root)) {
        gpm_panda_api_fini();
        goto out;
    }
    if (!no_inject)
        PPP_REG_CB("linjector", after_guest_inject, on_injected);
    /* linjector loads osi; with no_inject it may be loaded by the user. */
    have_osi = panda_get_plugin_by_name("osi") != NULL && init_osi_api();
    if (!have_osi)
        fprintf(stderr, "guest_plugin_manager: no osi plugin: channels are "
                        "not restricted to the guest process they belong "
                        "to\n");
    /* Not fatal: linjector's callback is registered already (see above). */
    if (osi_provider && !gpm_osi_provider_init())
        fprintf(stderr, "guest_plugin_manager: going on without the OSI "
                        "provider\n");
    pcb.guest_hypercall = on_hypercall;
    panda_register_callback(self, PANDA_CB_GUEST_HYPERCALL, pcb);
    pcb.monitor = on_monitor;
    panda_register_callback(self, PANDA_CB_MONITOR, pcb);
    pcb.after_loadvm = on_after_loadvm;
    panda_register_callback(self, PANDA_CB_AFTER_LOADVM, pcb);
    ok = true;
out:
    g_free(daemon);
    g_free(plugin_dir);
    g_free(proc_name);
    return ok;
}

void uninit_plugin(void *self)
{
    void *lj = panda_get_plugin_by_name("linjector");

    (void)self;
    /* linjector may outlive us: take our PPP callback back. */
    if (lj != NULL) {
        bool (*remove_cb)(after_guest_inject_t);
        void *sym = dlsym(lj, "ppp_remove_cb_after_guest_inject");

        /* POSIX: a dlsym() result converts to a function pointer. */
        memcpy(&remove_cb, &sym, sizeof(sym));
        if (remove_cb != NULL)
            remove_cb(on_injected);
    }
    /* PANDA drops this plugin's callbacks; free every channel. */
    gpm_osi_provider_fini();
    gpm_panda_api_fini();
    gpm_inventory_clear_dirs();
    have_osi = false;
}
