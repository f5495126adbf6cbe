/*
 * inventory.c - guest plugin binaries: reading the ELF header and the
 * pandagpm descriptor note, checking them against the guest, and finding
 * them by name along the search path. Files are read with bounds checks
 * on every offset; a malformed file is refused, never trusted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Sizes of the ELF structures we read, per class. */
#define EHDR32_SIZE      52u
#define EHDR64_SIZE      64u
#define SHDR32_SIZE      40u
#define SHDR64_SIZE      64u
#define SHT_NOTE         7u
#define ET_EXEC          2u
#define ET_DYN           3u
/* Notes larger than this are not ours; skip them unread. */
#define MAX_NOTE_SECTION (1u << 20)
#define MAX_SECTIONS     4096u

typedef struct elf_file {
    int fd;
    uint64_t size;
    bool is64;
    bool big;
} elf_file_t;

static uint16_t rd16(const elf_file_t *e, const uint8_t *p)
{
    return e->big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t rd32(const elf_file_t *e, const uint8_t *p)
{
    if (e->big)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 |
           p[0];
}

static uint64_t rd64(const elf_file_t *e, const uint8_t *p)
{
    uint64_t hi = rd32(e, e->big ? p : p + 4);
    uint64_t lo = rd32(e, e->big ? p + 4 : p);

    return hi << 32 | lo;
}

/* Reads exactly @len bytes at @off, refusing ranges outside the file. */
static bool read_at(const elf_file_t *e, uint64_t off, void *buf, size_t len)
{
    size_t done = 0;

    if (off > e->size || len > e->size - off)
        return false;
    while (done < len) {
        ssize_t n = pread(e->fd, (uint8_t *)buf + done, len - done,
                          (off_t)(off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

/* Copies a fixed-size, NUL-padded field into a terminated string. */
static void copy_field(char *dst, const char *src, size_t field_len)
{
    size_t n = strnlen(src, field_len);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Looks for our descriptor in one SHT_NOTE section's bytes. */
static int scan_notes(const elf_file_t *e, const uint8_t *p, size_t len,
                      gpm_plugin_info_t *out, char *why, size_t why_len)
{
    size_t off = 0;

    while (len - off >= 12) {
        uint32_t namesz = rd32(e, p + off);
        uint32_t descsz = rd32(e, p + off + 4);
        uint32_t type = rd32(e, p + off + 8);
        size_t name_pad = ((size_t)namesz + 3) & ~(size_t)3;
        size_t desc_pad = ((size_t)descsz + 3) & ~(size_t)3;
        const uint8_t *name = p + off + 12;
        const uint8_t *desc;

        if (name_pad > len - off - 12 || desc_pad > len - off - 12 - name_pad)
            break;
        desc = name + name_pad;
        if (namesz == sizeof(GPM_NOTE_OWNER) &&
            memcmp(name, GPM_NOTE_OWNER, sizeof(GPM_NOTE_OWNER)) == 0 &&
            type == GPM_NOTE_TYPE) {
            struct gpm_plugin_desc d;

            if (descsz < 4) {
                gpm__why(why, why_len, "%s: descriptor note is truncated",
                         out->path);
                return GPM_EDESC;
            }
            out->desc_abi = rd32(e, desc);
            if (out->desc_abi != GPM_DESC_ABI_VERSION) {
                gpm__why(why, why_len,
                         "%s: descriptor ABI version %u is not known to this "
                         "host (it knows version %u)",
                         out->path, out->desc_abi, GPM_DESC_ABI_VERSION);
                return GPM_EDESC;
            }
            if (descsz != sizeof(d)) {
                gpm__why(why, why_len,
                         "%s: descriptor of %u bytes, expected %zu", out->path,
                         descsz, sizeof(d));
                return GPM_EDESC;
            }
            memcpy(&d, desc, sizeof(d));
            copy_field(out->name, d.name, sizeof(d.name));
            copy_field(out->version, d.version, sizeof(d.version));
            copy_field(out->description, d.description, sizeof(d.description));
            if (out->name[0] == '\0') {
                gpm__why(why, why_len, "%s: descriptor has an empty name",
                         out->path);
                return GPM_EDESC;
            }
            return 0;
        }
        off += 12 + name_pad + desc_pad;
    }
    return GPM_ENOENT;
}

static int find_descriptor(const elf_file_t *e, const uint8_t *ehdr,
                           gpm_plugin_info_t *out, char *why, size_t why_len)
{
    uint64_t shoff = e->is64 ? rd64(e, ehdr + 0x28) : rd32(e, ehdr + 0x20);
    unsigned shentsize = rd16(e, ehdr + (e->is64 ? 0x3a : 0x2e));
    unsigned shnum = rd16(e, ehdr + (e->is64 ? 0x3c : 0x30));
    unsigned want = e->is64 ? SHDR64_SIZE : SHDR32_SIZE;

    if (shnum == 0 || shnum > MAX_SECTIONS || shentsize < want) {
        gpm__why(why, why_len, "%s: no section table to find a descriptor in",
                 out->path);
        return GPM_EDESC;
    }
    for (unsigned i = 0; i < shnum; i++) {
        uint8_t sh[SHDR64_SIZE];
        uint64_t off, size;
        uint8_t *notes;
        int rc;

        if (!read_at(e, shoff + (uint64_t)i * shentsize, sh, want))
            break;
        if (rd32(e, sh + 4) != SHT_NOTE)
            continue;
        off = e->is64 ? rd64(e, sh + 0x18) : rd32(e, sh + 0x10);
        size = e->is64 ? rd64(e, sh + 0x20) : rd32(e, sh + 0x14);
        if (size == 0 || size > MAX_NOTE_SECTION)
            continue;
        notes = g_malloc((size_t)size);
        rc = read_at(e, off, notes, (size_t)size)
                 ? scan_notes(e, notes, (size_t)size, out, why, why_len)
                 : GPM_ENOENT;
        g_free(notes);
        if (rc != GPM_ENOENT)
            return rc;
    }
    gpm__why(why, why_len,
             "%s: no pandagpm descriptor note (build it with "
             "GPM_PLUGIN_DESCRIPTOR)",
             out->path);
    return GPM_EDESC;
}

int gpm_plugin_inspect(const char *path, gpm_plugin_info_t *out, char *why,
                       size_t why_len)
{
    uint8_t ehdr[EHDR64_SIZE];
    elf_file_t e = {.fd = -1};
    struct stat st;
    unsigned type;
    int rc;

    if (path == NULL || out == NULL)
        return GPM_EINVAL;
    memset(out, 0, sizeof(*out));
    out->arch = -1;
    if (strlen(path) >= sizeof(out->path)) {
        gpm__why(why, why_len, "path too long");
        return GPM_ENAMETOOLONG;
    }
    strcpy(out->path, path);
    e.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (e.fd < 0) {
        gpm__why(why, why_len, "%s: %s", path, g_strerror(errno));
        return GPM_ENOENT;
    }
    if (fstat(e.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gpm__why(why, why_len, "%s: not a regular file", path);
        rc = GPM_ENOEXEC;
        goto out;
    }
    e.size = (uint64_t)st.st_size;
    if (!read_at(&e, 0, ehdr, 16) || memcmp(ehdr, "\177ELF", 4) != 0 ||
        (ehdr[4] != 1 && ehdr[4] != 2) || (ehdr[5] != 1 && ehdr[5] != 2)) {
        gpm__why(why, why_len, "%s: not an ELF file", path);
        rc = GPM_ENOEXEC;
        goto out;
    }
    e.is64 = ehdr[4] == 2;
    e.big = ehdr[5] == 2;
    if (!read_at(&e, 0, ehdr, e.is64 ? EHDR64_SIZE : EHDR32_SIZE)) {
        gpm__why(why, why_len, "%s: truncated ELF header", path);
        rc = GPM_ENOEXEC;
        goto out;
    }
    type = rd16(&e, ehdr + 16);
    if (type != ET_EXEC && type != ET_DYN) {
        gpm__why(why, why_len, "%s: ELF file is not an executable (type %u)",
                 path, type);
        rc = GPM_ENOEXEC;
        goto out;
    }
    out->elf_class = ehdr[4];
    out->elf_machine = rd16(&e, ehdr + 18);
    for (unsigned i = 0; i < GPM_ARCH_COUNT; i++) {
        const gpm_arch_info_t *a = gpm_arch_info((gpm_arch_t)i);

        if (a->elf_machine == out->elf_machine &&
            a->elf_class == out->elf_class && a->big_endian == e.big) {
            out->arch = (int)i;
            break;
        }
    }
    rc = find_descriptor(&e, ehdr, out, why, why_len);
out:
    close(e.fd);
    return rc;
}

int gpm_plugin_check_arch(const gpm_plugin_info_t *info, gpm_arch_t arch,
                          char *why, size_t why_len)
{
    const gpm_arch_info_t *want = gpm_arch_info(arch);
    const gpm_arch_info_t *have;

    if (info == NULL || want == NULL)
        return GPM_EINVAL;
    if (info->arch == (int)arch)
        return 0;
    have = info->arch >= 0 ? gpm_arch_info((gpm_arch_t)info->arch) : NULL;
    gpm__why(why, why_len,
             "%s is built for %s (ELF machine %u, %u-bit), but the guest is "
             "%s (ELF machine %u, %u-bit)",
             info->path, have != NULL ? have->name : "an unknown architecture",
             info->elf_machine, info->elf_class == 2 ? 64 : 32, want->name,
             want->elf_machine, want->word_bits);
    return GPM_EARCH;
}

/* The search path added with gpm_inventory_add_dir(). */
static GMutex dirs_lock;
static GPtrArray *extra_dirs;

int gpm_inventory_add_dir(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return GPM_EINVAL;
    g_mutex_lock(&dirs_lock);
    if (extra_dirs == NULL)
        extra_dirs = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(extra_dirs, g_strdup(dir));
    g_mutex_unlock(&dirs_lock);
    return 0;
}

void gpm_inventory_clear_dirs(void)
{
    g_mutex_lock(&dirs_lock);
    if (extra_dirs != NULL) {
        g_ptr_array_free(extra_dirs, TRUE);
        extra_dirs = NULL;
    }
    g_mutex_unlock(&dirs_lock);
}

/* The whole search path, in order; free with g_ptr_array_free(, TRUE). */
static GPtrArray *search_dirs(const char *explicit_dir)
{
    GPtrArray *dirs = g_ptr_array_new_with_free_func(g_free);
    const char *env = getenv("EXTRA_GUEST_PLUGINS_PATH");

    if (explicit_dir != NULL && explicit_dir[0] != '\0')
        g_ptr_array_add(dirs, g_strdup(explicit_dir));
    if (env != NULL) {
        gchar **parts = g_strsplit(env, ":", -1);

        for (gchar **p = parts; *p != NULL; p++) {
            if (**p == '\0')
                continue;
            g_ptr_array_add(dirs, g_build_filename(*p, "build", NULL));
            g_ptr_array_add(dirs, g_strdup(*p));
        }
        g_strfreev(parts);
    }
    g_mutex_lock(&dirs_lock);
    for (guint i = 0; extra_dirs != NULL && i < extra_dirs->len; i++)
        g_ptr_array_add(dirs, g_strdup(g_ptr_array_index(extra_dirs, i)));
    g_mutex_unlock(&dirs_lock);
    return dirs;
}

static bool valid_plugin_name(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;

    if (len == 0 || len > GPM_DESC_NAME_MAX || name[0] == '.')
        return false;
    return strchr(name, '/') == NULL;
}

int gpm_plugin_find(const char *name, const char *explicit_dir, gpm_arch_t arch,
                    gpm_plugin_info_t *out, char *why, size_t why_len)
{
    const gpm_arch_info_t *a = gpm_arch_info(arch);
    GString *tried;
    GPtrArray *dirs;
    int rc = GPM_ENOENT, arch_err = 0;
    gchar *arch_why = NULL;

    if (out == NULL || a == NULL)
        return GPM_EINVAL;
    if (!valid_plugin_name(name)) {
        gpm__why(why, why_len, "invalid plugin name");
        return GPM_EINVAL;
    }
    tried = g_string_new(NULL);
    dirs = search_dirs(explicit_dir);
    /*
     * A binary for another arch is passed over (one search path may hold
     * several arches' builds); if nothing else fits, its refusal is the
     * answer.
     */
    for (guint i = 0; i < dirs->len && rc == GPM_ENOENT; i++) {
        const char *dir = g_ptr_array_index(dirs, i);
        gchar *cand[2] = {g_build_filename(dir, a->name, name, NULL),
                          g_build_filename(dir, name, NULL)};

        for (int k = 0; k < 2 && rc == GPM_ENOENT; k++) {
            g_string_append_printf(tried, "%s%s", tried->len ? ", " : "",
                                   cand[k]);
            if (!g_file_test(cand[k], G_FILE_TEST_IS_REGULAR))
                continue;
            rc = gpm_plugin_inspect(cand[k], out, why, why_len);
            if (rc == 0)
                rc = gpm_plugin_check_arch(out, arch, why, why_len);
            if (rc == GPM_EARCH) {
                if (arch_err == 0) {
                    arch_err = rc;
                    arch_why = g_strdup(why != NULL ? why : "");
                }
                rc = GPM_ENOENT;
                continue;
            }
            if (rc == 0 && strcmp(out->name, name) != 0) {
                gpm__why(why, why_len,
                         "%s: its descriptor names plugin \"%s\", not \"%s\"",
                         cand[k], out->name, name);
                rc = GPM_EDESC;
            }
        }
        g_free(cand[0]);
        g_free(cand[1]);
    }
    if (rc == GPM_ENOENT && arch_err != 0) {
        rc = arch_err;
        gpm__why(why, why_len, "%s", arch_why);
    } else if (rc == GPM_ENOENT) {
        gpm__why(why, why_len,
                 "guest plugin \"%s\" for %s not found; looked in: %s", name,
                 a->name, dirs->len ? tried->str : "(empty search path)");
    }
    g_free(arch_why);
    g_ptr_array_free(dirs, TRUE);
    g_string_free(tried, TRUE);
    return rc;
}

/* Inspects every regular file of @dir; first (name, arch) seen wins. */
static void list_dir(const char *dir, GHashTable *seen,
                     void (*cb)(const gpm_plugin_info_t *, void *),
                     void *opaque, int depth)
{
    gpm_plugin_info_t *info;
    struct dirent *de;
    DIR *d = opendir(dir);

    if (d == NULL)
        return;
    info = g_new(gpm_plugin_info_t, 1);
    while ((de = readdir(d)) != NULL) {
        gchar *path, *key;
        struct stat st;

        if (de->d_name[0] == '.')
            continue;
        path = g_build_filename(dir, de->d_name, NULL);
        if (stat(path, &st) != 0) {
            g_free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode) && depth == 0) {
            list_dir(path, seen, cb, opaque, 1);
        } else if (S_ISREG(st.st_mode) &&
                   gpm_plugin_inspect(path, info, NULL, 0) == 0) {
            key = g_strdup_printf("%s/%d", info->name, info->arch);
            if (!g_hash_table_contains(seen, key)) {
                g_hash_table_add(seen, key);
                cb(info, opaque);
            } else {
                g_free(key);
            }
        }
        g_free(path);
    }
    g_free(info);
    closedir(d);
}

int gpm_plugin_list(const char *explicit_dir,
                    void (*cb)(const gpm_plugin_info_t *info, void *opaque),
                    void *opaque)
{
    GHashTable *seen;
    GPtrArray *dirs;

    if (cb == NULL)
        return GPM_EINVAL;
    seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    dirs = search_dirs(explicit_dir);
    for (guint i = 0; i < dirs->len; i++)
        list_dir(g_ptr_array_index(dirs, i), seen, cb, opaque, 0);
    g_ptr_array_free(dirs, TRUE);
    g_hash_table_destroy(seen);
    return 0;
}
