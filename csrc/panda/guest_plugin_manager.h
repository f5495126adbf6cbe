/*
 * guest_plugin_manager.h - the C API the guest_plugin_manager PANDA plugin
 * exports to other PANDA plugins.
 *
 * This header is self-contained: it needs neither PANDA's nor pandagpm's
 * other headers, so a plugin written against it builds anywhere.
 *
 * A plugin that wants guest plugins requires "guest_plugin_manager" from
 * its init_plugin() (panda_require()), then calls the four functions below,
 * either directly (PANDA loads plugins so that their symbols resolve) or
 * through guest_plugin_manager_import(), which looks every function up with
 * dlsym() in the handle panda_get_plugin_by_name() returns.
 *
 * Failure: no function aborts. A function that returns a ChannelId returns
 * GPM_PANDA_CHANNEL_NONE (0, never a valid channel) when it fails; every
 * failure is logged to stderr with its reason, and
 * guest_plugin_manager_last_error() returns its negative GPM_E* code (see
 * csrc/include/gpm/error.h) until the next call on the same thread.
 *
 * Threads: every function may be called from any thread. Receive callbacks
 * (ChannelCB) run on the emulator thread while the guest CPU is stopped
 * inside a hypercall; they must be quick, must not wait for the guest, and
 * may call back into this API.
 */
#ifndef GUEST_PLUGIN_MANAGER_H
#define GUEST_PLUGIN_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this API; bumped when a declaration below changes. */
/*
 * 1: the original four functions and guest_plugin_manager_last_error().
 * 2: guest_plugin_manager_open_channel(), GuestPluginManagerApi.open_channel.
 */
#define GUEST_PLUGIN_MANAGER_API_VERSION 2

/* A channel's id; never 0 for a real channel. */
typedef uint32_t ChannelId;

/* What the ChannelId-returning functions return when they fail. */
#define GPM_PANDA_CHANNEL_NONE ((ChannelId)0)

/*
 * Receives bytes the guest wrote to @channel. @msg is only valid for the
 * duration of the call; copy what you keep. Runs on the emulator thread.
 */
typedef void (*ChannelCB)(ChannelId channel, const uint8_t *msg, size_t len);

/*
 * A guest plugin to load. Every pointer is only read during the
 * add_guest_plugin() call (the strings are copied).
 */
typedef struct GuestPlugin {
    /* The plugin's name; its main channel gets this name. Required. */
    const char *plugin_name;
    /*
     * The plugin's static ELF on the host, or NULL to look @plugin_name up
     * on the inventory search path (EXTRA_GUEST_PLUGINS_PATH, then the
     * directories added by the host; see gpm/inventory.h).
     */
    const char *guest_binary_path;
    /* Receives what the plugin writes on its main channel; may be NULL. */
    ChannelCB msg_receive_cb;
} GuestPlugin;

/*
 * The original PANDA documentation spells the member msg_recieve_cb; code
 * written from it compiles unchanged (positional initializers too), since
 * that name is this one. A macro rather than an anonymous union, which
 * would make clang's -Wall warn about every positional initializer.
 */
#define msg_recieve_cb msg_receive_cb

/**
 * add_guest_plugin() - ask the guest daemon to load and run a plugin.
 * @plugin: see GuestPlugin; copied.
 *
 * The binary is found (or read from @plugin.guest_binary_path), checked
 * (ELF, architecture, descriptor) and queued for the guest daemon, which
 * starts it when it next reads its channel. Returns the id of the plugin's
 * main channel, or GPM_PANDA_CHANNEL_NONE if the binary was not found or
 * refused, the name is in use, or the manager is not loaded (nothing is
 * queued then).
 */
ChannelId add_guest_plugin(GuestPlugin plugin);

/**
 * channel_write() - queue one message for the guest on @channel.
 * @buf: @len bytes, copied; the caller keeps ownership.
 *
 * The guest reads it, in order, with its next READ on the channel. On
 * failure (unknown channel, queue full, message too long) nothing is
 * queued, the reason is logged and guest_plugin_manager_last_error() says
 * which.
 */
void channel_write(ChannelId channel, const uint8_t *buf, size_t len);

/**
 * get_channel_from_name() - the id of the channel called @name.
 *
 * Returns GPM_PANDA_CHANNEL_NONE for an unknown name or NULL.
 */
ChannelId get_channel_from_name(const char *name);

/**
 * allocate_channel() - create an anonymous channel.
 * @cb: receives what the guest writes on it; may be NULL.
 *
 * Returns the new id, or GPM_PANDA_CHANNEL_NONE if the channel table is
 * full or memory ran out.
 */
