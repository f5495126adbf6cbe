/*
 * test_gdb_host_fake.c - the stock-QEMU host's I/O thread against a fake
 * gdbstub on a unix socket: hypercalls, stepping off an unhandled stop,
 * pause/registers/resume, checksum errors and retransmits, and a peer that
 * goes away or never answers.
 *
 * The fake behaves like QEMU's gdbstub where it matters here: ack mode,
 * the VM stops on connection, any byte but 0x03 while running is a
 * protocol violation (counted), 'c ADDR' sets the pc, a breakpoint is hit
 * before its instruction runs.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qemu/gdb_remote.h"
#include "qemu/guest_ram.h"
#include "qemu/qh_internal.h"

#define NREGS   33
#define REG_RIP 16
#define REG_CS  18
#define HC_ADDR GPM_HC_X86_ADDR

static const char fake_target_xml[] =
    "<?xml version=\"1.0\"?><target><architecture>i386:x86-64"
    "</architecture><xi:include href=\"core.xml\"/></target>";

typedef struct fake {
    int lfd, fd;
    char path[108];
    pthread_t thr;
    pthread_mutex_t lock;
    bool quit;
    bool running;
    uint64_t regs[NREGS];
    uint64_t bps[16];
    int nbps;
    /* Script. */
    int hypercalls_left;  /* stops at HC_ADDR to produce on 'c' */
    uint64_t hc_cs;       /* cs for those stops (3: user) */
    bool corrupt_first;   /* send the first reply with a bad checksum */
    bool nak_first;       /* answer the client's first packet with '-' */
    bool eof_on_continue; /* close the socket at the first 'c' */
    bool exit_on_continue;
    bool silent;      /* never answer anything */
    bool no_xfer;     /* no target description (QEMU's MIPS stub) */
    uint64_t stop_at; /* on the next 'c', stop at this breakpoint */
    /* Observations. */
    int n_g, n_P, n_P_rip, n_c, n_s, n_Z, n_z, n_interrupts, n_D;
    int violations; /* bytes while running, step on a breakpoint */
    uint64_t last_c_addr;
    uint64_t c_addr_seen; /* the last 'c ADDR', kept across plain 'c's */
    char last_reply[256];
    size_t last_reply_len;
} fake_t;

static const char *reg_name(unsigned i)
{
    static const char *names[NREGS] = {
        "rax", "rbx", "rcx", "rdx",     "rsi",     "rdi",       "rbp",
        "rsp", "r8",  "r9",  "r10",     "r11",     "r12",       "r13",
        "r14", "r15", "rip", "eflags",  "cs",      "ss",        "ds",
        "es",  "fs",  "gs",  "fs_base", "gs_base", "k_gs_base", "cr0",
        "cr2", "cr3", "cr4", "cr8",     "efer"};
    return names[i];
}

static unsigned reg_bytes(unsigned i)
{
    return i >= 17 && i <= 23 ? 4 : 8;
}

static void fake_send_raw(fake_t *f, const void *p, size_t n)
{
    if (send(f->fd, p, n, MSG_NOSIGNAL) < 0) {
        /* The client went away; the test notices elsewhere. */
    }
}

static void fake_reply(fake_t *f, const char *payload, size_t n)
{
    uint8_t out[8192];
    size_t len = gpm__rsp_frame((const uint8_t *)payload, n, out, sizeof(out));

    if (len == 0) {
        f->violations++;
        return;
    }
    if (n < sizeof(f->last_reply)) {
        memcpy(f->last_reply, payload, n);
        f->last_reply_len = n;
    }
    if (f->corrupt_first) {
        f->corrupt_first = false;
        out[len - 1] = out[len - 1] == '0' ? '1' : '0';
    }
    fake_send_raw(f, out, len);
}

static void fake_replys(fake_t *f, const char *s)
{
    fake_reply(f, s, strlen(s));
}

static bool fake_has_bp(fake_t *f, uint64_t a)
{
    int i;

    for (i = 0; i < f->nbps; i++) {
        if (f->bps[i] == a) {
            return true;
        }
    }
    return false;
}

