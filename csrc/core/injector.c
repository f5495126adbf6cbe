/*
 * injector.c - linjector's state machine (see gpm/injector.h).
 *
 * The scratch area mapped in the target holds, in its first page, the
 * strings and pointer arrays the injected calls need, and after that a
 * window through which the ELF is written to the file descriptor. All of
 * it is written while only the parent exists: after fork the pages are
 * copy-on-write, and the host never writes such pages.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "syscalls.h"

#define SCRATCH_HDR    4096u
#define SCRATCH_CHUNK  (256u * 1024u)
#define SCRATCH_SIZE   (SCRATCH_HDR + SCRATCH_CHUNK)
#define OFF_MEMFD_NAME 0u
#define OFF_TMP_PATH   64u
#define OFF_EXEC_PATH  128u
#define OFF_SIGSET_ALL 448u /* sigset_bytes() of ones: every signal */
#define OFF_SIGSET_OLD 464u /* the target's mask, saved by the kernel */
#define OFF_ARGV       512u
#define OFF_ENVP       896u
#define OFF_STRINGS    1024u
#define MAX_ARGS       40u
#define MAX_REJECTED   64u

#define PROT_RW                   3u
/* MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, unless the table differs. */
#define MAP_PRIVATE_ANON_POPULATE (0x02u | 0x20u | 0x8000u)
#define MFD_CLOEXEC               1u
#define GUEST_SIG_SETMASK         2u
#define SIGSET_BYTES              8u /* at most 16: see OFF_SIGSET_OLD */

static const char memfd_name[] = "pandagpm";
static const char tmp_path[] = "/tmp/.pandagpm-payload";
static const char env_path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
static const char argv0[] = "guest_daemon";

typedef enum pstep {
    P_NONE,
    P_GETUID,
    P_MMAP,
    P_SIGBLOCK,
    P_MEMFD,
    P_OPEN,
    P_WRITE,
    P_CLOSE_TMP,
    P_PROBE,       /* open the path to execute: does it exist here? */
    P_PROBE_CLOSE, /* close what the probe opened */
    P_FORK,
    P_CLOSE_FD,
    P_SIGRESTORE,
    P_MUNMAP,
    P_RESTORED,
} pstep_t;

typedef enum cstep { C_NONE, C_SETSID, C_SIGRESTORE, C_EXECVE, C_EXIT } cstep_t;

struct gpm_injector {
    const gpm_arch_info_t *ai;
    const gpm__sys_table_t *sys;
    uint8_t *elf;
    size_t elf_len;
    char *proc_name;
    bool require_root;
    GPtrArray *args;
    gpm_inj_log_cb log;
    void *log_opaque;

    gpm_inj_state_t state;
    pstep_t pstep;
    cstep_t cstep;
    bool failed;
    int64_t tid, tgid, child;
    uint64_t saved_nr, saved_args[6], ret_addr;
    unsigned insn_len; /* of the hijacked thread's syscall instruction */
    uint64_t scratch;
    uint64_t child_scratch; /* the scratch address the child inherited */
    bool fork_injected;
    bool sig_blocked; /* the parent's signals are blocked */
    int64_t fd;
    bool tmp_file;
    size_t written;
    int64_t rejected[MAX_REJECTED];
    unsigned n_rejected;
    char *error;
};

/* The arch's values where they differ from the common ones (MIPS). */
static unsigned sigset_bytes(const gpm_injector_t *inj)
{
    return inj->sys->sigset_bytes ? inj->sys->sigset_bytes : SIGSET_BYTES;
}

static uint64_t sig_setmask(const gpm_injector_t *inj)
{
    return inj->sys->sig_setmask ? inj->sys->sig_setmask : GUEST_SIG_SETMASK;
}

static uint64_t mmap_flags(const gpm_injector_t *inj)
{
    return inj->sys->mmap_flags ? inj->sys->mmap_flags
                                : MAP_PRIVATE_ANON_POPULATE;
}

