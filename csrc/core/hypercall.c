/*
 * hypercall.c - the hypercall dispatcher. Every register value comes from
 * the guest and is treated as hostile: ids are looked up, lengths bounded,
 * address ranges checked for wrap-around, and guest memory reached only
 * through the host's checked accessors.
 */
#include <string.h>

#include "internal.h"

typedef struct hc_args {
    uint64_t op;
    uint64_t chan;
    uint64_t a1;
    uint64_t a2;
} hc_args_t;

typedef struct hc_ctx {
    gpm_manager_t *m;
    const gpm_host_ops_t *ops;
    void *cpu;
    uint64_t word_mask;
    int64_t tgid; /* the calling process, or GPM_TGID_UNKNOWN */
} hc_ctx_t;

/* True if [addr, addr + len) stays inside the guest's address space. */
static bool range_ok(const hc_ctx_t *c, uint64_t addr, uint64_t len)
{
    if (len == 0)
        return true;
    return addr <= c->word_mask && len - 1 <= c->word_mask - addr;
}

/* Maps a host memory accessor failure to the guest's result. */
static int64_t mem_result(int rc)
{
    return rc == GPM_EROFS ? GPM_HC_EAGAIN : GPM_HC_EFAULT;
}

/* A channel id from the guest, or 0 if it cannot name a channel. */
static gpm_channel_id_t chan_id(uint64_t v)
{
    return v > UINT32_MAX ? GPM_CHANNEL_NONE : (gpm_channel_id_t)v;
}

/*
 * The channel @v names, if the caller may use it; else NULL and the
 * guest's error in @err. Lock held.
 */
static gpm__channel_t *get_checked(hc_ctx_t *c, uint64_t v, int64_t *err)
{
    gpm__channel_t *ch = gpm__channel_get(c->m, chan_id(v));

    if (ch == NULL) {
        *err = GPM_HC_EBADF;
        return NULL;
    }
    *err = gpm__owner_check_locked(c->m, ch, c->tgid);
    if (*err != 0)
        c->m->stats.refused++;
    return *err == 0 ? ch : NULL;
}

/* Whether the caller may use @v's channel; counts nothing. No lock held. */
static bool may_use(hc_ctx_t *c, uint64_t v)
{
    gpm__channel_t *ch;
    bool ok;

    g_mutex_lock(&c->m->lock);
    ch = gpm__channel_get(c->m, chan_id(v));
    ok = ch != NULL && gpm__owner_check_locked(c->m, ch, c->tgid) == 0;
    g_mutex_unlock(&c->m->lock);
    return ok;
}

static int64_t op_start_stop(hc_ctx_t *c, const hc_args_t *a, bool start)
{
    gpm_event_t ev = {0};
    gpm__channel_t *ch, *dead = NULL;
    int64_t err;

    /* A stopped channel's ring is retired (the owner check follows). */
    if (!start && may_use(c, a->chan))
        gpm__ring_stop(c->m, chan_id(a->chan));
    g_mutex_lock(&c->m->lock);
    ch = get_checked(c, a->chan, &err);
    if (ch != NULL) {
        ch->started = start;
        /* A channel the guest made ends when its process stops it. */
        if (!start && ch->guest_made) {
            gpm__channel_unlink_locked(c->m, ch);
            dead = gpm__channel_put(c->m, ch);
        }
    }
    g_mutex_unlock(&c->m->lock);
    if (ch == NULL)
        return err;
    ev.type = start ? GPM_EVENT_CHANNEL_START : GPM_EVENT_CHANNEL_STOP;
    ev.channel = chan_id(a->chan);
    ev.pid = c->tgid;
    gpm__emit(c->m, &ev);
    if (dead != NULL)
        gpm__channel_destroy(dead);
    return 0;
}