static void fake_le(char *out, uint64_t v, unsigned bytes)
{
    uint8_t b[8];
    unsigned i;

    for (i = 0; i < bytes; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    gpm__hex_encode(b, bytes, out);
}

static void fake_xfer(fake_t *f, const char *args)
{
    char name[64];
    unsigned long off = 0, len = 0;
    char core[4096];
    const char *doc;
    size_t dlen, n;
    char reply[4200];
    unsigned i;

    if (sscanf(args, "%63[^:]:%lx,%lx", name, &off, &len) != 3) {
        fake_replys(f, "E01");
        return;
    }
    if (strcmp(name, "target.xml") == 0) {
        doc = fake_target_xml;
    } else if (strcmp(name, "core.xml") == 0) {
        size_t o = (size_t)snprintf(core, sizeof(core), "<feature>");

        for (i = 0; i < NREGS; i++) {
            o += (size_t)snprintf(core + o, sizeof(core) - o,
                                  "<reg name=\"%s\" bitsize=\"%u\"/>",
                                  reg_name(i), reg_bytes(i) * 8);
            if (i == 23) {
                o += (size_t)snprintf(core + o, sizeof(core) - o,
                                      "<!-- <reg name=\"orig_rax\" "
                                      "bitsize=\"64\"/> -->");
            }
        }
        snprintf(core + o, sizeof(core) - o, "</feature>");
        doc = core;
    } else {
        fake_replys(f, "E00");
        return;
    }
    dlen = strlen(doc);
    if (off >= dlen) {
        fake_replys(f, "l");
        return;
    }
    /* Small chunks, so the client has to loop. */
    n = dlen - off < 100 ? dlen - off : 100;
    if (n > len) {
        n = len;
    }
    reply[0] = off + n >= dlen ? 'l' : 'm';
    memcpy(reply + 1, doc + off, n);
    fake_reply(f, reply, n + 1);
}

static void fake_stop(fake_t *f, int sig)
{
    char r[32];

    f->running = false;
    snprintf(r, sizeof(r), "T%02xthread:01;", sig);
    fake_replys(f, r);
}

/* The guest "runs" after 'c': maybe straight into a hypercall. */
static void fake_continue(fake_t *f)
{
    f->n_c++;
    if (f->exit_on_continue) {
        fake_replys(f, "W00");
        return;
    }
    if (f->eof_on_continue) {
        shutdown(f->fd, SHUT_RDWR);
        return;
    }
    f->running = true;
    if (f->stop_at && fake_has_bp(f, f->stop_at)) {
        f->regs[REG_RIP] = f->stop_at;
        f->stop_at = 0;
        fake_stop(f, 5);
        return;
    }
    if (f->hypercalls_left > 0 && fake_has_bp(f, HC_ADDR)) {
        f->hypercalls_left--;
        f->regs[REG_RIP] = HC_ADDR;
        f->regs[0] = GPM_HC_MAGIC;
        f->regs[1] = GPM_HC_OP_STOP;
        f->regs[2] = 12345;
        f->regs[REG_CS] = f->hc_cs;
        fake_stop(f, 5);
    }
}

static void fake_packet(fake_t *f, const char *p, size_t n)
{
    char r[1024];
    unsigned i;
    size_t o;
    uint64_t a, v;
    unsigned long num;

    if (f->running) {
        f->violations++;
    }
    if (strncmp(p, "qSupported", 10) == 0) {
        fake_replys(f, f->no_xfer ? "PacketSize=1000"
                                  : "PacketSize=1000;qXfer:features:read+");
    } else if (strcmp(p, "?") == 0) {
        fake_replys(f, "T05thread:01;");
    } else if (strncmp(p, "qXfer:features:read:", 20) == 0 && !f->no_xfer) {
        fake_xfer(f, p + 20);
    } else if (strcmp(p, "g") == 0) {
        f->n_g++;
        for (i = 0, o = 0; i < NREGS; i++) {
            fake_le(r + o, f->regs[i], reg_bytes(i));
            o += 2 * reg_bytes(i);
        }
        fake_reply(f, r, o);
    } else if (p[0] == 'p') {
        num = strtoul(p + 1, NULL, 16);
        if (num >= NREGS) {
            fake_replys(f, "E45");
            return;
        }
        fake_le(r, f->regs[num], reg_bytes((unsigned)num));
        fake_reply(f, r, 2 * reg_bytes((unsigned)num));
    } else if (p[0] == 'P') {
        uint8_t b[8] = {0};
        const char *eq = strchr(p, '=');

        num = strtoul(p + 1, NULL, 16);
        f->n_P++;
        if (!eq || num >= NREGS ||
            gpm__hex_decode(eq + 1, strlen(eq + 1), b) < 0) {
            fake_replys(f, "E01");
            return;
        }
        f->n_P_rip += num == REG_RIP;
        memcpy(&v, b, 8);
        f->regs[num] = v;
        fake_replys(f, "OK");
    } else if (p[0] == 'Z' || p[0] == 'z') {
        a = strtoull(p + 3, NULL, 16);
        if (p[0] == 'Z') {
            f->n_Z++;
            if (!fake_has_bp(f, a) && f->nbps < 16) {
                f->bps[f->nbps++] = a;
            }
        } else {
            f->n_z++;
            for (i = 0; i < (unsigned)f->nbps; i++) {
                if (f->bps[i] == a) {
                    f->bps[i] = f->bps[--f->nbps];
                    break;
                }
            }
        }
        fake_replys(f, "OK");
    } else if (p[0] == 's') {
        f->n_s++;
        if (fake_has_bp(f, f->regs[REG_RIP])) {
            f->violations++; /* QEMU would stop here again at once */
        }
        f->regs[REG_RIP] += 2;
        fake_stop(f, 5);
    } else if (p[0] == 'm') {
        fake_replys(f, "E14");
    } else if (p[0] == 'D') {
        f->n_D++;
        fake_replys(f, "OK");
    } else {
        fake_reply(f, "", 0);
    }
    (void)n;
}

static void fake_dispatch(fake_t *f, const char *p, size_t n)
{
    if (p[0] == 'c') {
        if (n > 1) {
            f->last_c_addr = strtoull(p + 1, NULL, 16);
            f->c_addr_seen = f->last_c_addr;
            f->regs[REG_RIP] = f->last_c_addr;
        } else {
            f->last_c_addr = 0;
        }
        if (f->running) {
            f->violations++;
        }
        fake_continue(f);
        return;
    }
    fake_packet(f, p, n);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    gpm__rsp_parser_t p;
    uint8_t *raw = malloc(65536);
    char *dec = malloc(65537);
    bool first = true;

    f->fd = accept(f->lfd, NULL, NULL);
    gpm__rsp_parser_init(&p, raw, 65536);
    while (f->fd >= 0) {
        struct pollfd pfd = {f->fd, POLLIN, 0};
        uint8_t buf[4096];
        ssize_t r;
        ssize_t i;

        pthread_mutex_lock(&f->lock);
        if (f->quit) {
            pthread_mutex_unlock(&f->lock);
            break;
        }
        pthread_mutex_unlock(&f->lock);
        if (poll(&pfd, 1, 20) <= 0) {
            continue;
        }
        r = recv(f->fd, buf, sizeof(buf), 0);
        if (r <= 0) {
            break;
        }
        pthread_mutex_lock(&f->lock);
        for (i = 0; i < r; i++) {
            gpm__rsp_kind_t k;
            size_t len;

            if (f->silent) {
                continue;
            }
            if (p.state == GPM__RSP_IDLE && buf[i] == 0x03) {
                f->n_interrupts++;
                if (f->running) {
                    fake_stop(f, 2);
                }
                continue;
            }
            if (f->running && p.state == GPM__RSP_IDLE && buf[i] != '+') {
                f->violations++;
            }
            gpm__rsp_parse(&p, buf + i, 1, &k);
            if (k == GPM__RSP_NAK) {
                uint8_t out[8192];
                size_t n2 = gpm__rsp_frame((uint8_t *)f->last_reply,
                                           f->last_reply_len, out, sizeof(out));

                fake_send_raw(f, out, n2);
            } else if (k == GPM__RSP_PACKET) {
                if (first && f->nak_first) {
                    first = false;
                    fake_send_raw(f, "-", 1);
                    continue;
                }
                first = false;
                fake_send_raw(f, "+", 1);
                if (gpm__rsp_decode(p.buf, p.len, (uint8_t *)dec, 65536, &len) <
                    0) {
                    f->violations++;
                    continue;
                }
                dec[len] = '\0';
                fake_dispatch(f, dec, len);
            }
        }
        pthread_mutex_unlock(&f->lock);
    }
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    free(raw);
    free(dec);
    return NULL;
}

static fake_t *fake_new(void)
{
    fake_t *f = calloc(1, sizeof(*f));
    struct sockaddr_un sa;

    pthread_mutex_init(&f->lock, NULL);
    snprintf(f->path, sizeof(f->path), "/tmp/gpm-fake-%d-%p.sock", getpid(),
             (void *)f);
    unlink(f->path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, f->path);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 1), 0);
    f->fd = -1;
    f->hc_cs = 0x33;
    f->regs[REG_RIP] = 0xffffffff81000000ull;
    f->regs[REG_CS] = 0x10;
    f->regs[29] = 0x1000;
    return f;
}