static void logf_(gpm_injector_t *inj, int level, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static void logf_(gpm_injector_t *inj, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level == GPM_INJ_LOG_ERROR && inj->error == NULL)
        inj->error = g_strdup(msg);
    if (inj->log != NULL)
        inj->log(level, msg, inj->log_opaque);
}

int gpm_injector_new(const gpm_inj_config_t *cfg, gpm_injector_t **out)
{
    const gpm__sys_table_t *sys;
    gpm_injector_t *inj;
    size_t nargs = 0, strings;

    if (out == NULL)
        return GPM_EINVAL;
    *out = NULL;
    if (cfg == NULL || cfg->elf == NULL || cfg->elf_len == 0 ||
        gpm_arch_info(cfg->arch) == NULL)
        return GPM_EINVAL;
    sys = gpm__sys_table(cfg->arch);
    if (sys == NULL || !sys->injectable)
        return GPM_ENOSYS;
    strings = sizeof(argv0) + sizeof(env_path);
    while (cfg->argv != NULL && cfg->argv[nargs] != NULL)
        strings += strlen(cfg->argv[nargs++]) + 1;
    /* The strings and the arrays must fit in the first scratch page. */
    if (nargs + 2 > MAX_ARGS || strings > SCRATCH_HDR - OFF_STRINGS)
        return GPM_EINVAL;

    inj = g_try_new0(gpm_injector_t, 1);
    if (inj == NULL)
        return GPM_ENOMEM;
    inj->elf = g_try_malloc(cfg->elf_len);
    if (inj->elf == NULL) {
        g_free(inj);
        return GPM_ENOMEM;
    }
    memcpy(inj->elf, cfg->elf, cfg->elf_len);
    inj->elf_len = cfg->elf_len;
    inj->ai = gpm_arch_info(cfg->arch);
    inj->sys = sys;
    inj->proc_name = g_strdup(cfg->proc_name);
    inj->require_root = cfg->require_root;
    inj->args = g_ptr_array_new_with_free_func(g_free);
    for (size_t i = 0; i < nargs; i++)
        g_ptr_array_add(inj->args, g_strdup(cfg->argv[i]));
    inj->log = cfg->log;
    inj->log_opaque = cfg->log_opaque;
    inj->tid = inj->tgid = inj->child = -1;
    inj->fd = -1;
    *out = inj;
    return 0;
}

void gpm_injector_free(gpm_injector_t *inj)
{
    if (inj == NULL)
        return;
    g_free(inj->elf);
    g_free(inj->proc_name);
    g_ptr_array_free(inj->args, TRUE);
    g_free(inj->error);
    g_free(inj);
}

gpm_inj_state_t gpm_injector_state(const gpm_injector_t *inj)
{
    return inj->state;
}

void gpm_injector_target(const gpm_injector_t *inj, int64_t *tgid,
                         int64_t *child)
{
    if (tgid != NULL)
        *tgid = inj->tgid;
    if (child != NULL)
        *child = inj->child;
}

const char *gpm_injector_error(const gpm_injector_t *inj)
{
    return inj->error;
}

/* A result in [-4095, -1] of the guest's word size is an -errno. */
static bool is_err(const gpm_injector_t *inj, uint64_t v)
{
    int64_t s = inj->ai->word_bits == 64 ? (int64_t)v : (int32_t)(uint32_t)v;

    return s < 0 && s >= -4095;
}

static int64_t as_signed(const gpm_injector_t *inj, uint64_t v)
{
    return inj->ai->word_bits == 64 ? (int64_t)v : (int32_t)(uint32_t)v;
}

/* Points the thread at the syscall instruction again with call @nr. */
static int inject(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu,
                  int nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                  uint64_t a4, uint64_t a5)
{
    const uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
    int rc;

    rc = ops->write_reg(cpu, inj->sys->nr_reg, (uint64_t)(int64_t)nr);
    for (int i = 0; rc == 0 && i < 6; i++)
        rc = ops->write_reg(cpu, inj->sys->arg_regs[i], args[i]);
    if (rc == 0)
        rc = ops->write_reg(cpu, inj->sys->retaddr_reg,
                            inj->ret_addr - inj->insn_len);
    return rc;
}

