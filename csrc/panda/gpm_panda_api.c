/*
 * gpm_panda_api.c - the exported C API of the guest_plugin_manager PANDA
 * plugin (guest_plugin_manager.h) over one gpm_manager_t, and the record
 * behind the monitor commands (see gpm_panda_api.h).
 */
#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gpm_panda_api.h"

typedef enum rec_kind {
    REC_PLUGIN = 0, /* add_guest_plugin() */
    REC_HOST,       /* allocate_channel() */
    REC_GUEST,      /* the guest allocated it (GET_MANAGER) */
} rec_kind_t;

typedef struct rec {
    rec_kind_t kind;
    gpm_channel_id_t id;
    char *name; /* NULL for an anonymous channel */
    char *path; /* plugins: the binary, or NULL if found by name */
    int64_t pid;
    int64_t status;
    bool exited;
    bool failed;
    bool ever_started; /* the guest sent START on it at least once */
    char *error;
} rec_t;

/* What a channel made through the API hands the core as its opaque. */
typedef struct cb_box {
    ChannelCB cb;
} cb_box_t;

static struct {
    GMutex lock; /* protects recs; static storage needs no g_mutex_init */
    gpm_manager_t *mgr;
    gpm_arch_t arch;
    GPtrArray *recs;
    gpm_event_cb event_cb;
    void *event_opaque;
    gpm_panda_print_fn log;
    void *log_opaque;
    /* GET_DOORBELL queries answered "none" (not errors; see stats). */
    uint64_t no_doorbell;
} g;

static __thread int last_error;

static void rec_free(gpointer p)
{
    rec_t *r = p;

    g_free(r->name);
    g_free(r->path);
    g_free(r->error);
    g_free(r);
}