static void fake_run(fake_t *f)
{
    assert_int_equal(pthread_create(&f->thr, NULL, fake_main, f), 0);
}

static void fake_free(fake_t *f)
{
    pthread_mutex_lock(&f->lock);
    f->quit = true;
    pthread_mutex_unlock(&f->lock);
    /* Unblock accept() if nobody connected. */
    shutdown(f->lfd, SHUT_RDWR);
    pthread_join(f->thr, NULL);
    close(f->lfd);
    unlink(f->path);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static gpm_qemu_host_t *host_new_arch(fake_t *f, gpm_manager_t *m, int tmo_ms,
                                      gpm_arch_t arch)
{
    gpm_qemu_host_config_t cfg;
    gpm_qemu_host_t *h = NULL;

    memset(&cfg, 0, sizeof(cfg));
    cfg.gdb_socket_path = f->path;
    cfg.arch = arch;
    cfg.manager = m;
    cfg.timeout_ms = tmo_ms;
    assert_int_equal(gpm_qemu_host_new(&cfg, &h), 0);
    return h;
}

static gpm_qemu_host_t *host_new(fake_t *f, gpm_manager_t *m, int tmo_ms)
{
    return host_new_arch(f, m, tmo_ms, GPM_ARCH_X86_64);
}

static bool wait_for(gpm_qemu_host_t *h, uint64_t hypercalls,
                     uint64_t unhandled)
{
    int i;

    for (i = 0; i < 500; i++) {
        gpm_qemu_host_stats_t st;

        gpm_qemu_host_stats(h, &st);
        if (st.hypercalls >= hypercalls && st.hc_unhandled >= unhandled &&
            st.running) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

static void test_hypercalls(void **state)
{
    fake_t *f = fake_new();
    gpm_manager_t *m = NULL;
    gpm_qemu_host_t *h;
    gpm_qemu_host_stats_t st;

    (void)state;
    assert_int_equal(gpm_manager_new(NULL, &m), 0);
    f->hypercalls_left = 50;
    fake_run(f);
    h = host_new(f, m, 2000);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_int_equal(gpm_qemu_host_start(h), GPM_EBUSY);
    assert_true(wait_for(h, 50, 0));
    assert_int_equal(gpm_qemu_host_reg_number(h, "cr3"), 29);
    assert_int_equal(gpm_qemu_host_reg_number(h, "orig_rax"), GPM_ENOENT);
    gpm_qemu_host_stats(h, &st);
    assert_int_equal(st.hypercalls, 50);
    assert_int_equal(st.hc_unhandled, 0);
    assert_int_equal(st.steps, 0);
    pthread_mutex_lock(&f->lock);
    /* STOP on an unknown channel: EBADF in RAX, RIP past the CPUID. */
    assert_int_equal(f->regs[0], (uint64_t)(int64_t)GPM_HC_EBADF);
    assert_int_equal(f->last_c_addr, HC_ADDR + 2);
    assert_int_equal(f->n_P_rip, 0);
    assert_int_equal(f->n_P, 50);
    assert_int_equal(f->n_g, 51); /* one more at connection */
    assert_int_equal(f->violations, 0);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gpm_qemu_host_close(h), 0);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->n_D, 1);
    assert_int_equal(f->nbps, 0);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gpm_qemu_host_pause(h, NULL), GPM_ECONNRESET);
    gpm_qemu_host_free(h);
    fake_free(f);
    gpm_manager_free(m);
}