ChannelId allocate_channel(ChannelCB cb);

/**
 * guest_plugin_manager_open_channel() - create a channel called @name.
 * @cb: receives what the guest writes on it; may be NULL.
 *
 * For guest programs started some other way than add_guest_plugin()
 * (a shell, an init script): they find the channel by name (GET_CHANNEL)
 * and any guest process may use it. Writes queued before a program opens
 * it are delivered when it first reads. Returns the new id, or
 * GPM_PANDA_CHANNEL_NONE if @name is NULL, empty, too long or in use, or
 * the table is full. Not part of the original API; an addition.
 */
ChannelId guest_plugin_manager_open_channel(const char *name, ChannelCB cb);

/**
 * guest_plugin_manager_last_error() - why the last failed call failed.
 *
 * Returns 0 if the last call on this thread succeeded, else its negative
 * GPM_E* code. Not part of the original API; an addition.
 */
int guest_plugin_manager_last_error(void);

/*
 * PPP callback the plugin runs (register with
 * PPP_REG_CB("guest_plugin_manager", on_guest_agent_load, fn)): the guest
 * daemon said hello, so plugins queued with add_guest_plugin() will now
 * start. @cpu is the CPU that made the hypercall; only valid during the
 * call.
 */
struct CPUState;
typedef void (*on_guest_agent_load_t)(struct CPUState *cpu);
/* The same, registered with PPP_REG_CB_WITH_CONTEXT(); @context is yours. */
typedef void (*on_guest_agent_load_with_context_t)(void *context,
                                                   struct CPUState *cpu);

/* Every exported function, for guest_plugin_manager_import(). */
typedef struct GuestPluginManagerApi {
    ChannelId (*add_guest_plugin)(GuestPlugin plugin);
    void (*channel_write)(ChannelId channel, const uint8_t *buf, size_t len);
    ChannelId (*get_channel_from_name)(const char *name);
    ChannelId (*allocate_channel)(ChannelCB cb);
    int (*last_error)(void);
    ChannelId (*open_channel)(const char *name, ChannelCB cb); /* API 2 */
} GuestPluginManagerApi;

#ifdef GUEST_PLUGIN_MANAGER_WANT_IMPORT
#include <dlfcn.h>
#include <string.h>

/* Stores dlsym()'s result in a function pointer (POSIX: same size). */
#define GUEST_PLUGIN_MANAGER_SYM(handle, field, name)                          \
    do {                                                                       \
        void *sym_ = dlsym((handle), (name));                                  \
        memcpy(&(field), &sym_, sizeof(sym_));                                 \
    } while (0)

/**
 * guest_plugin_manager_import() - fill @api from the loaded plugin.
 * @handle: what panda_get_plugin_by_name("guest_plugin_manager") returned.
 *
 * Define GUEST_PLUGIN_MANAGER_WANT_IMPORT before including this header to
 * get it (it needs <dlfcn.h> and -ldl). Returns 1 if every function was
 * found, else 0 (and @api is left zeroed).
 */
static inline int guest_plugin_manager_import(void *handle,
                                              GuestPluginManagerApi *api)
{
    static const GuestPluginManagerApi none = {NULL, NULL, NULL,
                                               NULL, NULL, NULL};
    GuestPluginManagerApi a = none;

    *api = none;
    if (handle == NULL)
        return 0;
    GUEST_PLUGIN_MANAGER_SYM(handle, a.add_guest_plugin, "add_guest_plugin");
    GUEST_PLUGIN_MANAGER_SYM(handle, a.channel_write, "channel_write");
    GUEST_PLUGIN_MANAGER_SYM(handle, a.get_channel_from_name,
                             "get_channel_from_name");
    GUEST_PLUGIN_MANAGER_SYM(handle, a.allocate_channel, "allocate_channel");
    GUEST_PLUGIN_MANAGER_SYM(handle, a.last_error,
                             "guest_plugin_manager_last_error");
    GUEST_PLUGIN_MANAGER_SYM(handle, a.open_channel,
                             "guest_plugin_manager_open_channel");
    if (a.add_guest_plugin == NULL || a.channel_write == NULL ||
        a.get_channel_from_name == NULL || a.allocate_channel == NULL ||
        a.last_error == NULL || a.open_channel == NULL)
        return 0;
    *api = a;
    return 1;
}
#endif /* GUEST_PLUGIN_MANAGER_WANT_IMPORT */

#ifdef __cplusplus
}
#endif

#endif /* GUEST_PLUGIN_MANAGER_H */
