/*
 * linjector_qemu.c - the injector driven by a syscall-entry breakpoint on
 * the stock-QEMU host (see linjector_qemu.h).
 */
#include <string.h>

#include <glib.h>

#include "qemu/linjector_qemu.h"

#include "arch/arch_ops.h"
#include "core/syscalls.h"

/*
 * The bounce (arch_ops.bounce_*, i386's sysenter): per thread, what its
 * call through the bounce entry is waiting for. A probe lets the call run
 * and learns, at its exit, the process's return address (the kernel's
 * own: the vDSO's landing pad) once the instruction before it checks; a
 * skipped call, whose number the entry replaced, must reach its exit,
 * where it is rewound; a rewound call is next seen at the main entry.
 */
typedef enum bounce_kind {
    B_FREE,
    B_PROBE,
    B_SKIPPED,
    B_REWOUND
} bounce_kind_t;

typedef struct bounce_slot {
    bounce_kind_t kind;
    int64_t tid;
    uint64_t nr;  /* B_SKIPPED: the call's number */
    uint64_t ret; /* B_REWOUND: the return address the main entry sees */
} bounce_slot_t;

/* A process's learned return address for bounced calls. */
typedef struct bounce_ret {
    int64_t tgid;
    uint64_t ret;
} bounce_ret_t;

#define BOUNCE_SLOTS 16

/* How long a disarm waits for skipped calls to reach their exit. */
#define BOUNCE_DRAIN_US (5 * 1000 * 1000)

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
    /* The bounce: slots and learned addresses are the I/O thread's. */
    bounce_slot_t bslot[BOUNCE_SLOTS];
    bounce_ret_t bret[BOUNCE_SLOTS];
    unsigned bslot_next, bret_next;
    bool bounce;       /* the bounce is used (set at start) */
    bool bounce_armed; /* its breakpoints are in (the waiter's) */
    unsigned skipped;  /* B_SKIPPED slots (under the lock) */
    uint64_t bounces;  /* calls rewound (under the lock) */
    int hijack_entry;  /* -1 none yet, 0 main, 1 bounce (under the lock) */
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

/* The slot of thread @tid, or NULL. */
static bounce_slot_t *bslot_of(gpm_qemu_inject_t *qi, int64_t tid)
{
    for (unsigned i = 0; i < BOUNCE_SLOTS; i++)
        if (qi->bslot[i].kind != B_FREE && qi->bslot[i].tid == tid)
            return &qi->bslot[i];
    return NULL;
}

/*
 * A slot for @tid at its entry: its own, a free one, or the oldest that
 * is not a skipped call (a probe whose thread exited, or a rewound call
 * whose thread died, never comes back). NULL if all hold skipped calls.
 * The thread's own skipped call has ended if it enters again: the kernel
 * returned without syscall_exit_to_user_mode (i386: -EFAULT when the
 * sixth argument cannot be read from the user's stack), and ran nothing.
 */
static bounce_slot_t *bslot_new(gpm_qemu_inject_t *qi, int64_t tid)
{
    bounce_slot_t *s = bslot_of(qi, tid);

    if (s != NULL) {
        if (s->kind == B_SKIPPED) {
            g_mutex_lock(&qi->lock);
            qi->skipped--;
            g_cond_broadcast(&qi->cond);
            g_mutex_unlock(&qi->lock);
            s->kind = B_FREE;
        }
        return s;
    }
    for (unsigned i = 0; i < BOUNCE_SLOTS; i++)
        if (qi->bslot[i].kind == B_FREE)
            return &qi->bslot[i];
    for (unsigned n = 0; n < BOUNCE_SLOTS; n++) {
        s = &qi->bslot[qi->bslot_next];
        qi->bslot_next = (qi->bslot_next + 1) % BOUNCE_SLOTS;
        if (s->kind != B_SKIPPED)
            return s;
    }
    return NULL;
}

/* True if the bounce instruction (int $0x80) ends just before @ret. */
static bool bounce_insn_before(const gpm_qemu_inject_t *qi,
                               const gpm_host_ops_t *ops, void *cpu,
                               uint64_t ret)
{
    const gpm__arch_ops_t *a = qi->aops;
    uint8_t b[sizeof(a->bounce_insn)];

    return ret >= a->bounce_insn_len && ret < a->user_top &&
           ops->read_mem(cpu, ret - a->bounce_insn_len, b,
                         a->bounce_insn_len) == 0 &&
           memcmp(b, a->bounce_insn, a->bounce_insn_len) == 0;
}