/*
 * A stub without target descriptions (QEMU's MIPS gdbstub answers
 * qSupported without qXfer:features and qXfer with ""): an arch whose
 * row has a built-in layout starts with it; another is refused. The
 * MIPS walker's inputs are constants the host is given, not registers.
 */
static void test_builtin_target_description(void **state)
{
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;
    const uint64_t in[3] = {0x810f27c0 - 0x80000000, 0, 0};

    (void)state;
    f->no_xfer = true;
    fake_run(f);
    h = host_new_arch(f, NULL, 2000, GPM_ARCH_MIPSEL);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_int_equal(gpm_qemu_host_reg_number(h, "pc"), 37);
    assert_int_equal(gpm_qemu_host_reg_number(h, "status"), 32);
    assert_int_equal(gpm_qemu_host_reg_number(h, "r29"), 29);
    assert_int_equal(gpm_qemu_host_reg_number(h, "fir"), 71);
    assert_int_equal(gpm_qemu_host_reg_number(h, "cr3"), GPM_ENOENT);
    assert_int_equal(gpm_qemu_host_set_mmu_inputs(h, in, 2), GPM_EINVAL);
    assert_int_equal(gpm_qemu_host_set_mmu_inputs(h, in, 1), 0);
    assert_int_equal(gpm_qemu_host_close(h), 0);
    gpm_qemu_host_free(h);
    fake_free(f);

    /* x86_64 has no built-in layout: the stub must serve target.xml. */
    f = fake_new();
    f->no_xfer = true;
    fake_run(f);
    h = host_new(f, NULL, 2000);
    assert_int_equal(gpm_qemu_host_start(h), GPM_ENOSYS);
    assert_int_equal(gpm_qemu_host_set_mmu_inputs(h, in, 1), GPM_EINVAL);
    gpm_qemu_host_free(h);
    fake_free(f);
}