/* Puts every saved register back; the original call then runs. */
static int restore(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu)
{
    int rc;

    rc = ops->write_reg(cpu, inj->sys->nr_reg, inj->saved_nr);
    for (int i = 0; rc == 0 && i < 6; i++)
        rc = ops->write_reg(cpu, inj->sys->arg_regs[i], inj->saved_args[i]);
    if (rc == 0)
        rc = ops->write_reg(cpu, inj->sys->retaddr_reg, inj->ret_addr);
    return rc;
}

static int save(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu)
{
    int rc;

    rc = ops->read_reg(cpu, inj->sys->nr_reg, &inj->saved_nr);
    for (int i = 0; rc == 0 && i < 6; i++)
        rc = ops->read_reg(cpu, inj->sys->arg_regs[i], &inj->saved_args[i]);
    if (rc == 0)
        rc = ops->read_reg(cpu, inj->sys->retaddr_reg, &inj->ret_addr);
    return rc;
}

static bool rejected(const gpm_injector_t *inj, int64_t tgid)
{
    for (unsigned i = 0; i < inj->n_rejected; i++)
        if (inj->rejected[i] == tgid)
            return true;
    return false;
}

/* Writes a pointer of the guest's size and byte order into @p. */
static void put_ptr(const gpm_injector_t *inj, uint8_t *p, uint64_t v)
{
    unsigned n = inj->ai->word_bits / 8;

    for (unsigned i = 0; i < n; i++) {
        unsigned shift = 8 * (inj->ai->big_endian ? n - 1 - i : i);

        p[i] = (uint8_t)(v >> shift);
    }
}

/*
 * Builds the first scratch page: the memfd name, the /tmp path, the path
 * to execute and argv/envp arrays pointing at strings further on.
 */
static int write_header(gpm_injector_t *inj, const gpm_host_ops_t *ops,
                        void *cpu, bool with_exec)
{
    uint8_t *hdr = g_malloc0(SCRATCH_HDR);
    unsigned w = inj->ai->word_bits / 8;
    size_t off = OFF_STRINGS;
    unsigned argc = 0;
    int rc;

    memcpy(hdr + OFF_MEMFD_NAME, memfd_name, sizeof(memfd_name));
    memset(hdr + OFF_SIGSET_ALL, 0xff, sigset_bytes(inj));
    memcpy(hdr + OFF_TMP_PATH, tmp_path, sizeof(tmp_path));
    if (with_exec) {
        if (inj->tmp_file)
            memcpy(hdr + OFF_EXEC_PATH, tmp_path, sizeof(tmp_path));
        else
            snprintf((char *)hdr + OFF_EXEC_PATH, 64, "/proc/self/fd/%lld",
                     (long long)inj->fd);
        for (int i = -1; i < (int)inj->args->len; i++) {
            const char *s = i < 0 ? argv0 : g_ptr_array_index(inj->args, i);
            size_t len = strlen(s) + 1;

            memcpy(hdr + off, s, len);
            put_ptr(inj, hdr + OFF_ARGV + argc++ * w, inj->scratch + off);
            off += len;
        }
        memcpy(hdr + off, env_path, sizeof(env_path));
        put_ptr(inj, hdr + OFF_ENVP, inj->scratch + off);
    }
    /* Keep the mask the kernel saved there by writing around it. */
    rc = ops->write_mem(cpu, inj->scratch, hdr, OFF_SIGSET_OLD);
    if (rc == 0)
        rc = ops->write_mem(cpu,
                            inj->scratch + OFF_SIGSET_OLD + sigset_bytes(inj),
                            hdr + OFF_SIGSET_OLD + sigset_bytes(inj),
                            SCRATCH_HDR - OFF_SIGSET_OLD - sigset_bytes(inj));
    g_free(hdr);
    return rc;
}

