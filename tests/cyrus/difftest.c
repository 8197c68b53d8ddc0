/* difftest.c -- differential test of Cyrus's sync log, C against cyrsync.
 *
 * Built twice by tests/cyrus/difftest.sh: once against a vanilla Cyrus
 * build and once against the one patched with cyrus-patches/ (sync_log.c a
 * shim over cyrsync), linked like cyr_synclog (libcyrus_imap, libcyrus,
 * libcyrus_min, cli_fatal.c).  It only calls the public API of sync_log.h,
 * so the two binaries run the same code on their side and every output
 * difference is a behaviour difference of the sync log.
 *
 *   difftest -C imapd.conf write          sync_log()/sync_log_channel() calls
 *   difftest -C imapd.conf rightnow       the same calls, printing the
 *                                          sync_log_rightnow_buf() contents
 *   difftest gen DIR [nonsync]            write crafted input files to DIR
 *                                          (nonsync: also {N} literals)
 *   difftest -C imapd.conf read MODE ARG  read a log, print every item
 *       MODE: file PATH | content PATH | fd PATH | channel NAME ("" = default)
 *   difftest -C imapd.conf rolling NAME   squatter's rolling loop on channel
 *                                          NAME: begin, items, no end; a new
 *                                          record is logged; begin again
 *                                          (which ends the first run), items
 *
 * Items are printed one per line with every byte outside printable ASCII,
 * and the backslash, as \xHH, NULL as (null), so the outputs can be diffed.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "assert.h"
#include "global.h"
#include "sync_log.h"
#include "util.h"
#include "xmalloc.h"

/* generated headers are not necessarily in current directory */
#include "imap/imap_err.h"

static void put_escaped(FILE *out, const char *s)
{
    const unsigned char *p;

    if (!s) {
        fputs("(null)", out);
        return;
    }
    fputc('"', out);
    for (p = (const unsigned char *) s; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\' && *p != '"')
            fputc(*p, out);
        else
            fprintf(out, "\\x%02x", *p);
    }
    fputc('"', out);
}

static const char *rc_name(int r)
{
    static char buf[64];
    if (r == 0) return "OK";
    if (r == EOF) return "EOF";
    if (r == IMAP_AGAIN) return "IMAP_AGAIN";
    if (r == IMAP_IOERROR) return "IMAP_IOERROR";
    snprintf(buf, sizeof(buf), "error %d", r);
    return buf;
}

/* ------------------------------------------------------------ writer */

/* Names that exercise sync_quote_name(): atoms, quoting, escaping, 8-bit */
static const char *names[] = {
    "user.alice",
    "user.alice.Sent Items",
    "user/bob@example.com",
    "user.q\"uote",
    "user.back\\slash",
    "user.br{ace}s",
    "{5+}",
    "{5}",
    "user.tab\there",
    "user.(paren)",
    "user.caf\xc3\xa9",
    "\xff\xfe\x80\x01\x7f",
    "",
    "NIL",
    "*",
    "%",
    "user.%s.%d",
    "~",
    "a b\"c\\d{e}f(g)h\ti",
    "user.very.long.name.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa \\\\ \"\"",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static const char *channels_for_channel_calls[] = {
    NULL, "c1", "c7", "squatter", "other",
};
#define NCHANS (sizeof(channels_for_channel_calls) / sizeof(channels_for_channel_calls[0]))

static void do_writes(int rightnow)
{
    size_t i, j;
    struct buf *rn;

#define RN() do { \
        if (rightnow) { \
            rn = sync_log_rightnow_buf(); \
            fputs("rightnow ", stdout); \
            put_escaped(stdout, rn ? buf_cstring(rn) : NULL); \
            fputc('\n', stdout); \
            if (rn) buf_reset(rn); \
        } \
    } while (0)

    for (i = 0; i < NNAMES; i++) {
        const char *n = names[i];
        const char *m = names[(i + 1) % NNAMES];
        sync_log_user(n);
        sync_log_unuser(n);
        sync_log_sieve(n);
        sync_log_append(n);
        if (*n) sync_log_mailbox(n);
        sync_log_unmailbox(n);
        sync_log_mailbox_double(n, m);
        sync_log_rename(n, m);
        sync_log_quota(n);
        sync_log_annotation(n);
        sync_log_seen(n, m);
        sync_log_subscribe(n, m);
        RN();
        for (j = 0; j < NCHANS; j++) {
            const char *c = channels_for_channel_calls[j];
            sync_log_channel_user(c, n);
            sync_log_channel_mailbox(c, n);
            sync_log_channel_rename(c, n, m);
            sync_log_channel_seen(c, n, m);
        }
        RN();
    }
    /* raw formats: no final newline, %d, %%, unknown conversions, NULL */
    sync_log("APPEND %s", "user.nonl");
    sync_log("QUOTA %d %s\n", -42, "user.int");
    sync_log("ANNOTATION %s %%x %q\n", "user.pct");
    sync_log("MAILBOX %s\n", (const char *) NULL);
    sync_log("USER %s\nUSER %s\n", "two", "lines");
    /* not sync_log(""): the C va_format() reads buf[-1] on it */
    sync_log_channel("c1", "APPEND %s", "c1.nonl");
    sync_log_channel(NULL, "QUOTA %d\n", 2147483647);
    RN();

    /* after suppression only the unsuppressable channels get sync_log() */
    sync_log_suppress();
    for (i = 0; i < 5; i++) {
        sync_log_mailbox(names[i]);
        sync_log_channel_user("c3", names[i]);
    }
    RN();
    sync_log_reset();
#undef RN
}

