/*
 * linjector_qemu.c - the injector driven by a syscall-entry breakpoint on
 * the stock-QEMU host (see linjector_qemu.h).
 */
#include <string.h>

#include <glib.h>

#include "qemu/linjector_qemu.h"

struct gpm_qemu_inject {
    gpm_qemu_host_t *h;
    gpm_kernel_profile_t prof;
    gpm_injector_t *inj;
    int kgs_reg, gs_reg, rip_reg;
    bool emulate_swapgs; /* the entry starts with swapgs (0f 01 f8) */
    bool armed;
    GMutex lock;
    GCond cond;
    gpm_inj_state_t state; /* copied under the lock after each stop */
    uint64_t stops;
    int error; /* a host ops failure seen by the callback */
};

/* How often a wait checks that the host is still connected. */
#define WAIT_SLICE_US (100 * 1000)

static int read_u64(const gpm_host_ops_t *ops, void *cpu, uint64_t va,
                    uint64_t *out)
{
    return ops->read_mem(cpu, va, out, sizeof(*out));
}

static int read_i32(const gpm_host_ops_t *ops, void *cpu, uint64_t va,
                    int64_t *out)
{
    int32_t v;
    int rc = ops->read_mem(cpu, va, &v, sizeof(v));

    if (rc == 0)
        *out = v;
    return rc;
}

/* Fills @t from the kernel's task_struct of the thread at syscall entry. */
static int read_thread(gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                       void *cpu, gpm_inj_thread_t *t)
{
    const gpm_kernel_profile_t *p = &qi->prof;
    uint64_t kgs, task, parent, cred;
    int64_t uid;
    int rc;

    memset(t, 0, sizeof(*t));
    t->tid = t->tgid = t->ppid = t->uid = -1;
    rc = ops->read_reg(cpu, (unsigned)qi->kgs_reg, &kgs);
    if (rc == 0)
        rc = read_u64(ops, cpu, kgs + p->current_task, &task);
    if (rc == 0)
        rc = read_i32(ops, cpu, task + p->task_pid, &t->tid);
    if (rc == 0)
        rc = read_i32(ops, cpu, task + p->task_tgid, &t->tgid);
    if (rc == 0)
        rc = ops->read_mem(cpu, task + p->task_comm, t->comm, sizeof(t->comm));
    if (rc != 0)
        return rc;
    t->comm[sizeof(t->comm) - 1] = '\0';
    /* The parent and the uid are optional: unknown stays -1. */
    if (read_u64(ops, cpu, task + p->task_real_parent, &parent) == 0)
        read_i32(ops, cpu, parent + p->task_tgid, &t->ppid);
    if (read_u64(ops, cpu, task + p->task_cred, &cred) == 0 &&
        read_i32(ops, cpu, cred + p->cred_uid, &uid) == 0)
        t->uid = uid;
    return 0;
}

/*
 * Does what the entry's first instruction, swapgs, would do, so the guest
 * continues after it without a single step (which would cost another stop
 * and a flush of translated code). If anything fails the host steps off.
 */
static void emulate_swapgs(gpm_qemu_inject_t *qi, const gpm_host_ops_t *ops,
                           void *cpu, uint64_t pc)
{
    uint64_t gs, kgs;

    if (ops->read_reg(cpu, (unsigned)qi->gs_reg, &gs) != 0 ||
        ops->read_reg(cpu, (unsigned)qi->kgs_reg, &kgs) != 0)
        return;
    if (ops->write_reg(cpu, (unsigned)qi->gs_reg, kgs) != 0)
        return;
    if (ops->write_reg(cpu, (unsigned)qi->kgs_reg, gs) != 0 ||
        ops->write_reg(cpu, (unsigned)qi->rip_reg, pc + 3) != 0) {
        /* Put gs back so that stepping the real swapgs stays right. */
        ops->write_reg(cpu, (unsigned)qi->gs_reg, gs);
        ops->write_reg(cpu, (unsigned)qi->kgs_reg, kgs);
    }
}

/* Checks the entry's first instruction from the I/O thread. */
static int check_entry_cb(gpm_qemu_host_t *h, const gpm_host_ops_t *ops,
                          void *cpu, void *opaque)
{
    static const uint8_t swapgs[3] = {0x0f, 0x01, 0xf8};
    gpm_qemu_inject_t *qi = opaque;
    uint8_t insn[3];

    (void)h;
    qi->emulate_swapgs =
        ops->read_mem(cpu, qi->prof.entry_syscall, insn, 3) == 0 &&
        memcmp(insn, swapgs, 3) == 0;
    return 0;
}

static int syscall_entry_cb(gpm_qemu_host_t *h, const gpm_host_ops_t *ops,
                            void *cpu, uint64_t pc, void *opaque)
{
    gpm_qemu_inject_t *qi = opaque;
    gpm_inj_thread_t t;
    int rc = 0;

    (void)h;
    (void)pc;
    if (gpm_injector_state(qi->inj) == GPM_INJ_DONE ||
        gpm_injector_state(qi->inj) == GPM_INJ_FAILED)
        return GPM_QEMU_STOP_CONTINUE;
    /* A thread we cannot identify is left alone. */
    if (read_thread(qi, ops, cpu, &t) == 0)
        rc = gpm_injector_on_syscall(qi->inj, ops, cpu, &t);
    g_mutex_lock(&qi->lock);
    qi->stops++;
    qi->state = gpm_injector_state(qi->inj);
    if (rc != 0 && qi->error == 0)
        qi->error = rc;
    g_cond_broadcast(&qi->cond);
    g_mutex_unlock(&qi->lock);
    if (qi->emulate_swapgs)
        emulate_swapgs(qi, ops, cpu, pc);
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
        prof->entry_syscall == 0)
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
    qi->kgs_reg = gpm_qemu_host_reg_number(h, "k_gs_base");
    qi->gs_reg = gpm_qemu_host_reg_number(h, "gs_base");
    qi->rip_reg = gpm_qemu_host_reg_number(h, "rip");
    if (qi->kgs_reg < 0 || qi->gs_reg < 0 || qi->rip_reg < 0) {
        rc = GPM_ENOENT;
        goto error;
    }
    rc = gpm_qemu_host_call(h, check_entry_cb, qi);
    if (rc != 0)
        goto error;
    rc = gpm_qemu_host_add_breakpoint(h, prof->entry_syscall, syscall_entry_cb,
                                      qi);
    if (rc != 0)
        goto error;
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
        rc = gpm_qemu_host_remove_breakpoint(qi->h, qi->prof.entry_syscall);
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
