/* Cyrus's planner in C, for differential tests of cyrsync's planner.
 *
 * The functions below are re-typed from imap/sync_support.c
 * (sync_action_list_add, remove_meta, the item loop and "Optimise out
 * redundant clauses" of sync_do_reader; identical in 3.6.1 and 3.12.4) and
 * lib/hash.c (hash_insert, hash_lookup, hash_enumerate: sorted bucket
 * chains, strhash_seeded_djb2), with Cyrus's allocation helpers replaced by
 * libc. mboxname_to_userid is a stand-in for internal names "user.NAME..."
 * (no domains), the same rule the Rust side is given.
 *
 * Input (stdin): logs separated by a line "---"; each line "TYPE ARG1
 * [ARG2]" with atoms only. Output: per log, the steps sync_do_reader would
 * run if every call succeeded, in its order (cohorts in hash_enumerate order
 * for seed argv[1], 1024 buckets), then "---". */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sync_action {
    struct sync_action *next;
    int active;
    char *name;
    char *user;
};

struct sync_action_list {
    struct sync_action *head, *tail;
    unsigned long count;
};

static char *xstrdupnull(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct sync_action_list *sync_action_list_create(void)
{
    return calloc(1, sizeof(struct sync_action_list));
}

static void sync_action_list_add(struct sync_action_list *l, const char *name,
                                 const char *user)
{
    struct sync_action *current;

    if (!name && !user) return;

    for (current = l->head; current; current = current->next) {
        if ((!name || (current->name && !strcmp(current->name, name))) &&
            (!user || (current->user && !strcmp(current->user, user)))) {
            current->active = 1; /* Make sure active */
            return;
        }
    }

    current = calloc(1, sizeof(struct sync_action));
    current->next = NULL;
    current->name = xstrdupnull(name);
    current->user = xstrdupnull(user);
    current->active = 1;

    if (l->tail)
        l->tail = l->tail->next = current;
    else
        l->head = l->tail = current;

    l->count++;
}

static void sync_action_list_free(struct sync_action_list *l)
{
    struct sync_action *current = l->head, *next;
    while (current) {
        next = current->next;
        free(current->name);
        free(current->user);
        free(current);
        current = next;
    }
    free(l);
}

static void remove_meta(char *user, struct sync_action_list *list)
{
    struct sync_action *action;

    for (action = list->head; action; action = action->next) {
        if (!strcmp(user, action->user)) {
            action->active = 0;
        }
    }
}

/* lib/hash.c */
typedef struct bucket {
    char *key;
    void *data;
    struct bucket *next;
} bucket;

#define HASH_SIZE 1024
static bucket *table[HASH_SIZE];
static unsigned seed;

static unsigned strhash_seeded_djb2(unsigned sd, const char *string)
{
    const unsigned char *ustr = (const unsigned char *)string;
    unsigned hash = 5381;
    int c;

    if (sd) {
        unsigned i;
        for (i = 0; i < sizeof sd; i++) {
            c = sd & 0xff;
            hash = ((hash << 5) + hash) ^ c;
            sd >>= 8;
        }
    }
    while ((c = *ustr++))
        hash = ((hash << 5) + hash) ^ c;
    return hash;
}

static void *hash_lookup(const char *key)
{
    bucket *ptr;
    unsigned val = strhash_seeded_djb2(seed, key) % HASH_SIZE;
    for (ptr = table[val]; ptr; ptr = ptr->next) {
        int cmpresult = strcmp(key, ptr->key);
        if (!cmpresult) return ptr->data;
        else if (cmpresult < 0) return NULL;
    }
    return NULL;
}

static void hash_insert(const char *key, void *data)
{
    unsigned val = strhash_seeded_djb2(seed, key) % HASH_SIZE;
    bucket *ptr, *newptr, **prev;

    for (prev = &table[val], ptr = table[val]; ptr; prev = &ptr->next, ptr = ptr->next) {
        int cmpresult = strcmp(key, ptr->key);
        if (!cmpresult) {
            ptr->data = data;
            return;
        }
        else if (cmpresult < 0) {
            break;
        }
    }
    newptr = malloc(sizeof(bucket));
    newptr->key = strdup(key);
    newptr->data = data;
    newptr->next = ptr;
    *prev = newptr;
}

static void hash_free_all(void)
{
    int i;
    for (i = 0; i < HASH_SIZE; i++) {
        bucket *b = table[i], *next;
        while (b) {
            next = b->next;
            sync_action_list_free(b->data);
            free(b->key);
            free(b);
            b = next;
        }
        table[i] = NULL;
    }
}

static char *mboxname_to_userid(const char *name)
{
    size_t n;
    char *u;
    if (strncmp(name, "user.", 5) != 0) return NULL;
    n = strcspn(name + 5, ".");
    if (!n) return NULL;
    u = malloc(n + 1);
    memcpy(u, name + 5, n);
    u[n] = '\0';
    return u;
}

static struct sync_action_list *cohort(const char *userid)
{
    struct sync_action_list *mailbox_list = hash_lookup(userid);
    if (!mailbox_list) {
        mailbox_list = sync_action_list_create();
        hash_insert(userid, mailbox_list);
    }
    return mailbox_list;
}

static void print_list(const char *word, struct sync_action_list *l, int name, int user)
{
    struct sync_action *a;
    for (a = l->head; a; a = a->next) {
        if (!a->active) continue;
        printf("%s", word);
        if (user) printf(" %s", a->user);
        if (name) printf(" %s", a->name);
        printf("\n");
    }
}

static void plan(char lines[][3][128], int n)
{
    struct sync_action_list *user_list = sync_action_list_create();
    struct sync_action_list *unuser_list = sync_action_list_create();
    struct sync_action_list *meta_list = sync_action_list_create();
    struct sync_action_list *unmailbox_list = sync_action_list_create();
    struct sync_action_list *quota_list = sync_action_list_create();
    struct sync_action_list *annot_list = sync_action_list_create();
    struct sync_action_list *seen_list = sync_action_list_create();
    struct sync_action_list *sub_list = sync_action_list_create();
    struct sync_action *action;
    int i;

    for (i = 0; i < n; i++) {
        const char *args[3];
        args[0] = lines[i][0];
        args[1] = lines[i][1];
        args[2] = lines[i][2][0] ? lines[i][2] : NULL;

        if (!strcmp(args[0], "USER"))
            sync_action_list_add(user_list, NULL, args[1]);
        else if (!strcmp(args[0], "UNUSER"))
            sync_action_list_add(unuser_list, NULL, args[1]);
        else if (!strcmp(args[0], "META"))
            sync_action_list_add(meta_list, NULL, args[1]);
        else if (!strcmp(args[0], "SIEVE"))
            sync_action_list_add(meta_list, NULL, args[1]);
        else if (!strcmp(args[0], "APPEND") || !strcmp(args[0], "MAILBOX")
                 || !strcmp(args[0], "DOUBLEMAILBOX")) {
            char *freeme = mboxname_to_userid(args[1]);
            const char *userid = freeme ? freeme : "";
            struct sync_action_list *mailbox_list = cohort(userid);
            sync_action_list_add(mailbox_list, args[1], NULL);
            if (args[2])
                sync_action_list_add(mailbox_list, args[2], NULL);
            free(freeme);
        }
        else if (!strcmp(args[0], "RENAME")) {
            char *freeme1 = mboxname_to_userid(args[1]);
            char *freeme2 = mboxname_to_userid(args[2]);
            const char *userid1 = freeme1 ? freeme1 : "";
            const char *userid2 = freeme2 ? freeme2 : "";
            struct sync_action_list *mailbox_list = cohort(userid1);
            sync_action_list_add(mailbox_list, args[1], NULL);
            sync_action_list_add(mailbox_list, args[2], NULL);
            if (strcmp(userid1, userid2) != 0) {
                mailbox_list = cohort(userid2);
                sync_action_list_add(mailbox_list, args[1], NULL);
                sync_action_list_add(mailbox_list, args[2], NULL);
            }
            free(freeme1);
            free(freeme2);
        }
        else if (!strcmp(args[0], "UNMAILBOX"))
            sync_action_list_add(unmailbox_list, args[1], NULL);
        else if (!strcmp(args[0], "QUOTA"))
            sync_action_list_add(quota_list, args[1], NULL);
        else if (!strcmp(args[0], "ANNOTATION"))
            sync_action_list_add(annot_list, args[1], NULL);
        else if (!strcmp(args[0], "SEEN"))
            sync_action_list_add(seen_list, args[2], args[1]);
        else if (!strcmp(args[0], "SUB"))
            sync_action_list_add(sub_list, args[2], args[1]);
        else if (!strcmp(args[0], "UNSUB"))
            sync_action_list_add(sub_list, args[2], args[1]);
    }

    for (action = user_list->head; action; action = action->next) {
        remove_meta(action->user, meta_list);
        remove_meta(action->user, seen_list);
        remove_meta(action->user, sub_list);
    }
    for (action = unuser_list->head; action; action = action->next) {
        remove_meta(action->user, meta_list);
        remove_meta(action->user, seen_list);
        remove_meta(action->user, sub_list);
        remove_meta(action->user, user_list);
    }
    for (action = meta_list->head; action; action = action->next) {
        remove_meta(action->user, seen_list);
        remove_meta(action->user, sub_list);
    }

    /* hash_enumerate + split_user_mailboxes (no name history) */
    for (i = 0; i < HASH_SIZE; i++) {
        bucket *b;
        for (b = table[i]; b; b = b->next) {
            struct sync_action_list *l = b->data;
            int any = 0;
            for (action = l->head; action; action = action->next) {
                if (!action->active) continue;
                printf(any ? " %s" : "MAILBOXES %s", action->name);
                any = 1;
            }
            if (any) printf("\n");
        }
    }
    print_list("QUOTA", quota_list, 1, 0);
    print_list("ANNOTATION", annot_list, 1, 0);
    print_list("SEEN", seen_list, 1, 1);
    print_list("SUB", sub_list, 1, 1);
    print_list("UNMAILBOX", unmailbox_list, 1, 0);
    print_list("META", meta_list, 0, 1);
    print_list("USER", user_list, 0, 1);
    print_list("UNUSER", unuser_list, 0, 1);
    printf("---\n");

    sync_action_list_free(user_list);
    sync_action_list_free(unuser_list);
    sync_action_list_free(meta_list);
    sync_action_list_free(unmailbox_list);
    sync_action_list_free(quota_list);
    sync_action_list_free(annot_list);
    sync_action_list_free(seen_list);
    sync_action_list_free(sub_list);
    hash_free_all();
}

#define MAX_LINES 4096
static char lines[MAX_LINES][3][128];

int main(int argc, char **argv)
{
    char buf[512];
    int n = 0;

    seed = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 0;
    while (fgets(buf, sizeof buf, stdin)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (!strcmp(buf, "---")) {
            plan(lines, n);
            n = 0;
            continue;
        }
        if (n == MAX_LINES) return 2;
        lines[n][0][0] = lines[n][1][0] = lines[n][2][0] = '\0';
        if (sscanf(buf, "%127s %127s %127s", lines[n][0], lines[n][1], lines[n][2]) >= 2)
            n++;
    }
    return 0;
}
