/*
 * Compile-only stand-in for PANDA's panda/plugin.h (see ../README.md):
 * just the declarations pandagpm's PANDA glue uses.
 */
#ifndef GPM_STUB_PANDA_PLUGIN_H
#define GPM_STUB_PANDA_PLUGIN_H

#include <assert.h>
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(TARGET_X86_64) && !defined(TARGET_I386)
#define TARGET_I386 1
#endif
#if defined(TARGET_AARCH64) && !defined(TARGET_ARM)
#define TARGET_ARM 1
#endif
/* As PANDA's config-target.h: mips64 and mips64el are MIPS targets too. */
#if defined(TARGET_MIPS64) && !defined(TARGET_MIPS)
#define TARGET_MIPS 1
#endif

#if defined(TARGET_X86_64) || defined(TARGET_AARCH64) ||                       \
    defined(TARGET_MIPS64) || defined(TARGET_PPC64)
typedef uint64_t target_ulong;
#else
typedef uint32_t target_ulong;
#endif
typedef uint64_t hwaddr;

#if defined(TARGET_I386)
enum { R_EAX, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI };
#define HF_LMA_MASK (1u << 14)
typedef struct CPUX86State {
    target_ulong regs[16];
    target_ulong eip;
    uint32_t hflags;
    target_ulong cr[5];
    target_ulong lstar;
} CPUX86State;
typedef CPUX86State CPUArchState;
#elif defined(TARGET_ARM)
typedef struct CPUARMState {
    uint32_t regs[16];
    uint64_t xregs[32];
    uint64_t pc;
    uint32_t aarch64;
} CPUARMState;
typedef CPUARMState CPUArchState;
#elif defined(TARGET_MIPS)
typedef struct TCState {
    target_ulong gpr[32];
    target_ulong PC;
} TCState;
typedef struct CPUMIPSState {
    TCState active_tc;
} CPUMIPSState;
typedef CPUMIPSState CPUArchState;
#elif defined(TARGET_PPC)
typedef struct CPUPPCState {
    target_ulong gpr[32];
    target_ulong nip;
} CPUPPCState;
typedef CPUPPCState CPUArchState;
#else
#error "define a TARGET_* macro"
#endif

typedef struct CPUState {
    void *env_ptr;
} CPUState;
typedef struct Monitor Monitor;
typedef struct TranslationBlock TranslationBlock;
typedef struct panda_arg_list panda_arg_list;

typedef enum panda_cb_type {
    PANDA_CB_INSN_TRANSLATE = 6,
    PANDA_CB_INSN_EXEC = 7,
    PANDA_CB_GUEST_HYPERCALL = 22,
    PANDA_CB_MONITOR = 23,
    PANDA_CB_AFTER_LOADVM = 40,
} panda_cb_type;

typedef union panda_cb {
    bool (*insn_translate)(CPUState *env, target_ulong pc);
    int (*insn_exec)(CPUState *env, target_ulong pc);
    bool (*guest_hypercall)(CPUState *env);
    int (*monitor)(Monitor *mon, const char *cmd);
    void (*after_loadvm)(CPUState *env);
} panda_cb;

typedef enum PandaOsFamily {
    OS_UNKNOWN,
    OS_WINDOWS,
    OS_LINUX,
    OS_FREEBSD
} PandaOsFamily;
extern PandaOsFamily panda_os_familyno;

void panda_register_callback(void *plugin, panda_cb_type type, panda_cb cb);
char *panda_plugin_path(const char *name);
bool panda_load_plugin(const char *filename, const char *plugin_name);
uint32_t panda_parse_uint32_opt(panda_arg_list *args, const char *argname,
                                uint32_t defval, const char *help);
void *panda_get_plugin_by_name(const char *name);
void panda_require(const char *plugin_name);
bool panda_add_arg(const char *plugin_name, const char *plugin_arg);
void panda_do_flush_tb(void);
panda_arg_list *panda_get_args(const char *plugin_name);
void panda_free_args(panda_arg_list *args);
const char *panda_parse_string_opt(panda_arg_list *args, const char *argname,
                                   const char *defval, const char *help);
bool panda_parse_bool_opt(panda_arg_list *args, const char *argname,
                          const char *help);
int panda_virtual_memory_rw(CPUState *cpu, target_ulong addr, uint8_t *buf,
                            int len, bool is_write);
int panda_physical_memory_rw(hwaddr addr, uint8_t *buf, int len, bool is_write);

#endif /* GPM_STUB_PANDA_PLUGIN_H */