/* ------------------------------------------------------------ inputs */

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        perror(path);
        exit(1);
    }
}

#define W(name, lit) write_file(dir, name, lit, sizeof(lit) - 1)

static void do_gen(const char *dir, int nonsync)
{
    unsigned int seed = 12345;
    size_t i, n;
    char *buf;

    W("empty", "");
    W("blank-lines", "\n\n\r\n\nUSER a\n\n");
    W("crlf", "USER a\r\nMAILBOX \"b c\"\r\nSEEN u m\r\n");
    W("lowercase-type", "user alice\nMailBox user.x\n");
    W("no-arg", "USER\nMAILBOX user.a\n");
    W("no-arg-space", "USER \nMAILBOX user.a\n");
    W("three-args", "SEEN a b c\nMAILBOX user.a\n");
    W("two-spaces", "SEEN a  b\nUSER x\n");
    W("trailing-space", "USER a \nUSER b\n");
    W("quoted", "MAILBOX \"a \\\"q\\\" \\\\ {x}\"\nMAILBOX \"\"\n");
    W("quoted-bad-escape", "MAILBOX \"a\\qb\"\nUSER ok\n");
    W("quoted-unterminated", "MAILBOX \"abc\nUSER ok\n");
    W("literal", "MAILBOX {3+}\r\nabc\nSEEN {1+}\r\nu {2+}\r\nmb\nUSER ok\n");
    W("literal-zero", "MAILBOX {0+}\r\n\nUSER ok\n");
    W("literal-with-newline", "MAILBOX {3+}\r\na\nb\nUSER ok\n");
    W("literal-truncated", "USER ok\nMAILBOX {10+}\r\nabc");
    if (nonsync) {
        /* synchronising literals: only where the C reader does not write a
         * continuation to its NULL output stream (3.12: non-client stream) */
        W("literal-nonsync", "MAILBOX {3}\r\nabc\nSEEN {1}\r\nu {2}\r\nmb\nUSER ok\n");
        W("literal-nonsync-zero", "MAILBOX {0}\r\n\nUSER ok\n");
        W("literal-nonsync-truncated", "USER ok\nMAILBOX {10}\r\nabc");
    }
    W("8bit", "MAILBOX user.caf\xc3\xa9\nMAILBOX \"\xff\xfe x\"\n");
    W("nil", "MAILBOX NIL\nSEEN NIL NIL\n");
    W("parens", "MAILBOX (a)\nMAILBOX a)b\n");
    W("no-final-newline", "USER a\nUSER b");
    W("truncated-mid-quote", "USER a\nMAILBOX \"user.b c");
    W("truncated-after-type", "USER a\nMAILBOX");
    W("truncated-after-space", "USER a\nMAILBOX ");
    W("only-newline", "\n");
    W("tab-separator", "USER\ta\nUSER b\n");
    W("nul-byte", "USER a\nUSER b\0c\nUSER d\n");
    W("long-atom", "MAILBOX aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");

    /* deterministic garbage, without '{' (a literal without '+' makes the C
     * reader write a continuation request to a NULL stream) */
    for (n = 0; n < 8; n++) {
        char name[64];
        size_t len = 64 + n * 97;
        buf = xmalloc(len);
        for (i = 0; i < len; i++) {
            unsigned char c;
            seed = seed * 1103515245u + 12345u;
            c = (seed >> 16) & 0xff;
            if (n % 2 == 0) {
                /* mostly text: letters, spaces, quotes, newlines */
                static const char alphabet[] = "ABCXYZ abcxyz \"\\\n\r.()*%0123456789\t";
                c = alphabet[c % (sizeof(alphabet) - 1)];
            }
            if (c == '{') c = '[';
            buf[i] = (char) c;
        }
        snprintf(name, sizeof(name), "garbage-%zu", n);
        write_file(dir, name, buf, len);
        free(buf);
    }

    /* line-structured garbage: random lines of plausible and broken tokens */
    for (n = 0; n < 6; n++) {
        static const char *tokens[] = {
            "USER", "MAILBOX", "seen", "SUB", "UNMAILBOX", "x", "",
            "user.a", "\"q b\"", "\"esc\\\"\"", "\"\"", "NIL", "\xc3\xa9",
            "{2+}\r\nab", "a\\b", "(p)", "*", "%",
        };
        static const char *seps[] = { " ", " ", " ", "  ", "\t", "\n", "\r\n", "" };
        struct buf b = BUF_INITIALIZER;
        char name[64];
        for (i = 0; i < 200; i++) {
            seed = seed * 1103515245u + 12345u;
            buf_appendcstr(&b, tokens[(seed >> 16) % (sizeof(tokens) / sizeof(tokens[0]))]);
            seed = seed * 1103515245u + 12345u;
            buf_appendcstr(&b, seps[(seed >> 16) % (sizeof(seps) / sizeof(seps[0]))]);
            if (i % 3 == 2) buf_appendcstr(&b, "\n");
        }
        snprintf(name, sizeof(name), "garbage-lines-%zu", n);
        write_file(dir, name, buf_base(&b), buf_len(&b));
        buf_free(&b);
    }
}

