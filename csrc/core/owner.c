/*
 * owner.c - channel ownership: which guest process may use a channel, the
 * per-process quota of anonymous channels, and what happens to a
 * process's channels when it ends (see gpm/manager.h and
 * docs/security.md).
 */
#include "internal.h"

static bool owner_valid(int64_t owner)
{
    return owner > 0 || owner == GPM_OWNER_ANY || owner == GPM_OWNER_PENDING ||
           owner == GPM_OWNER_NONE;
}

int64_t gpm__owner_check_locked(gpm_manager_t *m, gpm__channel_t *ch,
                                int64_t tgid)
{
    if (tgid <= 0 || !m->enforce || ch->owner == GPM_OWNER_ANY ||
        ch->owner == tgid)
        return 0;
    if (ch->owner == GPM_OWNER_PENDING && tgid != ch->prev_owner)
        return GPM_HC_EBUSY;
    return GPM_HC_EACCES;
}

int gpm_channel_set_owner(gpm_manager_t *m, gpm_channel_id_t id, int64_t owner)
{
    gpm__channel_t *ch;

    if (m == NULL || !owner_valid(owner))
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    if (ch != NULL && ch->owner != owner) {
        if (ch->owner > 0)
            ch->prev_owner = ch->owner;
        ch->owner = owner;
    }
    g_mutex_unlock(&m->lock);
    return ch == NULL ? GPM_EBADF : 0;
}

int gpm_channel_owner(gpm_manager_t *m, gpm_channel_id_t id, int64_t *out)
{
    gpm__channel_t *ch;

    if (m == NULL || out == NULL)
        return GPM_EINVAL;
    g_mutex_lock(&m->lock);
    ch = gpm__channel_get(m, id);
    *out = ch != NULL ? ch->owner : GPM_OWNER_NONE;
    g_mutex_unlock(&m->lock);
    return ch == NULL ? GPM_EBADF : 0;
}

void gpm_manager_set_ownership(gpm_manager_t *m, bool enforce)
{
    g_mutex_lock(&m->lock);
    m->enforce = enforce;
    g_mutex_unlock(&m->lock);
}

int gpm_manager_set_guest_quota(gpm_manager_t *m, unsigned per_process)
{
    if (m == NULL || per_process > m->cfg.max_guest_channels)
        return GPM_EINVAL;
    if (per_process == 0)
        per_process = GPM__DEFAULT_GUEST_QUOTA < m->cfg.max_guest_channels
                          ? GPM__DEFAULT_GUEST_QUOTA
                          : m->cfg.max_guest_channels;
    g_mutex_lock(&m->lock);
    m->guest_quota = per_process;
    g_mutex_unlock(&m->lock);
    return 0;
}

int gpm__quota_take_locked(gpm_manager_t *m, int64_t tgid)
{
    unsigned *n = g_hash_table_lookup(m->per_tgid, &tgid);

    /* Without a known caller only the table's own limit applies. */
    if (tgid <= 0)
        return 0;
    if (n != NULL && *n >= m->guest_quota)
        return GPM_ENOSPC;
    if (n == NULL) {
        int64_t *key = g_new(int64_t, 1);

        *key = tgid;
        n = g_new0(unsigned, 1);
        g_hash_table_insert(m->per_tgid, key, n);
    }
    (*n)++;
    return 0;
}

void gpm__quota_give_locked(gpm_manager_t *m, int64_t tgid)
{
    unsigned *n;

    if (tgid <= 0)
        return;
    n = g_hash_table_lookup(m->per_tgid, &tgid);
    if (n != NULL && --*n == 0)
        g_hash_table_remove(m->per_tgid, &tgid);
}

GSList *gpm__process_gone_locked(gpm_manager_t *m, int64_t tgid,
                                 unsigned *count)
{
    GHashTableIter it;
    gpm__channel_t *ch;
    GSList *victims = NULL, *dead = NULL;

    *count = 0;
    if (tgid <= 0)
        return NULL;
    g_hash_table_iter_init(&it, m->by_id);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&ch)) {
        if (ch->owner != tgid)
            continue;
        (*count)++;
        ch->prev_owner = tgid;
        ch->owner = GPM_OWNER_NONE;
        if (ch->guest_made)
            victims = g_slist_prepend(victims, ch);
    }
    /* Unlinking changes the table, so it waits until the walk is done. */
    for (GSList *l = victims; l != NULL; l = l->next) {
        ch = l->data;
        gpm__channel_unlink_locked(m, ch);
        if (gpm__channel_put(m, ch) != NULL)
            dead = g_slist_prepend(dead, ch);
    }
    g_slist_free(victims);
    return dead;
}

unsigned gpm_process_gone(gpm_manager_t *m, int64_t tgid)
{
    GSList *dead;
    unsigned count;

    if (m == NULL)
        return 0;
    g_mutex_lock(&m->lock);
    dead = gpm__process_gone_locked(m, tgid, &count);
    g_mutex_unlock(&m->lock);
    for (GSList *l = dead; l != NULL; l = l->next)
        gpm__channel_destroy(l->data);
    g_slist_free(dead);
    return count;
}