/* The learned return address of process @tgid, or NULL. */
static bounce_ret_t *bret_of(gpm_qemu_inject_t *qi, int64_t tgid)
{
    for (unsigned i = 0; i < BOUNCE_SLOTS; i++)
        if (qi->bret[i].ret != 0 && qi->bret[i].tgid == tgid)
            return &qi->bret[i];
    return NULL;
}

/* Learns @ret for @tgid, in its own entry or the oldest one. */
static void bret_learn(gpm_qemu_inject_t *qi, int64_t tgid, uint64_t ret)
{
    bounce_ret_t *r = bret_of(qi, tgid);

    if (r == NULL) {
        r = &qi->bret[qi->bret_next];
        qi->bret_next = (qi->bret_next + 1) % BOUNCE_SLOTS;
    }
    r->tgid = tgid;
    r->ret = ret;
}

/*
 * A wanted thread at the bounce entry: once its process's return address
 * is known and the bounce instruction is still before it, the call is
 * skipped (its number becomes bounce_skip_nr) to be rewound at its exit;
 * before that it runs as it is, probed.
 */
static int bounce_entry(gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                        void *cpu, const gpm_inj_thread_t *t)
{
    unsigned nr_reg = gpm__sys_table(qi->prof.arch)->nr_reg;
    const bounce_ret_t *r;
    bounce_slot_t *s;
    uint64_t nr;
    int rc;

    if (!gpm_injector_wants(qi->inj, t))
        return 0;
    s = bslot_new(qi, t->tid);
    if (s == NULL)
        return 0;
    r = bret_of(qi, t->tgid);
    s->tid = t->tid;
    s->kind = B_PROBE;
    if (r == NULL || !bounce_insn_before(qi, ops, cpu, r->ret))
        return 0;
    rc = ops->read_reg(cpu, nr_reg, &nr);
    if (rc == 0)
        rc = ops->write_reg(cpu, nr_reg, qi->aops->bounce_skip_nr);
    if (rc != 0)
        return rc;
    s->kind = B_SKIPPED;
    s->nr = nr;
    g_mutex_lock(&qi->lock);
    qi->skipped++;
    g_mutex_unlock(&qi->lock);
    return 0;
}

/*
 * Any thread at the bounce exit: a probe learns its return address, a
 * skipped call gets its number back and its return address moved onto
 * the bounce instruction, both checked in guest memory. The kernel's
 * return address is used, not the learned one, so a process that has
 * since exec'd (a new vDSO) is still rewound right.
 */