static void test_unhandled_steps_off(void **state)
{
    fake_t *f = fake_new();
    gpm_manager_t *m = NULL;
    gpm_qemu_host_t *h;

    (void)state;
    assert_int_equal(gpm_manager_new(NULL, &m), 0);
    f->hypercalls_left = 3;
    f->hc_cs = 0x10; /* kernel mode: not a hypercall */
    fake_run(f);
    h = host_new(f, m, 2000);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_true(wait_for(h, 0, 3));
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->n_s, 3);
    assert_int_equal(f->regs[0], GPM_HC_MAGIC); /* untouched */
    assert_true(fake_has_bp(f, HC_ADDR));       /* inserted again */
    assert_int_equal(f->n_Z, 1 + 3);
    assert_int_equal(f->n_z, 3);
    assert_int_equal(f->violations, 0);
    pthread_mutex_unlock(&f->lock);
    gpm_qemu_host_free(h);
    fake_free(f);
    gpm_manager_free(m);
}

static int bp_cb_count;

static int count_cb(gpm_qemu_host_t *h, const gpm_host_ops_t *ops, void *cpu,
                    uint64_t pc, void *opaque)
{
    uint64_t v = 0;

    (void)h;
    (void)pc;
    assert_int_equal(ops->read_reg(cpu, 29, &v), 0);
    assert_int_equal(v, 0x1000);
    bp_cb_count += *(int *)opaque;
    return GPM_QEMU_STOP_CONTINUE;
}

