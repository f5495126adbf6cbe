/*
 * qh_stops.c - breakpoints and stops of the stock-QEMU host: hypercalls,
 * other breakpoints, stepping off and resuming (I/O thread).
 */
#define _GNU_SOURCE
#include "qemu/qh_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int gpm__qh_bp_find(const gpm_qemu_host_t *h, uint64_t addr)
{
    unsigned i;

    for (i = 0; i < h->nbps; i++) {
        if (h->bps[i].addr == addr) {
            return (int)i;
        }
    }
    return -1;
}

int gpm__qh_bp_packet(gpm_qemu_host_t *h, char op, uint64_t addr)
{
    char cmd[64];

    snprintf(cmd, sizeof(cmd), "%c0,%" PRIx64 ",%x", op, addr,
             h->aops->bp_kind);
    return gpm__qh_command_ok(h, cmd);
}

int gpm__qh_bp_insert(gpm_qemu_host_t *h, uint64_t addr, gpm_qemu_stop_cb cb,
                      void *opaque, bool internal)
{
    int err;

    if (gpm__qh_bp_find(h, addr) >= 0) {
        return GPM_EEXIST;
    }
    if (h->nbps >= MAX_BPS) {
        return GPM_ENOSPC;
    }
    err = gpm__qh_bp_packet(h, 'Z', addr);
    if (err < 0) {
        return err;
    }
    h->bps[h->nbps].addr = addr;
    h->bps[h->nbps].cb = cb;
    h->bps[h->nbps].opaque = opaque;
    h->bps[h->nbps].internal = internal;
    h->nbps++;
    return 0;
}

int gpm__qh_bp_remove(gpm_qemu_host_t *h, uint64_t addr, bool allow_internal)
{
    int i = gpm__qh_bp_find(h, addr);
    int err;

    if (i < 0 || (h->bps[i].internal && !allow_internal)) {
        return GPM_ENOENT;
    }
    err = gpm__qh_bp_packet(h, 'z', addr);
    h->bps[i] = h->bps[--h->nbps];
    return err;
}