static int64_t op_read(hc_ctx_t *c, const hc_args_t *a)
{
    gpm__channel_t *ch, *dead;
    gpm_channel_id_t id;
    const uint8_t *src;
    uint8_t *copy;
    uint64_t taken;
    size_t avail, n;
    int64_t result;
    bool drained;
    int rc;

    g_mutex_lock(&c->m->lock);
    ch = get_checked(c, a->chan, &result);
    if (ch == NULL) {
        g_mutex_unlock(&c->m->lock);
        return result;
    }
    /* Its bytes are in flight through its ring, in order: not for READ. */
    if (ch->ring_h2g) {
        g_mutex_unlock(&c->m->lock);
        return GPM_HC_EINVAL;
    }
    src = gpm__channel_peek_locked(ch, &avail);
    n = avail;
    if (n > a->a2)
        n = (size_t)a->a2;
    if (n > GPM_HC_MAX_TRANSFER)
        n = GPM_HC_MAX_TRANSFER;
    if (n == 0) {
        g_mutex_unlock(&c->m->lock);
        return 0;
    }
    if (!range_ok(c, a->a1, n)) {
        g_mutex_unlock(&c->m->lock);
        return GPM_HC_EFAULT;
    }
    /*
     * Copy the head's bytes, then write them to the guest without the
     * lock: the host's accessor may be slow or run Python code. They are
     * consumed only if the whole write succeeded and nobody consumed from
     * this channel meanwhile, so a fault or a race loses no queued data.
     */
    copy = g_try_malloc(n);
    if (copy == NULL) {
        g_mutex_unlock(&c->m->lock);
        return GPM_HC_EBUSY;
    }
    memcpy(copy, src, n);
    taken = ch->taken;
    ch->refs++;
    g_mutex_unlock(&c->m->lock);

    rc = c->ops->write_mem(c->cpu, a->a1, copy, n);
    g_free(copy);

    g_mutex_lock(&c->m->lock);
    if (rc != 0) {
        result = mem_result(rc);
    } else if (ch->closed) {
        result = GPM_HC_EBADF;
    } else if (ch->taken != taken) {
        /* Another reader got there first: this copy is stale. */
        result = GPM_HC_EAGAIN;
    } else {
        gpm__channel_take_locked(c->m, ch, n);
        c->m->stats.bytes_to_guest += n;
        result = (int64_t)n;
    }
    drained = ch->drained && !ch->closed;
    ch->drained = false;
    id = ch->id;
    dead = gpm__channel_put(c->m, ch);
    g_mutex_unlock(&c->m->lock);
    if (dead != NULL)
        gpm__channel_destroy(dead);
    if (drained)
        gpm__channel_emit_drained(c->m, id);
    return result;
}

static int64_t op_write(hc_ctx_t *c, const hc_args_t *a)
{
    gpm_channel_id_t id = chan_id(a->chan);
    gpm__channel_t *ch;
    uint8_t *buf;
    int64_t err;
    size_t n;
    int rc;

    n = a->a2 > GPM_HC_MAX_TRANSFER ? GPM_HC_MAX_TRANSFER : (size_t)a->a2;
    g_mutex_lock(&c->m->lock);
    ch = get_checked(c, id, &err);
    if (ch == NULL) {
        g_mutex_unlock(&c->m->lock);
        return err;
    }
    if (ch->recv == NULL) {
        g_mutex_unlock(&c->m->lock);
        return GPM_HC_EPIPE;
    }
    if (ch->paused) {
        /* The receiver is full: nothing is taken, the guest retries. */
        g_mutex_unlock(&c->m->lock);
        return GPM_HC_EBUSY;
    }
    g_mutex_unlock(&c->m->lock);
    if (n == 0)
        return 0;
    if (!range_ok(c, a->a1, n))
        return GPM_HC_EFAULT;
    buf = g_try_malloc(n);
    if (buf == NULL)
        return GPM_HC_EBUSY;
    rc = c->ops->read_mem(c->cpu, a->a1, buf, n);
    /* A channel closed meanwhile took the bytes into the void. */
    if (rc == 0) {
        gpm__deliver(c->m, id, buf, n);
        g_mutex_lock(&c->m->lock);
        c->m->stats.bytes_from_guest += n;
        g_mutex_unlock(&c->m->lock);
    }
    g_free(buf);
    return rc == 0 ? (int64_t)n : GPM_HC_EFAULT;
}

