/*
 * osi_provider.c - OSI's process list and memory maps from the guest
 * agent; see osi_provider.h. The snapshot and OSI's container rules are
 * in osi_snapshot.c (PANDA-independent, unit-tested); this file turns its
 * records into PANDA's OsiProc and OsiModule and talks to the osi plugin.
 */
#include "panda/plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "osi/osi_types.h"

#include "guest_plugin_manager.h"
#include "osi_provider.h"
#include "osi_snapshot.h"

/* Our own declarations of the osi plugin's two PPP callback types. */
typedef void (*gpm__osi_procs_cb_t)(CPUState *cpu, GArray **out);
typedef void (*gpm__osi_maps_cb_t)(CPUState *cpu, OsiProc *p, GArray **out);

static gpm_osi_snapshot_t *snap;
static ChannelId procs_chan;
static bool registered;

static void proc_clear(gpointer e)
{
    OsiProc *p = e;

    g_free(p->name);
    g_free(p->pages);
}

static void module_clear(gpointer e)
{
    OsiModule *m = e;

    g_free(m->file);
    g_free(m->name);
}

static void fill_proc(void *e, const gpm_osi_proc_t *p)
{
    OsiProc *o = e;

    /* No kernel addresses: the agent knows none (taskd, pgd, asid 0). */
    o->pid = p->pid;
    o->ppid = p->ppid;
    o->name = g_strdup(p->name);
    o->create_time = p->start_time;
}

static void fill_module(void *e, const gpm_osi_map_t *m)
{
    OsiModule *o = e;
    const char *slash = strrchr(m->path, '/');

    o->base = m->start;
    o->size = m->end - m->start;
    o->offset = m->offset;
    o->file = g_strdup(m->path);
    o->name = g_strdup(slash != NULL ? slash + 1 : m->path);
}

static void on_get_processes(CPUState *cpu, GArray **out)
{
    (void)cpu;
    if (snap != NULL && out != NULL)
        gpm_osi_snapshot_fill_procs(snap, out, sizeof(OsiProc), proc_clear,
                                    fill_proc);
}

static void on_get_mappings(CPUState *cpu, OsiProc *p, GArray **out)
{
    (void)cpu;
    if (snap != NULL && p != NULL && out != NULL)
        gpm_osi_snapshot_fill_maps(snap, p->pid, out, sizeof(OsiModule),
                                   module_clear, fill_module);
}

/* The procs plugin's bytes; on the emulator thread. */
static void on_procs(ChannelId channel, const uint8_t *msg, size_t len)
{
    (void)channel;
    if (snap != NULL && gpm_osi_snapshot_feed(snap, msg, len) < 0)
        fprintf(stderr, "guest_plugin_manager: osi provider: malformed "
                        "reply from the procs guest plugin dropped\n");
}

/* Looks up osi's "ppp_<what>_cb_<name>" function; NULL if missing. */
static void *osi_sym(const char *what, const char *name)
{
    void *osi = panda_get_plugin_by_name("osi");
    char sym[128];

    if (osi == NULL)
        return NULL;
    snprintf(sym, sizeof(sym), "ppp_%s_cb_%s", what, name);
    return dlsym(osi, sym);
}

bool gpm_osi_provider_init(void)
{
    void *add_p = osi_sym("add", "on_get_processes");
    void *add_m = osi_sym("add", "on_get_mappings");
    void (*reg_p)(gpm__osi_procs_cb_t);
    void (*reg_m)(gpm__osi_maps_cb_t);

    if (add_p == NULL || add_m == NULL) {
        fprintf(stderr, "guest_plugin_manager: osi_provider needs the osi "
                        "plugin (-panda osi) loaded before this one\n");
        return false;
    }
    /* POSIX: a dlsym() result converts to a function pointer. */
    memcpy(&reg_p, &add_p, sizeof(add_p));
    memcpy(&reg_m, &add_m, sizeof(add_m));
    snap = gpm_osi_snapshot_new();
    reg_p(on_get_processes);
    reg_m(on_get_mappings);
    registered = true;
    return true;
}

void gpm_osi_provider_fini(void)
{
    if (registered) {
        void *rm_p = osi_sym("remove", "on_get_processes");
        void *rm_m = osi_sym("remove", "on_get_mappings");
        bool (*unreg_p)(gpm__osi_procs_cb_t);
        bool (*unreg_m)(gpm__osi_maps_cb_t);

        if (rm_p != NULL) {
            memcpy(&unreg_p, &rm_p, sizeof(rm_p));
            unreg_p(on_get_processes);
        }
        if (rm_m != NULL) {
            memcpy(&unreg_m, &rm_m, sizeof(rm_m));
            unreg_m(on_get_mappings);
        }
        registered = false;
    }
    gpm_osi_snapshot_free(snap);
    snap = NULL;
    procs_chan = GPM_PANDA_CHANNEL_NONE;
}

void gpm_osi_provider_event(const gpm_event_t *ev)
{
    if (snap == NULL)
        return;
    if (ev->type == GPM_EVENT_DAEMON_READY &&
        procs_chan == GPM_PANDA_CHANNEL_NONE) {
        GuestPlugin gp = {"procs", NULL, on_procs};

        procs_chan = add_guest_plugin(gp);
        if (procs_chan == GPM_PANDA_CHANNEL_NONE)
            fprintf(stderr, "guest_plugin_manager: osi provider: the procs "
                            "guest plugin could not be loaded; OSI answers "
                            "nothing\n");
    } else if ((ev->type == GPM_EVENT_PLUGIN_EXITED ||
                ev->type == GPM_EVENT_PLUGIN_FAILED) &&
               ev->name != NULL && strcmp(ev->name, "procs") == 0) {
        /* No agent: nothing, rather than an old list taken for news. */
        gpm_osi_snapshot_reset(snap);
        procs_chan = GPM_PANDA_CHANNEL_NONE;
    }
}

void gpm_osi_provider_reset(void)
{
    if (snap != NULL)
        gpm_osi_snapshot_reset(snap);
    procs_chan = GPM_PANDA_CHANNEL_NONE;
}

void gpm_osi_provider_tick(void)
{
    uint8_t req[GPM_PROCS_REQ_LEN];

    if (snap == NULL || procs_chan == GPM_PANDA_CHANNEL_NONE)
        return;
    if (gpm_osi_snapshot_next_request(snap, req, g_get_monotonic_time() / 1000,
                                      GPM_OSI_PERIOD_MS))
        channel_write(procs_chan, req, sizeof(req));
}