/* Starts the clean-up part of the chain after a failure. */
static int cleanup(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu);

static int fail(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu,
                const char *what, int64_t err)
{
    if (err < 0)
        logf_(inj, GPM_INJ_LOG_ERROR, "linjector: %s failed in pid %lld: %s",
              what, (long long)inj->tgid, g_strerror((int)-err));
    else
        logf_(inj, GPM_INJ_LOG_ERROR, "linjector: %s failed in pid %lld", what,
              (long long)inj->tgid);
    inj->failed = true;
    return cleanup(inj, ops, cpu);
}

static int finish_parent(gpm_injector_t *inj, const gpm_host_ops_t *ops,
                         void *cpu)
{
    int rc = restore(inj, ops, cpu);

    inj->pstep = P_RESTORED;
    /* C_EXIT: the child's execve already failed; that stays a failure. */
    if (inj->failed || inj->cstep == C_EXIT)
        inj->state = GPM_INJ_FAILED;
    else if (inj->cstep >= C_EXECVE)
        inj->state = GPM_INJ_DONE;
    logf_(inj, GPM_INJ_LOG_INFO, "linjector: pid %lld restored",
          (long long)inj->tgid);
    return rc;
}

static int cleanup(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu)
{
    if (inj->fd >= 0) {
        inj->pstep = P_CLOSE_FD;
        return inject(inj, ops, cpu, inj->sys->close, (uint64_t)inj->fd, 0, 0,
                      0, 0, 0);
    }
    if (inj->sig_blocked) {
        inj->pstep = P_SIGRESTORE;
        return inject(inj, ops, cpu, inj->sys->rt_sigprocmask, sig_setmask(inj),
                      inj->scratch + OFF_SIGSET_OLD, 0, sigset_bytes(inj), 0,
                      0);
    }
    if (inj->scratch != 0) {
        inj->pstep = P_MUNMAP;
        return inject(inj, ops, cpu, inj->sys->munmap, inj->scratch,
                      SCRATCH_SIZE, 0, 0, 0, 0);
    }
    return finish_parent(inj, ops, cpu);
}

/* Copies the next piece of the ELF into the window and writes it. */
static int write_next(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu)
{
    size_t n = inj->elf_len - inj->written;
    int rc;

    if (n > SCRATCH_CHUNK)
        n = SCRATCH_CHUNK;
    rc = ops->write_mem(cpu, inj->scratch + SCRATCH_HDR,
                        inj->elf + inj->written, n);
    if (rc != 0)
        return fail(inj, ops, cpu, "writing the scratch area", 0);
    inj->pstep = P_WRITE;
    return inject(inj, ops, cpu, inj->sys->write, (uint64_t)inj->fd,
                  inj->scratch + SCRATCH_HDR, n, 0, 0, 0);
}

static int start_fork(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu)
{
    inj->pstep = P_FORK;
    inj->fork_injected = true;
    inj->child_scratch = inj->scratch;
    if (inj->sys->fork != GPM_NR_NONE)
        return inject(inj, ops, cpu, inj->sys->fork, 0, 0, 0, 0, 0, 0);
    /* clone(SIGCHLD, 0, ...) where there is no fork. */
    return inject(inj, ops, cpu, inj->sys->clone, 17, 0, 0, 0, 0, 0);
}

/*
 * Before forking, checks that the child will find the program: a process
 * that runs before /proc is mounted (early boot, a usermode helper) or
 * in a root without one cannot execute /proc/self/fd/N, and should fail
 * here, with nothing forked, rather than in a child.
 */
