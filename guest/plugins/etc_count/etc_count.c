/*
 * etc_count.c - count the entries of /etc and tell the host.
 *
 * Sends the number of entries of /etc, without "." and "..", as one
 * little-endian u32 on the channel named after the plugin ("etc_count"),
 * then exits. The count equals "ls -A /etc | wc -l". On failure it reports
 * the error with the ERROR hypercall and exits with status 1.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gpm/descriptor.h"
#include "gpm_guest.h"

GPM_PLUGIN_DESCRIPTOR("etc_count", GPM_GUEST_VERSION,
                      "Counts the entries of /etc and sends the count");

static long count_entries(const char *path)
{
    struct dirent *de;
    long n = 0;
    DIR *d;

    d = opendir(path);
    if (!d)
        return -errno;
    for (;;) {
        /* readdir() says end and error apart only through errno. */
        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
    }
    if (errno != 0)
        n = -errno;
    closedir(d);
    return n;
}

int main(void)
{
    unsigned char le[4];
    char msg[128];
    gpm_chan_t chan;
    long n;
    int err;

    err = gpm_channel_open("etc_count", &chan);
    if (err < 0)
        return 2;
    n = count_entries("/etc");
    if (n < 0) {
        snprintf(msg, sizeof(msg), "etc_count: reading /etc: %s",
                 strerror((int)-n));
        gpm_report_error(chan, msg);
        return 1;
    }
    le[0] = (unsigned char)n;
    le[1] = (unsigned char)(n >> 8);
    le[2] = (unsigned char)(n >> 16);
    le[3] = (unsigned char)(n >> 24);
    if (gpm_write(chan, le, sizeof(le)) < 0)
        return 1;
    gpm_channel_stop(chan);
    return 0;
}
