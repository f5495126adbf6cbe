/*
 * linjector_qemu.c - the injector driven by a syscall-entry breakpoint on
 * the stock-QEMU host (see linjector_qemu.h).
 */
#include <string.h>

#include <glib.h>

#include "qemu/linjector_qemu.h"

#include "arch/arch_ops.h"
#include "core/syscalls.h"

struct gpm_qemu_inject {
    gpm_qemu_host_t *h;
    gpm_kernel_profile_t prof;
    gpm_injector_t *inj;
    const gpm_arch_info_t *ai;
    const gpm__arch_ops_t *aops;
    int base_reg; /* the per-CPU base register, or -1 (percpu_base_const) */
    bool armed;
    GMutex lock;
    GCond cond;
    gpm_inj_state_t state; /* copied under the lock after each stop */
    uint64_t stops;
    int error; /* a host ops failure seen by the callback */
};

/* How often a wait checks that the host is still connected. */
#define WAIT_SLICE_US (100 * 1000)

/* Reads @bytes (4 or 8) at @va as an integer in the guest's byte order. */
static int read_int(const gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                    void *cpu, uint64_t va, unsigned bytes, uint64_t *out)
{
    uint8_t b[8];
    uint64_t v = 0;
    int rc = ops->read_mem(cpu, va, b, bytes);

    if (rc != 0)
        return rc;
    for (unsigned i = 0; i < bytes; i++)
        v = (v << 8) | b[qi->ai->big_endian ? i : bytes - 1 - i];
    *out = v;
    return 0;
}

static int read_ptr(const gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                    void *cpu, uint64_t va, uint64_t *out)
{
    return read_int(qi, ops, cpu, va, qi->ai->word_bits / 8, out);
}

static int read_i32(const gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                    void *cpu, uint64_t va, int64_t *out)
{
    uint64_t v;
    int rc = read_int(qi, ops, cpu, va, 4, &v);

    if (rc == 0)
        *out = (int32_t)(uint32_t)v;
    return rc;
}

/*
 * Fills @t from the kernel's task_struct of the thread at syscall entry:
 * the per-CPU variable at the profile's offset from the per-CPU base
 * register points at it (with arch_ops.percpu_base_const the profile's
 * value is the variable's address: the base is 0).
 */
static int read_thread(gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                       void *cpu, gpm_inj_thread_t *t)
{
    const gpm_kernel_profile_t *p = &qi->prof;
    uint64_t base, task, parent, cred;
    int64_t uid;
    int rc;

    memset(t, 0, sizeof(*t));
    t->tid = t->tgid = t->ppid = t->uid = -1;
    base = 0;
    rc = qi->base_reg < 0 ? 0
                          : ops->read_reg(cpu, (unsigned)qi->base_reg, &base);
    if (rc == 0)
        rc = read_ptr(qi, ops, cpu, base + p->current_task, &task);
    /* A kernel stack pointer: the task is its thread_info's first word. */
    if (rc == 0 && qi->aops->current_stack_mask)
        rc = read_ptr(qi, ops, cpu, task & qi->aops->current_stack_mask, &task);
    if (rc == 0)
        rc = read_i32(qi, ops, cpu, task + p->task_pid, &t->tid);
    if (rc == 0)
        rc = read_i32(qi, ops, cpu, task + p->task_tgid, &t->tgid);
    if (rc == 0)
        rc = ops->read_mem(cpu, task + p->task_comm, t->comm, sizeof(t->comm));
    if (rc != 0)
        return rc;
    t->comm[sizeof(t->comm) - 1] = '\0';
    /* The parent and the uid are optional: unknown stays -1. */
    if (read_ptr(qi, ops, cpu, task + p->task_real_parent, &parent) == 0)
        read_i32(qi, ops, cpu, parent + p->task_tgid, &t->ppid);
    if (read_ptr(qi, ops, cpu, task + p->task_cred, &cred) == 0 &&
        read_i32(qi, ops, cpu, cred + p->cred_uid, &uid) == 0)
        t->uid = uid;
    return 0;
}

/*
 * The register view of a thread whose user registers are partly in
 * kernel memory at the stop. With arch_ops.entry_pt_regs the kernel saved
 * them in a struct pt_regs: GDB registers below entry_pt_regs_n are words
 * of it. With arch_ops.entry_ret_word only the return address (the
 * syscall table's retaddr_reg) is a word in memory, at a register plus an
 * offset (i386: the iret frame at esp). Such words are read from and
 * written to kernel memory (writes through the gdbstub's debug access,
 * the only way to reach them: QEMU ignores writes to system registers,
 * and the host's own writes go to user pages only); the rest are the
 * CPU's registers.
 */
typedef struct pt_view {
    gpm_qemu_inject_t *qi;
    gpm_qemu_host_t *h;
    const gpm_host_ops_t *inner;
    void *inner_cpu;
    uint64_t base;     /* entry_pt_regs: the pt_regs' address */
    uint64_t ret_addr; /* entry_ret_word: the return address word's */
    uint64_t ret_base; /* entry_ret_word: entry_ret_base_reg's value */
} pt_view_t;