static int start_probe(gpm_injector_t *inj, const gpm_host_ops_t *ops,
                       void *cpu)
{
    inj->pstep = P_PROBE;
    if (inj->sys->open != GPM_NR_NONE)
        return inject(inj, ops, cpu, inj->sys->open,
                      inj->scratch + OFF_EXEC_PATH, 0, 0, 0, 0, 0);
    return inject(inj, ops, cpu, inj->sys->openat, (uint64_t)-100,
                  inj->scratch + OFF_EXEC_PATH, 0, 0, 0, 0);
}

static int start_mmap(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu)
{
    inj->pstep = P_MMAP;
    return inject(inj, ops, cpu, inj->sys->mmap, 0, SCRATCH_SIZE, PROT_RW,
                  mmap_flags(inj), (uint64_t)-1, 0);
}

/* The target thread entered again: @res is the last injected result. */
static int parent_step(gpm_injector_t *inj, const gpm_host_ops_t *ops,
                       void *cpu, uint64_t res)
{
    int rc;

    switch (inj->pstep) {
    case P_GETUID:
        if (res != 0) {
            logf_(inj, GPM_INJ_LOG_INFO,
                  "linjector: pid %lld runs as uid %lld, not root; waiting "
                  "for another process",
                  (long long)inj->tgid, (long long)as_signed(inj, res));
            if (inj->n_rejected < MAX_REJECTED)
                inj->rejected[inj->n_rejected++] = inj->tgid;
            rc = restore(inj, ops, cpu);
            inj->pstep = P_NONE;
            inj->state = GPM_INJ_WAITING;
            inj->tid = inj->tgid = -1;
            return rc;
        }
        return start_mmap(inj, ops, cpu);
    case P_MMAP:
        if (is_err(inj, res))
            return fail(inj, ops, cpu, "mmap of the scratch area",
                        as_signed(inj, res));
        inj->scratch = res;
        if (write_header(inj, ops, cpu, false) != 0)
            return fail(inj, ops, cpu, "writing the scratch area", 0);
        /*
         * Block every signal while injected calls run: with a signal
         * pending, the kernel would restart an interrupted fork by moving
         * the return address back over our rewritten one.
         */
        inj->pstep = P_SIGBLOCK;
        return inject(inj, ops, cpu, inj->sys->rt_sigprocmask, sig_setmask(inj),
                      inj->scratch + OFF_SIGSET_ALL,
                      inj->scratch + OFF_SIGSET_OLD, sigset_bytes(inj), 0, 0);
    case P_SIGBLOCK:
        if (is_err(inj, res))
            return fail(inj, ops, cpu, "blocking signals", as_signed(inj, res));
        inj->sig_blocked = true;
        inj->pstep = P_MEMFD;
        return inject(inj, ops, cpu, inj->sys->memfd_create,
                      inj->scratch + OFF_MEMFD_NAME, MFD_CLOEXEC, 0, 0, 0, 0);
    case P_MEMFD:
        if (!is_err(inj, res)) {
            inj->fd = (int64_t)res;
            return write_next(inj, ops, cpu);
        }
        logf_(inj, GPM_INJ_LOG_INFO,
              "linjector: memfd_create failed (%s); using %s",
              g_strerror((int)-as_signed(inj, res)), tmp_path);
        inj->pstep = P_OPEN;
        inj->tmp_file = true;
        if (inj->sys->open != GPM_NR_NONE)
            return inject(inj, ops, cpu, inj->sys->open,
                          inj->scratch + OFF_TMP_PATH, inj->sys->open_flags,
                          0777, 0, 0, 0);
        /* openat(AT_FDCWD, ...) where there is no open. */
        return inject(inj, ops, cpu, inj->sys->openat, (uint64_t)-100,
                      inj->scratch + OFF_TMP_PATH, inj->sys->open_flags, 0777,
                      0, 0);
    case P_OPEN:
        if (is_err(inj, res))
            return fail(inj, ops, cpu, "open of the payload file",
                        as_signed(inj, res));
        inj->fd = (int64_t)res;
        return write_next(inj, ops, cpu);
    case P_WRITE:
        if (is_err(inj, res) || res == 0)
            return fail(inj, ops, cpu, "write of the program",
                        is_err(inj, res) ? as_signed(inj, res) : 0);
        inj->written += res > inj->elf_len - inj->written
                            ? inj->elf_len - inj->written
                            : (size_t)res;
        if (inj->written < inj->elf_len)
            return write_next(inj, ops, cpu);
        if (write_header(inj, ops, cpu, true) != 0)
            return fail(inj, ops, cpu, "writing the exec arguments", 0);
        if (inj->tmp_file) {
            /* A file open for writing cannot be executed (ETXTBSY). */
            inj->pstep = P_CLOSE_TMP;
            return inject(inj, ops, cpu, inj->sys->close, (uint64_t)inj->fd, 0,
                          0, 0, 0, 0);
        }
        return start_probe(inj, ops, cpu);
    case P_PROBE:
        if (is_err(inj, res))
            return fail(inj, ops, cpu,
                        "opening the program's path /proc/self/fd/N (no "
                        "/proc in this process?)",
                        as_signed(inj, res));
        inj->pstep = P_PROBE_CLOSE;
        return inject(inj, ops, cpu, inj->sys->close, res, 0, 0, 0, 0, 0);
    case P_PROBE_CLOSE:
        return start_fork(inj, ops, cpu);
    case P_CLOSE_TMP:
        inj->fd = -1;
        if (is_err(inj, res))
            return fail(inj, ops, cpu, "close of the payload file",
                        as_signed(inj, res));
        return start_fork(inj, ops, cpu);
    case P_FORK:
        if (is_err(inj, res))
            return fail(inj, ops, cpu, "fork", as_signed(inj, res));
        inj->child = (int64_t)res;
        logf_(inj, GPM_INJ_LOG_INFO, "linjector: pid %lld forked child %lld",
              (long long)inj->tgid, (long long)inj->child);
        return cleanup(inj, ops, cpu);
    case P_CLOSE_FD:
        inj->fd = -1;
        return cleanup(inj, ops, cpu);
    case P_SIGRESTORE:
        inj->sig_blocked = false;
        if (is_err(inj, res))
            logf_(inj, GPM_INJ_LOG_ERROR,
                  "linjector: restoring the signal mask of pid %lld failed",
                  (long long)inj->tgid);
        return cleanup(inj, ops, cpu);
    case P_MUNMAP:
        inj->scratch = 0;
        return cleanup(inj, ops, cpu);
    default:
        return 0;
    }
}

