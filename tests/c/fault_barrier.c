/*
 * A C driver for the barrier's fault and damage tests
 * (tests/abi/tests/barrier_faults.rs): each mode does one thing through the
 * C API and prints what it got, so a test can run it under the fault
 * interposer, on a full tmpfs, or as one of several real processes.
 *
 * usage: fault_barrier MODE LOCKDIR [ARG]
 *   open DIR [SLOTS]    open (creating with SLOTS slots), enter, leave;
 *                       prints "open=<status>" and exits 0 (3 if enter failed)
 *   pages DIR N         open N handles in this process (each takes a slot,
 *                       so the first store to every slot page happens),
 *                       enter and leave each; prints "pages=<status> n=<k>"
 *   hold DIR [SLOTS]    open, enter, print "inside", wait for a line on
 *                       stdin, leave, print "left", wait for EOF, exit 0
 *   write DIR           open, then enter/leave in a tight loop until killed
 *   closefrom DIR       the global barrier: init, enter, then close every
 *                       descriptor above 2 (as a host's closefrom does) and
 *                       reuse their numbers for /dev/null; print "closed",
 *                       wait for a line on stdin, leave, freeze, thaw, free;
 *                       print "after leave=<s> freeze=<s> thaw=<s> reused=<ok|lost>"
 *   freeze DIR MS       open, freeze (bound 5 s), sleep MS, thaw; prints
 *                       "freeze=<status> thaw=<status>"
 *   inspect DIR         cyrsync_barrier_inspect (read-only); prints
 *                       "inspect=<status> slots=<n> live=<n>"
 *   setuid UID MODE DIR ...   drop to UID, then MODE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cyrsync.h"

static void on_log(void *ud, int level, const char *msg, size_t len)
{
    (void)ud;
    (void)len;
    fprintf(stderr, "log[%d]: %s\n", level, msg);
}

static void wait_line(void)
{
    char buf[64];
    if (!fgets(buf, sizeof buf, stdin)) return;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static int run(int argc, char **argv)
{
    const char *mode = argv[1], *dir = argv[2];
    cyrsync_barrier *b = NULL;
    cyrsync_status s;

    if (!strcmp(mode, "setuid") && argc >= 5) {
        if (setgid((gid_t)atoi(argv[2])) || setuid((uid_t)atoi(argv[2]))) {
            perror("setuid");
            return 2;
        }
        return run(argc - 2, argv + 2);
    }
    if (!strcmp(mode, "open")) {
        unsigned slots = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
        s = cyrsync_barrier_open_slots(dir, 0, slots, &b);
        printf("open=%u\n", s);
        if (s != CYRSYNC_STATUS_OK) return 0;
        if (cyrsync_barrier_enter(b) != CYRSYNC_STATUS_OK) return 3;
        if (cyrsync_barrier_leave(b) != CYRSYNC_STATUS_OK) return 3;
        cyrsync_barrier_free(b);
        return 0;
    }
    if (!strcmp(mode, "pages") && argc > 3) {
        int n = atoi(argv[3]), k;
        cyrsync_barrier **h = calloc((size_t)n, sizeof *h);
        s = CYRSYNC_STATUS_OK;
        for (k = 0; k < n; k++) {
            s = cyrsync_barrier_open(dir, 0, &h[k]);
            if (s != CYRSYNC_STATUS_OK) break;
            if ((s = cyrsync_barrier_enter(h[k])) != CYRSYNC_STATUS_OK) break;
            if ((s = cyrsync_barrier_leave(h[k])) != CYRSYNC_STATUS_OK) break;
        }
        printf("pages=%u n=%d\n", s, k);
        for (int i = 0; i < n; i++) cyrsync_barrier_free(h[i]);
        free(h);
        return 0;
    }
    if (!strcmp(mode, "hold")) {
        unsigned slots = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
        s = cyrsync_barrier_open_slots(dir, 60000, slots, &b);
        if (s != CYRSYNC_STATUS_OK) { printf("open=%u\n", s); return 1; }
        s = cyrsync_barrier_enter(b);
        printf("inside=%u\n", s);
        fflush(stdout);
        wait_line();
        s = cyrsync_barrier_leave(b);
        printf("left=%u\n", s);
        fflush(stdout);
        wait_line();
        cyrsync_barrier_free(b);
        return 0;
    }
    if (!strcmp(mode, "write")) {
        s = cyrsync_barrier_open(dir, 60000, &b);
        if (s != CYRSYNC_STATUS_OK) { printf("open=%u\n", s); return 1; }
        printf("writing\n");
        fflush(stdout);
        for (;;) {
            if (cyrsync_barrier_enter(b) != CYRSYNC_STATUS_OK) return 3;
            for (volatile int i = 0; i < 200; i++) {}
            if (cyrsync_barrier_leave(b) != CYRSYNC_STATUS_OK) return 3;
        }
    }
    if (!strcmp(mode, "closefrom")) {
        cyrsync_barrier_frozen *f = NULL;
        cyrsync_status sl, sf, st = 0;
        int reused = -1;
        s = cyrsync_barrier_global_init(dir, 60000);
        if (s != CYRSYNC_STATUS_OK) { printf("init=%u\n", s); return 1; }
        if (cyrsync_barrier_global_enter() != CYRSYNC_STATUS_OK) return 3;
        for (int fd = 3; fd < 1024; fd++) close(fd);
        /* the host reuses the numbers for files of its own */
        for (int i = 0; i < 8; i++) {
            int fd = open("/dev/null", O_RDONLY);
            if (i == 0) reused = fd;
        }
        printf("closed\n");
        fflush(stdout);
        wait_line();
        sl = cyrsync_barrier_global_leave();
        sf = cyrsync_barrier_freeze(cyrsync_barrier_global(), 5000, &f);
        if (sf == CYRSYNC_STATUS_OK) st = cyrsync_barrier_thaw(cyrsync_barrier_global(), f);
        printf("after leave=%u freeze=%u thaw=%u reused=%s\n", sl, sf, st,
               fcntl(reused, F_GETFD) != -1 ? "ok" : "lost");
        return 0;
    }
    if (!strcmp(mode, "freeze") && argc > 3) {
        cyrsync_barrier_frozen *f = NULL;
        cyrsync_status st = 0;
        s = cyrsync_barrier_open(dir, 0, &b);
        if (s != CYRSYNC_STATUS_OK) { printf("open=%u\n", s); return 1; }
        s = cyrsync_barrier_freeze(b, 5000, &f);
        if (s == CYRSYNC_STATUS_OK) {
            sleep_ms(atol(argv[3]));
            st = cyrsync_barrier_thaw(b, f);
        }
        printf("freeze=%u thaw=%u\n", s, st);
        cyrsync_barrier_free(b);
        return 0;
    }
    if (!strcmp(mode, "inspect")) {
        cyrsync_barrier_state st;
        memset(&st, 0, sizeof st);
        s = cyrsync_barrier_inspect(dir, &st);
        printf("inspect=%u slots=%u live=%u\n", s, st.slot_count, st.live_slots);
        return 0;
    }
    fprintf(stderr, "fault_barrier: bad mode %s\n", mode);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fault_barrier MODE LOCKDIR [ARG]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cyrsync_set_log_callback(on_log, NULL, CYRSYNC_LOG_DEBUG);
    return run(argc, argv);
}