/* True with *@at set if GDB register @regno is a word of memory. */
static bool view_word(const pt_view_t *v, unsigned regno, uint64_t *at)
{
    const gpm__arch_ops_t *a = v->qi->aops;

    if (a->entry_pt_regs && regno < a->entry_pt_regs_n) {
        *at = v->base + (uint64_t)regno * (v->qi->ai->word_bits / 8);
        return true;
    }
    if (a->entry_ret_word &&
        regno == gpm__sys_table(v->qi->prof.arch)->retaddr_reg) {
        *at = v->ret_addr;
        return true;
    }
    return false;
}

static int view_read_reg(void *cpu, unsigned regno, uint64_t *val)
{
    pt_view_t *v = cpu;
    uint64_t at;

    if (!view_word(v, regno, &at))
        return v->inner->read_reg(v->inner_cpu, regno, val);
    return read_ptr(v->qi, v->inner, v->inner_cpu, at, val);
}

/* Writes @val as a guest word at kernel address @at (gdbstub access). */
static int view_put_word(pt_view_t *v, uint64_t at, uint64_t val)
{
    unsigned bytes = v->qi->ai->word_bits / 8;
    uint8_t b[8];

    for (unsigned i = 0; i < bytes; i++) {
        unsigned shift = v->qi->ai->big_endian ? bytes - 1 - i : i;

        b[i] = (uint8_t)(val >> (8 * shift));
    }
    return gpm_qemu_host_gdb_write_mem(v->h, at, b, bytes);
}

/*
 * A live register is written, and so is each copy the entry has already
 * saved of it (arch_ops.entry_saved).
 */
static int view_write_reg(void *cpu, unsigned regno, uint64_t val)
{
    pt_view_t *v = cpu;
    const gpm__arch_ops_t *a = v->qi->aops;
    uint64_t at;
    int rc;

    if (view_word(v, regno, &at))
        return view_put_word(v, at, val);
    rc = v->inner->write_reg(v->inner_cpu, regno, val);
    for (unsigned i = 0; rc == 0 && i < a->entry_saved_n; i++) {
        if (a->entry_saved[i].regno == regno)
            rc = view_put_word(
                v, v->ret_base + (uint64_t)(int64_t)a->entry_saved[i].offset,
                val);
    }
    return rc;
}

static int view_read_mem(void *cpu, uint64_t addr, void *buf, size_t len)
{
    pt_view_t *v = cpu;

    return v->inner->read_mem(v->inner_cpu, addr, buf, len);
}

static int view_write_mem(void *cpu, uint64_t addr, const void *buf, size_t len)
{
    pt_view_t *v = cpu;

    return v->inner->write_mem(v->inner_cpu, addr, buf, len);
}

static const gpm_host_ops_t pt_view_ops = {view_read_reg, view_write_reg,
                                           view_read_mem, view_write_mem};

static int host_regnum(void *opaque, const char *name)
{
    return gpm_qemu_host_reg_number(opaque, name);
}

static int syscall_entry_cb(gpm_qemu_host_t *h, const gpm_host_ops_t *ops,
                            void *cpu, uint64_t pc, void *opaque)
{
    gpm_qemu_inject_t *qi = opaque;
    const gpm_host_ops_t *uops = ops;
    void *ucpu = cpu;
    pt_view_t view;
    gpm_inj_thread_t t;
    int rc = 0;

    if (gpm_injector_state(qi->inj) == GPM_INJ_DONE ||
        gpm_injector_state(qi->inj) == GPM_INJ_FAILED)
        return GPM_QEMU_STOP_CONTINUE;
    if (qi->aops->entry_pt_regs || qi->aops->entry_ret_word) {
        uint64_t sp = 0;

        memset(&view, 0, sizeof(view));
        view.qi = qi;
        view.h = h;
        view.inner = ops;
        view.inner_cpu = cpu;
        if (qi->aops->entry_pt_regs)
            rc = ops->read_reg(cpu, qi->aops->entry_pt_regs_reg, &view.base);
        if (rc == 0 && qi->aops->entry_ret_word) {
            rc = ops->read_reg(cpu, qi->aops->entry_ret_base_reg, &sp);
            view.ret_base = sp;
            view.ret_addr = sp + (uint64_t)(int64_t)qi->aops->entry_ret_offset;
        }
        uops = &pt_view_ops;
        ucpu = &view;
    }
    /* A thread we cannot identify is left alone. */
    if (rc == 0 && read_thread(qi, ops, cpu, &t) == 0) {
        if (qi->aops->entry_insn_len) {
            uint64_t ret = 0;
            unsigned sys_ret = gpm__sys_table(qi->prof.arch)->retaddr_reg;

            if (uops->read_reg(ucpu, sys_ret, &ret) == 0)
                t.insn_len = qi->aops->entry_insn_len(ops, cpu, ret);
        }
        rc = gpm_injector_on_syscall(qi->inj, uops, ucpu, &t);
    } else {
        rc = 0;
    }
    g_mutex_lock(&qi->lock);
    qi->stops++;
    qi->state = gpm_injector_state(qi->inj);
    if (rc != 0 && qi->error == 0)
        qi->error = rc;
    g_cond_broadcast(&qi->cond);
    g_mutex_unlock(&qi->lock);
    if (qi->aops->entry_step_over)
        qi->aops->entry_step_over(ops, cpu, pc, host_regnum, h);
    return GPM_QEMU_STOP_CONTINUE;
}