static int bounce_exit(gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                       void *cpu, gpm_qemu_host_t *h, const gpm_inj_thread_t *t)
{
    const gpm__arch_ops_t *a = qi->aops;
    bounce_slot_t *s = bslot_of(qi, t->tid);
    pt_view_t v;
    uint64_t regs, ip;
    bool ok;
    int rc;

    if (s == NULL || (s->kind != B_PROBE && s->kind != B_SKIPPED))
        return 0;
    rc = ops->read_reg(cpu, a->bounce_exit_regs_reg, &regs);
    if (rc == 0)
        rc = read_ptr(qi, ops, cpu, regs + (uint64_t)a->bounce_pt_ip, &ip);
    if (rc != 0)
        return rc;
    ok = bounce_insn_before(qi, ops, cpu, ip);
    if (s->kind == B_PROBE) {
        if (ok)
            bret_learn(qi, t->tgid, ip);
        s->kind = B_FREE;
        return 0;
    }
    memset(&v, 0, sizeof(v));
    v.qi = qi;
    v.h = h;
    if (ok) {
        rc = view_put_word(&v, regs + (uint64_t)a->bounce_pt_ax, s->nr);
        if (rc == 0)
            rc = view_put_word(&v, regs + (uint64_t)a->bounce_pt_ip,
                               ip - a->bounce_insn_len);
    }
    /*
     * Not ok: the kernel's landing pad has no int $0x80 before it (the
     * image builder checks that it has); the call then returns the
     * kernel's -ENOSYS for the skipped number.
     */
    s->kind = ok && rc == 0 ? B_REWOUND : B_FREE;
    s->ret = ip;
    g_mutex_lock(&qi->lock);
    qi->skipped--;
    if (s->kind == B_REWOUND)
        qi->bounces++;
    g_cond_broadcast(&qi->cond);
    g_mutex_unlock(&qi->lock);
    return rc;
}

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

    /*
     * The bounce's stops come first, whatever the injector's state: a
     * skipped call must be rewound even after the injection has ended.
     */
    if (qi->bounce &&
        (pc == qi->prof.bounce_entry || pc == qi->prof.bounce_exit)) {
        bool entry = pc == qi->prof.bounce_entry;

        if (read_thread(qi, ops, cpu, &t) == 0)
            rc = entry ? bounce_entry(qi, ops, cpu, &t)
                       : bounce_exit(qi, ops, cpu, h, &t);
        g_mutex_lock(&qi->lock);
        qi->stops += entry;
        if (rc != 0 && qi->error == 0)
            qi->error = rc;
        g_cond_broadcast(&qi->cond);
        g_mutex_unlock(&qi->lock);
        return GPM_QEMU_STOP_CONTINUE;
    }
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
        gpm_inj_state_t before = gpm_injector_state(qi->inj);
        bounce_slot_t *bs = qi->bounce ? bslot_of(qi, t.tid) : NULL;
        uint64_t ret = 0;

        if (bs != NULL && bs->kind == B_REWOUND &&
            (uops->read_reg(ucpu, gpm__sys_table(qi->prof.arch)->retaddr_reg,
                            &ret) != 0 ||
             ret != bs->ret))
            bs = NULL;
        if (bs != NULL)
            bs->kind = B_FREE; /* the bounced call, seen here */
        if (qi->aops->entry_insn_len) {
            uint64_t ret = 0;
            unsigned sys_ret = gpm__sys_table(qi->prof.arch)->retaddr_reg;

            if (uops->read_reg(ucpu, sys_ret, &ret) == 0)
                t.insn_len = qi->aops->entry_insn_len(ops, cpu, ret);
        }
        rc = gpm_injector_on_syscall(qi->inj, uops, ucpu, &t);
        if (before == GPM_INJ_WAITING &&
            gpm_injector_state(qi->inj) != GPM_INJ_WAITING) {
            g_mutex_lock(&qi->lock);
            qi->hijack_entry = bs != NULL;
            g_mutex_unlock(&qi->lock);
        }
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
    /* Before any breakpoint: a stop may come at once. */
    qi->hijack_entry = -1;
    qi->bounce = prof->bounce_entry != 0 && prof->bounce_exit != 0 &&
                 qi->aops->bounce_entry_symbol != NULL;
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
    if (qi->bounce) {
        /* The exit first: no call may be skipped before it can end. */
        rc = gpm_qemu_host_add_breakpoint(h, prof->bounce_exit,
                                          syscall_entry_cb, qi);
        if (rc == 0) {
            rc = gpm_qemu_host_add_breakpoint(h, prof->bounce_entry,
                                              syscall_entry_cb, qi);
            if (rc != 0)
                gpm_qemu_host_remove_breakpoint(h, prof->bounce_exit);
        }
        if (rc != 0) {
            for (unsigned i = 0;
                 i < GPM_KERNEL_MAX_ENTRIES && prof->entry_syscall[i]; i++)
                gpm_qemu_host_remove_breakpoint(h, prof->entry_syscall[i]);
            goto error;
        }
        qi->bounce_armed = true;
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

/*
 * Removes the bounce breakpoints: the entry first, then the exit once no
 * skipped call still has to reach it (the guest runs meanwhile; a
 * skipped call has nothing to do in the kernel, so that is soon).
 */
static int disarm_bounce(gpm_qemu_inject_t *qi)
{
    gint64 deadline = g_get_monotonic_time() + BOUNCE_DRAIN_US;
    int rc, r;

    rc = gpm_qemu_host_remove_breakpoint(qi->h, qi->prof.bounce_entry);
    g_mutex_lock(&qi->lock);
    while (qi->skipped > 0 && g_get_monotonic_time() < deadline)
        g_cond_wait_until(&qi->cond, &qi->lock,
                          g_get_monotonic_time() + WAIT_SLICE_US);
    g_mutex_unlock(&qi->lock);
    r = gpm_qemu_host_remove_breakpoint(qi->h, qi->prof.bounce_exit);
    qi->bounce_armed = false;
    return rc != 0 ? rc : r;
}

static int disarm(gpm_qemu_inject_t *qi)
{
    int rc = 0;

    if (qi->armed && qi->bounce_armed)
        rc = disarm_bounce(qi);
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

const char *gpm_qemu_inject_entry(gpm_qemu_inject_t *qi, uint64_t *bounces)
{
    int e;

    g_mutex_lock(&qi->lock);
    e = qi->hijack_entry;
    if (bounces != NULL)
        *bounces = qi->bounces;
    g_mutex_unlock(&qi->lock);
    if (e < 0)
        return NULL;
    return e ? qi->aops->bounce_entry_symbol : qi->aops->syscall_entry_symbol;
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