void gpm__qh_set_paused(gpm_qemu_host_t *h, bool paused, uint64_t pc)
{
    pthread_mutex_lock(&h->lock);
    h->user_paused = paused;
    if (paused) {
        h->paused_pc = pc;
    }
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* Reads @bytes (at most 8) at kernel @va in the guest's byte order. */
static int read_word(gpm_qemu_host_t *h, uint64_t va, unsigned bytes,
                     uint64_t *out)
{
    uint8_t raw[8];
    int err = gpm__qh_mem_read(h, va, raw, bytes, 0);

    if (err == 0) {
        *out = gpm__qh_decode(h, raw, bytes);
    }
    return err;
}

/*
 * The thread-group id of the process whose thread stopped at a user-mode
 * hypercall. In user mode a register the profile names holds the kernel's
 * per-CPU base (x86_64: k_gs_base; arm64: TPIDR_EL1), and the per-CPU
 * variable at the profile's offset there points at the running thread's
 * task_struct. With one vCPU the base never changes, so it is read once.
 * Without a register (reg_task_base -2: the arch's per-CPU base is a
 * constant, i386) the profile's value is the variable's address. With
 * arch_ops.current_stack_mask (MIPS) the variable points into the task's
 * kernel stack, whose thread_info at the masked address starts with the
 * task pointer.
 * GPM_TGID_UNKNOWN without a profile or if any read fails (the core then
 * falls back to no checks).
 */
/* reg_task_base's value when the per-CPU base is a constant. */
#define QH_TASK_BASE_CONST (-2)

static int64_t caller_tgid(gpm_qemu_host_t *h)
{
    uint64_t off, task = 0, tgid = 0;
    uint32_t tgid_off;
    unsigned gen;
    int reg;

    pthread_mutex_lock(&h->lock);
    off = h->task_current;
    tgid_off = h->task_tgid;
    reg = h->reg_task_base;
    gen = h->task_gen;
    pthread_mutex_unlock(&h->lock);
    if (off == 0 || (reg < 0 && reg != QH_TASK_BASE_CONST)) {
        return GPM_TGID_UNKNOWN;
    }
    if (gen != h->task_gen_seen) {
        h->task_gen_seen = gen;
        h->task_base_cache = 0;
    }
    if (reg >= 0 && h->task_base_cache == 0 &&
        gpm__qh_reg_get(h, (unsigned)reg, &h->task_base_cache) < 0) {
        h->task_base_cache = 0;
        return GPM_TGID_UNKNOWN;
    }
    if (reg < 0) {
        h->task_base_cache = 0;
    }
    if (read_word(h, h->task_base_cache + off, h->ai->word_bits / 8, &task) <
            0 ||
        (h->aops->current_stack_mask &&
         read_word(h, task & h->aops->current_stack_mask, h->ai->word_bits / 8,
                   &task) < 0) ||
        read_word(h, task + tgid_off, 4, &tgid) < 0) {
        h->task_base_cache = 0;
        return GPM_TGID_UNKNOWN;
    }
    return (int32_t)tgid > 0 ? (int32_t)tgid : GPM_TGID_UNKNOWN;
}

int gpm_qemu_host_set_task_profile(gpm_qemu_host_t *h, const char *base_reg,
                                   uint64_t current_task, uint32_t task_tgid)
{
    int reg = -1;

    if (!h || (current_task != 0 && (task_tgid == 0 || !base_reg))) {
        return GPM_EINVAL;
    }
    if (current_task != 0 && base_reg[0] == '\0') {
        reg = QH_TASK_BASE_CONST; /* current_task is an address */
    } else if (current_task != 0) {
        reg = gpm_qemu_host_reg_number(h, base_reg);
        if (reg < 0) {
            return GPM_ENOENT;
        }
    }
    pthread_mutex_lock(&h->lock);
    h->task_current = current_task;
    h->task_tgid = task_tgid;
    h->reg_task_base = reg;
    h->task_gen++;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

int gpm_qemu_host_set_mmu_inputs(gpm_qemu_host_t *h, const uint64_t *vals,
                                 unsigned n)
{
    if (!h || !vals || !h->aops->mmu_inputs_const ||
        n != h->aops->mmu_ninputs || n > GPM__MMU_NREGS) {
        return GPM_EINVAL;
    }
    pthread_mutex_lock(&h->lock);
    memcpy(h->mmu_const, vals, n * sizeof(vals[0]));
    h->mmu_const_set = true;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static int handle_hypercall(gpm_qemu_host_t *h, uint64_t pc)
{
    uint64_t mode = 0;
    bool handled = false;
    int64_t t0;
    int err;

    if (!h->cfg.manager) {
        STAT_ADD(h, hc_unhandled, 1);
        return 0;
    }
    err = gpm__qh_reg_get(h, (unsigned)h->reg_mode, &mode);
    if (err < 0) {
        return err;
    }
    if (!h->aops->mode_is_user(mode)) {
        STAT_ADD(h, hc_unhandled, 1);
        return 0;
    }
    t0 = now_ns();
    err = gpm_hypercall_handle_as(h->cfg.manager, &gpm__qh_hc_ops, h,
                                  caller_tgid(h), &handled);
    STAT_ADD(h, handler_ns, (uint64_t)(now_ns() - t0));
    if (err < 0 || !handled) {
        /* The registers may be half written: drop what is not flushed. */
        if (err < 0) {
            gpm__qh_regs_invalidate(h);
        }
        STAT_ADD(h, hc_unhandled, 1);
        return err == GPM_ECONNRESET || err == GPM_ETIMEDOUT ? err : 0;
    }
    STAT_ADD(h, hypercalls, 1);
    return gpm__qh_reg_set(h, (unsigned)h->reg_pc, pc + h->aops->hc_insn_len);
}

/*
 * Dispatches a stop at @pc to its breakpoint's handler. Returns 0 or a
 * fatal error; sets *@pause if the guest is to stay paused.
 */
int gpm__qh_dispatch(gpm_qemu_host_t *h, uint64_t pc, bool *pause)
{
    gpm_qemu_stop_cb cb;
    void *opaque;
    int i = gpm__qh_bp_find(h, pc);
    int action;

    *pause = false;
    if (i < 0) {
        return 0;
    }
    if (h->bps[i].internal) {
        return handle_hypercall(h, pc);
    }
    STAT_ADD(h, bp_hits, 1);
    cb = h->bps[i].cb;
    opaque = h->bps[i].opaque;
    action = cb ? cb(h, &gpm__qh_full_ops, h, pc, opaque) : GPM_QEMU_STOP_PAUSE;
    if (action == GPM_QEMU_STOP_PAUSE) {
        *pause = true;
        gpm__qh_set_paused(h, true, pc);
    }
    return 0;
}

int gpm__qh_handle_stop(gpm_qemu_host_t *h)
{
    uint64_t pc;
    bool pause;
    int err;

    h->running = false;
    h->stop_t0 = now_ns();
    /* Seen by stats() at once: a long callback shows as a stopped guest. */
    pthread_mutex_lock(&h->lock);
    h->st.running = false;
    pthread_mutex_unlock(&h->lock);
    gpm__qh_regs_invalidate(h);
    err = gpm__qh_reg_get(h, (unsigned)h->reg_pc, &pc);
    if (err < 0) {
        return err;
    }
    return gpm__qh_dispatch(h, pc, &pause);
}

/*
 * Lets the guest run: writes back registers, steps off a breakpoint at the
 * current pc (dispatching a breakpoint the step lands on), sends 'c'.
 */
int gpm__qh_resume_guest(gpm_qemu_host_t *h)
{
    int steps;
    int err;

    for (steps = 0; steps < MAX_STEPS; steps++) {
        gpm__rsp_stop_t s;
        uint64_t pc;
        bool pause;

        err = gpm__qh_reg_get(h, (unsigned)h->reg_pc, &pc);
        if (err < 0) {
            return err;
        }
        if (gpm__qh_bp_find(h, pc) < 0) {
            break;
        }
        err = gpm__qh_regs_flush(h);
        if (err < 0) {
            return err;
        }
        err = gpm__qh_bp_packet(h, 'z', pc);
        if (err < 0) {
            return err;
        }
        err = gpm__gdb_send(&h->conn, "s", 1, tmo(h));
        if (err == 0) {
            err = gpm__qh_wait_stop(h, tmo(h), &s);
        }
        if (err < 0) {
            return err;
        }
        err = gpm__qh_bp_packet(h, 'Z', pc);
        if (err < 0) {
            return err;
        }
        STAT_ADD(h, steps, 1);
        gpm__qh_regs_invalidate(h);
        err = gpm__qh_reg_get(h, (unsigned)h->reg_pc, &pc);
        if (err < 0) {
            return err;
        }
        err = gpm__qh_dispatch(h, pc, &pause);
        if (err < 0) {
            return err;
        }
        if (pause) {
            return 0;
        }
    }
    /*
     * A changed RIP (a handled hypercall) goes with the continue packet
     * ("c ADDR") instead of its own 'P': one round trip less per stop.
     */
    err = gpm__qh_regs_flush_but(h, h->reg_pc);
    if (err < 0) {
        return err;
    }
    if (h->rstate[h->reg_pc] & RS_DIRTY) {
        char cmd[32];
        int n = snprintf(cmd, sizeof(cmd), "c%" PRIx64, h->regs[h->reg_pc]);

        err = gpm__gdb_send(&h->conn, cmd, (size_t)n, tmo(h));
    } else {
        err = gpm__gdb_send(&h->conn, "c", 1, tmo(h));
    }
    if (err < 0) {
        return err;
    }
    h->running = true;
    gpm__qh_regs_invalidate(h);
    pthread_mutex_lock(&h->lock);
    if (h->stop_t0) {
        h->st.stop_ns += (uint64_t)(now_ns() - h->stop_t0);
    }
    h->st.running = true;
    pthread_mutex_unlock(&h->lock);
    h->stop_t0 = 0;
    return 0;
}