static int64_t op_error(hc_ctx_t *c, const hc_args_t *a)
{
    char text[GPM_HC_MAX_ERROR_MSG + 1];
    gpm_event_t ev = {0};
    int64_t err;
    size_t n;
    int rc;
    bool known;

    g_mutex_lock(&c->m->lock);
    known = get_checked(c, a->chan, &err) != NULL;
    g_mutex_unlock(&c->m->lock);
    if (!known)
        return err;
    n = a->a2 > GPM_HC_MAX_ERROR_MSG ? GPM_HC_MAX_ERROR_MSG : (size_t)a->a2;
    if (!range_ok(c, a->a1, n))
        return GPM_HC_EFAULT;
    rc = n == 0 ? 0 : c->ops->read_mem(c->cpu, a->a1, text, n);
    if (rc != 0)
        return GPM_HC_EFAULT;
    text[n] = '\0';
    ev.type = GPM_EVENT_GUEST_ERROR;
    ev.channel = chan_id(a->chan);
    ev.text = text;
    ev.pid = c->tgid;
    gpm__emit(c->m, &ev);
    return 0;
}

static int64_t op_get_manager(hc_ctx_t *c)
{
    gpm_event_t ev = {0};
    gpm_channel_id_t id, daemon = GPM_CHANNEL_NONE;
    bool probed = false;
    int rc;

    g_mutex_lock(&c->m->lock);
    rc = gpm__quota_take_locked(c->m, c->tgid);
    if (rc == 0) {
        rc = gpm__channel_alloc_locked(c->m, NULL, NULL, NULL, NULL, true, &id);
        if (rc == 0) {
            gpm__channel_t *ch = gpm__channel_get(c->m, id);

            ch->creator = c->tgid;
            if (c->tgid > 0)
                ch->owner = c->tgid;
        } else {
            gpm__quota_give_locked(c->m, c->tgid);
            /* The table is full: ask which makers have ended meanwhile. */
            if (rc == GPM_ENOSPC)
                probed = gpm__daemon_probe_locked(c->m);
            daemon = c->m->daemon_id;
        }
    }
    g_mutex_unlock(&c->m->lock);
    if (probed)
        gpm__ring(c->m, daemon);
    if (rc != 0)
        return rc == GPM_ENOMEM ? GPM_HC_EBUSY : GPM_HC_ENOSPC;
    ev.type = GPM_EVENT_GUEST_CHANNEL;
    ev.channel = id;
    ev.pid = c->tgid;
    gpm__emit(c->m, &ev);
    return id;
}

static int64_t op_get_channel(hc_ctx_t *c, const hc_args_t *a)
{
    char name[GPM_HC_MAX_NAME + 1];
    gpm__channel_t *ch;
    gpm_channel_id_t id = GPM_CHANNEL_NONE;
    int64_t err = 0;
    size_t n;

    if (a->a2 == 0)
        return GPM_HC_EINVAL;
    if (a->a2 > GPM_HC_MAX_NAME)
        return GPM_HC_ENAMETOOLONG;
    n = (size_t)a->a2;
    if (!range_ok(c, a->a1, n) || c->ops->read_mem(c->cpu, a->a1, name, n) != 0)
        return GPM_HC_EFAULT;
    /* A C string passed with its terminator counted ends at the NUL. */
    name[n] = '\0';
    if (name[0] == '\0')
        return GPM_HC_EINVAL;
    g_mutex_lock(&c->m->lock);
    ch = g_hash_table_lookup(c->m->by_name, name);
    if (ch != NULL && !ch->closed) {
        id = ch->id;
        /* A channel still waiting for its owner is named to everyone. */
        err = gpm__owner_check_locked(c->m, ch, c->tgid);
        if (err == GPM_HC_EACCES)
            c->m->stats.refused++;
    }
    g_mutex_unlock(&c->m->lock);
    if (id == GPM_CHANNEL_NONE)
        return GPM_HC_NOT_FOUND;
    return err == GPM_HC_EACCES ? err : (int64_t)id;
}