static int call_cb(gpm_qemu_host_t *h, const gpm_host_ops_t *ops, void *cpu,
                   void *opaque)
{
    (void)h;
    (void)opaque;
    return ops->write_reg(cpu, 4, 0xabcdef);
}

static void test_pause_regs_resume(void **state)
{
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;
    uint64_t pc = 0, v = 0;
    int one = 1;

    (void)state;
    fake_run(f);
    h = host_new(f, NULL, 2000);
    assert_int_equal(gpm_qemu_host_pause(h, &pc), GPM_EINVAL);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_int_equal(gpm_qemu_host_wait_paused(h, 50, NULL), GPM_ETIMEDOUT);
    assert_int_equal(gpm_qemu_host_pause(h, &pc), 0);
    assert_int_equal(pc, 0xffffffff81000000ull);
    assert_int_equal(gpm_qemu_host_wait_paused(h, 0, &pc), 0);
    assert_int_equal(gpm_qemu_host_read_reg(h, 29, &v), 0);
    assert_int_equal(v, 0x1000);
    assert_int_equal(gpm_qemu_host_read_reg(h, 17, &v), 0);
    assert_int_equal(gpm_qemu_host_read_reg(h, 99, &v), GPM_EINVAL);
    assert_int_equal(gpm_qemu_host_write_reg(h, 3, 0x1122334455667788ull), 0);
    assert_int_equal(gpm_qemu_host_write_reg(h, 17, 0x1ffffffffull), 0);
    assert_int_equal(gpm_qemu_host_read_reg(h, 17, &v), 0);
    assert_int_equal(v, 0xffffffffu);
    assert_int_equal(gpm_qemu_host_add_breakpoint(h, 0x5000, count_cb, &one),
                     0);
    assert_int_equal(gpm_qemu_host_add_breakpoint(h, 0x5000, NULL, NULL),
                     GPM_EEXIST);
    assert_int_equal(gpm_qemu_host_add_breakpoint(h, HC_ADDR, NULL, NULL),
                     GPM_EEXIST);
    assert_int_equal(gpm_qemu_host_remove_breakpoint(h, HC_ADDR), GPM_ENOENT);
    assert_int_equal(gpm_qemu_host_read_virt(h, 0x1000, &v, 8), GPM_EFAULT);
    assert_int_equal(gpm_qemu_host_write_virt(h, 0x1000, &v, 8), GPM_ENOSYS);
    assert_int_equal(gpm_qemu_host_read_phys(h, 0, &v, 8), GPM_ENOSYS);
    assert_int_equal(gpm_qemu_host_call(h, call_cb, NULL), 0);
    assert_int_equal(gpm_qemu_host_resume(h), 0);
    /* The writes reach the target before it runs. */
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->regs[3], 0x1122334455667788ull);
    assert_int_equal(f->regs[17], 0xffffffffu);
    assert_int_equal(f->regs[4], 0xabcdef);
    assert_true(f->running);
    pthread_mutex_unlock(&f->lock);
    /* While running, a request interrupts, is served, and resumes. */
    assert_int_equal(gpm_qemu_host_read_reg(h, 3, &v), 0);
    assert_int_equal(v, 0x1122334455667788ull);
    pthread_mutex_lock(&f->lock);
    assert_true(f->n_interrupts >= 1);
    assert_int_equal(f->violations, 0);
    pthread_mutex_unlock(&f->lock);
    /* A breakpoint with a callback that continues: stepped off. */
    assert_int_equal(gpm_qemu_host_pause(h, NULL), 0);
    pthread_mutex_lock(&f->lock);
    f->stop_at = 0x5000;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gpm_qemu_host_resume(h), 0);
    assert_int_equal(gpm_qemu_host_pause(h, &pc), 0);
    assert_int_equal(bp_cb_count, 1);
    /* Paused either at the stop itself or after stepping off it. */
    assert_true(pc == 0x5000 || pc == 0x5002);
    /* A breakpoint without a callback pauses the guest. */
    assert_int_equal(gpm_qemu_host_add_breakpoint(h, 0x6000, NULL, NULL), 0);
    pthread_mutex_lock(&f->lock);
    f->stop_at = 0x6000;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gpm_qemu_host_resume(h), 0);
    assert_int_equal(gpm_qemu_host_wait_paused(h, 2000, &pc), 0);
    assert_int_equal(pc, 0x6000);
    /* Resuming from it steps off first. */
    assert_int_equal(gpm_qemu_host_resume(h), 0);
    assert_int_equal(gpm_qemu_host_pause(h, &pc), 0);
    assert_int_equal(pc, 0x6002);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->violations, 0);
    assert_true(fake_has_bp(f, 0x6000));
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gpm_qemu_host_remove_breakpoint(h, 0x5000), 0);
    assert_int_equal(gpm_qemu_host_remove_breakpoint(h, 0x5000), GPM_ENOENT);
    gpm_qemu_host_free(h);
    fake_free(f);
}

