/* A C host of cyrsync's sync_client executor, as a patched Cyrus
 * sync_do_reader would be: a callback table of C functions (here a mock
 * target on which user "u3" is locked), a plan fed item by item, one
 * execute for a channel.
 *
 * usage: syncclient_client CONFIG_DIR POLICY_LETTER
 * stdout: the calls the executor made, then the results. */

#include "cyrsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCKED_CODE (-1904)

static int calls;

static void log_to_stderr(void *ud, int level, const char *msg, size_t len)
{
    (void)ud;
    fprintf(stderr, "<%d> %.*s\n", level, (int)len, msg);
}

/* mboxname_to_userid for "user.NAME[.sub]"; malloc'ed, freed by cyrsync. */
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

static uint32_t answer(const char *user, int *error)
{
    calls++;
    if (user && strcmp(user, "u3") == 0) {
        *error = LOCKED_CODE;
        return CYRSYNC_REPLY_LOCKED;
    }
    return CYRSYNC_REPLY_OK;
}

static uint32_t mailboxes(void *ud, const cyrsync_name *names, size_t count,
                          uint8_t *done, int *error)
{
    size_t i;
    int locked = 0;
    printf("MAILBOXES");
    for (i = 0; i < count; i++) {
        char *u = to_userid(ud, names[i].name, names[i].len);
        printf(" %s", names[i].name);
        if (u && strcmp(u, "u3") == 0)
            locked = 1;
        free(u);
    }
    printf("\n");
    /* like sync_do_mailboxes: all users locked first, or nothing */
    if (locked)
        return answer("u3", error);
    for (i = 0; i < count; i++)
        done[i] = 1;
    return answer(NULL, error);
}

#define ONE(fn, word, owner_is_name)                                         \
    static uint32_t fn(void *ud, const char *name, size_t len, int *error)   \
    {                                                                        \
        uint32_t r;                                                          \
        char *owner = owner_is_name ? NULL : to_userid(ud, name, len);       \
        printf(word " %s\n", name);                                          \
        r = answer(owner_is_name ? name : owner, error);                     \
        free(owner);                                                         \
        return r;                                                            \
    }

ONE(quota, "QUOTA", 0)
ONE(annotation, "ANNOTATION", 0)
ONE(unmailbox, "UNMAILBOX", 0)
ONE(meta, "META", 1)
ONE(user, "USER", 1)
ONE(unuser, "UNUSER", 1)

static uint32_t seen(void *ud, const char *user, size_t ulen,
                     const char *mbox, size_t mlen, int *error)
{
    (void)ud; (void)ulen; (void)mlen;
    printf("SEEN %s %s\n", user, mbox);
    return answer(user, error);
}

static uint32_t sub(void *ud, const char *user, size_t ulen,
                    const char *mbox, size_t mlen, int *error)
{
    (void)ud; (void)ulen; (void)mlen;
    printf("SUB %s %s\n", user, mbox);
    return answer(user, error);
}

static uint32_t restart(void *ud, int *error)
{
    (void)ud; (void)error;
    printf("RESTART\n");
    return CYRSYNC_REPLY_OK;
}

static const char *error_message(void *ud, int code)
{
    (void)ud;
    return code == LOCKED_CODE ? "Mailbox is locked" : NULL;
}

int main(int argc, char **argv)
{
    static const char *items[][3] = {
        { "USER", "u1", NULL },
        { "MAILBOX", "user.u2.Sent", NULL },
        { "MAILBOX", "user.u3", NULL },
        { "SEEN", "u3", "user.u3.x" },
        { "SUB", "u2", "user.u2.Sent" },
        { "META", "u1", NULL },
        { "QUOTA", "user.u2", NULL },
    };
    struct cyrsync_syncclient_callbacks cbs;
    cyrsync_syncclient_config *config = NULL;
    cyrsync_syncclient_plan *plan = NULL;
    struct cyrsync_syncclient_results res;
    size_t i;

    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG_DIR POLICY\n", argv[0]);
        return 2;
    }
    cyrsync_set_log_callback(log_to_stderr, NULL, CYRSYNC_LOG_DEBUG);

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
    cbs.error_message = error_message;

    if (cyrsync_syncclient_config_new(&config) != CYRSYNC_STATUS_OK
        || cyrsync_syncclient_config_set_policy_name(config, argv[2]) != CYRSYNC_STATUS_OK
        || cyrsync_syncclient_plan_new(&plan) != CYRSYNC_STATUS_OK)
        return 1;
    for (i = 0; i < sizeof items / sizeof items[0]; i++) {
        if (cyrsync_syncclient_plan_add(plan, &cbs, items[i][0], items[i][1],
                                        items[i][2]) != CYRSYNC_STATUS_OK)
            return 1;
    }
    if (cyrsync_syncclient_execute(plan, config, &cbs, argv[1], "ch", &res)
        != CYRSYNC_STATUS_OK)
        return 1;
    printf("done=%llu deferred=%llu promoted=%llu bailed=%d cyrus_error=%d calls=%d\n",
           (unsigned long long)res.done, (unsigned long long)res.deferred,
           (unsigned long long)res.promoted, (int)res.bailed, res.cyrus_error,
           calls);
    cyrsync_syncclient_plan_free(plan);
    cyrsync_syncclient_config_free(config);
    return 0;
}