int gpm_qemu_inject_start(gpm_qemu_host_t *h, const gpm_kernel_profile_t *prof,
                          gpm_injector_t *inj, gpm_qemu_inject_t **out)
{
    gpm_qemu_inject_t *qi;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (h == NULL || prof == NULL || inj == NULL || out == NULL ||
        prof->entry_syscall[0] == 0)
        return GPM_EINVAL;
    qi = g_try_new0(gpm_qemu_inject_t, 1);
    if (qi == NULL)
        return GPM_ENOMEM;
    qi->h = h;
    qi->prof = *prof;
    qi->inj = inj;
    qi->state = gpm_injector_state(inj);
    g_mutex_init(&qi->lock);
    g_cond_init(&qi->cond);
    qi->ai = gpm_arch_info(prof->arch);
    qi->aops = gpm__arch_ops(prof->arch);
    if (qi->ai == NULL || qi->aops == NULL ||
        (!qi->aops->user_percpu_reg && !qi->aops->percpu_base_const)) {
        rc = GPM_EINVAL;
        goto error;
    }
    qi->base_reg = -1;
    if (qi->aops->user_percpu_reg) {
        qi->base_reg = gpm_qemu_host_reg_number(h, qi->aops->user_percpu_reg);
        if (qi->base_reg < 0) {
            rc = GPM_ENOENT;
            goto error;
        }
    }
    for (unsigned i = 0; i < GPM_KERNEL_MAX_ENTRIES && prof->entry_syscall[i];
         i++) {
        rc = gpm_qemu_host_add_breakpoint(h, prof->entry_syscall[i],
                                          syscall_entry_cb, qi);
        if (rc != 0) {
            while (i-- > 0)
                gpm_qemu_host_remove_breakpoint(h, prof->entry_syscall[i]);
            goto error;
        }
    }
    qi->armed = true;
    *out = qi;
    return 0;
error:
    g_mutex_clear(&qi->lock);
    g_cond_clear(&qi->cond);
    g_free(qi);
    return rc;
}

static bool finished(gpm_inj_state_t s)
{
    return s == GPM_INJ_DONE || s == GPM_INJ_FAILED;
}

static int disarm(gpm_qemu_inject_t *qi)
{
    int rc = 0;

    if (qi->armed) {
        for (unsigned i = 0;
             i < GPM_KERNEL_MAX_ENTRIES && qi->prof.entry_syscall[i]; i++) {
            int r = gpm_qemu_host_remove_breakpoint(qi->h,
                                                    qi->prof.entry_syscall[i]);

            if (rc == 0)
                rc = r;
        }
        qi->armed = false;
    }
    return rc;
}

int gpm_qemu_inject_wait(gpm_qemu_inject_t *qi, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    gpm_inj_state_t state;
    int err, rc;

    if (qi == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&qi->lock);
    while (!finished(qi->state) && qi->error == 0) {
        /* In slices, to notice at once that QEMU went away meanwhile. */
        gint64 until = g_get_monotonic_time() + WAIT_SLICE_US;
        gpm_qemu_host_stats_t st;

        if (timeout_ms >= 0 && until > deadline)
            until = deadline;
        if (!g_cond_wait_until(&qi->cond, &qi->lock, until)) {
            if (timeout_ms >= 0 && g_get_monotonic_time() >= deadline)
                break;
            g_mutex_unlock(&qi->lock);
            gpm_qemu_host_stats(qi->h, &st);
            g_mutex_lock(&qi->lock);
            if (!st.connected && qi->error == 0)
                qi->error = GPM_ECONNRESET;
        }
    }
    state = qi->state;
    err = qi->error;
    g_mutex_unlock(&qi->lock);
    if (err != 0) {
        disarm(qi);
        return err;
    }
    if (!finished(state))
        return GPM_ETIMEDOUT;
    rc = disarm(qi);
    if (state == GPM_INJ_FAILED)
        return GPM_ECANCELED;
    return rc;
}

uint64_t gpm_qemu_inject_stops(gpm_qemu_inject_t *qi)
{
    uint64_t n;

    g_mutex_lock(&qi->lock);
    n = qi->stops;
    g_mutex_unlock(&qi->lock);
    return n;
}

void gpm_qemu_inject_free(gpm_qemu_inject_t *qi)
{
    if (qi == NULL)
        return;
    disarm(qi);
    g_mutex_clear(&qi->lock);
    g_cond_clear(&qi->cond);
    g_free(qi);
}