/* What the linjector does at entry_SYSCALL_64: emulate swapgs, skip it. */
static int swapgs_cb(gpm_qemu_host_t *h, const gpm_host_ops_t *ops, void *cpu,
                     uint64_t pc, void *opaque)
{
    uint64_t gs = 0, kgs = 0;

    (void)opaque;
    assert_int_equal(ops->read_reg(cpu, 25, &gs), 0);
    assert_int_equal(ops->read_reg(cpu, 26, &kgs), 0);
    assert_int_equal(ops->write_reg(cpu, 25, kgs), 0);
    assert_int_equal(ops->write_reg(cpu, 26, gs), 0);
    assert_int_equal(ops->write_reg(cpu, 16, pc + 3), 0);
    /* Disarm from inside the callback: runs at once on this thread. */
    assert_int_equal(gpm_qemu_host_remove_breakpoint(h, pc), 0);
    return GPM_QEMU_STOP_CONTINUE;
}

static void test_callback_moves_pc(void **state)
{
    const uint64_t entry = 0xffffffff81c00080ull;
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;
    uint64_t pc = 0;

    (void)state;
    f->regs[25] = 0;
    f->regs[26] = 0xffff88801f400000ull;
    fake_run(f);
    h = host_new(f, NULL, 2000);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_int_equal(gpm_qemu_host_pause(h, NULL), 0);
    assert_int_equal(gpm_qemu_host_add_breakpoint(h, entry, swapgs_cb, NULL),
                     0);
    pthread_mutex_lock(&f->lock);
    f->stop_at = entry;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(gpm_qemu_host_resume(h), 0);
    /* The fake stops at entry at once; the callback runs before the pause
     * is served, so the paused pc is already past the swapgs. */
    assert_int_equal(gpm_qemu_host_pause(h, &pc), 0);
    assert_int_equal(pc, entry + 3);
    assert_int_equal(gpm_qemu_host_resume(h), 0);
    assert_int_equal(gpm_qemu_host_pause(h, NULL), 0);
    pthread_mutex_lock(&f->lock);
    /*
     * Registers swapped, no step, 'c ADDR' used, breakpoint removed. The
     * host may continue from the callback's stop before the pause above
     * is queued, and the resume after it is then a plain 'c': the 'c ADDR'
     * must have been sent, not necessarily last.
     */
    assert_int_equal(f->regs[25], 0xffff88801f400000ull);
    assert_int_equal(f->regs[26], 0);
    assert_int_equal(f->c_addr_seen, entry + 3);
    assert_int_equal(f->n_s, 0);
    assert_false(fake_has_bp(f, entry));
    assert_int_equal(f->violations, 0);
    pthread_mutex_unlock(&f->lock);
    gpm_qemu_host_free(h);
    fake_free(f);
}

