/*
 * A C caller of cyrsync's global write barrier, using only include/cyrsync.h
 * and the link line README.md documents. It uses the barrier the way a
 * patched Cyrus does: the process-global barrier entered and left around
 * exclusive locks (mboxname_lock / mboxname_release), a depth check where
 * the command loop asserts nothing is held, a fork while inside, and a
 * freeze/thaw around a callback (mboxname_run_with_lock).
 *
 * usage: barrier_client LOCKDIR       prints "ok" and exits 0 on success
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cyrsync.h"

static int failures = 0;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "CHECK failed at line %d: %s\n", __LINE__, #cond); \
    failures++; } } while (0)

static void on_log(void *ud, int level, const char *msg, size_t len)
{
    (void)ud;
    CHECK(strlen(msg) == len);
    fprintf(stderr, "log[%d]: %s\n", level, msg);
}

/* mboxname_run_with_lock, on the process-global barrier. */
static int run_with_lock(int (*cb)(void *), void *rock)
{
    const cyrsync_barrier *g = cyrsync_barrier_global();
    cyrsync_barrier_frozen *frozen = NULL;
    cyrsync_status s;
    int r;

    if (!g) return -1;
    s = cyrsync_barrier_freeze(g, 5000, &frozen);
    if (s != CYRSYNC_STATUS_OK) {
        fprintf(stderr, "freeze: %s\n", cyrsync_status_str(s));
        return -1;
    }
    r = cb(rock);
    s = cyrsync_barrier_thaw(g, frozen);   /* consumes frozen */
    if (s != CYRSYNC_STATUS_OK) {
        fprintf(stderr, "inconsistent: %s\n", cyrsync_status_str(s));
        return -1;
    }
    return r;
}

static int snapshot(void *rock)
{
    cyrsync_barrier_state st;
    (void)rock;
    CHECK(cyrsync_barrier_status(cyrsync_barrier_global(), &st) == CYRSYNC_STATUS_OK);
    CHECK(st.frozen && st.freezer_alive && !st.expired);
    CHECK(st.freezer_pid == (uint32_t)getpid());
    CHECK(st.inside_slots == 0);
    return 0;
}

int main(int argc, char **argv)
{
    cyrsync_barrier *other = NULL;
    pid_t pid;
    int status;

    if (argc != 2) {
        fprintf(stderr, "usage: barrier_client LOCKDIR\n");
        return 2;
    }
    CHECK(cyrsync_set_log_callback(on_log, NULL, CYRSYNC_LOG_DEBUG) == CYRSYNC_STATUS_OK);

    CHECK(cyrsync_barrier_global_enter() == CYRSYNC_STATUS_BAD_STATE);
    CHECK(cyrsync_barrier_global_init(argv[1], 0) == CYRSYNC_STATUS_OK);

    /* mboxname_lock(..., LOCK_EXCLUSIVE) twice, then release both. */
    CHECK(cyrsync_barrier_global_enter() == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_barrier_global_enter() == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_barrier_global_depth() == 2);

    /* fork while inside: the child does not hold the barrier. */
    pid = fork();
    if (pid == 0) {
        int bad = 0;
        bad |= cyrsync_barrier_global_depth() != 0;
        bad |= cyrsync_barrier_global_leave() != CYRSYNC_STATUS_BARRIER_NOT_HELD;
        bad |= cyrsync_barrier_global_enter() != CYRSYNC_STATUS_OK;
        bad |= cyrsync_barrier_global_leave() != CYRSYNC_STATUS_OK;
        _exit(bad);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* A freeze by another handle cannot drain while we are inside. */
    CHECK(cyrsync_barrier_open(argv[1], 0, &other) == CYRSYNC_STATUS_OK);
    {
        cyrsync_barrier_frozen *f = NULL;
        CHECK(cyrsync_barrier_freeze(other, 100, &f) == CYRSYNC_STATUS_BARRIER_DRAIN_TIMEOUT);
        CHECK(f == NULL);
    }
    /* Nor may the process freeze what it holds (Cyrus: IMAP_MAILBOX_LOCKED). */
    {
        cyrsync_barrier_frozen *f = NULL;
        CHECK(cyrsync_barrier_freeze(cyrsync_barrier_global(), 100, &f)
              == CYRSYNC_STATUS_BARRIER_HELD);
    }

    CHECK(cyrsync_barrier_global_leave() == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_barrier_global_leave() == CYRSYNC_STATUS_OK);
    /* The command loop's "nothing held" assertion. */
    CHECK(cyrsync_barrier_global_depth() == 0);

    CHECK(run_with_lock(snapshot, NULL) == 0);
    cyrsync_barrier_free(other);

    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
