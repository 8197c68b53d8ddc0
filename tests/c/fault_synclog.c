/*
 * A C driver of one sync log operation, run by tests/abi/tests/synclog_faults.rs
 * under the fault interposer (tests/c/faultinject.c).  Everything it learns
 * goes to stdout, unbuffered, one line per fact, so that what was
 * acknowledged before a SIGKILL is known:
 *
 *   append CONFIGDIR CHANNEL COUNT PREFIX
 *       COUNT records "APPEND <name>", names PREFIX.<i> and "PREFIX <i>"
 *       (atoms and quoted strings alternate); prints "ACK <i>" when the
 *       append returned OK, "NAK <i> <status>" otherwise.
 *   read CONFIGDIR CHANNEL        one rolling-mode cycle: begin, next until
 *   readfile PATH                 EOF or an error, end (what sync_client -f
 *                                 does for readfile); prints "BEGIN <st>",
 *                                 "ITEM <type>\t<arg1>[\t<arg2>]" per item,
 *                                 "NEXT <st>" for a status other than OK,
 *                                 "END <st>".
 *
 * CHANNEL "-" is the default channel.  cyrsync's log lines go to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cyrsync.h"

static void on_log(void *ud, int level, const char *msg, size_t len)
{
    (void)ud;
    (void)len;
    fprintf(stderr, "LOG %d %s\n", level, msg);
}

static const char *channel_arg(const char *c) { return strcmp(c, "-") ? c : NULL; }

static int append(const char *dir, const char *channel, long count, const char *prefix)
{
    cyrsync_synclog *log = NULL;
    /* the default channel is written as the channel list '""' */
    const char *channels = channel_arg(channel) ? channel : "\"\"";
    cyrsync_status r = cyrsync_synclog_new(dir, channels, NULL, CYRSYNC_SYNCLOG_ENABLED, &log);
    printf("NEW %d\n", (int)r);
    if (r != CYRSYNC_STATUS_OK) return 0;
    for (long i = 0; i < count; i++) {
        char name[4096];
        if (i % 2) snprintf(name, sizeof name, "%s %ld", prefix, i);
        else snprintf(name, sizeof name, "%s.%ld", prefix, i);
        r = cyrsync_synclog_record(log, CYRSYNC_RECORD_APPEND, name, NULL);
        if (r == CYRSYNC_STATUS_OK) printf("ACK %ld\n", i);
        else printf("NAK %ld %d\n", i, (int)r);
    }
    cyrsync_synclog_free(log);
    return 0;
}

static int read_cycle(cyrsync_synclog_reader *reader)
{
    cyrsync_status r = cyrsync_synclog_reader_begin(reader);
    printf("BEGIN %d\n", (int)r);
    if (r != CYRSYNC_STATUS_OK) {
        cyrsync_synclog_reader_free(reader);
        return 0;
    }
    for (int guard = 0; guard < 1000000; guard++) {
        cyrsync_synclog_item item;
        r = cyrsync_synclog_reader_next(reader, &item);
        if (r == CYRSYNC_STATUS_EOF) break;
        if (r != CYRSYNC_STATUS_OK) {
            printf("NEXT %d\n", (int)r);
            if (r == CYRSYNC_STATUS_SET_ASIDE) continue;
            break;
        }
        printf("ITEM %s\t%s%s%s\n", item.type, item.arg1, item.arg2 ? "\t" : "",
               item.arg2 ? item.arg2 : "");
    }
    r = cyrsync_synclog_reader_end(reader);
    printf("END %d\n", (int)r);
    cyrsync_synclog_reader_free(reader);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    cyrsync_set_log_callback(on_log, NULL, CYRSYNC_LOG_DEBUG);
    if (argc == 6 && !strcmp(argv[1], "append"))
        return append(argv[2], argv[3], atol(argv[4]), argv[5]);
    if (argc == 4 && !strcmp(argv[1], "read")) {
        cyrsync_synclog_reader *reader = NULL;
        cyrsync_status r = cyrsync_synclog_reader_new_channel(argv[2], channel_arg(argv[3]), &reader);
        if (r != CYRSYNC_STATUS_OK) { printf("NEW %d\n", (int)r); return 0; }
        return read_cycle(reader);
    }
    if (argc == 3 && !strcmp(argv[1], "readfile")) {
        cyrsync_synclog_reader *reader = NULL;
        cyrsync_status r = cyrsync_synclog_reader_new_file(argv[2], &reader);
        if (r != CYRSYNC_STATUS_OK) { printf("NEW %d\n", (int)r); return 0; }
        return read_cycle(reader);
    }
    fprintf(stderr, "usage: see the top of fault_synclog.c\n");
    return 2;
}