/* ------------------------------------------------------------ reader */

static char *slurp(const char *path, size_t *lenp)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    char *buf;
    ssize_t r;

    if (fd < 0 || fstat(fd, &st) < 0) { perror(path); exit(1); }
    buf = xmalloc(st.st_size + 1);
    r = read(fd, buf, st.st_size);
    if (r != st.st_size) { perror(path); exit(1); }
    buf[r] = '\0';
    close(fd);
    *lenp = r;
    return buf;
}

static void print_file_name(const char *name)
{
    /* relative to configdirectory so two runs in two dirs compare */
    size_t l = strlen(config_dir);
    if (name && !strncmp(name, config_dir, l)) {
        printf("file_name <configdirectory>");
        put_escaped(stdout, name + l);
    }
    else {
        printf("file_name ");
        put_escaped(stdout, name ? "<given>" : NULL);
    }
    putchar('\n');
}

static void read_all(sync_log_reader_t *slr)
{
    const char *args[3];
    int r, n = 0;

    r = sync_log_reader_begin(slr);
    printf("begin %s\n", rc_name(r));
    print_file_name(sync_log_reader_get_file_name(slr));
    if (r) return;
    while ((r = sync_log_reader_getitem(slr, args)) == 0) {
        printf("item ");
        put_escaped(stdout, args[0]);
        putchar(' ');
        put_escaped(stdout, args[1]);
        putchar(' ');
        put_escaped(stdout, args[2]);
        putchar('\n');
        if (++n > 100000) { printf("too many items\n"); break; }
    }
    printf("getitem %s\n", rc_name(r));
    r = sync_log_reader_end(slr);
    printf("end %s\n", rc_name(r));
}