static int child_step(gpm_injector_t *inj, const gpm_host_ops_t *ops, void *cpu,
                      uint64_t res)
{
    switch (inj->cstep) {
    case C_SETSID:
        /* The child inherited the blocked mask: give it the original. */
        inj->cstep = C_SIGRESTORE;
        return inject(inj, ops, cpu, inj->sys->rt_sigprocmask, sig_setmask(inj),
                      inj->child_scratch + OFF_SIGSET_OLD, 0, sigset_bytes(inj),
                      0, 0);
    case C_SIGRESTORE:
        (void)res;
        inj->cstep = C_EXECVE;
        if (inj->pstep == P_RESTORED && !inj->failed)
            inj->state = GPM_INJ_DONE;
        logf_(inj, GPM_INJ_LOG_INFO, "linjector: child %lld executes %s",
              (long long)inj->child, inj->tmp_file ? tmp_path : "the memfd");
        return inject(inj, ops, cpu, inj->sys->execve,
                      inj->child_scratch + OFF_EXEC_PATH,
                      inj->child_scratch + OFF_ARGV,
                      inj->child_scratch + OFF_ENVP, 0, 0, 0);
    case C_EXECVE:
        logf_(inj, GPM_INJ_LOG_ERROR,
              "linjector: execve in child %lld failed: %s",
              (long long)inj->child, g_strerror((int)-as_signed(inj, res)));
        inj->cstep = C_EXIT;
        inj->state = GPM_INJ_FAILED;
        return inject(inj, ops, cpu, inj->sys->exit_group, 127, 0, 0, 0, 0, 0);
    default:
        return 0;
    }
}

