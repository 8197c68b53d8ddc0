/*
 * A C caller of cyrsync's sync log, using only include/cyrsync.h and the
 * link line README.md documents. It writes records the way Cyrus's
 * sync_log.h macros do (through the printf-style entry points), reads them
 * back with the reader, and prints each item as
 *     TYPE|arg1|arg2
 * (arg2 as "-" when absent), then checks that bad input is refused.
 *
 * usage: synclog_client CONFIGDIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cyrsync.h"

static int failures = 0;

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "CHECK failed at line %d: %s\n", __LINE__, #cond); \
    failures++; } } while (0)

static int messages = 0;

static void on_log(void *ud, int level, const char *msg, size_t len)
{
    (void)ud;
    CHECK(strlen(msg) == len);
    fprintf(stderr, "log[%d]: %s\n", level, msg);
    messages++;
}

int main(int argc, char **argv)
{
    cyrsync_synclog *log = NULL;
    cyrsync_synclog_reader *reader = NULL;
    cyrsync_synclog_item item;
    cyrsync_status r;

    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIGDIR\n", argv[0]);
        return 2;
    }
    CHECK(strcmp(cyrsync_version(), CYRSYNC_VERSION) == 0);
    CHECK(cyrsync_set_log_callback(on_log, NULL, CYRSYNC_LOG_DEBUG) == CYRSYNC_STATUS_OK);

    r = cyrsync_synclog_new(argv[1], "\"\"", NULL, CYRSYNC_SYNCLOG_ENABLED, &log);
    CHECK(r == CYRSYNC_STATUS_OK);

    /* what sync_log.h's macros expand to */
    CHECK(cyrsync_synclog_log(log, "USER %s\n", "fred") == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_log(log, "MAILBOX %s\n", "user.fred.Sent Items") == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_log(log, "RENAME %s %s\nMAILBOX %s\nMAILBOX %s\n",
                              "user.a", "user.b\\c", "user.a", "user.b\\c") == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_log(log, "SEEN %s %s\n", "fred", "user.fred.caf\xe9") == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_log(log, "QUOTA %s", "") == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_record(log, CYRSYNC_RECORD_SUB, "fred", "{x}") == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_log_channel(log, NULL, "UNUSER %s\n", "gone") == CYRSYNC_STATUS_OK);

    /* refused, nothing written */
    CHECK(cyrsync_synclog_log(log, "MAILBOX %s\n", "bad\nname") == CYRSYNC_STATUS_NAME_HAS_LINE_BREAK);
    CHECK(cyrsync_synclog_log(NULL, "USER %s\n", "x") == CYRSYNC_STATUS_NULL_PARAMETER);
    CHECK(cyrsync_synclog_log(log, NULL) == CYRSYNC_STATUS_NULL_PARAMETER);
    CHECK(cyrsync_synclog_log_channel(log, "../x", "USER %s\n", "x") == CYRSYNC_STATUS_BAD_CHANNEL);
    CHECK(messages >= 4);

    CHECK(cyrsync_synclog_reader_new_channel(argv[1], NULL, &reader) == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_reader_begin(reader) == CYRSYNC_STATUS_OK);
    while ((r = cyrsync_synclog_reader_next(reader, &item)) == CYRSYNC_STATUS_OK) {
        printf("%s|%s|%s\n", item.type, item.arg1, item.arg2 ? item.arg2 : "-");
    }
    CHECK(r == CYRSYNC_STATUS_EOF);
    CHECK(cyrsync_synclog_reader_end(reader) == CYRSYNC_STATUS_OK);
    CHECK(cyrsync_synclog_reader_begin(reader) == CYRSYNC_STATUS_AGAIN);
    cyrsync_synclog_reader_free(reader);
    cyrsync_synclog_free(log);
    cyrsync_synclog_free(NULL);

    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    return 0;
}