static void print_items(sync_log_reader_t *slr)
{
    const char *args[3];
    int r;

    while ((r = sync_log_reader_getitem(slr, args)) == 0) {
        printf("item ");
        put_escaped(stdout, args[0]);
        putchar(' ');
        put_escaped(stdout, args[1]);
        putchar(' ');
        put_escaped(stdout, args[2]);
        putchar('\n');
    }
    printf("getitem %s\n", rc_name(r));
}

/* squatter -R never calls end(): its next begin() must end the run it
 * read (unlink log-run) and take the new log, or the same items come back
 * forever and new records are never read */
static int do_rolling(const char *channel)
{
    sync_log_reader_t *slr = sync_log_reader_create_with_channel(channel);
    char path[4096];
    FILE *f;
    int r;

    r = sync_log_reader_begin(slr);
    printf("begin %s\n", rc_name(r));
    if (!r) print_items(slr);
    snprintf(path, sizeof(path), "%s/sync/%s/log", config_dir, channel);
    f = fopen(path, "a");
    if (!f || fputs("USER after.first.run\n", f) < 0 || fclose(f)) {
        perror(path);
        return 1;
    }
    r = sync_log_reader_begin(slr);
    printf("begin again %s\n", rc_name(r));
    if (!r) print_items(slr);
    r = sync_log_reader_end(slr);
    printf("end %s\n", rc_name(r));
    sync_log_reader_free(slr);
    return 0;
}

static int do_read(const char *mode, const char *arg)
{
    sync_log_reader_t *slr = NULL;
    char *content = NULL;
    size_t len;
    int fd = -1;

    if (!strcmp(mode, "file")) {
        slr = sync_log_reader_create_with_filename(arg);
    }
    else if (!strcmp(mode, "content")) {
        content = slurp(arg, &len);
        slr = sync_log_reader_create_with_content(content);
    }
    else if (!strcmp(mode, "fd")) {
        fd = open(arg, O_RDONLY);
        if (fd < 0) { perror(arg); return 1; }
        slr = sync_log_reader_create_with_fd(fd);
    }
    else if (!strcmp(mode, "channel")) {
        slr = sync_log_reader_create_with_channel(*arg ? arg : NULL);
    }
    else {
        fprintf(stderr, "unknown read mode %s\n", mode);
        return 2;
    }

    read_all(slr);
    if (!strcmp(mode, "channel")) {
        /* a second round: the log was consumed, so AGAIN (or the next log) */
        printf("second round\n");
        read_all(slr);
    }
    sync_log_reader_free(slr);
    free(content);
    if (fd >= 0) close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *alt_config = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "C:")) != EOF) {
        if (opt == 'C') alt_config = optarg;
        else return 2;
    }
    argc -= optind;
    argv += optind;
    if (argc < 1) {
        fprintf(stderr, "usage: difftest [-C conf] write|rightnow|gen DIR|read MODE ARG\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (!strcmp(argv[0], "gen") && (argc == 2 || argc == 3)) {
        do_gen(argv[1], argc == 3 && !strcmp(argv[2], "nonsync"));
        return 0;
    }

    cyrus_init(alt_config, "difftest", 0, 0);

    if (!strcmp(argv[0], "write")) {
        sync_log_init();
        do_writes(0);
        sync_log_done();
    }
    else if (!strcmp(argv[0], "rightnow")) {
        sync_log_init();
        do_writes(1);
        sync_log_done();
    }
    else if (!strcmp(argv[0], "read") && argc == 3) {
        do_read(argv[1], argv[2]);
    }
    else if (!strcmp(argv[0], "rolling") && argc == 2) {
        do_rolling(argv[1]);
    }
    else {
        fprintf(stderr, "bad arguments\n");
        cyrus_done();
        return 2;
    }

    cyrus_done();
    return 0;
}