static void logf_(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void logf_(const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (g.log != NULL)
        g.log(g.log_opaque, line);
    else
        fprintf(stderr, "guest_plugin_manager: %s\n", line);
}

/* Records the result of an exported call; returns @err. */
static int set_error(int err)
{
    last_error = err;
    return err;
}

static void box_recv(gpm_channel_id_t id, const uint8_t *buf, size_t len,
                     void *opaque)
{
    cb_box_t *box = opaque;

    if (box->cb != NULL)
        box->cb(id, buf, len);
}

static void box_release(void *opaque)
{
    g_free(opaque);
}

static rec_t *rec_find(gpm_channel_id_t id)
{
    for (guint i = 0; g.recs != NULL && i < g.recs->len; i++) {
        rec_t *r = g_ptr_array_index(g.recs, i);

        if (r->id == id)
            return r;
    }
    return NULL;
}

static rec_t *rec_find_plugin(const char *name)
{
    for (guint i = 0; name != NULL && g.recs != NULL && i < g.recs->len; i++) {
        rec_t *r = g_ptr_array_index(g.recs, i);

        if (r->kind == REC_PLUGIN && strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

/* Adds a record; the caller holds g.lock. */
static void rec_add_locked(rec_kind_t kind, gpm_channel_id_t id,
                           const char *name, const char *path)
{
    rec_t *r;

    if (g.recs == NULL)
        return;
    r = g_new0(rec_t, 1);
    r->kind = kind;
    r->id = id;
    r->name = g_strdup(name);
    r->path = g_strdup(path);
    r->pid = -1;
    g_ptr_array_add(g.recs, r);
}

static void rec_add(rec_kind_t kind, gpm_channel_id_t id, const char *name,
                    const char *path)
{
    g_mutex_lock(&g.lock);
    rec_add_locked(kind, id, name, path);
    g_mutex_unlock(&g.lock);
}

/* Keeps the record in step with the guest, then forwards the event. */
static void on_event(const gpm_event_t *ev, void *opaque)
{
    rec_t *r;

    (void)opaque;
    g_mutex_lock(&g.lock);
    switch (ev->type) {
    case GPM_EVENT_PLUGIN_STARTED:
        r = rec_find_plugin(ev->name);
        if (r != NULL) {
            r->pid = ev->pid;
            r->exited = r->failed = false;
        }
        break;
    case GPM_EVENT_PLUGIN_EXITED:
        r = rec_find_plugin(ev->name);
        if (r != NULL) {
            r->exited = true;
            r->status = ev->status;
        }
        break;
    case GPM_EVENT_PLUGIN_FAILED:
        r = rec_find_plugin(ev->name);
        if (r != NULL) {
            r->failed = true;
            g_free(r->error);
            r->error = g_strdup(ev->text != NULL ? ev->text : "");
        }
        logf_("guest plugin %s failed to load: %s (errno %d)",
              ev->name != NULL ? ev->name : "?",
              ev->text != NULL ? ev->text : "", ev->err);
        break;
    case GPM_EVENT_CHANNEL_START:
        r = rec_find(ev->channel);
        if (r != NULL)
            r->ever_started = true;
        break;
    case GPM_EVENT_GUEST_CHANNEL:
        if (rec_find(ev->channel) == NULL)
            rec_add_locked(REC_GUEST, ev->channel, NULL, NULL);
        break;
    default:
        break;
    }
    g_mutex_unlock(&g.lock);
    if (g.event_cb != NULL)
        g.event_cb(ev, g.event_opaque);
}

int gpm_panda_api_init(gpm_arch_t arch, gpm_event_cb event_cb, void *opaque)
{
    gpm_manager_config_t cfg = {0};
    int rc;

    if (g.mgr != NULL)
        return GPM_EBUSY;
    cfg.arch = arch;
    rc = gpm_manager_new(&cfg, &g.mgr);
    if (rc != 0)
        return rc;
    g.recs = g_ptr_array_new_with_free_func(rec_free);
    g.arch = arch;
    g.event_cb = event_cb;
    g.event_opaque = opaque;
    gpm_manager_set_event_cb(g.mgr, on_event, NULL);
    return 0;
}

void gpm_panda_api_fini(void)
{
    GPtrArray *recs;

    /* Freeing the manager runs every channel's release callback. */
    gpm_manager_free(g.mgr);
    g.mgr = NULL;
    g_mutex_lock(&g.lock);
    recs = g.recs;
    g.recs = NULL;
    g_mutex_unlock(&g.lock);
    if (recs != NULL)
        g_ptr_array_free(recs, TRUE);
    g.event_cb = NULL;
    g.event_opaque = NULL;
    g.no_doorbell = 0;
}

int gpm_panda_api_reset_if_used(void)
{
    gpm_manager_stats_t st;
    gpm_event_cb cb = g.event_cb;
    void *opaque = g.event_opaque;
    int rc;

    if (g.mgr == NULL)
        return GPM_EPERM;
    gpm_manager_stats(g.mgr, &st);
    if (st.hypercalls == 0)
        return 0;
    gpm_panda_api_fini();
    rc = gpm_panda_api_init(g.arch, cb, opaque);
    return rc == 0 ? 1 : rc;
}

gpm_manager_t *gpm_panda_api_manager(void)
{
    return g.mgr;
}

void gpm_panda_api_count_no_doorbell(void)
{
    g_mutex_lock(&g.lock);
    g.no_doorbell++;
    g_mutex_unlock(&g.lock);
}

void gpm_panda_api_set_log(gpm_panda_print_fn fn, void *opaque)
{
    g.log = fn;
    g.log_opaque = opaque;
}

/* Fails an exported call made while the plugin is not loaded. */
static bool need_manager(const char *fn)
{
    if (g.mgr != NULL)
        return true;
    set_error(GPM_EPERM);
    logf_("%s: the guest_plugin_manager plugin is not initialised", fn);
    return false;
}

ChannelId add_guest_plugin(GuestPlugin plugin)
{
    char why[1024] = "";
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    cb_box_t *box;
    int rc;

    if (!need_manager("add_guest_plugin"))
        return GPM_PANDA_CHANNEL_NONE;
    if (plugin.plugin_name == NULL || plugin.plugin_name[0] == '\0') {
        set_error(GPM_EINVAL);
        logf_("add_guest_plugin: GuestPlugin.plugin_name is required");
        return GPM_PANDA_CHANNEL_NONE;
    }
    box = g_new0(cb_box_t, 1);
    box->cb = plugin.msg_receive_cb;
    rc = gpm_guest_plugin_add(g.mgr, plugin.plugin_name,
                              plugin.guest_binary_path, box_recv, box_release,
                              box, &id, why, sizeof(why));
    if (rc != 0) {
        /* On failure the core never calls box_release. */
        g_free(box);
        set_error(rc);
        logf_("add_guest_plugin(%s): %s%s%s", plugin.plugin_name,
              gpm_strerror(rc), why[0] != '\0' ? ": " : "", why);
        return GPM_PANDA_CHANNEL_NONE;
    }
    rec_add(REC_PLUGIN, id, plugin.plugin_name, plugin.guest_binary_path);
    set_error(0);
    return id;
}

void channel_write(ChannelId channel, const uint8_t *buf, size_t len)
{
    int rc;

    if (!need_manager("channel_write"))
        return;
    if (buf == NULL && len > 0) {
        set_error(GPM_EINVAL);
        logf_("channel_write(%u): NULL buffer of %zu bytes", channel, len);
        return;
    }
    rc = gpm_channel_write(g.mgr, channel, buf, len);
    set_error(rc);
    if (rc != 0)
        logf_("channel_write(%u, %zu bytes): %s; nothing queued", channel, len,
              gpm_strerror(rc));
}

ChannelId get_channel_from_name(const char *name)
{
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    int rc;

    if (!need_manager("get_channel_from_name"))
        return GPM_PANDA_CHANNEL_NONE;
    rc = gpm_channel_lookup(g.mgr, name, &id);
    set_error(rc);
    /* An unknown name is an answer, not an error worth a log line. */
    if (rc != 0 && rc != GPM_ENOENT)
        logf_("get_channel_from_name: %s", gpm_strerror(rc));
    return rc == 0 ? id : GPM_PANDA_CHANNEL_NONE;
}

ChannelId allocate_channel(ChannelCB cb)
{
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    cb_box_t *box;
    int rc;

    if (!need_manager("allocate_channel"))
        return GPM_PANDA_CHANNEL_NONE;
    box = g_new0(cb_box_t, 1);
    box->cb = cb;
    rc = gpm_channel_allocate(g.mgr, NULL, box_recv, box_release, box, &id);
    if (rc != 0) {
        g_free(box);
        set_error(rc);
        logf_("allocate_channel: %s", gpm_strerror(rc));
        return GPM_PANDA_CHANNEL_NONE;
    }
    rec_add(REC_HOST, id, NULL, NULL);
    set_error(0);
    return id;
}

ChannelId guest_plugin_manager_open_channel(const char *name, ChannelCB cb)
{
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    cb_box_t *box;
    int rc;

    if (!need_manager("guest_plugin_manager_open_channel"))
        return GPM_PANDA_CHANNEL_NONE;
    if (name == NULL || name[0] == '\0') {
        set_error(GPM_EINVAL);
        logf_("guest_plugin_manager_open_channel: a name is required");
        return GPM_PANDA_CHANNEL_NONE;
    }
    box = g_new0(cb_box_t, 1);
    box->cb = cb;
    rc = gpm_channel_allocate(g.mgr, name, box_recv, box_release, box, &id);
    if (rc != 0) {
        g_free(box);
        set_error(rc);
        logf_("guest_plugin_manager_open_channel(%s): %s", name,
              gpm_strerror(rc));
        return GPM_PANDA_CHANNEL_NONE;
    }
    rec_add(REC_HOST, id, name, NULL);
    set_error(0);
    return id;
}

int guest_plugin_manager_last_error(void)
{
    return last_error;
}

static void printf_(gpm_panda_print_fn print, void *opaque, const char *fmt,
                    ...) G_GNUC_PRINTF(3, 4);

static void printf_(gpm_panda_print_fn print, void *opaque, const char *fmt,
                    ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    print(opaque, line);
}

static const char *kind_name(rec_kind_t k)
{
    switch (k) {
    case REC_PLUGIN:
        return "plugin";
    case REC_HOST:
        return "host";
    default:
        return "guest";
    }
}

/* What the guest did with a channel, in words. */
static const char *channel_state(const rec_t *r, int started)
{
    if (started == 1)
        return "started";
    if (r != NULL && r->kind == REC_PLUGIN && (r->exited || r->failed))
        return r->failed ? "plugin failed to load" : "closed, plugin exited";
    if (r != NULL && r->ever_started)
        return "stopped by the guest";
    return "not started yet";
}

static void describe_channels(gpm_panda_print_fn print, void *opaque)
{
    gpm_channel_id_t daemon;
    size_t bytes = 0, msgs = 0;

    printf_(print, opaque, "channels:");
    /* The daemon's channel is made by the plugin, not through the API. */
    if (gpm_channel_lookup(g.mgr, GPM_DAEMON_CHANNEL, &daemon) == 0 &&
        gpm_channel_pending(g.mgr, daemon, &bytes, &msgs) == 0)
        printf_(print, opaque,
                "  %-6u %-6s %-24s queued %zu msg / %zu bytes, %s", daemon,
                "daemon", GPM_DAEMON_CHANNEL, msgs, bytes,
                gpm_channel_started(g.mgr, daemon) == 1 ? "started"
                                                        : "no daemon yet");
    g_mutex_lock(&g.lock);
    for (guint i = 0; g.recs != NULL && i < g.recs->len; i++) {
        rec_t *r = g_ptr_array_index(g.recs, i);

        if (gpm_channel_pending(g.mgr, r->id, &bytes, &msgs) != 0)
            continue; /* closed since */
        printf_(print, opaque,
                "  %-6u %-6s %-24s queued %zu msg / %zu bytes, %s", r->id,
                kind_name(r->kind), r->name != NULL ? r->name : "(anonymous)",
                msgs, bytes,
                channel_state(r, gpm_channel_started(g.mgr, r->id)));
    }
    g_mutex_unlock(&g.lock);
}

static void describe_plugins(gpm_panda_print_fn print, void *opaque)
{
    printf_(print, opaque, "guest plugins:");
    g_mutex_lock(&g.lock);
    for (guint i = 0; g.recs != NULL && i < g.recs->len; i++) {
        rec_t *r = g_ptr_array_index(g.recs, i);
        char state[320];

        if (r->kind != REC_PLUGIN)
            continue;
        if (r->failed)
            snprintf(state, sizeof(state), "failed: %s", r->error);
        else if (r->exited)
            snprintf(state, sizeof(state), "pid %lld exited, status 0x%llx",
                     (long long)r->pid, (unsigned long long)r->status);
        else if (r->pid >= 0)
            snprintf(state, sizeof(state), "running as pid %lld",
                     (long long)r->pid);
        else
            snprintf(state, sizeof(state), "queued for the guest daemon");
        printf_(print, opaque, "  %-24s channel %-6u %s (%s)", r->name, r->id,
                state, r->path != NULL ? r->path : "found by name");
    }
    g_mutex_unlock(&g.lock);
}

void gpm_panda_api_describe(gpm_panda_print_fn print, void *opaque)
{
    if (g.mgr == NULL) {
        printf_(print, opaque, "guest_plugin_manager: not initialised");
        return;
    }
    describe_plugins(print, opaque);
    describe_channels(print, opaque);
}

static void print_help(gpm_panda_print_fn print, void *opaque)
{
    printf_(print, opaque,
            "guest_plugin_manager commands (quote them: "
            "plugin_cmd \"gpm list\"):");
    printf_(print, opaque, "  gpm list      guest plugins and channels");
    printf_(print, opaque, "  gpm plugins   guest plugins and their state");
    printf_(print, opaque, "  gpm channels  channels and what is queued");
    printf_(print, opaque, "  gpm stats     hypercall and byte counters");
    printf_(print, opaque, "  (one word works too: gpm-list, gpm-stats, ...)");
}

/*
 * The "no doorbell" (and "no ring") answer each guest program gets on
 * PANDA is an answer, not an error: the core counts it apart
 * (probes_declined), and the doorbell queries are shown apart.
 */
static void print_stats(gpm_panda_print_fn print, void *opaque)
{
    gpm_manager_stats_t s;
    uint64_t no_doorbell, errors;

    gpm_manager_stats(g.mgr, &s);
    g_mutex_lock(&g.lock);
    no_doorbell = g.no_doorbell;
    g_mutex_unlock(&g.lock);
    /* The core does not count declined probes as errors. */
    errors = s.guest_errors;
    printf_(print, opaque,
            "hypercalls %llu (not ours %llu, errors %llu, doorbell queries "
            "%llu), to guest %llu bytes, from guest %llu bytes, queued %zu "
            "bytes, %u channels",
            (unsigned long long)s.hypercalls, (unsigned long long)s.not_ours,
            (unsigned long long)errors, (unsigned long long)no_doorbell,
            (unsigned long long)s.bytes_to_guest,
            (unsigned long long)s.bytes_from_guest, s.queued_bytes, s.channels);
}

bool gpm_panda_api_monitor(const char *cmd, gpm_panda_print_fn print,
                           void *opaque)
{
    char **words;
    bool ours = true;

    if (cmd == NULL || print == NULL)
        return false;
    /*
     * PANDA's plugin_cmd takes one word: "gpm list" must be quoted. The
     * one-word form gpm-list (or gpm_list) means the same.
     */
    words = g_strsplit_set(cmd, " \t\r\n", -1);
    if (words[0] != NULL && words[1] == NULL &&
        (strncmp(words[0], "gpm-", 4) == 0 ||
         strncmp(words[0], "gpm_", 4) == 0) &&
        words[0][4] != '\0') {
        char *sub = g_strdup(words[0] + 4);

        g_strfreev(words);
        words = g_new0(char *, 3);
        words[0] = g_strdup("gpm");
        words[1] = sub;
    }
    /* Drop the empty strings that repeated separators leave. */
    {
        guint n = 0;

        for (guint i = 0; words[i] != NULL; i++) {
            if (words[i][0] != '\0')
                words[n++] = words[i];
            else
                g_free(words[i]);
        }
        words[n] = NULL;
    }
    if (words[0] == NULL) {
        ours = false;
    } else if (strcmp(words[0], "help") == 0 && words[1] == NULL) {
        print_help(print, opaque);
        ours = false; /* let the other plugins answer "help" too */
    } else if (strcmp(words[0], "gpm") != 0) {
        ours = false;
    } else if (words[1] == NULL || strcmp(words[1], "help") == 0) {
        print_help(print, opaque);
    } else if (g.mgr == NULL) {
        printf_(print, opaque, "guest_plugin_manager: not initialised");
    } else if (strcmp(words[1], "list") == 0) {
        gpm_panda_api_describe(print, opaque);
    } else if (strcmp(words[1], "plugins") == 0) {
        describe_plugins(print, opaque);
    } else if (strcmp(words[1], "channels") == 0) {
        describe_channels(print, opaque);
    } else if (strcmp(words[1], "stats") == 0) {
        print_stats(print, opaque);
    } else {
        printf_(print, opaque, "gpm: unknown command '%s'; try 'gpm help'",
                words[1]);
    }
    g_strfreev(words);
    return ours;
}
