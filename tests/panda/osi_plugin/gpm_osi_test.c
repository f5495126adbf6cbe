/*
 * gpm_osi_test.c - a C host plugin for tests/test_panda_real_osi.py: what a
 * PANDA user's plugin does with OSI, answered by guest_plugin_manager's
 * OSI provider (osi_provider=true) rather than by a kernel profile.
 *
 * On the monitor command "plugin_cmd osi_dump PID" it asks, at the next
 * address-space change (a point where the guest CPU is stopped in its own
 * execution), for get_processes() and for get_mappings() of PID through
 * the osi plugin's API (looked up with dlsym() in the osi plugin, with our
 * own declarations), checks the container it gets (element size), writes
 * what came from the agent to the results file and frees the containers
 * with g_array_free(arr, TRUE), which must free every string through the
 * clear function the provider set.
 *
 * Entries from the agent are those with taskd 0 (it knows no kernel
 * addresses); osi_linux, which linjector loads, answers too and fills
 * taskd, and its entries come first (the provider appends to them).
 *
 * Arguments: out=FILE, where "key=value" lines go (appended, flushed).
 * Results per dump N: dump_N_procs=<agent entries>, dump_N_other=<others>,
 * dump_N_elem_ok=0|1, one dump_N_proc=PID,PPID,NAME line per agent
 * process, dump_N_maps=<count or -1 for NULL>, dump_N_map=BASE,SIZE,FILE
 * lines, and dump_N_done=1 last.
 */
#include "panda/plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "osi/osi_types.h"

bool init_plugin(void *self);
void uninit_plugin(void *self);

typedef GArray *(*get_processes_fn)(CPUState *cpu);
typedef GArray *(*get_mappings_fn)(CPUState *cpu, OsiProc *p);

static FILE *out;
static get_processes_fn get_procs;
static get_mappings_fn get_maps;
static int want_pid = -1;
static unsigned dumps;
static bool pending;

static void dump(CPUState *cpu)
{
    GArray *procs, *maps;
    OsiProc *target = NULL;
    unsigned ours = 0, other = 0, i;
    unsigned n = ++dumps;

    procs = get_procs(cpu);
    fprintf(out, "dump_%u_elem_ok=%d\n", n,
            procs == NULL ||
                g_array_get_element_size(procs) == sizeof(OsiProc));
    for (i = 0; procs != NULL && i < procs->len; i++) {
        OsiProc *p = &g_array_index(procs, OsiProc, i);

        if (p->taskd != 0 || p->asid != 0) {
            other++;
            continue;
        }
        ours++;
        fprintf(out, "dump_%u_proc=%d,%d,%s\n", n, (int)p->pid, (int)p->ppid,
                p->name != NULL ? p->name : "");
        if (p->pid == want_pid)
            target = p;
    }
    fprintf(out, "dump_%u_procs=%u\ndump_%u_other=%u\n", n, ours, n, other);
    maps = target != NULL ? get_maps(cpu, target) : NULL;
    fprintf(out, "dump_%u_maps=%d\n", n, maps != NULL ? (int)maps->len : -1);
    for (i = 0; maps != NULL && i < maps->len; i++) {
        OsiModule *m = &g_array_index(maps, OsiModule, i);

        fprintf(out, "dump_%u_map=%llx,%llx,%s\n", n,
                (unsigned long long)m->base, (unsigned long long)m->size,
                m->file != NULL ? m->file : "");
    }
    if (maps != NULL)
        g_array_free(maps, TRUE);
    if (procs != NULL)
        g_array_free(procs, TRUE);
    fprintf(out, "dump_%u_done=1\n", n);
    fflush(out);
}

static bool on_asid_changed(CPUState *cpu, target_ptr_t oldval,
                            target_ptr_t newval)
{
    (void)oldval;
    (void)newval;
    if (pending) {
        pending = false;
        dump(cpu);
    }
    return false;
}

static int on_monitor(Monitor *mon, const char *cmd)
{
    (void)mon;
    if (strncmp(cmd, "osi_dump ", 9) == 0) {
        want_pid = atoi(cmd + 9);
        pending = true;
    }
    return 0;
}

bool init_plugin(void *self)
{
    panda_arg_list *args = panda_get_args("gpm_osi_test");
    const char *path = panda_parse_string_req(args, "out", "results file");
    void *osi = panda_get_plugin_by_name("osi");
    void *sp, *sm;
    panda_cb pcb;

    if (osi == NULL) {
        fprintf(stderr, "gpm_osi_test: the osi plugin is not loaded\n");
        panda_free_args(args);
        return false;
    }
    sp = dlsym(osi, "get_processes");
    sm = dlsym(osi, "get_mappings");
    out = fopen(path, "a");
    panda_free_args(args);
    if (sp == NULL || sm == NULL || out == NULL) {
        fprintf(stderr, "gpm_osi_test: no OSI API or no results file\n");
        if (out != NULL)
            fclose(out);
        out = NULL;
        return false;
    }
    /* POSIX: a dlsym() result converts to a function pointer. */
    memcpy(&get_procs, &sp, sizeof(sp));
    memcpy(&get_maps, &sm, sizeof(sm));
    fprintf(out, "osi_test_loaded=1\n");
    fflush(out);
    pcb.asid_changed = on_asid_changed;
    panda_register_callback(self, PANDA_CB_ASID_CHANGED, pcb);
    pcb.monitor = on_monitor;
    panda_register_callback(self, PANDA_CB_MONITOR, pcb);
    return true;
}

void uninit_plugin(void *self)
{
    (void)self;
    if (out != NULL)
        fclose(out);
    out = NULL;
}
