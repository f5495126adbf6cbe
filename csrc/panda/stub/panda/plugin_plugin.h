/*
 * Compile-only stand-in for PANDA's panda/plugin_plugin.h (see
 * ../README.md): the plugin-to-plugin (PPP) macros, with the same names
 * and effect, written for type-checking only.
 */
#ifndef GPM_STUB_PANDA_PLUGIN_PLUGIN_H
#define GPM_STUB_PANDA_PLUGIN_PLUGIN_H

#include <dlfcn.h>
#include <stdio.h>

#define GPM_STUB_PPP_MAX 16

/*
 * Like PANDA's, these need both <name>_t and <name>_with_context_t (the
 * callback with a leading void *context), and run both kinds.
 */
#define PPP_PROT_REG_CB(name)                                                  \
    void ppp_add_cb_##name(name##_t fn);                                       \
    bool ppp_remove_cb_##name(name##_t fn);                                    \
    void ppp_add_cb_##name##_with_context(name##_with_context_t fn,            \
                                          void *context);

#define PPP_CB_BOILERPLATE(name)                                               \
    name##_t ppp_##name##_cb[GPM_STUB_PPP_MAX];                                \
    int ppp_##name##_num_cb;                                                   \
    void ppp_add_cb_##name(name##_t fn)                                        \
    {                                                                          \
        if (ppp_##name##_num_cb < GPM_STUB_PPP_MAX)                            \
            ppp_##name##_cb[ppp_##name##_num_cb++] = fn;                       \
    }                                                                          \
    bool ppp_remove_cb_##name(name##_t fn)                                     \
    {                                                                          \
        (void)fn;                                                              \
        return false;                                                          \
    }                                                                          \
    name##_with_context_t ppp_##name##_cb_ctx[GPM_STUB_PPP_MAX];               \
    void *ppp_##name##_ctx[GPM_STUB_PPP_MAX];                                  \
    int ppp_##name##_num_cb_ctx;                                               \
    void ppp_add_cb_##name##_with_context(name##_with_context_t fn,            \
                                          void *context)                       \
    {                                                                          \
        if (ppp_##name##_num_cb_ctx < GPM_STUB_PPP_MAX) {                      \
            ppp_##name##_ctx[ppp_##name##_num_cb_ctx] = context;               \
            ppp_##name##_cb_ctx[ppp_##name##_num_cb_ctx++] = fn;               \
        }                                                                      \
    }

#define PPP_RUN_CB(name, ...)                                                  \
    do {                                                                       \
        for (int i_ = 0; i_ < ppp_##name##_num_cb; i_++)                       \
            if (ppp_##name##_cb[i_] != NULL)                                   \
                ppp_##name##_cb[i_](__VA_ARGS__);                              \
        for (int i_ = 0; i_ < ppp_##name##_num_cb_ctx; i_++)                   \
            if (ppp_##name##_cb_ctx[i_] != NULL)                               \
                ppp_##name##_cb_ctx[i_](ppp_##name##_ctx[i_], __VA_ARGS__);    \
    } while (0)

#define PPP_REG_CB(other, name, fn)                                            \
    do {                                                                       \
        void *op_ = panda_get_plugin_by_name(other);                           \
        void (*add_)(name##_t);                                                \
        *(void **)&add_ = op_ ? dlsym(op_, "ppp_add_cb_" #name) : NULL;        \
        if (add_ != NULL)                                                      \
            add_(fn);                                                          \
    } while (0)

#endif /* GPM_STUB_PANDA_PLUGIN_PLUGIN_H */
