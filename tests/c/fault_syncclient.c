/* One rolling-mode pass of sync_client over cyrsync, as a patched Cyrus
 * makes it, for the crash and full-disk tests (tests/abi/tests/
 * syncclient_faults.rs): cyrsync_syncclient_run_channel (reader, plan,
 * execute, deferral, quarantine, state, end) against a scripted mock
 * target.
 *
 * The target: user "locked" answers LOCKED to everything; UNMAILBOX
 * "shared.bad" fails with an error (a bail-out, quarantined after enough
 * runs); everything else succeeds, and each item synced is appended to
 * REPLICA_FILE as its sync log line ("MAILBOX user.a", "SEEN c user.c"),
 * the replica's record, written before the call returns so that it
 * survives a kill that follows.
 *
 * usage: fault_syncclient CONFIG_DIR CHANNEL REPLICA_FILE POLICY QUARANTINE_AFTER
 * stdout: "status=<name> bailed=B deferred=N quarantined=N"
 * exit: 0 when the pass ran or there was no log, 1 otherwise. */

#define _POSIX_C_SOURCE 200809L

#include "cyrsync.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCKED_CODE (-1904)
#define ERROR_CODE (-1907)

static int replica_fd = -1;

static void log_to_stderr(void *ud, int level, const char *msg, size_t len)
{
    (void)ud;
    fprintf(stderr, "<%d> %.*s\n", level, (int)len, msg);
}

static void synced(const char *word, const char *a, const char *b)
{
    char line[2048];
    int n = snprintf(line, sizeof line, "%s %s%s%s\n", word, a, b ? " " : "",
                     b ? b : "");
    if (n > 0 && write(replica_fd, line, (size_t)n) != n) {
        perror("replica");
        exit(3);
    }
}

/* "user.NAME[.sub]" -> NAME, malloc'ed (cyrsync frees it) */
static char *to_userid(void *ud, const char *name, size_t len)
{
    (void)ud;
    if (len < 6 || strncmp(name, "user.", 5) != 0)
        return NULL;
    size_t n = strcspn(name + 5, ".");
    char *u = malloc(n + 1);
    if (!u)
        return NULL;
    memcpy(u, name + 5, n);
    u[n] = '\0';
    return u;
}

static int is_locked_name(const char *name)
{
    char *u = to_userid(NULL, name, strlen(name));
    int locked = u && strcmp(u, "locked") == 0;
    free(u);
    return locked;
}

static uint32_t mailboxes(void *ud, const cyrsync_name *names, size_t count,
                          uint8_t *done, int *error)
{
    size_t i;
    (void)ud;
    for (i = 0; i < count; i++) {
        if (is_locked_name(names[i].name)) {
            *error = LOCKED_CODE;
            return CYRSYNC_REPLY_LOCKED;
        }
    }
    for (i = 0; i < count; i++) {
        synced("MAILBOX", names[i].name, NULL);
        done[i] = 1;
    }
    return CYRSYNC_REPLY_OK;
}

#define ONE(fn, word, lockedp)                                                \
    static uint32_t fn(void *ud, const char *name, size_t len, int *error)    \
    {                                                                         \
        (void)ud;                                                             \
        (void)len;                                                            \
        if (lockedp) {                                                        \
            *error = LOCKED_CODE;                                             \
            return CYRSYNC_REPLY_LOCKED;                                      \
        }                                                                     \
        if (strcmp(word, "UNMAILBOX") == 0 && strcmp(name, "shared.bad") == 0) { \
            *error = ERROR_CODE;                                              \
            return CYRSYNC_REPLY_ERROR;                                       \
        }                                                                     \
        synced(word, name, NULL);                                             \
        return CYRSYNC_REPLY_OK;                                              \
    }

ONE(quota, "QUOTA", is_locked_name(name))
ONE(annotation, "ANNOTATION", is_locked_name(name))
ONE(unmailbox, "UNMAILBOX", is_locked_name(name))
ONE(meta, "META", strcmp(name, "locked") == 0)
ONE(user, "USER", strcmp(name, "locked") == 0)
ONE(unuser, "UNUSER", strcmp(name, "locked") == 0)

#define TWO(fn, word)                                                         \
    static uint32_t fn(void *ud, const char *u, size_t ulen, const char *m,   \
                       size_t mlen, int *error)                               \
    {                                                                         \
        (void)ud;                                                             \
        (void)ulen;                                                           \
        (void)mlen;                                                           \
        if (strcmp(u, "locked") == 0) {                                       \
            *error = LOCKED_CODE;                                             \
            return CYRSYNC_REPLY_LOCKED;                                      \
        }                                                                     \
        synced(word, u, m);                                                   \
        return CYRSYNC_REPLY_OK;                                              \
    }

TWO(seen, "SEEN")
TWO(sub, "SUB")

static uint32_t restart(void *ud, int *error)
{
    (void)ud;
    (void)error;
    return CYRSYNC_REPLY_OK;
}

/* virtual time: the backoff never really waits */
static void no_sleep(void *ud, uint64_t micros)
{
    (void)ud;
    (void)micros;
}

int main(int argc, char **argv)
{
    struct cyrsync_syncclient_callbacks cbs;
    struct cyrsync_syncclient_results res;
    cyrsync_syncclient_config *cfg = NULL;
    cyrsync_status s;

    if (argc != 6) {
        fprintf(stderr, "usage: %s CONFIG_DIR CHANNEL REPLICA_FILE POLICY "
                        "QUARANTINE_AFTER\n", argv[0]);
        return 2;
    }
    replica_fd = open(argv[3], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (replica_fd < 0) {
        perror(argv[3]);
        return 2;
    }
    cyrsync_set_log_callback(log_to_stderr, NULL, CYRSYNC_LOG_INFO);

    memset(&cbs, 0, sizeof cbs);
    cbs.version = CYRSYNC_SYNCCLIENT_CALLBACKS_VERSION;
    cbs.mailboxes = mailboxes;
    cbs.quota = quota;
    cbs.annotation = annotation;
    cbs.seen = seen;
    cbs.sub = sub;
    cbs.unmailbox = unmailbox;
    cbs.meta = meta;
    cbs.user = user;
    cbs.unuser = unuser;
    cbs.restart = restart;
    cbs.mboxname_to_userid = to_userid;

    if (cyrsync_syncclient_config_new(&cfg) != CYRSYNC_STATUS_OK ||
        cyrsync_syncclient_config_set_policy_name(cfg, argv[4]) != CYRSYNC_STATUS_OK ||
        cyrsync_syncclient_config_set_quarantine_after(cfg, (uint32_t)atoi(argv[5])) != CYRSYNC_STATUS_OK ||
        cyrsync_syncclient_config_set_backoff(cfg, 10, 100, 3, 1000) != CYRSYNC_STATUS_OK ||
        cyrsync_syncclient_config_set_sleep(cfg, no_sleep, NULL) != CYRSYNC_STATUS_OK) {
        fprintf(stderr, "config failed\n");
        return 2;
    }

    memset(&res, 0, sizeof res);
    s = cyrsync_syncclient_run_channel(cfg, &cbs, argv[1], argv[2], &res);
    printf("status=%s bailed=%d deferred=%llu quarantined=%llu\n",
           cyrsync_status_str(s), (int)res.bailed,
           (unsigned long long)res.deferred,
           (unsigned long long)res.quarantined);
    cyrsync_syncclient_config_free(cfg);
    close(replica_fd);
    return s == CYRSYNC_STATUS_OK || s == CYRSYNC_STATUS_AGAIN ? 0 : 1;
}