bool gpm_injector_settled(const gpm_injector_t *inj)
{
    if (inj == NULL || inj->state == GPM_INJ_WAITING)
        return true;
    if (inj->pstep != P_RESTORED)
        return false;
    /* No child, a child told to exit, or one whose execve is the end. */
    return inj->child < 0 || inj->cstep == C_EXIT ||
           (inj->cstep == C_EXECVE && inj->state == GPM_INJ_DONE);
}

static bool wanted(const gpm_injector_t *inj, const gpm_inj_thread_t *t)
{
    if (t->tid <= 0 || t->tgid <= 1 || rejected(inj, t->tgid))
        return false;
    if (inj->proc_name != NULL &&
        strncmp(t->comm, inj->proc_name, sizeof(t->comm)) != 0)
        return false;
    if (inj->require_root && t->uid > 0)
        return false;
    return true;
}

bool gpm_injector_wants(const gpm_injector_t *inj, const gpm_inj_thread_t *t)
{
    return inj != NULL && t != NULL && inj->state == GPM_INJ_WAITING &&
           wanted(inj, t);
}

int gpm_injector_on_syscall(gpm_injector_t *inj, const gpm_host_ops_t *ops,
                            void *cpu, const gpm_inj_thread_t *t)
{
    uint64_t retaddr, res;
    int rc;

    if (inj == NULL || ops == NULL || t == NULL)
        return GPM_EINVAL;

    if (inj->state == GPM_INJ_WAITING) {
        if (!wanted(inj, t))
            return 0;
        rc = save(inj, ops, cpu);
        if (rc != 0)
            return rc;
        inj->tid = t->tid;
        inj->tgid = t->tgid;
        inj->insn_len = t->insn_len ? t->insn_len : inj->sys->insn_len;
        inj->state = GPM_INJ_RUNNING;
        logf_(inj, GPM_INJ_LOG_INFO,
              "linjector: hijacking pid %lld (%.16s) at syscall %lld",
              (long long)t->tgid, t->comm, (long long)inj->saved_nr);
        if (inj->require_root && t->uid < 0) {
            inj->pstep = P_GETUID;
            return inject(inj, ops, cpu, inj->sys->getuid, 0, 0, 0, 0, 0, 0);
        }
        return start_mmap(inj, ops, cpu);
    }

    /*
     * Only an entry at the injected syscall instruction is ours: the same
     * thread may also make calls from a signal handler meanwhile.
     */
    rc = ops->read_reg(cpu, inj->sys->retaddr_reg, &retaddr);
    if (rc == 0)
        rc = ops->read_reg(cpu, inj->sys->ret_reg, &res);
    if (rc == 0 && inj->sys->err_flag) {
        uint64_t flag = 0;

        /* A positive errno with the flag set: the -errno of the rest. */
        rc = ops->read_reg(cpu, inj->sys->err_flag_reg, &flag);
        if (rc == 0 && flag != 0)
            res = (uint64_t)-as_signed(inj, res);
    }
    if (rc != 0)
        return rc;
    if (retaddr != inj->ret_addr)
        return 0;

    if (t->tid == inj->tid && inj->pstep != P_RESTORED)
        return parent_step(inj, ops, cpu, res);

    if (inj->child < 0 && inj->cstep == C_NONE && t->tid != inj->tid &&
        t->ppid == inj->tgid && res == 0 && inj->fork_injected) {
        inj->child = t->tgid;
    }
    if (t->tgid == inj->child && t->tid != inj->tid) {
        if (inj->cstep == C_NONE) {
            if (res != 0)
                return 0;
            inj->cstep = C_SETSID;
            return inject(inj, ops, cpu, inj->sys->setsid, 0, 0, 0, 0, 0, 0);
        }
        return child_step(inj, ops, cpu, res);
    }
    return 0;
}
