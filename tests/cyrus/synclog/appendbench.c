/* appendbench.c -- durable sync log appends per second through the
 * sync_log_channel() of the libcyrus_imap it is linked with (vanilla: C's
 * sync_log.c, lock held across fsync; patched: cyrsync, group commit).
 *
 *   appendbench IMAPD_CONF WRITERS SECONDS
 *
 * Forks WRITERS processes that append "APPEND <name>" records to the
 * channel "bench" for SECONDS and prints "appends/s p50_us p99_us".
 * Built and run against vanilla and patched Cyrus by appendbench.sh.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "global.h"
#include "sync_log.h"

void fatal(const char *s, int code)
{
    fprintf(stderr, "appendbench: fatal: %s\n", s);
    exit(code ? code : EX_SOFTWARE);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: appendbench IMAPD_CONF WRITERS SECONDS\n");
        return EX_USAGE;
    }
    int writers = atoi(argv[2]);
    double secs = atof(argv[3]);
    cyrus_init(argv[1], "appendbench", 0, 0);
    sync_log_init();

    char tmpl[] = "/tmp/appendbench-XXXXXX";
    if (!mkdtemp(tmpl)) fatal("mkdtemp", EX_IOERR);
    double start = now_s() + 0.05, stop = start + secs;
    for (int w = 0; w < writers; w++) {
        if (fork() == 0) {
            size_t cap = 1 << 20, n = 0;
            double *lat = malloc(cap * sizeof *lat);
            while (now_s() < start) ;
            for (long j = 0; now_s() < stop && n < cap; j++) {
                char name[64];
                snprintf(name, sizeof name, "user.bench%d.folder%ld", w, j);
                double t = now_s();
                sync_log_channel_append("bench", name);
                lat[n++] = now_s() - t;
            }
            char path[128];
            snprintf(path, sizeof path, "%s/%d", tmpl, w);
            FILE *f = fopen(path, "w");
            fwrite(lat, sizeof *lat, n, f);
            fclose(f);
            _exit(0);
        }
    }
    for (int w = 0; w < writers; w++) wait(NULL);
    size_t total = 0, cap = 1 << 22;
    double *all = malloc(cap * sizeof *all);
    for (int w = 0; w < writers; w++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%d", tmpl, w);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        total += fread(all + total, sizeof *all, cap - total, f);
        fclose(f);
        unlink(path);
    }
    rmdir(tmpl);
    qsort(all, total, sizeof *all, cmp);
    printf("%.0f %.0f %.0f\n", total / secs, total ? all[total / 2] * 1e6 : 0,
           total ? all[(size_t)(total * 0.99)] * 1e6 : 0);
    sync_log_done();
    cyrus_done();
    return 0;
}