static int64_t op_get_doorbell(hc_ctx_t *c)
{
    uint64_t phys;

    g_mutex_lock(&c->m->lock);
    phys = c->m->doorbell_phys;
    g_mutex_unlock(&c->m->lock);
    /* An address the guest's word cannot hold is no doorbell for it. */
    if (phys == 0 || phys > c->word_mask - GPM_DOORBELL_SIZE)
        return GPM_HC_ENOSYS;
    return (int64_t)phys;
}

static int64_t dispatch(hc_ctx_t *c, const hc_args_t *a)
{
    switch (a->op) {
    case GPM_HC_OP_START:
        return op_start_stop(c, a, true);
    case GPM_HC_OP_STOP:
        return op_start_stop(c, a, false);
    case GPM_HC_OP_READ:
        return op_read(c, a);
    case GPM_HC_OP_WRITE:
        return op_write(c, a);
    case GPM_HC_OP_ERROR:
        return op_error(c, a);
    case GPM_HC_OP_GET_MANAGER:
        return op_get_manager(c);
    case GPM_HC_OP_GET_CHANNEL:
        return op_get_channel(c, a);
    case GPM_HC_OP_GET_DOORBELL:
        return op_get_doorbell(c);
    case GPM_HC_OP_RING_ATTACH:
        return gpm__ring_attach(c->m, chan_id(a->chan), c->tgid, c->word_mask);
    default:
        return GPM_HC_ENOSYS;
    }
}

int gpm_hypercall_handle(gpm_manager_t *m, const gpm_host_ops_t *ops, void *cpu,
                         bool *handled)
{
    return gpm_hypercall_handle_as(m, ops, cpu, GPM_TGID_UNKNOWN, handled);
}

int gpm_hypercall_handle_as(gpm_manager_t *m, const gpm_host_ops_t *ops,
                            void *cpu, int64_t tgid, bool *handled)
{
    const gpm_arch_info_t *arch;
    uint64_t regs[GPM_HC_NREGS];
    hc_ctx_t c;
    hc_args_t a;
    int64_t result;
    int rc;

    if (handled != NULL)
        *handled = false;
    if (m == NULL || ops == NULL || handled == NULL)
        return GPM_EINVAL;
    arch = m->arch;
    c.m = m;
    c.ops = ops;
    c.cpu = cpu;
    c.word_mask = arch->word_bits == 64 ? UINT64_MAX : UINT32_MAX;
    c.tgid = tgid > 0 ? tgid : GPM_TGID_UNKNOWN;

    rc = ops->read_reg(cpu, arch->hc_regs[0], &regs[0]);
    if (rc != 0)
        return rc;
    if ((regs[0] & c.word_mask) != GPM_HC_MAGIC) {
        g_mutex_lock(&m->lock);
        m->stats.not_ours++;
        g_mutex_unlock(&m->lock);
        return 0;
    }
    for (unsigned i = 1; i < GPM_HC_NREGS; i++) {
        rc = ops->read_reg(cpu, arch->hc_regs[i], &regs[i]);
        if (rc != 0)
            return rc;
        regs[i] &= c.word_mask;
    }
    a.op = regs[1];
    a.chan = regs[2];
    a.a1 = regs[3];
    a.a2 = regs[4];

    result = dispatch(&c, &a);

    g_mutex_lock(&m->lock);
    m->stats.hypercalls++;
    if (result < 0 && result >= -4095)
        m->stats.guest_errors++;
    g_mutex_unlock(&m->lock);
    rc = ops->write_reg(cpu, arch->ret_reg, (uint64_t)result & c.word_mask);
    if (rc != 0)
        return rc;
    *handled = true;
    return 0;
}