static void test_checksum_errors(void **state)
{
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;
    gpm_qemu_host_stats_t st;

    (void)state;
    f->corrupt_first = true;
    f->nak_first = true;
    fake_run(f);
    h = host_new(f, NULL, 2000);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    gpm_qemu_host_stats(h, &st);
    assert_int_equal(st.retransmits, 1);
    assert_int_equal(gpm_qemu_host_pause(h, NULL), 0);
    gpm_qemu_host_free(h);
    fake_free(f);
}

static void test_peer_gone(void **state)
{
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;

    (void)state;
    f->eof_on_continue = true;
    fake_run(f);
    h = host_new(f, NULL, 1000);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_int_equal(gpm_qemu_host_wait_paused(h, 2000, NULL), GPM_ECONNRESET);
    assert_int_equal(gpm_qemu_host_pause(h, NULL), GPM_ECONNRESET);
    assert_int_equal(gpm_qemu_host_close(h), 0);
    gpm_qemu_host_free(h);
    fake_free(f);
}

static void test_target_exits(void **state)
{
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;
    gpm_qemu_host_stats_t st;
    uint64_t v;

    (void)state;
    f->exit_on_continue = true;
    fake_run(f);
    h = host_new(f, NULL, 1000);
    assert_int_equal(gpm_qemu_host_start(h), 0);
    assert_int_equal(gpm_qemu_host_wait_paused(h, 2000, NULL), GPM_ECONNRESET);
    assert_int_equal(gpm_qemu_host_read_reg(h, 0, &v), GPM_ECONNRESET);
    gpm_qemu_host_stats(h, &st);
    assert_false(st.connected);
    gpm_qemu_host_free(h);
    fake_free(f);
}

static void test_silent_peer_times_out(void **state)
{
    fake_t *f = fake_new();
    gpm_qemu_host_t *h;

    (void)state;
    f->silent = true;
    fake_run(f);
    h = host_new(f, NULL, 200);
    assert_int_equal(gpm_qemu_host_start(h), GPM_ETIMEDOUT);
    assert_int_equal(gpm_qemu_host_pause(h, NULL), GPM_ECONNRESET);
    gpm_qemu_host_free(h);
    fake_free(f);
}

static void test_bad_config(void **state)
{
    gpm_qemu_host_config_t cfg;
    gpm_qemu_host_t *h = NULL;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(gpm_qemu_host_new(&cfg, &h), GPM_EINVAL);
    cfg.gdb_socket_path = "/nonexistent";
    /* An arch without a backend (csrc/arch) is refused. */
    cfg.arch = GPM_ARCH_PPC;
    assert_int_equal(gpm_qemu_host_new(&cfg, &h), GPM_EINVAL);
    cfg.arch = (gpm_arch_t)GPM_ARCH_COUNT;
    assert_int_equal(gpm_qemu_host_new(&cfg, &h), GPM_EINVAL);
    cfg.arch = GPM_ARCH_X86_64;
    cfg.ram_path = "/nonexistent";
    assert_int_equal(gpm_qemu_host_new(&cfg, &h), GPM_EINVAL);
    cfg.ram_size = 4096;
    assert_int_equal(gpm_qemu_host_new(&cfg, &h), 0);
    assert_int_equal(gpm_qemu_host_start(h), GPM_ENOENT);
    gpm_qemu_host_free(h);
    gpm_qemu_host_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hypercalls),
        cmocka_unit_test(test_builtin_target_description),
        cmocka_unit_test(test_unhandled_steps_off),
        cmocka_unit_test(test_pause_regs_resume),
        cmocka_unit_test(test_callback_moves_pc),
        cmocka_unit_test(test_checksum_errors),
        cmocka_unit_test(test_peer_gone),
        cmocka_unit_test(test_target_exits),
        cmocka_unit_test(test_silent_peer_times_out),
        cmocka_unit_test(test_bad_config),
    };

    bp_cb_count = 0;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
